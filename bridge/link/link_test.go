package link

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/encoder-bridge/encoder-bridge/protocol"
)

// fakeClock hands every backoff wait to the test, which fires it.
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	waits chan fakeWait
}

type fakeWait struct {
	d    time.Duration
	fire chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC), waits: make(chan fakeWait, 16)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	c.waits <- fakeWait{d: d, fire: ch}
	return ch
}

// next returns the next wait Run asked for, and fires it.
func (c *fakeClock) next(t *testing.T) time.Duration {
	t.Helper()
	select {
	case w := <-c.waits:
		w.fire <- c.Now()
		return w.d
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not back off")
		return 0
	}
}

func maxJitter(n time.Duration) time.Duration { return n - 1 }

// wsServer upgrades every request at protocol.Path and hands the
// connection to handle.
func wsServer(t *testing.T, tlsServer bool, handle func(*websocket.Conn, *http.Request)) *httptest.Server {
	t.Helper()
	up := websocket.Upgrader{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != protocol.Path {
			http.NotFound(w, r)
			return
		}
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		handle(ws, r)
	})
	srv := httptest.NewUnstartedServer(h)
	// Refused handshakes are what some tests are about; not worth a line.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	if tlsServer {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return srv
}

func wsURL(srv *httptest.Server) string {
	return strings.Replace(strings.Replace(srv.URL, "https://", "wss://", 1), "http://", "ws://", 1)
}

func TestEndpoint(t *testing.T) {
	ok := map[string]string{
		"wss://cloud.example.com":                      "wss://cloud.example.com/bridge/v1/connect",
		"wss://cloud.example.com/":                     "wss://cloud.example.com/bridge/v1/connect",
		"wss://cloud.example.com:8443/eu":              "wss://cloud.example.com:8443/eu/bridge/v1/connect",
		"wss://cloud.example.com/bridge/v1/connect":    "wss://cloud.example.com/bridge/v1/connect",
		"ws://127.0.0.1:8080":                          "ws://127.0.0.1:8080/bridge/v1/connect",
		"ws://localhost:8080":                          "ws://localhost:8080/bridge/v1/connect",
		"ws://[::1]:8080":                              "ws://[::1]:8080/bridge/v1/connect",
		"ws://127.0.0.2":                               "ws://127.0.0.2/bridge/v1/connect",
		"wss://cloud.example.com/bridge/v1/connect///": "wss://cloud.example.com/bridge/v1/connect",
	}
	for in, want := range ok {
		u, err := Endpoint(in)
		if err != nil || u.String() != want {
			t.Errorf("Endpoint(%q) = %v, %v; want %s", in, u, err, want)
		}
	}
	bad := map[string]string{
		"":                                 "no cloud URL",
		"ws://example.com":                 "loopback",
		"ws://10.0.0.1:80":                 "loopback",
		"ws://localhost.example.com":       "loopback",
		"ws://0.0.0.0":                     "loopback",
		"https://cloud.example.com":        "scheme",
		"wss://":                           "no host",
		"wss://user:pw@cloud.example.com":  "credentials",
		"wss://cloud.example.com/?token=x": "query",
	}
	for in, want := range bad {
		_, err := Endpoint(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Endpoint(%q) = %v, want error with %q", in, err, want)
		}
	}
	if _, err := New(Options{URL: "ws://example.com:80"}); !errors.Is(err, ErrInsecureURL) {
		t.Errorf("New with ws:// to a remote host: %v", err)
	}
}

