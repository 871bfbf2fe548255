package vpcd_test

// These tests go through the real pcscd and the vpcd driver with
// github.com/ebfe/scard, nothing of this project in between.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ebfe/scard"

	"github.com/encoder-bridge/encoder-bridge/hwtest"
	"github.com/encoder-bridge/encoder-bridge/hwtest/vpcd"
	"github.com/encoder-bridge/encoder-bridge/reader/sim/chip"
)

const pcscdTimeout = 15 * time.Second

// insertPresent inserts card into a free slot and waits until pcscd sees it.
func insertPresent(t testing.TB, card *vpcd.TestCard) (hwtest.Slot, *vpcd.Slot) {
	t.Helper()
	slot := hwtest.AcquireSlot(t)
	s, err := vpcd.Insert(context.Background(), slot.Addr, card)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Remove()
		hwtest.WaitCard(slot.Reader, false, nil, pcscdTimeout)
	})
	select {
	case <-s.Attached():
	case <-time.After(pcscdTimeout):
		t.Fatalf("vpcd did not accept the card in %v", slot)
	}
	if err := hwtest.WaitCard(slot.Reader, true, card.ATR(), pcscdTimeout); err != nil {
		t.Fatal(err)
	}
	return slot, s
}

func establish(t testing.TB) *scard.Context {
	t.Helper()
	ctx, err := scard.EstablishContext()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctx.Release() })
	return ctx
}

func connect(t testing.TB, ctx *scard.Context, reader string) *scard.Card {
	t.Helper()
	c, err := ctx.Connect(reader, scard.ShareExclusive, scard.ProtocolAny)
	if err != nil {
		t.Fatalf("Connect %q: %v", reader, err)
	}
	t.Cleanup(func() { c.Disconnect(scard.LeaveCard) })
	return c
}

// state is the reader's current state bits as pcscd reports them.
func state(t testing.TB, ctx *scard.Context, reader string) scard.StateFlag {
	t.Helper()
	rs := []scard.ReaderState{{Reader: reader, CurrentState: scard.StateUnaware}}
	if err := ctx.GetStatusChange(rs, time.Second); err != nil {
		t.Fatalf("GetStatusChange: %v", err)
	}
	return rs[0].EventState & 0xFFFF
}

func TestThroughPCSCD(t *testing.T) {
	hwtest.Require(t)
	card := vpcd.NewTestCard()
	slot, s := insertPresent(t, card)
	ctx := establish(t)

	readers, err := ctx.ListReaders()
	if err != nil {
		t.Fatal(err)
	}
	if !contains(readers, slot.Reader) {
		t.Fatalf("ListReaders = %q, want %q in it", readers, slot.Reader)
	}
	if st := state(t, ctx, slot.Reader); st&scard.StatePresent == 0 {
		t.Fatalf("state %#x: not present", st)
	}

	c := connect(t, ctx, slot.Reader)
	status, err := c.Status()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(status.Atr, card.ATR()) {
		t.Fatalf("Status ATR % X, want % X", status.Atr, card.ATR())
	}
	if status.Reader != slot.Reader {
		t.Fatalf("Status reader %q, want %q", status.Reader, slot.Reader)
	}

	resp, err := c.Transmit(vpcd.GetUID)
	if err != nil {
		t.Fatal(err)
	}
	if want := append(card.UID(), 0x90, 0x00); !bytes.Equal(resp, want) {
		t.Fatalf("GET DATA: % X, want % X", resp, want)
	}
	apdu := []byte{0xFF, 0xB0, 0x00, 0x04, 0x10}
	if resp, err := c.Transmit(apdu); err != nil || !bytes.Equal(resp, append(apdu, 0x90, 0x00)) {
		t.Fatalf("echo: % X, %v", resp, err)
	}
	if s.APDUs() != 2 {
		t.Fatalf("APDUs() = %d, want 2", s.APDUs())
	}

	_, before := card.Counts()
	if err := c.Reconnect(scard.ShareExclusive, scard.ProtocolAny, scard.ResetCard); err != nil {
		t.Fatalf("Reconnect with reset: %v", err)
	}
	if _, after := card.Counts(); after <= before {
		t.Fatalf("reset did not reach the card (%d resets before, %d after)", before, after)
	}
	if _, err := c.Transmit(vpcd.GetUID); err != nil {
		t.Fatalf("transmit after reset: %v", err)
	}

	if err := s.Remove(); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if err := hwtest.WaitCard(slot.Reader, false, nil, pcscdTimeout); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Transmit(vpcd.GetUID); err == nil {
		t.Fatal("transmit to a removed card succeeded")
	}
}

