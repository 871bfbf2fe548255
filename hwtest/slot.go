package hwtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ebfe/scard"

	"github.com/encoder-bridge/encoder-bridge/hwtest/vpcd"
	"github.com/encoder-bridge/encoder-bridge/reader/sim/chip"
)

// Slot is a vpcd reader slot: the name pcscd gives the reader and the
// address the virtual card connects to.
type Slot struct {
	Reader string
	Addr   string
}

func (s Slot) String() string { return fmt.Sprintf("%q (%s)", s.Reader, s.Addr) }

// Slots are the known vpcd slots (see vpcd.Readers).
func Slots() []Slot {
	var out []Slot
	for _, r := range vpcd.Readers() {
		out = append(out, Slot{Reader: r.Name, Addr: r.Addr})
	}
	return out
}

const (
	// lockPoll is how often AcquireSlot retries busy slots; flock has no
	// cancellable blocking wait.
	lockPoll = 20 * time.Millisecond
	// stateTimeout bounds waiting for pcscd to see a card come or go. It
	// polls presence every ~0.4 s; the rest is slack for loaded CI hosts.
	stateTimeout = 15 * time.Second
)

// AcquireSlot takes one vpcd slot that pcscd lists for the rest of t,
// waiting while all are held by other tests or processes, up to shortly
// before the test deadline. It calls Require first.
func AcquireSlot(t testing.TB) Slot {
	t.Helper()
	Require(t)
	slots, err := listedSlots()
	if err != nil {
		unavailable(t, err)
	}
	var until time.Time
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if dl, ok := d.Deadline(); ok {
			// Fail with a message rather than the test binary's panic.
			until = dl.Add(-min(time.Until(dl)/10, 5*time.Second))
		}
	}
	for {
		var busy []string
		for _, s := range slots {
			unlock, err := vpcd.LockSlot(s.Addr)
			if err == nil {
				t.Cleanup(unlock)
				return s
			}
			if !errors.Is(err, vpcd.ErrSlotBusy) {
				t.Fatalf("hwtest: %v", err)
			}
			busy = append(busy, err.Error())
		}
		if !until.IsZero() && time.Now().After(until) {
			t.Fatalf("hwtest: no vpcd slot came free before the test deadline: %s", strings.Join(busy, "; "))
		}
		time.Sleep(lockPoll)
	}
}

// InsertCard inserts card into slot and returns once pcscd reports it
// present with the card's ATR. At cleanup it removes the card and waits
// until pcscd reports the reader empty, so the next test starts clean.
func InsertCard(t testing.TB, slot Slot, card chip.Card) *vpcd.Slot {
	t.Helper()
	// Not t.Context(): that ends before the test's own cleanups, which may
	// still talk to the card.
	vs, err := vpcd.Insert(context.Background(), slot.Addr, card)
	if err != nil {
		t.Fatalf("hwtest: insert card into %v: %v", slot, err)
	}
	t.Cleanup(func() {
		if err := vs.Remove(); err != nil {
			t.Errorf("hwtest: virtual card in %v: %v", slot, err)
		}
		if err := WaitCard(slot.Reader, false, nil, stateTimeout); err != nil {
			t.Errorf("hwtest: after removing the card: %v", err)
		}
	})
	// A card left by a crashed process can still look present until pcscd's
	// next poll; ours counts only once vpcd has accepted it.
	select {
	case <-vs.Attached():
	case <-vs.Done():
		t.Fatalf("hwtest: card in %v left before vpcd accepted it: %v", slot, vs.Err())
	case <-time.After(stateTimeout):
		t.Fatalf("hwtest: vpcd did not accept the card in %v within %v: is another card in that slot?", slot, stateTimeout)
	}
	if err := WaitCard(slot.Reader, true, card.ATR(), stateTimeout); err != nil {
		t.Fatalf("hwtest: %v", err)
	}
	return vs
}

// WaitCard waits until pcscd reports a card in reader (present) or the
// reader empty (!present). With atr set, a present card must have that ATR.
func WaitCard(reader string, present bool, atr []byte, timeout time.Duration) error {
	ctx, err := scard.EstablishContext()
	if err != nil {
		return fmt.Errorf("pcscd not reachable: %w", err)
	}
	defer ctx.Release()
	deadline := time.Now().Add(timeout)
	rs := []scard.ReaderState{{Reader: reader, CurrentState: scard.StateUnaware}}
	for {
		// A finite wait keeps the deadline honest; ErrTimeout only means
		// nothing changed.
		err := ctx.GetStatusChange(rs, 250*time.Millisecond)
		if err != nil && err != scard.ErrTimeout {
			return fmt.Errorf("pcscd: status of %q: %w", reader, err)
		}
		st := rs[0].EventState & 0xFFFF // upper bits: event counter
		switch {
		case present && st&scard.StatePresent != 0 && (atr == nil || bytes.Equal(rs[0].Atr, atr)):
			return nil
		case !present && st&scard.StateEmpty != 0:
			return nil
		}
		if time.Now().After(deadline) {
			want := "a card"
			if !present {
				want = "no card"
			}
			return fmt.Errorf("pcscd did not report %s in %q within %v (state %#x, ATR % X)", want, reader, timeout, uint32(st), rs[0].Atr)
		}
		rs[0].CurrentState = rs[0].EventState
	}
}