func TestBackoffGrowsCappedWithFullJitter(t *testing.T) {
	fc := newFakeClock()
	var dials atomic.Int32
	l, err := New(Options{
		URL: "ws://127.0.0.1:1", Clock: fc, Jitter: maxJitter,
		Backoff: Backoff{Base: 100 * time.Millisecond, Max: time.Second},
		NetDialContext: func(context.Context, string, string) (net.Conn, error) {
			dials.Add(1)
			return nil, errors.New("connection refused")
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx, func(context.Context, Session) error { return nil }) }()
	want := []time.Duration{100, 200, 400, 800, 1000, 1000, 1000}
	for i, w := range want {
		if got := fc.next(t); got != w*time.Millisecond-1 {
			t.Fatalf("wait %d = %v, want just under %v", i, got, w*time.Millisecond)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after cancel = %v, want nil", err)
	}
	if n := dials.Load(); n < int32(len(want)) {
		t.Fatalf("%d dials", n)
	}

	// With real jitter, every wait is in [0, ceiling) and they spread.
	r, _ := New(Options{URL: "ws://127.0.0.1:1", Backoff: Backoff{Base: 100 * time.Millisecond, Max: time.Second}})
	lo, hi := time.Hour, time.Duration(0)
	for range 2000 {
		d := r.Delay(3)
		if d < 0 || d >= 800*time.Millisecond {
			t.Fatalf("Delay(3) = %v, outside [0, 800ms)", d)
		}
		lo, hi = min(lo, d), max(hi, d)
	}
	if lo > 100*time.Millisecond || hi < 700*time.Millisecond {
		t.Fatalf("Delay(3) spans only [%v, %v]: not full jitter", lo, hi)
	}
	if d := r.Delay(1000); d >= time.Second {
		t.Fatalf("Delay(1000) = %v, want capped", d)
	}
}

func TestBackoffSteps(t *testing.T) {
	for _, tc := range []struct {
		b    Backoff
		want int
	}{
		{Backoff{Base: time.Second, Max: 60 * time.Second}, 6},
		{Backoff{Base: 100 * time.Millisecond, Max: time.Second}, 4},
		{Backoff{Base: time.Second, Max: 64 * time.Second}, 6},
		{Backoff{Base: time.Second, Max: time.Second}, 0},
		{Backoff{Base: time.Nanosecond, Max: 1 << 62}, 62},
	} {
		if got := tc.b.steps(); got != tc.want {
			t.Errorf("%+v.steps() = %d, want %d", tc.b, got, tc.want)
		}
	}
}

func TestBackoffForgive(t *testing.T) {
	def := Backoff{Base: DefaultBackoffBase, Max: DefaultBackoffMax, Grace: DefaultGracePeriod}
	for _, tc := range []struct {
		name string
		b    Backoff
		n    int
		up   time.Duration
		want int
	}{
		{"dropped at once", def, 4, 0, 4},
		{"under one step", def, 4, 4999 * time.Millisecond, 4},
		{"one step", def, 4, 5 * time.Second, 3},
		{"15 s", def, 4, 15 * time.Second, 1},
		{"never below 0", def, 2, 15 * time.Second, 0},
		{"grace resets", def, 6, 30 * time.Second, 0},
		{"just under grace", def, 6, 29999 * time.Millisecond, 1},
		{"count capped at steps", def, 40, 0, 6},
		{"a capped count forgiven like any", def, 40, 15 * time.Second, 3},
		{"no steps", Backoff{Base: time.Second, Max: time.Second, Grace: time.Minute}, 3, time.Hour, 0},
		{"steps not dividing grace", Backoff{Base: 100 * time.Millisecond, Max: 10 * time.Second, Grace: time.Minute}, 7, 59 * time.Second, 1},
	} {
		if got := tc.b.forgive(tc.n, tc.up); got != tc.want {
			t.Errorf("%s: forgive(%d, %v) = %d, want %d", tc.name, tc.n, tc.up, got, tc.want)
		}
	}
}

// A step of TestBackoffUnderFlaps: a refused dial, or a connection that
// stays up for up (on the fake clock) and then drops.
type linkStep struct {
	refuse  bool
	silent  bool // the cloud never speaks
	up      time.Duration
	wantSec float64 // the wait Run then asks for, with maximal jitter
}

func refused(want float64) linkStep { return linkStep{refuse: true, wantSec: want} }
func session(up time.Duration, want float64) linkStep {
	return linkStep{up: up, wantSec: want}
}
func repeat(n int, s linkStep) []linkStep {
	out := make([]linkStep, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// Real connections on loopback, up for fake-clock times, with the default
// policy (1 s doubling to 60 s, 30 s grace).
func TestBackoffUnderFlaps(t *testing.T) {
	s := time.Second
	// Nine refused dials: the count stops at 6 steps, the delay at 60 s.
	outage := []linkStep{refused(1), refused(2), refused(4), refused(8),
		refused(16), refused(32), refused(60), refused(60), refused(60)}
	for _, tc := range []struct {
		name  string
		steps []linkStep
	}{
		{"accept and drop escalates to Max", append([]linkStep{
			session(0, 1), session(0, 2), session(0, 4), session(0, 8),
			session(0, 16), session(0, 32)}, repeat(3, session(0, 60))...)},
		{"up under one step forgives nothing", []linkStep{
			session(4*s, 1), session(4*s, 2), session(4*s, 4), session(4*s, 8)}},
		{"cuts every 15 s stay at Base", repeat(8, session(15*s, 1))},
		{"cuts every 10 to 20 s stay near Base", []linkStep{
			session(10*s, 1), session(20*s, 1), session(12*s, 1), session(0, 2),
			session(11*s, 1), session(18*s, 1)}},
		{"cuts every 15 s after an outage come down to Base", append(slices.Clone(outage),
			session(15*s, 8), session(15*s, 2), session(15*s, 1), session(15*s, 1))},
		{"30 s up resets", []linkStep{
			session(0, 1), session(0, 2), session(0, 4), session(0, 8),
			session(30*s, 1), session(0, 2)}},
		{"29 s up leaves one doubling", append(outage[:8:8],
			session(29*s, 2))},
		{"a silent cloud forgives nothing", []linkStep{
			session(0, 1), session(0, 2), {silent: true, up: time.Hour, wantSec: 4}}},
	} {
		t.Run(tc.name, func(t *testing.T) { runLinkSteps(t, tc.steps) })
	}
}

func runLinkSteps(t *testing.T, steps []linkStep) {
	t.Helper()
	type ctl struct {
		linkStep
		opened chan struct{}
		drop   chan struct{}
	}
	plan := make(chan ctl, len(steps))
	for _, st := range steps {
		plan <- ctl{linkStep: st, opened: make(chan struct{}), drop: make(chan struct{})}
	}
	conns := make(chan ctl, len(steps))
	srv := wsServer(t, false, func(ws *websocket.Conn, r *http.Request) {
		c := <-conns
		if !c.silent {
			ws.WriteMessage(websocket.TextMessage, []byte(`welcome`))
		}
		close(c.opened)
		<-c.drop
	})
	fc := newFakeClock()
	cur := make(chan ctl, len(steps))
	var d net.Dialer
	l, err := New(Options{
		URL: wsURL(srv), Clock: fc, Jitter: maxJitter,
		Backoff: Backoff{Base: DefaultBackoffBase, Max: DefaultBackoffMax, Grace: DefaultGracePeriod},
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c ctl
			select {
			case c = <-plan:
			default:
				return nil, errors.New("connection refused: plan done")
			}
			cur <- c
			if c.refuse {
				return nil, errors.New("connection refused")
			}
			conns <- c
			return d.DialContext(ctx, network, addr)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan struct{}, len(steps))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- l.Run(ctx, func(ctx context.Context, s Session) error {
			for {
				if _, err := s.Recv(ctx); err != nil {
					return err
				}
				got <- struct{}{}
			}
		})
	}()
	defer func() {
		cancel()
		<-done
	}()
	for i, st := range steps {
		var c ctl
		select {
		case c = <-cur:
		case <-time.After(5 * time.Second):
			t.Fatalf("step %d: no dial", i)
		}
		if !c.refuse {
			<-c.opened
			if !c.silent {
				<-got // the first message is in before the clock moves
			}
			fc.Advance(c.linkStep.up)
			close(c.drop)
		}
		w := fc.next(t)
		if want := time.Duration(st.wantSec*float64(time.Second)) - 1; w != want {
			t.Fatalf("step %d (%+v): wait %v, want just under %v", i, st, w, want+1)
		}
	}
}

func TestAuthRefusalIsPermanent(t *testing.T) {
	for _, code := range []int{http.StatusUnauthorized, http.StatusForbidden} {
		var hits atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			http.Error(w, "no", code)
		}))
		fc := newFakeClock()
		var downs []error
		l, err := New(Options{URL: wsURL(srv), Token: "t0k3n", Clock: fc, Down: func(err error) { downs = append(downs, err) }})
		if err != nil {
			t.Fatal(err)
		}
		err = l.Run(context.Background(), func(context.Context, Session) error { return nil })
		srv.Close()
		if !errors.Is(err, ErrAuthRevoked) || !strings.Contains(err.Error(), "auth revoked") {
			t.Fatalf("HTTP %d: Run = %v, want ErrAuthRevoked", code, err)
		}
		if len(downs) != 1 || !errors.Is(downs[0], ErrAuthRevoked) {
			t.Fatalf("HTTP %d: Down heard %v, want the refusal once", code, downs)
		}
		if strings.Contains(err.Error(), "t0k3n") {
			t.Fatalf("error shows the token: %v", err)
		}
		if hits.Load() != 1 || len(fc.waits) != 0 {
			t.Fatalf("HTTP %d: %d dials, %d waits; want one dial, no retry", code, hits.Load(), len(fc.waits))
		}
	}

	// Other statuses are retried.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "later", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	fc := newFakeClock()
	l, _ := New(Options{URL: wsURL(srv), Clock: fc})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx, func(context.Context, Session) error { return nil }) }()
	fc.next(t)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestServePermanentStopsRun(t *testing.T) {
	srv := wsServer(t, false, func(ws *websocket.Conn, r *http.Request) { ws.ReadMessage() })
	l, _ := New(Options{URL: wsURL(srv), Clock: newFakeClock()})
	boom := errors.New("journal broken")
	err := l.Run(context.Background(), func(context.Context, Session) error { return Permanent(boom) })
	if !errors.Is(err, boom) {
		t.Fatalf("Run = %v", err)
	}
}