// A card pulled mid-command: that transmit fails or comes back without a
// status word, and every later one fails.
func TestCardRemovedMidTransmit(t *testing.T) {
	hwtest.Require(t)
	card := vpcd.NewTestCard()
	card.FailAt(3, chip.ErrRemoved)
	slot, s := insertPresent(t, card)
	c := connect(t, establish(t), slot.Reader)

	for i := 1; i <= 2; i++ {
		if _, err := c.Transmit(vpcd.GetUID); err != nil {
			t.Fatalf("APDU %d: %v", i, err)
		}
	}
	resp, err := c.Transmit(vpcd.GetUID)
	if err == nil && len(resp) >= 2 {
		t.Fatalf("APDU 3 (card pulled): % X, want an error or no status word", resp)
	}
	t.Logf("APDU 3: % X, %v", resp, err)
	for i := 4; i <= 6; i++ {
		if resp, err := c.Transmit(vpcd.GetUID); err == nil {
			t.Fatalf("APDU %d after removal: % X, want an error", i, resp)
		}
	}
	waitDone(t, s)
	if !errors.Is(s.Err(), chip.ErrRemoved) {
		t.Fatalf("Err = %v", s.Err())
	}
	if err := hwtest.WaitCard(slot.Reader, false, nil, pcscdTimeout); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Transmit(vpcd.GetUID); err != scard.ErrRemovedCard {
		t.Fatalf("after pcscd noticed: %v, want %v", err, scard.ErrRemovedCard)
	}
}

// A transmission error: SCARD_E_NOT_TRANSACTED, the card stays, the handle
// stays valid, and transmits work again after pcscd's next presence poll.
func TestTransmitError(t *testing.T) {
	hwtest.Require(t)
	card := vpcd.NewTestCard()
	rf := fmt.Errorf("test: %w", chip.ErrTransmit)
	card.FailAt(2, rf)
	slot, s := insertPresent(t, card)
	ctx := establish(t)
	c := connect(t, ctx, slot.Reader)

	if _, err := c.Transmit(vpcd.GetUID); err != nil {
		t.Fatal(err)
	}
	if resp, err := c.Transmit(vpcd.GetUID); err != scard.ErrNotTransacted {
		t.Fatalf("failing APDU: % X, %v; want %v", resp, err, scard.ErrNotTransacted)
	}
	start := time.Now()
	for failed := 0; ; failed++ {
		resp, err := c.Transmit(vpcd.GetUID)
		if err == nil {
			if want := append(card.UID(), 0x90, 0x00); !bytes.Equal(resp, want) {
				t.Fatalf("after recovery: % X, want % X", resp, want)
			}
			t.Logf("recovered after %v, %d more failed transmits", time.Since(start), failed)
			break
		}
		if err != scard.ErrNotTransacted {
			t.Fatalf("while vpcd reconnects: %v, want %v", err, scard.ErrNotTransacted)
		}
		if time.Since(start) > 5*time.Second {
			t.Fatal("no recovery within 5 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := state(t, ctx, slot.Reader); st&scard.StatePresent == 0 {
		t.Fatalf("state %#x: card not present after a transmission error", st)
	}
	if apdus, _ := card.Counts(); apdus != 3 || s.APDUs() != 3 {
		t.Fatalf("card saw %d APDUs, slot counted %d; want 3", apdus, s.APDUs())
	}
	select {
	case <-s.Done():
		t.Fatalf("slot ended: %v", s.Err())
	default:
	}
}

// BenchmarkTransmit times one GET DATA through scard, pcscd, vpcd and the
// card. Run: go test -run '^$' -bench Transmit -benchtime 1000x ./hwtest/vpcd/
func BenchmarkTransmit(b *testing.B) {
	for _, quick := range []bool{true, false} {
		b.Run(fmt.Sprintf("quickack=%v", quick), func(b *testing.B) {
			hwtest.Require(b)
			defer vpcd.SetQuickAck(quick)()
			slot, _ := insertPresent(b, vpcd.NewTestCard())
			c := connect(b, establish(b), slot.Reader)
			if _, err := c.Transmit(vpcd.GetUID); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				if resp, err := c.Transmit(vpcd.GetUID); err != nil || len(resp) != 6 {
					b.Fatalf("% X, %v", resp, err)
				}
			}
		})
	}
}

func waitDone(t testing.TB, s *vpcd.Slot) {
	t.Helper()
	select {
	case <-s.Done():
	case <-time.After(pcscdTimeout):
		t.Fatal("slot did not end")
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
