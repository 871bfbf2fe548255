// Package clock is the bridge's notion of time. A front-desk PC's wall
// clock drifts and jumps (a dead CMOS battery, a hand-set clock, a resume
// from sleep), so the bridge reads it only for timestamps; durations,
// and through them job deadlines, are measured on the monotonic clock.
// Fake lets tests move the two apart.
//
// It must not import any other package of this module.
package clock

import (
	"sync"
	"time"
)

// Clock reads the wall clock and the monotonic clock.
type Clock interface {
	// Now is the wall clock, which may jump either way. Use it for
	// timestamps, never to measure time.
	Now() time.Time
	// Mono is the monotonic clock: only differences between two readings
	// mean anything, and it never jumps.
	Mono() time.Duration
}

// Real is the system clock.
type Real struct{}

var _ Clock = Real{}

func (Real) Now() time.Time { return time.Now() }

// Mono reads a monotonic clock that keeps counting while the PC sleeps: a
// job's time runs out during a sleep as it would awake. (Go's own
// monotonic reading does on Windows, not on Linux; see mono_*.go.)
func (Real) Mono() time.Duration { return mono() }

// Fake is a clock that moves only when Advance or Jump is called. It is
// safe for concurrent use.
type Fake struct {
	mu   sync.Mutex
	wall time.Time
	mono time.Duration
}

var _ Clock = (*Fake)(nil)

// NewFake returns a fake clock whose wall clock reads wall.
func NewFake(wall time.Time) *Fake { return &Fake{wall: wall} }

func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.wall
}

func (f *Fake) Mono() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mono
}

// Advance lets d pass: both clocks move forward by d.
func (f *Fake) Advance(d time.Duration) {
	if d < 0 {
		panic("clock: Advance with a negative duration; use Jump to set the wall clock back")
	}
	f.mu.Lock()
	f.wall = f.wall.Add(d)
	f.mono += d
	f.mu.Unlock()
}

// Jump sets the wall clock by d, either way, as a user or a time service
// does; the monotonic clock does not move.
func (f *Fake) Jump(d time.Duration) {
	f.mu.Lock()
	f.wall = f.wall.Add(d)
	f.mu.Unlock()
}

// origin carries the monotonic reading that Go's fallback counts from.
var origin = time.Now()