func TestBearerTokenAndFrames(t *testing.T) {
	auth := make(chan string, 1)
	srv := wsServer(t, false, func(ws *websocket.Conn, r *http.Request) {
		auth <- r.Header.Get("Authorization")
		for {
			mt, b, err := ws.ReadMessage()
			if err != nil {
				return
			}
			ws.WriteMessage(mt, append([]byte("echo "), b...))
		}
	})
	l, _ := New(Options{URL: wsURL(srv), Token: "s3cret"})
	c, err := l.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := <-auth; got != "Bearer s3cret" {
		t.Fatalf("Authorization = %q", got)
	}
	ctx := context.Background()
	if err := c.Send(ctx, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if b, err := c.Recv(ctx); err != nil || string(b) != "echo hi" {
		t.Fatalf("Recv = %q, %v", b, err)
	}
	if _, ok := c.FirstMessageAt(); !ok {
		t.Fatal("first message not noted")
	}
}

func TestOversizedFrames(t *testing.T) {
	closeCode := make(chan int, 1)
	srv := wsServer(t, false, func(ws *websocket.Conn, r *http.Request) {
		_, b, err := ws.ReadMessage()
		if err != nil || string(b) != "small" {
			closeCode <- -1
			return
		}
		ws.WriteMessage(websocket.TextMessage, []byte(strings.Repeat("a", protocol.MaxMessageSize+1)))
		_, _, err = ws.ReadMessage()
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			closeCode <- ce.Code
		} else {
			closeCode <- 0
		}
	})
	l, _ := New(Options{URL: wsURL(srv)})
	ctx := context.Background()
	c, err := l.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Too large to send: refused here, the connection stays up.
	if err := c.Send(ctx, make([]byte, protocol.MaxMessageSize+1)); !errors.Is(err, protocol.ErrTooLarge) {
		t.Fatalf("Send oversized = %v", err)
	}
	if err := c.Send(ctx, []byte("small")); err != nil {
		t.Fatalf("Send after refusing an oversized frame: %v", err)
	}
	// Too large to receive: the connection is dropped with 1009.
	if _, err := c.Recv(ctx); !errors.Is(err, protocol.ErrTooLarge) {
		t.Fatalf("Recv oversized = %v", err)
	}
	if code := <-closeCode; code != websocket.CloseMessageTooBig {
		t.Fatalf("server saw close code %d, want %d", code, websocket.CloseMessageTooBig)
	}
}

