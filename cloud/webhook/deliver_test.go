package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/encoder-bridge/encoder-bridge/cloud/clock"
	"github.com/encoder-bridge/encoder-bridge/cloud/store"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type env struct {
	t   testing.TB
	st  *store.Store
	clk *clock.Fake
	d   *Deliverer
}

func newEnv(t testing.TB, cfg Config) *env {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{t: t, st: st, clk: clock.NewFake(t0)}
	cfg.Store, cfg.AllowLoopback = st, true
	if cfg.Clock == nil {
		cfg.Clock = e.clk
	}
	e.d = New(cfg)
	for _, ws := range []string{"w1", "w2"} {
		e.update(func(ctx context.Context, tx *store.Tx) error {
			return tx.CreateWorkspace(ctx, store.Workspace{ID: ws, Name: ws, AcsSystemID: "s-" + ws, ConnectedAccountID: "ca-" + ws, CreatedAt: t0})
		})
	}
	return e
}

func (e *env) update(fn func(context.Context, *store.Tx) error) {
	e.t.Helper()
	ctx := context.Background()
	if err := e.st.Update(ctx, func(tx *store.Tx) error { return fn(ctx, tx) }); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) hook(ws, id, url string) store.Webhook {
	e.t.Helper()
	secret, err := NewSecret()
	if err != nil {
		e.t.Fatal(err)
	}
	w := store.Webhook{ID: id, WorkspaceID: ws, URL: url, EventTypes: []string{"*"}, Secret: secret, CreatedAt: t0}
	e.update(func(ctx context.Context, tx *store.Tx) error { return tx.CreateWebhook(ctx, w) })
	return w
}

func (e *env) events(ws string, ids ...string) {
	e.t.Helper()
	e.update(func(ctx context.Context, tx *store.Tx) error {
		for _, id := range ids {
			body, _ := json.Marshal(map[string]string{"event_id": id, "event_type": "acs_encoder.added", "workspace_id": ws})
			now := e.clk.Now()
			if _, err := tx.RecordEvent(ctx, store.Event{ID: id, WorkspaceID: ws, Type: "acs_encoder.added", Body: body, OccurredAt: now, CreatedAt: now}); err != nil {
				return err
			}
		}
		return nil
	})
}

func (e *env) deliveries(hook string) []store.Delivery {
	e.t.Helper()
	ds, err := e.st.Q().Deliveries(context.Background(), hook)
	if err != nil {
		e.t.Fatal(err)
	}
	return ds
}

