// Package sim is an in-process card reader for tests: readers are plugged
// and unplugged, cards inserted and removed, by the test, and the cards are
// the chip models of reader/sim/chip (optionally wrapped in chip.Faults).
//
// It implements reader.Context with the same errors as reader/pcsc, so code
// tested here behaves the same on real readers. It must not import bridge
// or cardfmt.
package sim

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/encoder-bridge/encoder-bridge/reader"
	"github.com/encoder-bridge/encoder-bridge/reader/sim/chip"
)

// Context is a set of simulated readers.
type Context struct {
	mu      sync.Mutex
	readers []*Reader
	closed  bool
	changed chan struct{} // closed and replaced on every change
	blocked int           // calls blocked in a wait
	watch   []watcher     // Waiting's channels not closed yet
}

type watcher struct {
	n  int
	ch chan struct{}
}

var (
	_ reader.Context        = (*Context)(nil)
	_ reader.SerialNumberer = (*Context)(nil)
)

// New returns a context with no readers.
func New() *Context {
	return &Context{changed: make(chan struct{})}
}

// Reader is one simulated reader.
type Reader struct {
	sim     *Context
	name    string
	plugged bool
	card    chip.Card
	gen     int // bumped on every insert and removal
	conn    *Card
	serial  string
}

// notifyLocked wakes every waiter; they re-check the state they wait for.
func (c *Context) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// Plug attaches a reader named name, or returns the attached one.
func (c *Context) Plug(name string) *Reader { return c.PlugSerial(name, "") }

// PlugSerial attaches a reader named name that reports serial as its
// serial number ("": none, as most drivers), or returns the attached one.
func (c *Context) PlugSerial(name, serial string) *Reader {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.readers {
		if r.name == name {
			return r
		}
	}
	r := &Reader{sim: c, name: name, plugged: true, serial: serial}
	c.readers = append(c.readers, r)
	c.notifyLocked()
	return r
}

// Unplug detaches the named reader; its card and connection are lost.
func (c *Context) Unplug(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.readers = slices.DeleteFunc(c.readers, func(r *Reader) bool {
		if r.name != name {
			return false
		}
		r.plugged = false
		r.card = nil
		r.gen++
		return true
	})
	c.notifyLocked()
}

// Insert puts card on the reader, replacing any card there.
func (r *Reader) Insert(card chip.Card) {
	r.sim.mu.Lock()
	defer r.sim.mu.Unlock()
	// Entering the field powers the chip up: whatever state it was left
	// in (a halt after a refused key) is gone.
	card.Reset()
	r.card = card
	r.gen++
	r.sim.notifyLocked()
}

// Remove takes the card off the reader.
func (r *Reader) Remove() {
	r.sim.mu.Lock()
	defer r.sim.mu.Unlock()
	r.removeLocked()
}

func (r *Reader) removeLocked() {
	if r.card == nil {
		return
	}
	r.card = nil
	r.gen++
	r.sim.notifyLocked()
}

// Card returns the card on the reader, or nil.
func (r *Reader) Card() chip.Card {
	r.sim.mu.Lock()
	defer r.sim.mu.Unlock()
	return r.card
}

// Name is the reader's name.
func (r *Reader) Name() string { return r.name }

func (c *Context) findLocked(name string) (*Reader, error) {
	if c.closed {
		return nil, reader.ErrClosed
	}
	for _, r := range c.readers {
		if r.name == name {
			return r, nil
		}
	}
	return nil, fmt.Errorf("sim: reader %q: %w", name, reader.ErrUnknownReader)
}

func (c *Context) namesLocked() []string {
	names := make([]string, len(c.readers))
	for i, r := range c.readers {
		names[i] = r.name
	}
	return names
}

// Readers lists the plugged readers.
func (c *Context) Readers(ctx context.Context) ([]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, reader.ErrClosed
	}
	return c.namesLocked(), nil
}

// WaitReadersChange blocks until the plugged readers differ from known.
func (c *Context) WaitReadersChange(ctx context.Context, known []string) ([]string, error) {
	return wait(ctx, c, func() ([]string, bool, error) {
		if c.closed {
			return nil, false, reader.ErrClosed
		}
		names := c.namesLocked()
		a, b := slices.Clone(names), slices.Clone(known)
		slices.Sort(a)
		slices.Sort(b)
		return names, !slices.Equal(a, b), nil
	})
}

// WaitCard blocks until a card is present (or absent) on the named reader.
func (c *Context) WaitCard(ctx context.Context, name string, present bool) error {
	_, err := wait(ctx, c, func() (struct{}, bool, error) {
		r, err := c.findLocked(name)
		if err != nil {
			return struct{}{}, false, err
		}
		return struct{}{}, (r.card != nil) == present, nil
	})
	return err
}