func TestPongDeadline(t *testing.T) {
	srv := wsServer(t, false, func(ws *websocket.Conn, r *http.Request) {
		if r.Header.Get("X-Mute") == "1" {
			ws.SetPingHandler(func(string) error { return nil })
		}
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				return
			}
		}
	})
	opts := Options{URL: wsURL(srv), PingInterval: 30 * time.Millisecond, PongTimeout: 60 * time.Millisecond}

	// A cloud that answers pings keeps the connection.
	l, _ := New(opts)
	c, err := l.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	_, err = c.Recv(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("live connection: Recv = %v, want the caller's timeout", err)
	}
	c.Close()

	// A cloud that stops answering is dropped after interval+timeout.
	mute := opts
	mute.NetDialContext = muteDialer
	l, _ = New(mute)
	c, err = l.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = c.Recv(ctx)
	if err == nil || errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "no pong") {
		t.Fatalf("mute cloud: Recv = %v, want a pong timeout", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("dead connection noticed after %v", el)
	}
}

// muteDialer adds "X-Mute: 1" to the upgrade request by rewriting it on
// the wire, so the test server can tell which connection to mute.
func muteDialer(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &headerConn{Conn: c}, nil
}

type headerConn struct {
	net.Conn
	done bool
}

func (h *headerConn) Write(b []byte) (int, error) {
	if !h.done {
		h.done = true
		s := strings.Replace(string(b), "\r\n", "\r\nX-Mute: 1\r\n", 1)
		if _, err := h.Conn.Write([]byte(s)); err != nil {
			return 0, err
		}
		return len(b), nil
	}
	return h.Conn.Write(b)
}

