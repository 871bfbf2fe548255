package webhook

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/encoder-bridge/encoder-bridge/cloud/clock"
	"github.com/encoder-bridge/encoder-bridge/cloud/store"
	"github.com/encoder-bridge/encoder-bridge/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// Two cloud instances on one database run their deliverers at once: every
// event reaches the receiver once, in order, whichever instance posts it.
func TestInstancesShareTheOutbox(t *testing.T) {
	for _, backend := range []struct {
		name string
		db   func(t *testing.T) string
	}{
		{"sqlite", func(t *testing.T) string { return filepath.Join(t.TempDir(), "c.db") }},
		{"postgres", func(t *testing.T) string { return pgtest.DSN(t) }},
	} {
		t.Run(backend.name, func(t *testing.T) {
			db := backend.db(t)
			var stores []*store.Store
			for range 2 {
				st, err := store.Open(context.Background(), db)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { st.Close() })
				stores = append(stores, st)
			}
			e := &env{t: t, st: stores[0], clk: clock.NewFake(t0)}
			e.update(func(ctx context.Context, tx *store.Tx) error {
				return tx.CreateWorkspace(ctx, store.Workspace{ID: "w1", Name: "w1", AcsSystemID: "s", ConnectedAccountID: "c", CreatedAt: t0})
			})
			const n = 30
			r := &receiver{t: t, clk: clock.Real{}, got: make(chan string, n+10)}
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond) // let the other instance try meanwhile
				r.ServeHTTP(w, req)
			}))
			t.Cleanup(srv.Close)
			r.secret = e.hook("w1", "h1", srv.URL).Secret
			ids := make([]string, n)
			for i := range ids {
				ids[i] = fmt.Sprintf("e%02d", i)
			}
			e.clk = clock.NewFake(time.Now())
			e.events("w1", ids...)

			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{}, 2)
			for _, st := range stores {
				d := New(Config{Store: st, AllowLoopback: true, PollInterval: 5 * time.Millisecond})
				go func() { d.Run(ctx); done <- struct{}{} }()
			}
			for range n {
				<-r.got
			}
			// The last post's outcome is recorded after the receiver
			// answered: wait for it before stopping the instances.
			for end := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
				ds := e.deliveries("h1")
				if ds[n-1].DeliveredAt != nil || time.Now().After(end) {
					break
				}
			}
			cancel()
			<-done
			<-done
			if got, want := r.received(), fmt.Sprint(ids); got != want {
				t.Errorf("received %s\nwant     %s", got, want)
			}
			for _, d := range e.deliveries("h1") {
				if d.DeliveredAt == nil || d.Attempts != 1 {
					t.Errorf("delivery %s: %+v", d.EventID, d)
				}
			}
		})
	}
}
