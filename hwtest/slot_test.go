package hwtest

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ebfe/scard"

	"github.com/encoder-bridge/encoder-bridge/hwtest/vpcd"
	"github.com/encoder-bridge/encoder-bridge/reader/sim/chip"
)

func TestSlots(t *testing.T) {
	slots := Slots()
	if len(slots) == 0 {
		t.Fatal("no slots")
	}
	seen := map[string]bool{}
	for _, s := range slots {
		if s.Reader == "" || s.Addr == "" || seen[s.Addr] {
			t.Fatalf("bad slot list %v", slots)
		}
		seen[s.Addr] = true
	}
}

// recordingTB stands in for a test to see whether a helper skips or fails.
type recordingTB struct {
	testing.TB
	skipped, failed string
}

func (r *recordingTB) Helper() {}
func (r *recordingTB) Skipf(format string, args ...any) {
	r.skipped = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (r *recordingTB) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestUnavailableSkipsLocallyFailsInCI(t *testing.T) {
	run := func(ci string) *recordingTB {
		t.Setenv("CI", ci)
		r := &recordingTB{TB: t}
		done := make(chan struct{})
		go func() {
			defer close(done)
			unavailable(r, errors.New("pcscd not reachable"))
		}()
		<-done
		return r
	}
	if r := run(""); r.skipped == "" || r.failed != "" {
		t.Fatalf("without CI: skipped %q, failed %q; want a skip", r.skipped, r.failed)
	}
	r := run("true")
	if r.failed == "" || r.skipped != "" {
		t.Fatalf("in CI: skipped %q, failed %q; want a failure", r.skipped, r.failed)
	}
	if !strings.Contains(r.failed, "hardware tests must run in CI: start pcscd with vsmartcard-vpcd installed") {
		t.Fatalf("CI failure message %q", r.failed)
	}
}

func TestAcquireSlotWaitsForAFreeSlot(t *testing.T) {
	Require(t)
	slots, err := listedSlots()
	if err != nil {
		t.Fatal(err)
	}
	// Take every slot behind AcquireSlot's back (waiting out other tests).
	unlocks := make([]func(), len(slots))
	for i, s := range slots {
		for {
			unlocks[i], err = vpcd.LockSlot(s.Addr)
			if err == nil {
				break
			}
			if !errors.Is(err, vpcd.ErrSlotBusy) {
				t.Fatal(err)
			}
			time.Sleep(lockPoll)
		}
	}
	last := len(slots) - 1
	for _, u := range unlocks[:last] {
		defer u()
	}
	const hold = 300 * time.Millisecond
	go func() {
		time.Sleep(hold)
		unlocks[last]()
	}()
	start := time.Now()
	got := AcquireSlot(t)
	if waited := time.Since(start); waited < hold {
		t.Fatalf("AcquireSlot returned after %v while every slot was held", waited)
	}
	if got != slots[last] {
		t.Fatalf("got %v, want the released %v", got, slots[last])
	}
	if _, err := vpcd.LockSlot(got.Addr); !errors.Is(err, vpcd.ErrSlotBusy) {
		t.Fatalf("slot not locked while acquired: %v", err)
	}
}

func TestInsertCard(t *testing.T) {
	Require(t)
	uid := []byte{0x1A, 0x2B, 0x3C, 0x4D}
	card, err := chip.New(chip.KindClassic1K, uid)
	if err != nil {
		t.Fatal(err)
	}
	var slot Slot
	t.Run("inserted", func(t *testing.T) {
		slot = AcquireSlot(t)
		vs := InsertCard(t, slot, card)

		ctx, err := scard.EstablishContext()
		if err != nil {
			t.Fatal(err)
		}
		defer ctx.Release()
		c, err := ctx.Connect(slot.Reader, scard.ShareExclusive, scard.ProtocolAny)
		if err != nil {
			t.Fatalf("present per InsertCard, but Connect: %v", err)
		}
		defer c.Disconnect(scard.LeaveCard)
		st, err := c.Status()
		if err != nil || !bytes.Equal(st.Atr, card.ATR()) {
			t.Fatalf("Status: %+v, %v; want ATR % X", st, err, card.ATR())
		}
		resp, err := c.Transmit([]byte{0xFF, 0xCA, 0x00, 0x00, 0x00})
		if want := append(uid, 0x90, 0x00); err != nil || !bytes.Equal(resp, want) {
			t.Fatalf("GET DATA: % X, %v; want % X", resp, err, want)
		}
		if vs.APDUs() != 1 {
			t.Fatalf("APDUs() = %d", vs.APDUs())
		}
	})
	// The cleanup waited until pcscd saw the reader empty.
	if err := WaitCard(slot.Reader, false, nil, 0); err != nil {
		t.Fatalf("after InsertCard's cleanup: %v", err)
	}
}

// A card that leaves on its own is still cleaned up without complaint.
func TestInsertCardRemovedByFault(t *testing.T) {
	Require(t)
	base, err := chip.New(chip.KindNTAG213, nil)
	if err != nil {
		t.Fatal(err)
	}
	slot := AcquireSlot(t)
	vs := InsertCard(t, slot, chip.WithFaults(base, chip.Faults{RemoveAt: 1}))
	ctx, err := scard.EstablishContext()
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.Release()
	c, err := ctx.Connect(slot.Reader, scard.ShareExclusive, scard.ProtocolAny)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(scard.LeaveCard)
	if resp, err := c.Transmit([]byte{0xFF, 0xCA, 0x00, 0x00, 0x00}); err == nil && len(resp) >= 2 {
		t.Fatalf("card pulled, yet % X", resp)
	}
	select {
	case <-vs.Done():
	case <-time.After(stateTimeout):
		t.Fatal("slot did not end")
	}
	if !errors.Is(vs.Err(), chip.ErrRemoved) {
		t.Fatalf("Err = %v", vs.Err())
	}
}
