package vpcd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/encoder-bridge/encoder-bridge/reader/sim/chip"
)

// DefaultAddr is the first slot of the Debian vpcd configuration,
// "Virtual PCD 00 00".
const DefaultAddr = "127.0.0.1:35963"

const (
	// dialRetry bounds how long Insert waits for vpcd to listen: pcscd
	// opens the port when it loads the driver, just after it starts.
	dialRetry = 3 * time.Second
	// redialTimeout bounds the reconnect after a transmission error; vpcd
	// is listening then, so only a hung stack takes longer.
	redialTimeout = 2 * time.Second
)

// quickAckOn is read at Insert; tests switch it off to measure its effect.
var quickAckOn atomic.Bool

func init() { quickAckOn.Store(true) }

// Slot is a card inserted into a vpcd reader slot.
type Slot struct {
	card  chip.Card
	addr  string
	ctx   context.Context
	quick bool

	attached   chan struct{}
	attachOnce sync.Once
	done       chan struct{}
	apdus      atomic.Int64

	mu      sync.Mutex
	conn    net.Conn
	stopped bool  // Remove or ctx ended the slot
	cause   error // why it was stopped: nil for Remove
	err     error // final error, valid once done is closed
}

// Insert connects card to vpcd at addr (host:port), which inserts it into
// that reader slot, and serves it until Remove, until ctx is done, until vpcd
// closes the connection or until the card reports chip.ErrRemoved. It
// retries briefly while vpcd is not listening yet.
//
// vpcd holds one card per port; a second card connecting to a busy port
// waits unserved in its backlog. Attached tells the two apart.
func Insert(ctx context.Context, addr string, card chip.Card) (*Slot, error) {
	if card == nil {
		return nil, errors.New("vpcd: nil card")
	}
	conn, err := dialRetrying(ctx, addr)
	if err != nil {
		return nil, err
	}
	s := &Slot{
		card:     card,
		addr:     addr,
		ctx:      ctx,
		quick:    quickAckOn.Load(),
		attached: make(chan struct{}),
		done:     make(chan struct{}),
		conn:     conn,
	}
	stop := context.AfterFunc(ctx, func() { s.stop(context.Cause(ctx)) })
	go func() {
		defer stop()
		s.serve(conn)
	}()
	return s, nil
}

func dialRetrying(ctx context.Context, addr string) (net.Conn, error) {
	deadline := time.Now().Add(dialRetry)
	var d net.Dialer
	for {
		c, err := dial(ctx, &d, addr)
		if err == nil {
			return c, nil
		}
		if ctx.Err() != nil || !errors.Is(err, syscall.ECONNREFUSED) || time.Now().After(deadline) {
			return nil, fmt.Errorf("vpcd: connect to %s: %w", addr, err)
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("vpcd: connect to %s: %w", addr, context.Cause(ctx))
		case <-t.C:
		}
	}
}

func dial(ctx context.Context, d *net.Dialer, addr string) (net.Conn, error) {
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		// Go sets it by default; stated because every APDU is latency-bound.
		_ = tc.SetNoDelay(true)
	}
	return c, nil
}

// Attached is closed when vpcd first talks to the card, i.e. accepted it
// into the slot rather than leaving it queued behind another card.
func (s *Slot) Attached() <-chan struct{} { return s.attached }

// Done is closed when the card has left the reader.
func (s *Slot) Done() <-chan struct{} { return s.done }

// Err is why the card left the reader: nil while inserted or after Remove;
// errors.Is chip.ErrRemoved when the card reported it left the field; the
// context's cause when ctx ended it; ErrClosed or ErrProtocol otherwise.
func (s *Slot) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// APDUs is how many command APDUs vpcd has handed to the card, including
// ones that failed.
func (s *Slot) APDUs() int { return int(s.apdus.Load()) }

// Remove takes the card out of the reader and waits until the slot has
// stopped. It returns the slot's error if the slot had failed before (vpcd
// gone, protocol error), and nil if it was inserted, removed by the card
// (chip.ErrRemoved) or ended by ctx.
func (s *Slot) Remove() error {
	s.stop(nil)
	<-s.done
	err := s.err
	if errors.Is(err, chip.ErrRemoved) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	if cause := context.Cause(s.ctx); cause != nil && errors.Is(err, cause) {
		return nil
	}
	return err
}

// stop closes the connection once; the serve goroutine then ends with cause.
func (s *Slot) stop(cause error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	s.stopped = true
	s.cause = cause
	_ = s.conn.Close()
}

func (s *Slot) serve(conn net.Conn) {
	var err error
	for conn != nil {
		conn, err = s.serveConn(conn)
	}
	s.mu.Lock()
	if s.stopped {
		err = s.cause
	}
	s.stopped = true
	_ = s.conn.Close()
	s.err = err
	s.mu.Unlock()
	close(s.done)
}

// serveConn answers vpcd on one connection. It returns the connection to go
// on with after a transmission error, or nil and why the card left.
func (s *Slot) serveConn(conn net.Conn) (net.Conn, error) {
	r := bufio.NewReader(ackingReader{c: conn, on: s.quick})
	for {
		msg, err := readMsg(r)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil, err // stop() closed it; serve reports the cause
			}
			if errors.Is(err, ErrProtocol) || errors.Is(err, ErrClosed) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %w", ErrClosed, err)
		}
		s.attachOnce.Do(func() { close(s.attached) })

		if len(msg) == 1 {
			switch msg[0] {
			case ctrlOff, ctrlOn, ctrlReset:
				s.card.Reset()
				continue
			case ctrlATR:
				if err := writeMsg(conn, s.card.ATR()); err != nil {
					return nil, s.writeErr(err)
				}
				continue
			default:
				// Unanswered, vpcd would block for good if it expected an answer.
				return nil, fmt.Errorf("%w: unknown control code %#02x", ErrProtocol, msg[0])
			}
		}

		n := s.apdus.Add(1)
		resp, err := s.card.Transmit(msg)
		switch {
		case errors.Is(err, chip.ErrRemoved):
			_ = conn.Close()
			return nil, fmt.Errorf("vpcd: card left the field during APDU %d: %w", n, err)
		case err != nil: // chip.ErrTransmit or any other failure of the exchange
			return s.failTransmit(conn)
		}
		if err := writeMsg(conn, resp); err != nil {
			if errors.Is(err, ErrProtocol) {
				return nil, err
			}
			return nil, s.writeErr(err)
		}
	}
}

func (s *Slot) writeErr(err error) error {
	if errors.Is(err, net.ErrClosed) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrClosed, err)
}

// failTransmit makes vpcd fail the pending transmit with
// IFD_COMMUNICATION_ERROR while the card stays in the reader. vpcd reads a
// length and then the body; a reset after the length makes the body read
// fail (-1). A reset alone does not work: vpcd then reads 0 bytes, which
// pcscd passes on as a successful empty response, i.e. a removal. The next
// connection is dialled first so it already sits in vpcd's backlog when the
// presence poll looks for a card.
func (s *Slot) failTransmit(old net.Conn) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(s.ctx, redialTimeout)
	var d net.Dialer
	next, dialErr := dial(ctx, &d, s.addr)
	cancel()

	if tc, ok := old.(*net.TCPConn); ok {
		_, _ = tc.Write([]byte{0x00, 0x02})
		_ = tc.SetLinger(0) // close with RST, not FIN
	}
	_ = old.Close()

	if dialErr != nil {
		return nil, fmt.Errorf("%w: reconnect after a transmission error: %w", ErrClosed, dialErr)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		_ = next.Close()
		return nil, net.ErrClosed
	}
	s.conn = next
	return next, nil
}
