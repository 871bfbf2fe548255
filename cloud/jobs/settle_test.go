package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/encoder-bridge/encoder-bridge/cloud/clock"
	"github.com/encoder-bridge/encoder-bridge/cloud/store"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newAwaitService(t *testing.T) (*Service, *clock.Fake) {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	err = st.Update(ctx, func(tx *store.Tx) error {
		return tx.CreateWorkspace(ctx, store.Workspace{ID: "w1", Name: "w1", AcsSystemID: "s1", ConnectedAccountID: "c1", CreatedAt: t0})
	})
	if err != nil {
		t.Fatal(err)
	}
	clk := clock.NewFake(t0)
	return New(Config{Store: st, Clock: clk}), clk
}

func pendingAttempt(t *testing.T, s *Service, id string) {
	t.Helper()
	ctx := context.Background()
	err := s.st.Update(ctx, func(tx *store.Tx) error {
		return tx.CreateActionAttempt(ctx, newAttemptWithID(id))
	})
	if err != nil {
		t.Fatal(err)
	}
}

func newAttemptWithID(id string) store.ActionAttempt {
	a := newAttempt("w1", "SCAN_CREDENTIAL", t0)
	a.ID = id
	return a
}

func finishAttempt(t *testing.T, s *Service, id string) {
	t.Helper()
	ctx := context.Background()
	var done bool
	err := s.st.Update(ctx, func(tx *store.Tx) error {
		var err error
		done, err = tx.FinishActionAttempt(ctx, id, store.StatusSuccess, json.RawMessage(`{"ok":true}`), "", "", t0)
		return err
	})
	if err != nil || !done {
		t.Fatalf("finish %s: %v %v", id, done, err)
	}
	s.settled(id)
}

// waitFor yields until cond holds: the goroutine it waits for makes
// progress without any sleep ordering it.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; !cond(); i++ {
		if i > 1_000_000 {
			t.Fatalf("gave up waiting for %s", what)
		}
		runtime.Gosched()
	}
}

type awaitResult struct {
	att store.ActionAttempt
	err error
}

// TestAwait: Await returns the attempt once it finishes, or still pending
// when its bound passes or its caller goes away, and leaves no waiter
// registered in every case.
func TestAwait(t *testing.T) {
	cases := []struct {
		name   string
		within time.Duration
		// settle ends the wait once Await is parked.
		settle func(t *testing.T, s *Service, clk *clock.Fake, cancel context.CancelFunc)
		want   string
		err    error
	}{
		{"finishes while held", time.Second, func(t *testing.T, s *Service, _ *clock.Fake, _ context.CancelFunc) {
			finishAttempt(t, s, "a1")
		}, store.StatusSuccess, nil},
		{"bound passes", time.Second, func(_ *testing.T, _ *Service, clk *clock.Fake, _ context.CancelFunc) {
			clk.Advance(time.Second)
		}, store.StatusPending, nil},
		{"client goes away", time.Second, func(_ *testing.T, _ *Service, _ *clock.Fake, cancel context.CancelFunc) {
			cancel()
		}, "", context.Canceled},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, clk := newAwaitService(t)
			pendingAttempt(t, s, "a1")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan awaitResult, 1)
			go func() {
				att, err := s.Await(ctx, "w1", "a1", tc.within)
				done <- awaitResult{att, err}
			}()
			// Parked: on the clock and in the registry.
			waitFor(t, "Await to park", func() bool { return clk.Waiters() == 1 && s.waiters.len() == 1 })
			tc.settle(t, s, clk, cancel)
			r := <-done
			switch {
			case tc.err != nil:
				if !errors.Is(r.err, tc.err) {
					t.Fatalf("Await error %v, want %v", r.err, tc.err)
				}
			case r.err != nil || r.att.Status != tc.want || r.att.ID != "a1":
				t.Fatalf("Await = %+v, %v; want status %s", r.att, r.err, tc.want)
			}
			if n := s.waiters.len(); n != 0 {
				t.Errorf("%d waiters left registered", n)
			}
		})
	}
}

func TestAwaitWithoutWaiting(t *testing.T) {
	s, _ := newAwaitService(t)
	pendingAttempt(t, s, "a1")
	pendingAttempt(t, s, "a2")
	finishAttempt(t, s, "a2")
	ctx := context.Background()
	for _, tc := range []struct {
		id     string
		within time.Duration
		want   string
	}{
		{"a1", 0, store.StatusPending},           // no bound: one read
		{"a2", time.Second, store.StatusSuccess}, // already finished
	} {
		att, err := s.Await(ctx, "w1", tc.id, tc.within)
		if err != nil || att.Status != tc.want {
			t.Errorf("Await(%s, %v) = %s, %v; want %s", tc.id, tc.within, att.Status, err, tc.want)
		}
	}
	if _, err := s.Await(ctx, "w2", "a1", time.Second); err == nil {
		t.Error("another workspace's attempt was read")
	}
	if n := s.waiters.len(); n != 0 {
		t.Errorf("%d waiters left registered", n)
	}
}

// Many callers waiting on one attempt all wake on its finish.
func TestAwaitManyWaiters(t *testing.T) {
	s, clk := newAwaitService(t)
	pendingAttempt(t, s, "a1")
	const n = 8
	done := make(chan awaitResult, n)
	for range n {
		go func() {
			att, err := s.Await(context.Background(), "w1", "a1", time.Minute)
			done <- awaitResult{att, err}
		}()
	}
	waitFor(t, "every Await to park", func() bool { return clk.Waiters() == n })
	waitFor(t, "every Await to register", func() bool {
		s.waiters.mu.Lock()
		defer s.waiters.mu.Unlock()
		e := s.waiters.m["a1"]
		return e != nil && e.n == n
	})
	finishAttempt(t, s, "a1")
	for range n {
		if r := <-done; r.err != nil || r.att.Status != store.StatusSuccess {
			t.Fatalf("Await = %+v, %v", r.att, r.err)
		}
	}
	if n := s.waiters.len(); n != 0 {
		t.Errorf("%d waiters left registered", n)
	}
}
