package jobs

import (
	"context"
	"sync"
	"time"

	"github.com/encoder-bridge/encoder-bridge/cloud/bus"
	"github.com/encoder-bridge/encoder-bridge/cloud/store"
)

// settleWaiters wakes the callers of Await when their action attempt
// finishes. An entry exists only while someone waits on it: a waiter
// removes its share when it returns and a finish removes the entry it
// wakes, so a client that goes away leaves nothing behind. A finish on
// another instance wakes them through the bus (instances.go).
type settleWaiters struct {
	mu sync.Mutex
	m  map[string]*settleWait
}

type settleWait struct {
	ch chan struct{} // closed when the attempt finishes
	n  int           // waiters holding ch
}

// add registers a waiter on attemptID; release must be called once.
func (w *settleWaiters) add(attemptID string) (ch <-chan struct{}, release func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m == nil {
		w.m = make(map[string]*settleWait)
	}
	e := w.m[attemptID]
	if e == nil {
		e = &settleWait{ch: make(chan struct{})}
		w.m[attemptID] = e
	}
	e.n++
	return e.ch, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		e.n--
		if e.n == 0 && w.m[attemptID] == e {
			delete(w.m, attemptID)
		}
	}
}

// wake wakes the waiters of attemptID, if any.
func (w *settleWaiters) wake(attemptID string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if e := w.m[attemptID]; e != nil {
		close(e.ch)
		delete(w.m, attemptID)
	}
}

// len is how many attempts are waited on.
func (w *settleWaiters) len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.m)
}

// wakeAll wakes every waiter, to read its attempt again (events may have
// been missed).
func (w *settleWaiters) wakeAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for id, e := range w.m {
		close(e.ch)
		delete(w.m, id)
	}
}

// settled is called after the commit that finished an action attempt:
// the answers held here wake at once, those held on other instances when
// the bus tells them.
func (s *Service) settled(attemptID string) {
	s.waiters.wake(attemptID)
	if s.bus != nil {
		s.publish(context.Background(), bus.Event{Kind: bus.AttemptSettled, ID: attemptID})
	}
}

// Await waits up to within for a workspace's action attempt to leave
// pending, and returns it as it stands then: finished, or still pending
// when within passed first. When ctx ends first it returns ctx's error.
// It only reads, so the job runs the same whether anyone waits; it starts
// no goroutine and leaves nothing registered once it returns. within <= 0
// reads the attempt once.
func (s *Service) Await(ctx context.Context, workspaceID, attemptID string, within time.Duration) (store.ActionAttempt, error) {
	var timeout <-chan time.Time
	if within > 0 {
		timeout = s.clk.After(within)
	}
	for {
		// Register before reading, so a finish committed between the read
		// and the wait still wakes this waiter.
		woke, release := s.waiters.add(attemptID)
		att, err := s.st.Q().ActionAttempt(ctx, workspaceID, attemptID)
		if err != nil || att.Status != store.StatusPending || within <= 0 {
			release()
			return att, err
		}
		select {
		case <-woke:
			release()
			continue
		case <-ctx.Done():
			release()
			return att, ctx.Err()
		case <-timeout:
		}
		release()
		return att, nil
	}
}
