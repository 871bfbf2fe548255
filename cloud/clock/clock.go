// Package clock is the cloud's notion of time: the real clock in
// production and a fake one that tests move by hand, so deadlines and
// sweeps are tested without sleeping.
//
// It must not import any other cloud package.
package clock

import (
	"sort"
	"sync"
	"time"
)

// Clock tells the time and wakes waiters.
type Clock interface {
	Now() time.Time
	// After sends the time on the returned channel once d has passed.
	After(d time.Duration) <-chan time.Time
}

// Real is the system clock.
type Real struct{}

var _ Clock = Real{}

func (Real) Now() time.Time                         { return time.Now() }
func (Real) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Fake is a clock that only moves when Advance or Set is called. It is safe
// for concurrent use.
type Fake struct {
	mu      sync.Mutex
	now     time.Time
	waiters []waiter
	watch   []watch // Waiting's channels not closed yet
}

type watch struct {
	n  int
	ch chan struct{}
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

var _ Clock = (*Fake)(nil)

// NewFake returns a fake clock reading start.
func NewFake(start time.Time) *Fake { return &Fake{now: start} }

// Now returns the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// After returns a channel that receives the fake time once the clock has
// been advanced by d or more.
func (f *Fake) After(d time.Duration) <-chan time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- f.now
		return ch
	}
	f.waiters = append(f.waiters, waiter{at: f.now.Add(d), ch: ch})
	f.watchLocked()
	return ch
}

// Advance moves the clock forward by d and fires the waiters that are due.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	f.setLocked(f.now.Add(d))
	f.mu.Unlock()
}

// Set moves the clock to t (never backwards) and fires the waiters that
// are due.
func (f *Fake) Set(t time.Time) {
	f.mu.Lock()
	if t.After(f.now) {
		f.setLocked(t)
	}
	f.mu.Unlock()
}

// Waiters reports how many After channels have not fired yet, so a test
// can wait until a goroutine is parked on the clock.
func (f *Fake) Waiters() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.waiters)
}

// Waiting returns a channel that is closed once at least n After channels
// are waiting to fire: a test advances the clock after the goroutine it
// means to wake is parked on it, without sleeping first.
func (f *Fake) Waiting(n int) <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	w := watch{n: n, ch: make(chan struct{})}
	f.watch = append(f.watch, w)
	f.watchLocked()
	return w.ch
}

func (f *Fake) watchLocked() {
	keep := f.watch[:0]
	for _, w := range f.watch {
		if len(f.waiters) >= w.n {
			close(w.ch)
			continue
		}
		keep = append(keep, w)
	}
	f.watch = keep
}

func (f *Fake) setLocked(t time.Time) {
	f.now = t
	sort.SliceStable(f.waiters, func(i, j int) bool { return f.waiters[i].at.Before(f.waiters[j].at) })
	keep := f.waiters[:0]
	for _, w := range f.waiters {
		if !w.at.After(t) {
			w.ch <- t // buffered, never blocks
			continue
		}
		keep = append(keep, w)
	}
	f.waiters = keep
}