func TestTLSAndPin(t *testing.T) {
	srv := wsServer(t, true, func(ws *websocket.Conn, r *http.Request) { ws.ReadMessage() })
	cert := srv.Certificate()
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// Unknown CA: refused by the usual verification.
	l, _ := New(Options{URL: wsURL(srv)})
	if c, err := l.Dial(ctx); err == nil {
		c.Close()
		t.Fatal("dial to an untrusted certificate succeeded")
	}

	// CA file: accepted; with the right pin too.
	for _, pin := range []string{"", PinOf(cert), "sha256/" + PinOf(cert)} {
		l, err := New(Options{URL: wsURL(srv), CAFile: ca, SPKIPin: pin})
		if err != nil {
			t.Fatal(err)
		}
		c, err := l.Dial(ctx)
		if err != nil {
			t.Fatalf("pin %q: %v", pin, err)
		}
		c.Close()
	}

	// Another key's pin: refused, even though the chain verifies.
	other := sha256.Sum256([]byte("another key"))
	l, err := New(Options{URL: wsURL(srv), CAFile: ca, SPKIPin: base64.StdEncoding.EncodeToString(other[:])})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := l.Dial(ctx); !errors.Is(err, ErrPinMismatch) {
		if c != nil {
			c.Close()
		}
		t.Fatalf("pin mismatch: Dial = %v, want ErrPinMismatch", err)
	} else if !strings.Contains(err.Error(), PinOf(cert)) {
		t.Fatalf("pin mismatch error does not name the key presented: %v", err)
	}

	for _, bad := range []string{"abc", base64.StdEncoding.EncodeToString([]byte("short"))} {
		if _, err := New(Options{URL: wsURL(srv), SPKIPin: bad}); err == nil {
			t.Errorf("pin %q accepted", bad)
		}
	}
	if _, err := New(Options{URL: "ws://127.0.0.1:1", SPKIPin: PinOf(cert)}); err == nil {
		t.Error("pin with ws:// accepted")
	}
	if _, err := New(Options{URL: wsURL(srv), CAFile: filepath.Join(dir, "missing.pem")}); err == nil {
		t.Error("missing CA file accepted")
	}
}

func TestReadTokenFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "token")
	if err := os.WriteFile(p, []byte("  abc.def-123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if tok, err := ReadTokenFile(p); err != nil || tok != "abc.def-123" {
		t.Fatalf("ReadTokenFile = %q, %v", tok, err)
	}
	if runtime.GOOS != "windows" {
		os.Chmod(p, 0o640)
		_, err := ReadTokenFile(p)
		if !errors.Is(err, ErrTokenFileInsecure) || !strings.Contains(err.Error(), "chmod 600") {
			t.Fatalf("group-readable token file: %v", err)
		}
		os.Chmod(p, 0o600)
	}
	os.WriteFile(p, []byte("\n"), 0o600)
	if _, err := ReadTokenFile(p); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("empty token file: %v", err)
	}
	os.WriteFile(p, []byte("a b"), 0o600)
	if _, err := ReadTokenFile(p); err == nil {
		t.Fatal("two-word token accepted")
	}
	if _, err := ReadTokenFile(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing token file: %v", err)
	}
}

func TestRemedy(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{nil, ""},
		{Permanent(fmt.Errorf("dial: %w", ErrAuthRevoked)), "bridge-token create"},
		{fmt.Errorf("tls: %w", ErrPinMismatch), "spki_pin"},
		{fmt.Errorf("tls: %w", x509.UnknownAuthorityError{}), "cloud.ca_file"},
		{&net.OpError{Op: "dial", Err: &net.DNSError{Err: "no such host", Name: "cloud.example"}}, "DNS"},
		{errors.New("connection refused"), "doctor"},
	}
	for _, tt := range tests {
		got := Remedy(tt.err)
		if (tt.want == "" && got != "") || !strings.Contains(got, tt.want) {
			t.Errorf("Remedy(%v) = %q, want it to mention %q", tt.err, got, tt.want)
		}
	}
}

// TestHeardOnPong: a pong tells Options.Heard that the cloud answered,
// so an idle link still shows its last contact.
func TestHeardOnPong(t *testing.T) {
	srv := wsServer(t, false, func(ws *websocket.Conn, r *http.Request) {
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				return
			}
		}
	})
	heard := make(chan struct{}, 1)
	l, _ := New(Options{URL: wsURL(srv), PingInterval: 20 * time.Millisecond, PongTimeout: time.Second, Heard: func() {
		select {
		case heard <- struct{}{}:
		default:
		}
	}})
	c, err := l.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case <-heard:
	case <-time.After(10 * time.Second):
		t.Fatal("no pong heard")
	}
}

// Run's context ending closes the connection with a going-away frame
// (1001), and the link waits for the cloud's answer; a connection the
// serve function ends closes normally (1000).
func TestCloseCodes(t *testing.T) {
	for _, tc := range []struct {
		name string
		stop bool // end Run's context rather than return from serve
		want int
	}{
		{"stopping", true, websocket.CloseGoingAway},
		{"serve returns", false, websocket.CloseNormalClosure},
	} {
		t.Run(tc.name, func(t *testing.T) {
			codes := make(chan int, 4)
			srv := wsServer(t, false, func(ws *websocket.Conn, r *http.Request) {
				for {
					if _, _, err := ws.ReadMessage(); err != nil {
						var ce *websocket.CloseError
						if errors.As(err, &ce) {
							codes <- ce.Code
						} else {
							codes <- -1
						}
						return
					}
				}
			})
			l, _ := New(Options{URL: wsURL(srv), Clock: newFakeClock(), Jitter: maxJitter})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			served := make(chan struct{}, 4)
			done := make(chan error, 1)
			go func() {
				done <- l.Run(ctx, func(sctx context.Context, s Session) error {
					served <- struct{}{}
					if tc.stop {
						<-sctx.Done()
						return sctx.Err()
					}
					return errors.New("serve gave up")
				})
			}()
			<-served
			if tc.stop {
				cancel()
			}
			if got := <-codes; got != tc.want {
				t.Fatalf("the cloud saw close code %d, want %d", got, tc.want)
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("Run = %v", err)
			}
		})
	}
}

