package hub

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/encoder-bridge/encoder-bridge/cloud/store"
	"github.com/encoder-bridge/encoder-bridge/protocol"
)

type stubAuth struct{}

type refused struct{}

func (refused) Error() string      { return "refused" }
func (refused) Unauthorized() bool { return true }

func (stubAuth) Bridge(_ context.Context, token string) (store.Bridge, error) {
	switch token {
	case "good":
		return store.Bridge{ID: "b1", WorkspaceID: "w1"}, nil
	case "dberror":
		return store.Bridge{}, errors.New("database is locked")
	}
	return store.Bridge{}, refused{}
}

type stubHandler struct {
	mu           sync.Mutex
	messages     []protocol.Type
	disconnected chan string
	// onHello, if set, runs inside Hello, where the cloud's handler runs
	// its transaction.
	onHello func(b store.Bridge)
}

func (h *stubHandler) Hello(ctx context.Context, b store.Bridge, _ *protocol.Hello) ([]*protocol.Message, error) {
	if h.onHello != nil {
		h.onHello(b)
	}
	w := protocol.New(protocol.TypeWelcome)
	w.Welcome = &protocol.Welcome{BridgeID: b.ID}
	return []*protocol.Message{w}, nil
}

func (h *stubHandler) Message(ctx context.Context, b store.Bridge, m *protocol.Message) ([]*protocol.Message, error) {
	h.mu.Lock()
	h.messages = append(h.messages, m.Type)
	h.mu.Unlock()
	if m.Type == protocol.TypeProgress {
		panic("handler bug")
	}
	return nil, nil
}

func (h *stubHandler) Disconnected(ctx context.Context, bridgeID string) { h.disconnected <- bridgeID }

func serve(t *testing.T, cfg Config) (*Hub, *httptest.Server, *stubHandler) {
	h := &stubHandler{disconnected: make(chan string, 4)}
	cfg.Handler, cfg.Auth = h, stubAuth{}
	hub := New(cfg)
	srv := httptest.NewServer(hub)
	t.Cleanup(func() { hub.Close(); srv.Close() })
	return hub, srv, h
}

func dial(t *testing.T, srv *httptest.Server, token string) (*websocket.Conn, *http.Response, error) {
	return websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), http.Header{"Authorization": {"Bearer " + token}})
}

func read(t *testing.T, c *websocket.Conn) *protocol.Message {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, data, err := c.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	m, err := protocol.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestLinkLifecycle(t *testing.T) {
	hub, srv, h := serve(t, Config{})
	if _, resp, err := dial(t, srv, "bad"); err == nil || resp.StatusCode != 401 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("bad token: %v %v", err, resp)
	}
	// A failed check is not a refusal: a 401 would stop the bridge for good.
	if _, resp, err := dial(t, srv, "dberror"); err == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("failed check: %v %v", err, resp)
	}
	c, _, err := dial(t, srv, "good")
	if err != nil {
		t.Fatal(err)
	}
	if hub.Online("b1") {
		t.Fatal("online before hello")
	}
	c.WriteMessage(websocket.TextMessage, []byte(`{"v":1,"type":"hello","hello":{"bridge_id":"b1","protocol_version":1,"encoders":[]}}`))
	if m := read(t, c); m.Type != protocol.TypeWelcome {
		t.Fatalf("got %v", m)
	}
	if !hub.Online("b1") || hub.Links() != 1 {
		t.Fatal("not online after hello")
	}
	ack := protocol.New(protocol.TypeResultAck)
	ack.ResultAck = &protocol.ResultAck{JobID: "j"}
	if !hub.Send("b1", ack) || hub.Send("b2", ack) {
		t.Fatal("Send")
	}
	if m := read(t, c); m.Type != protocol.TypeResultAck {
		t.Fatalf("got %v", m)
	}
	// A panicking handler is answered, not fatal.
	c.WriteMessage(websocket.TextMessage, []byte(`{"v":1,"type":"progress","progress":{"job_id":"j","stage":"writing"}}`))
	if m := read(t, c); m.Type != protocol.TypeError || m.Error.Code != protocol.CodeInternal {
		t.Fatalf("after a panic: %v", m)
	}
	c.Close()
	select {
	case id := <-h.disconnected:
		if id != "b1" {
			t.Fatal(id)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no disconnect")
	}
	if hub.Online("b1") {
		t.Fatal("online after close")
	}
}

