package link

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/encoder-bridge/encoder-bridge/protocol"
)

// Conn is one websocket connection to the cloud. Send is safe for
// concurrent use; Recv is for one reader at a time.
type Conn struct {
	ws  *websocket.Conn
	l   *Link
	url string // the endpoint dialled

	wmu sync.Mutex // serialises data frames

	frames    chan []byte
	done      chan struct{} // closed when the connection is dead
	closing   chan struct{} // closed by Close
	closeOnce sync.Once

	mu      sync.Mutex
	err     error // why the connection died
	firstAt time.Time
}

func newConn(ws *websocket.Conn, l *Link, url string) *Conn {
	c := &Conn{
		ws:      ws,
		l:       l,
		url:     url,
		frames:  make(chan []byte),
		done:    make(chan struct{}),
		closing: make(chan struct{}),
	}
	ws.SetPongHandler(func(string) error {
		c.extendRead()
		if h := l.opts.Heard; h != nil {
			h()
		}
		return nil
	})
	go c.readLoop()
	go c.pingLoop()
	return c
}

// URL is the endpoint this connection was dialled to.
func (c *Conn) URL() string { return c.url }

// liveness is how long the connection may stay silent: a ping interval
// plus the time the pong has to arrive.
func (c *Conn) liveness() time.Duration { return c.l.opts.PingInterval + c.l.opts.PongTimeout }

func (c *Conn) extendRead() {
	_ = c.ws.SetReadDeadline(time.Now().Add(c.liveness()))
}

func (c *Conn) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
}

// Err is why the connection died, or nil while it is up.
func (c *Conn) Err() error {
	select {
	case <-c.done:
	default:
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// FirstMessageAt is when the first frame from the cloud arrived, on the
// link's clock.
func (c *Conn) FirstMessageAt() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.firstAt, !c.firstAt.IsZero()
}

func (c *Conn) readLoop() {
	defer close(c.done)
	for {
		// The deadline is set before every read rather than once per
		// frame, so a consumer that is slow to call Recv is not mistaken
		// for a silent cloud.
		c.extendRead()
		_, b, err := c.ws.ReadMessage()
		if err != nil {
			c.fail(readError(err, c.liveness()))
			c.ws.Close()
			return
		}
		c.mu.Lock()
		if c.firstAt.IsZero() {
			c.firstAt = c.l.clock.Now()
		}
		c.mu.Unlock()
		select {
		case c.frames <- b:
		case <-c.closing:
			// Closing: frames are dropped while the cloud answers the
			// close frame, which ends the read.
		}
	}
}

func readError(err error, liveness time.Duration) error {
	var ne net.Error
	switch {
	case errors.Is(err, websocket.ErrReadLimit):
		return fmt.Errorf("link: the cloud sent a frame over %d bytes: %w", protocol.MaxMessageSize, protocol.ErrTooLarge)
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("link: nothing from the cloud for %s (no pong): %w", liveness, err)
	case websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway):
		return fmt.Errorf("link: the cloud closed the connection: %w", err)
	}
	return fmt.Errorf("link: read: %w", err)
}

func (c *Conn) pingLoop() {
	t := time.NewTicker(c.l.opts.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
			// WriteControl may run concurrently with WriteMessage.
			if err := c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.l.opts.WriteTimeout)); err != nil {
				c.fail(fmt.Errorf("link: ping: %w", err))
				c.ws.Close()
				return
			}
		}
	}
}

// Send writes frame as one text message within the write timeout (or
// ctx's deadline, if sooner). A frame over protocol.MaxMessageSize is
// refused without harming the connection; a failed write closes it.
func (c *Conn) Send(ctx context.Context, frame []byte) error {
	if len(frame) > protocol.MaxMessageSize {
		return fmt.Errorf("link: send %d bytes: %w", len(frame), protocol.ErrTooLarge)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	select {
	case <-c.done:
		return c.deadErr()
	case <-c.closing:
		return ErrClosed
	default:
	}
	deadline := time.Now().Add(c.l.opts.WriteTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = c.ws.SetWriteDeadline(deadline)
	if err := c.ws.WriteMessage(websocket.TextMessage, frame); err != nil {
		err = fmt.Errorf("link: write: %w", err)
		c.fail(err)
		c.ws.Close()
		return err
	}
	return nil
}

func (c *Conn) deadErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	return ErrClosed
}

// Recv returns the next frame, or why the connection died.
func (c *Conn) Recv(ctx context.Context) ([]byte, error) {
	select {
	case b := <-c.frames:
		return b, nil
	case <-c.done:
		return nil, c.deadErr()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// closeWait bounds the wait for the cloud's answer to a close frame.
const closeWait = time.Second

// Close says goodbye with a normal close frame (1000) and closes the
// connection.
func (c *Conn) Close() error { return c.closeWith(websocket.CloseNormalClosure, "") }

// GoAway closes the connection with a going-away frame (1001): the bridge
// is stopping, and what it holds resumes at the next connection.
func (c *Conn) GoAway() error { return c.closeWith(websocket.CloseGoingAway, "bridge stopping") }

// closeWith sends a close frame with code and waits, within closeWait,
// for the cloud's close frame before closing the socket: closing at once
// can reset a connection the cloud has not finished reading, and the
// close frame would be lost with it.
func (c *Conn) closeWith(code int, reason string) error {
	c.closeOnce.Do(func() {
		c.fail(ErrClosed)
		close(c.closing)
		msg := websocket.FormatCloseMessage(code, reason)
		if err := c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(closeWait)); err == nil {
			t := time.NewTimer(closeWait)
			select {
			case <-c.done:
			case <-t.C:
			}
			t.Stop()
		}
		c.ws.Close()
	})
	<-c.done
	return nil
}