func TestURLsTriedInTurn(t *testing.T) {
	var refusedHits atomic.Int32
	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		refusedHits.Add(1)
		http.Error(w, "draining", http.StatusServiceUnavailable)
	}))
	defer refusing.Close()
	drops := make(chan struct{})
	dropping := wsServer(t, false, func(ws *websocket.Conn, r *http.Request) {
		ws.WriteMessage(websocket.TextMessage, []byte(`welcome`))
		<-drops
	})
	fc := newFakeClock()
	var mu sync.Mutex
	var dialed []string
	var downs []error
	l, err := New(Options{
		URLs: []string{wsURL(refusing), wsURL(dropping) + "/"}, Clock: fc, Jitter: maxJitter,
		Dialed: func(u string) { mu.Lock(); dialed = append(dialed, u); mu.Unlock() },
		Down:   func(err error) { mu.Lock(); downs = append(downs, err); mu.Unlock() },
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{wsURL(refusing) + protocol.Path, wsURL(dropping) + protocol.Path}
	if got := l.URLs(); !slices.Equal(got, want) {
		t.Fatalf("URLs() = %q, want %q", got, want)
	}
	if l.URL() != want[0] {
		t.Fatalf("first URL dialled = %q, want %q", l.URL(), want[0])
	}
	got := make(chan []byte, 8)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- l.Run(ctx, func(ctx context.Context, s Session) error {
			b, err := s.Recv(ctx)
			if err != nil {
				return err
			}
			got <- b
			_, err = s.Recv(ctx)
			return err
		})
	}()
	// The first instance refuses: the backoff wait, then the second.
	fc.next(t)
	<-got
	if l.URL() != want[1] {
		t.Fatalf("connected, URL() = %q, want %q", l.URL(), want[1])
	}
	// The second drops the link: the next dial goes back to the first.
	drops <- struct{}{}
	fc.next(t)
	fc.next(t) // the first refused again
	<-got
	drops <- struct{}{}
	fc.next(t)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(dialed, []string{want[1], want[1]}) {
		t.Fatalf("Dialed heard %q, want the second URL twice", dialed)
	}
	if n := refusedHits.Load(); n < 2 {
		t.Fatalf("the refusing instance was dialled %d times, want at least 2 (each turn)", n)
	}
	var status *StatusError
	if len(downs) < 3 || !errors.As(downs[0], &status) || status.Code != http.StatusServiceUnavailable || !strings.Contains(downs[0].Error(), want[0]) {
		t.Fatalf("Down heard %v; want the refusal first, naming its URL", downs)
	}
}

func TestURLsOptions(t *testing.T) {
	const pin = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
	tests := []struct {
		name    string
		opts    Options
		wantErr error
		want    string
	}{
		{name: "url alone", opts: Options{URL: "wss://a.example"}},
		{name: "urls", opts: Options{URLs: []string{"wss://a.example", "wss://b.example"}}},
		{name: "both", opts: Options{URL: "wss://a.example", URLs: []string{"wss://b.example"}}, wantErr: ErrURLs, want: "not both"},
		{name: "twice", opts: Options{URLs: []string{"wss://a.example", "wss://a.example" + protocol.Path}}, wantErr: ErrURLs, want: "listed twice"},
		{name: "insecure among them", opts: Options{URLs: []string{"wss://a.example", "ws://b.example"}}, wantErr: ErrInsecureURL, want: "ws://b.example"},
		{name: "pin with a ws url", opts: Options{URLs: []string{"wss://a.example", "ws://127.0.0.1:1"}, SPKIPin: pin}, want: "SPKI pin needs a wss:// URL"},
		{name: "none", opts: Options{}, want: "no cloud URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.opts)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
				t.Fatalf("New = %v, want %v naming %q", err, tt.wantErr, tt.want)
			}
		})
	}
}