// A link whose peer does not answer pings is dropped after PongWait.
func TestPongDeadline(t *testing.T) {
	hub, srv, _ := serve(t, Config{PingInterval: 20 * time.Millisecond, PongWait: 100 * time.Millisecond})
	c, _, err := dial(t, srv, "good")
	if err != nil {
		t.Fatal(err)
	}
	c.WriteMessage(websocket.TextMessage, []byte(`{"v":1,"type":"hello","hello":{"bridge_id":"b1","protocol_version":1,"encoders":[]}}`))
	// Never read: pings go unanswered (gorilla answers them only while reading).
	deadline := time.Now().Add(5 * time.Second)
	for hub.Links() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("silent link not dropped")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestQueueLimit(t *testing.T) {
	hub := New(Config{SendQueue: 2, Handler: &stubHandler{}, Auth: stubAuth{}})
	l := &link{hub: hub, wake: make(chan struct{}, 1), done: make(chan struct{}), log: hub.log}
	m := protocol.New(protocol.TypeResultAck)
	m.ResultAck = &protocol.ResultAck{JobID: "j"}
	if !l.enqueue(m) || !l.enqueue(m) {
		t.Fatal("queue refused below its limit")
	}
	if l.enqueue(m) {
		t.Fatal("queue over its limit accepted")
	}
	select {
	case <-l.done:
	default:
		t.Fatal("an overflowing link was not shut down")
	}
	// Nothing is queued after a close item.
	l2 := &link{hub: hub, wake: make(chan struct{}, 1), done: make(chan struct{}), log: hub.log}
	l2.closeWith(websocket.CloseNormalClosure, "bye")
	if l2.enqueue(m) {
		t.Fatal("message queued after close")
	}
}

func TestCloseWaitsForLinks(t *testing.T) {
	hub, srv, _ := serve(t, Config{})
	c, _, err := dial(t, srv, "good")
	if err != nil {
		t.Fatal(err)
	}
	c.WriteMessage(websocket.TextMessage, []byte(`{"v":1,"type":"hello","hello":{"bridge_id":"b1","protocol_version":1,"encoders":[]}}`))
	read(t, c)
	hub.Close()
	if hub.Links() != 0 {
		t.Fatalf("%d links after Close", hub.Links())
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _, err = c.ReadMessage()
	if !websocket.IsCloseError(err, websocket.CloseGoingAway) {
		t.Fatalf("client saw %v", err)
	}
	if _, resp, err := dial(t, srv, "good"); err == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("dial after Close: %v", err)
	}
}

// Send does not wait for a hello in progress (whose handler may be slow in
// a database transaction) and may be called by the handler's Hello itself;
// what it sends arrives after the hello's replies.
func TestSendDuringHello(t *testing.T) {
	hub, srv, h := serve(t, Config{})
	ack := func(id string) *protocol.Message {
		m := protocol.New(protocol.TypeResultAck)
		m.ResultAck = &protocol.ResultAck{JobID: id}
		return m
	}
	release := make(chan struct{})
	h.onHello = func(b store.Bridge) {
		// From another goroutine, as an API request storing a job.
		sent := make(chan bool, 1)
		go func() { sent <- hub.Send(b.ID, ack("other")) }()
		select {
		case ok := <-sent:
			if !ok {
				t.Error("Send during a hello was refused")
			}
		case <-time.After(5 * time.Second):
			t.Error("Send waited for the hello to finish")
		}
		// And from the handler itself.
		if !hub.Send(b.ID, ack("self")) {
			t.Error("Send from Hello was refused")
		}
		<-release
	}
	c, _, err := dial(t, srv, "good")
	if err != nil {
		t.Fatal(err)
	}
	c.WriteMessage(websocket.TextMessage, []byte(`{"v":1,"type":"hello","hello":{"bridge_id":"b1","protocol_version":1,"encoders":[]}}`))
	close(release)
	for _, want := range []string{"welcome", "other", "self"} {
		m := read(t, c)
		got := string(m.Type)
		if m.Type == protocol.TypeResultAck {
			got = m.ResultAck.JobID
		}
		if got != want {
			t.Fatalf("got %s, want %s", got, want)
		}
	}
}

// A hello whose handler panics leaves the slot as it was: Send still
// reaches the current link.
func TestHelloPanicLeavesSlotUsable(t *testing.T) {
	hub, srv, h := serve(t, Config{})
	var calls atomic.Int32
	h.onHello = func(store.Bridge) {
		if calls.Add(1) == 2 {
			panic("handler bug")
		}
	}
	hello := []byte(`{"v":1,"type":"hello","hello":{"bridge_id":"b1","protocol_version":1,"encoders":[]}}`)
	c1, _, err := dial(t, srv, "good")
	if err != nil {
		t.Fatal(err)
	}
	c1.WriteMessage(websocket.TextMessage, hello)
	if m := read(t, c1); m.Type != protocol.TypeWelcome {
		t.Fatalf("first hello: %v", m)
	}
	c2, _, err := dial(t, srv, "good")
	if err != nil {
		t.Fatal(err)
	}
	c2.WriteMessage(websocket.TextMessage, hello)
	if m := read(t, c2); m.Type != protocol.TypeError || m.Error.Code != protocol.CodeInternal {
		t.Fatalf("after a panicking hello: %v", m)
	}
	ack := protocol.New(protocol.TypeResultAck)
	ack.ResultAck = &protocol.ResultAck{JobID: "j"}
	if !hub.Send("b1", ack) {
		t.Fatal("Send refused")
	}
	if m := read(t, c1); m.Type != protocol.TypeResultAck {
		t.Fatalf("got %v on the current link, want the result_ack", m)
	}
}
