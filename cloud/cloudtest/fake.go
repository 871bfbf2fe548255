package cloudtest

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/encoder-bridge/encoder-bridge/protocol"
)

// FakeCloud is the cloud end of the bridge protocol, small and strict, for
// the bridge's own tests (no database, no API): it checks the token,
// expects a hello, welcomes it, acknowledges results and records every
// message. It is the one fake cloud of the project's tests; Env is the
// real one.
type FakeCloud struct {
	T      testing.TB
	Server *httptest.Server
	// AutoAck answers every result (in a hello or a message) with
	// result_ack; on by default.
	AutoAck atomic.Bool
	// Refuse, when set, answers the upgrade with this HTTP status.
	Refuse atomic.Int32
	// BeforeWelcome, if set before the bridge connects, runs after a hello
	// is read and before the welcome is sent.
	BeforeWelcome func(*protocol.Hello)
	// Now, when set, is the cloud's clock for the welcome's server_time;
	// unset, the system clock.
	Now atomic.Pointer[func() time.Time]

	token string
	conns chan *FakeConn
	n     atomic.Int32
}

// FakeConn is one bridge connection as the fake cloud sees it.
type FakeConn struct {
	T     testing.TB
	Index int // 1 for the first connection
	WS    *websocket.Conn
	Hello *protocol.Hello
	In    chan *protocol.Message // every message after the hello
	// DropOn, when it returns true for a message, drops the connection
	// abruptly right after that message is recorded. Set it before the
	// message can arrive.
	DropOn func(*protocol.Message) bool
	Closed chan struct{} // closed when the connection has ended
	// CloseCode is the code of the bridge's close frame, 0 if the
	// connection ended without one; read it after Closed.
	CloseCode int

	wmu sync.Mutex
}

// FakeWait is how long FakeCloud and FakeConn wait for what a test
// expects.
var FakeWait = 10 * time.Second

// NewFakeCloud starts a fake cloud that accepts the bridge token token.
// It is closed when the test ends.
func NewFakeCloud(t testing.TB, token string) *FakeCloud {
	c := &FakeCloud{T: t, token: token, conns: make(chan *FakeConn, 16)}
	c.AutoAck.Store(true)
	up := websocket.Upgrader{}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if code := c.Refuse.Load(); code != 0 {
			http.Error(w, "refused", int(code))
			return
		}
		if r.URL.Path != protocol.Path || r.Header.Get("Authorization") != "Bearer "+c.token {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		c.serve(ws)
	}))
	t.Cleanup(c.Server.Close)
	return c
}

func (c *FakeCloud) serve(ws *websocket.Conn) {
	t := c.T
	ws.SetReadLimit(protocol.MaxMessageSize)
	_, b, err := ws.ReadMessage()
	if err != nil {
		return
	}
	m, err := protocol.Decode(b)
	if err != nil || m.Type != protocol.TypeHello {
		t.Errorf("fake cloud: first message %q: %v", b, err)
		return
	}
	if c.BeforeWelcome != nil {
		c.BeforeWelcome(m.Hello)
	}
	cc := &FakeConn{T: t, Index: int(c.n.Add(1)), WS: ws, Hello: m.Hello, In: make(chan *protocol.Message, 1024), Closed: make(chan struct{})}
	defer close(cc.Closed)
	wm := protocol.New(protocol.TypeWelcome)
	wm.Welcome = &protocol.Welcome{BridgeID: m.Hello.BridgeID, ServerTime: c.serverTime()}
	cc.Send(wm)
	if c.AutoAck.Load() {
		for _, r := range m.Hello.Results {
			cc.ResultAck(r.JobID)
		}
	}
	c.conns <- cc
	for {
		_, b, err := ws.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				cc.CloseCode = ce.Code
			}
			return
		}
		m, err := protocol.Decode(b)
		if err != nil {
			t.Errorf("fake cloud: the bridge sent an invalid frame %q: %v", b, err)
			return
		}
		cc.In <- m
		drop := cc.DropOn != nil && cc.DropOn(m)
		if m.Type == protocol.TypeResult && c.AutoAck.Load() && !drop {
			cc.ResultAck(m.Result.JobID)
		}
		if drop {
			cc.Drop()
			return
		}
	}
}

func (c *FakeCloud) serverTime() time.Time {
	if f := c.Now.Load(); f != nil {
		return (*f)().UTC()
	}
	return time.Now().UTC()
}

// URL is the websocket URL to give the bridge.
func (c *FakeCloud) URL() string { return strings.Replace(c.Server.URL, "http://", "ws://", 1) }

// Connections is how many connections have said hello so far.
func (c *FakeCloud) Connections() int { return int(c.n.Load()) }

// Next waits for the next welcomed connection.
func (c *FakeCloud) Next(t testing.TB) *FakeConn {
	t.Helper()
	select {
	case cc := <-c.conns:
		return cc
	case <-time.After(FakeWait):
		t.Fatal("fake cloud: the bridge did not connect")
		return nil
	}
}

// Send sends m to the bridge.
func (cc *FakeConn) Send(m *protocol.Message) {
	cc.T.Helper()
	b, err := protocol.Encode(m)
	if err != nil {
		cc.T.Fatalf("fake cloud: encode: %v", err)
	}
	cc.SendRaw(websocket.TextMessage, b)
}

// SendRaw sends one frame of type mt as it is.
func (cc *FakeConn) SendRaw(mt int, b []byte) {
	cc.wmu.Lock()
	defer cc.wmu.Unlock()
	_ = cc.WS.WriteMessage(mt, b)
}

// Drop cuts the TCP connection without a close frame, as a network
// failure does.
func (cc *FakeConn) Drop() { cc.WS.UnderlyingConn().Close() }

// Expect returns the next message matching ok, skipping others.
func (cc *FakeConn) Expect(t testing.TB, what string, ok func(*protocol.Message) bool) *protocol.Message {
	t.Helper()
	timeout := time.After(FakeWait)
	for {
		select {
		case m := <-cc.In:
			if ok(m) {
				return m
			}
		case <-timeout:
			t.Fatalf("fake cloud: conn %d: no %s", cc.Index, what)
			return nil
		}
	}
}

// ExpectResult returns the next result for job id.
func (cc *FakeConn) ExpectResult(t testing.TB, id string) *protocol.Result {
	t.Helper()
	return cc.Expect(t, "result for "+id, func(m *protocol.Message) bool {
		return m.Type == protocol.TypeResult && m.Result.JobID == id
	}).Result
}

// Collect returns every message received within d.
func (cc *FakeConn) Collect(d time.Duration) []*protocol.Message {
	var out []*protocol.Message
	timeout := time.After(d)
	for {
		select {
		case m := <-cc.In:
			out = append(out, m)
		case <-timeout:
			return out
		}
	}
}

// Job offers j.
func (cc *FakeConn) Job(j *protocol.Job) {
	m := protocol.New(protocol.TypeJob)
	m.Job = j
	cc.Send(m)
}

// ResultAck acknowledges the result of job id.
func (cc *FakeConn) ResultAck(id string) {
	m := protocol.New(protocol.TypeResultAck)
	m.ResultAck = &protocol.ResultAck{JobID: id}
	cc.Send(m)
}