// Waiting returns a channel that is closed once at least n calls are
// blocked in WaitCard or WaitReadersChange, so a test can change the
// readers after a waiter blocked instead of sleeping first.
func (c *Context) Waiting(n int) <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := watcher{n: n, ch: make(chan struct{})}
	c.watch = append(c.watch, w)
	c.watchLocked()
	return w.ch
}

func (c *Context) watchLocked() {
	keep := c.watch[:0]
	for _, w := range c.watch {
		if c.blocked >= w.n {
			close(w.ch)
			continue
		}
		keep = append(keep, w)
	}
	c.watch = keep
}

// wait re-evaluates check, under the lock, after every change until it is
// done, fails, or ctx ends.
func wait[T any](ctx context.Context, c *Context, check func() (T, bool, error)) (T, error) {
	for {
		c.mu.Lock()
		v, done, err := check()
		if err != nil || done {
			c.mu.Unlock()
			return v, err
		}
		ch := c.changed
		c.blocked++
		c.watchLocked()
		c.mu.Unlock()
		var cancelled bool
		select {
		case <-ctx.Done():
			cancelled = true
		case <-ch:
		}
		c.mu.Lock()
		c.blocked--
		c.mu.Unlock()
		if cancelled {
			var zero T
			return zero, ctx.Err()
		}
	}
}

// SerialNumber returns the serial number the reader was plugged with.
func (c *Context) SerialNumber(ctx context.Context, name string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	r, err := c.findLocked(name)
	if err != nil {
		return "", err
	}
	if r.serial == "" {
		return "", fmt.Errorf("sim: serial number of %q: %w", name, reader.ErrNoSerial)
	}
	return r.serial, nil
}

// Connect opens an exclusive connection to the card on the named reader.
func (c *Context) Connect(ctx context.Context, name string) (reader.Card, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	r, err := c.findLocked(name)
	if err != nil {
		return nil, err
	}
	if r.card == nil {
		return nil, fmt.Errorf("sim: connect %q: %w", name, reader.ErrNoCard)
	}
	if r.conn != nil {
		return nil, fmt.Errorf("sim: connect %q: %w", name, reader.ErrSharingViolation)
	}
	card := &Card{r: r, gen: r.gen, atr: r.card.ATR()}
	r.conn = card
	return card, nil
}

// Close closes the context; waiters return reader.ErrClosed.
func (c *Context) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.closed = true
		c.notifyLocked()
	}
	return nil
}

// Card is a connection to a simulated card.
type Card struct {
	r      *Reader
	gen    int
	atr    []byte
	closed bool
	// Transmits counts the APDUs sent through this connection.
	Transmits int
}

var _ reader.Card = (*Card)(nil)

// Reader is the reader's name.
func (k *Card) Reader() string { return k.r.name }

// ATR is the card's answer to reset.
func (k *Card) ATR() []byte { return k.atr }

// current returns the chip if the connection still reaches the card it was
// opened on.
func (k *Card) current() (chip.Card, error) {
	s := k.r.sim
	switch {
	case k.closed:
		return nil, reader.ErrClosed
	case s.closed:
		return nil, reader.ErrClosed
	case !k.r.plugged:
		return nil, reader.ErrReaderGone
	case k.r.card == nil || k.r.gen != k.gen:
		return nil, reader.ErrCardRemoved
	}
	return k.r.card, nil
}

// Transmit sends apdu to the card.
func (k *Card) Transmit(ctx context.Context, apdu []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s := k.r.sim
	s.mu.Lock()
	card, err := k.current()
	s.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("sim: transmit: %w", err)
	}
	k.Transmits++
	// The chip runs unlocked so a slow card does not stall the other
	// readers; the generation check below notices a removal meanwhile.
	resp, err := card.Transmit(apdu)
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case errors.Is(err, chip.ErrRemoved):
		if k.r.gen == k.gen {
			k.r.removeLocked()
		}
		return nil, fmt.Errorf("sim: transmit: %w", reader.ErrCardRemoved)
	case errors.Is(err, chip.ErrTransmit):
		return nil, fmt.Errorf("sim: transmit: %w", reader.ErrTimeout)
	case err != nil:
		return nil, fmt.Errorf("sim: transmit: %w", err)
	}
	if _, err := k.current(); err != nil {
		return nil, fmt.Errorf("sim: transmit: %w", err)
	}
	return resp, nil
}

// Reset re-activates the card.
func (k *Card) Reset(ctx context.Context) error {
	s := k.r.sim
	s.mu.Lock()
	defer s.mu.Unlock()
	card, err := k.current()
	if err != nil {
		return fmt.Errorf("sim: reset: %w", err)
	}
	card.Reset()
	return nil
}

// Close ends the connection.
func (k *Card) Close() error {
	s := k.r.sim
	s.mu.Lock()
	defer s.mu.Unlock()
	if k.closed {
		return nil
	}
	// As reader/pcsc does, leave the card reset for the next connection.
	if card, err := k.current(); err == nil {
		card.Reset()
	}
	k.closed = true
	if k.r.conn == k {
		k.r.conn = nil
	}
	return nil
}