func (e *env) pass() int {
	e.t.Helper()
	n, err := e.d.Pass(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

// receiver is a webhook endpoint that verifies each delivery with the
// webhook's secret and keeps the event ids it accepted, in order.
type receiver struct {
	t      *testing.T
	secret string
	clk    clock.Clock
	mu     sync.Mutex
	ids    []string
	got    chan string
	hold   chan struct{} // when set, each request waits for it
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if r.hold != nil {
		select {
		case <-r.hold:
		case <-req.Context().Done():
			return
		}
	}
	body, _ := io.ReadAll(req.Body)
	if err := Verify(r.secret, req.Header, body, r.clk.Now()); err != nil {
		r.t.Errorf("delivery does not verify: %v", err)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var ev struct {
		EventID string `json:"event_id"`
	}
	if err := json.Unmarshal(body, &ev); err != nil || ev.EventID != req.Header.Get(HeaderID) {
		r.t.Errorf("body %s, %s %s", body, HeaderID, req.Header.Get(HeaderID))
	}
	r.mu.Lock()
	r.ids = append(r.ids, ev.EventID)
	r.mu.Unlock()
	if r.got != nil {
		r.got <- ev.EventID
	}
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) received() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fmt.Sprint(r.ids)
}

// A receiver that is down gets nothing; once up it gets every event once,
// in order, each signed so that it verifies.
func TestDownThenUpDeliversOnceInOrder(t *testing.T) {
	e := newEnv(t, Config{})
	// Down: the receiver's host drops every connection without an
	// answer, as a crashed or restarting server does.
	r := &receiver{t: t, clk: e.clk}
	var up atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if !up.Load() {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		r.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	w := e.hook("w1", "h1", srv.URL+"/hook")
	r.secret = w.Secret
	e.events("w1", "e1", "e2", "e3")

	if n := e.pass(); n != 1 {
		t.Fatalf("first pass posted %d, want the head alone", n)
	}
	ds := e.deliveries("h1")
	if ds[0].Attempts != 1 || ds[0].LastStatus != 0 || ds[0].LastError == "" || r.received() != "[]" || !ds[0].NextAt.Equal(t0.Add(FirstRetry)) || ds[1].Attempts != 0 {
		t.Fatalf("after a refused post: %+v", ds)
	}
	if n := e.pass(); n != 0 {
		t.Fatalf("posted %d before the retry time", n)
	}
	e.clk.Advance(FirstRetry)
	e.pass()
	if ds := e.deliveries("h1"); ds[0].Attempts != 2 || !ds[0].NextAt.Equal(e.clk.Now().Add(Backoff(2))) {
		t.Fatalf("second failure: %+v", ds[0])
	}

	up.Store(true)
	e.clk.Advance(Backoff(2))
	for i := 0; i < 5; i++ {
		e.pass()
	}
	if got := r.received(); got != "[e1 e2 e3]" {
		t.Errorf("received %s, want [e1 e2 e3] once each", got)
	}
	for _, d := range e.deliveries("h1") {
		if d.DeliveredAt == nil || d.LastStatus != http.StatusNoContent || d.LeaseOwner != "" {
			t.Errorf("delivery %s: %+v", d.EventID, d)
		}
	}
}

// Posts are retried with exponential backoff for a day from the event,
// the last one at the end of the day, then given up and recorded so.
func TestRetryScheduleThenGiveUp(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	e := newEnv(t, Config{Log: zap.New(core)})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	hook := e.hook("w1", "h1", srv.URL+"/?token=receiver-token")
	e.events("w1", "e1", "e2")
	var waits []time.Duration
	for i := 0; i < 100; i++ {
		e.pass()
		d := e.deliveries("h1")[0]
		if d.FailedAt != nil {
			break
		}
		waits = append(waits, d.NextAt.Sub(e.clk.Now()))
		e.clk.Set(d.NextAt)
	}
	d := e.deliveries("h1")[0]
	if d.FailedAt == nil || !d.FailedAt.Equal(t0.Add(MaxAge)) || d.LastStatus != http.StatusServiceUnavailable {
		t.Fatalf("not given up at the end of the day: %+v", d)
	}
	var want []time.Duration
	var total time.Duration
	for n := 1; ; n++ {
		w := Backoff(n)
		if total+w >= MaxAge {
			want = append(want, MaxAge-total)
			break
		}
		want = append(want, w)
		total += w
	}
	if fmt.Sprint(waits) != fmt.Sprint(want) {
		t.Errorf("waits\n %v\nwant\n %v", waits, want)
	}
	if d.Attempts != len(want)+1 || d.Attempts != 23 { // docs/cloud.md says 23
		t.Errorf("%d attempts, want %d", d.Attempts, len(want)+1)
	}
	// Neither the webhook's secret nor the receiver's token in its URL
	// reaches a log line or the recorded error.
	for _, entry := range logs.All() {
		line := fmt.Sprint(entry.Message, entry.ContextMap())
		if strings.Contains(line, hook.Secret) || strings.Contains(line, "receiver-token") {
			t.Errorf("log line leaks a secret: %s", line)
		}
	}
	if logs.FilterMessage("webhook delivery given up").Len() != 1 {
		t.Error("giving up was not logged")
	}
	if strings.Contains(d.LastError, "receiver-token") {
		t.Errorf("recorded error leaks the URL's token: %s", d.LastError)
	}
	// The next event's turn comes: order holds, a dead one does not
	// block the queue for ever.
	if due, _ := e.st.Q().DueDeliveries(context.Background(), e.clk.Now(), 10); len(due) != 1 || due[0].EventID != "e2" {
		t.Errorf("after giving up e1: %+v", due)
	}
}

// A receiver that never answers holds only its own webhook: another
// webhook, of the same workspace or another, gets its events meanwhile.
func TestSlowReceiverBlocksNothingElse(t *testing.T) {
	e := newEnv(t, Config{Clock: clock.Real{}, Timeout: time.Minute, PollInterval: 20 * time.Millisecond})
	slow := &receiver{t: t, clk: clock.Real{}, hold: make(chan struct{})}
	slowSrv := httptest.NewServer(slow)
	t.Cleanup(slowSrv.Close)
	t.Cleanup(func() { close(slow.hold) })
	slow.secret = e.hook("w1", "slow", slowSrv.URL).Secret
	fast := &receiver{t: t, clk: clock.Real{}, got: make(chan string, 10)}
	fastSrv := httptest.NewServer(fast)
	t.Cleanup(fastSrv.Close)
	fast.secret = e.hook("w1", "fast", fastSrv.URL).Secret
	other := &receiver{t: t, clk: clock.Real{}, got: make(chan string, 10)}
	otherSrv := httptest.NewServer(other)
	t.Cleanup(otherSrv.Close)
	other.secret = e.hook("w2", "other", otherSrv.URL).Secret

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.d.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	e.events("w1", "a1", "a2", "a3")
	e.events("w2", "b1")
	e.d.Kick()
	for _, want := range []string{"a1", "a2", "a3"} {
		if got := <-fast.got; got != want {
			t.Fatalf("fast receiver got %s, want %s", got, want)
		}
	}
	if got := <-other.got; got != "b1" {
		t.Fatalf("other workspace's receiver got %s", got)
	}
	if got := slow.received(); got != "[]" {
		t.Errorf("the held receiver answered: %s", got)
	}
}

// Without AllowLoopback, a delivery never connects to a loopback or
// private address, whatever URL the row holds (a name resolving there).
func TestPrivateAddressRefused(t *testing.T) {
	e := newEnv(t, Config{})
	e.d = New(Config{Store: e.st, Clock: e.clk})
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	t.Cleanup(srv.Close)
	e.hook("w1", "h1", srv.URL)
	e.events("w1", "e1")
	e.pass()
	d := e.deliveries("h1")[0]
	if hits.Load() != 0 || d.DeliveredAt != nil || !strings.Contains(d.LastError, "not public") {
		t.Errorf("loopback receiver reached: %d hits, %+v", hits.Load(), d)
	}
}
