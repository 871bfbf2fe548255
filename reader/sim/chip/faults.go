package chip

import (
	"errors"
	"sync"
	"time"
)

// ErrTransmit reports a transmission error between host and reader; the
// command never reached the card.
var ErrTransmit = errors.New("chip: transmission error")

// Faults describes transport faults injected by WithFaults. APDUs are
// numbered from 1 in the order Transmit is called on the wrapper.
type Faults struct {
	// RemoveAt: the card leaves the field during APDU number RemoveAt.
	// That Transmit returns ErrRemoved and the command has no effect: the
	// card was gone before it was applied, so a write is not torn but
	// absent. Leaving the field cuts the card's power, so its session
	// state (authentication, HALT, transparent session) is gone; the next
	// Transmit is served as by a card put back on the reader. 0 = never.
	RemoveAt int
	// FailAt: APDU number FailAt returns ErrTransmit without reaching the
	// card. 0 = never.
	FailAt int
	// Delay is added to every APDU (a slow card or reader).
	Delay time.Duration
}

// WithFaults wraps c so the simulator and the virtual card inject the same
// faults. The APDU count starts at creation; Reset does not restart it.
// Marshal sees through the wrapper.
func WithFaults(c Card, f Faults) Card {
	return &faulty{card: c, f: f}
}

type faulty struct {
	card Card
	f    Faults
	mu   sync.Mutex
	n    int
}

func (w *faulty) ATR() []byte { return w.card.ATR() }
func (w *faulty) UID() []byte { return w.card.UID() }

// Unwrap returns the wrapped card.
func (w *faulty) Unwrap() Card { return w.card }

func (w *faulty) Transmit(apdu []byte) ([]byte, error) {
	w.mu.Lock()
	w.n++
	n := w.n
	w.mu.Unlock()

	if w.f.Delay > 0 {
		time.Sleep(w.f.Delay)
	}
	switch n {
	case w.f.RemoveAt:
		w.card.Reset()
		return nil, ErrRemoved
	case w.f.FailAt:
		return nil, ErrTransmit
	}
	return w.card.Transmit(apdu)
}

func (w *faulty) Reset() { w.card.Reset() }
