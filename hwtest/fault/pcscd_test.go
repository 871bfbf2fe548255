package fault_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/encoder-bridge/encoder-bridge/hwtest"
	"github.com/encoder-bridge/encoder-bridge/hwtest/pcscd"
	"github.com/encoder-bridge/encoder-bridge/hwtest/vpcd"
	"github.com/encoder-bridge/encoder-bridge/reader/sim/chip"
)

// privatePcscd is the package's private pcscd; t skips without one, or
// fails with CI set.
func privatePcscd(t *testing.T) *pcscd.Daemon {
	t.Helper()
	if daemonErr != nil {
		if errors.Is(daemonErr, pcscd.ErrUnavailable) && os.Getenv("CI") == "" {
			t.Skipf("restarts a private pcscd, which this machine cannot run: %v", daemonErr)
		}
		t.Fatalf("%v", daemonErr)
	}
	return daemon
}

// TestPCSCDRestart stops and restarts pcscd at each step of an encode
// where the card is involved, then puts the card back (vpcd's card
// connection dies with pcscd). pcscd is the package's private one
// (TestMain): no other process uses it, so the test runs with or without
// CI and leaves the machine's pcscd alone.
func TestPCSCDRestart(t *testing.T) {
	pd := privatePcscd(t)
	slot := hwtest.AcquireSlot(t)
	const kind = chip.KindClassic1K
	writes, _ := baseline(t, slot, kind)
	for _, s := range []step{
		{Type: "ack"},
		{Type: "progress", Stage: "card_detected"},
		{Type: "progress", Stage: "writing"},
		{Type: "progress", Stage: "verifying"},
		{Type: "result"},
	} {
		t.Run(s.String(), func(t *testing.T) {
			// A slow card, so the restart lands while the bridge is still
			// talking to it rather than after.
			runCell(t, slot, kind, cell{name: "restart pcscd " + s.String(), at: &s, delay: 30 * time.Millisecond, fault: func(d *desk) action {
				if err := pd.Restart(); err != nil {
					t.Error(err)
					return pass
				}
				// The reader is listed again before the card comes back,
				// so the bridge sees it arrive.
				if err := hwtest.WaitCard(slot.Reader, false, nil, 15*time.Second); err != nil {
					t.Errorf("after the pcscd restart: %v", err)
					return pass
				}
				d.putBack(t, slot)
				return pass
			}}, writes)
		})
	}
}

// putBack puts the cell's card into slot again after pcscd lost it.
func (d *desk) putBack(t *testing.T, slot hwtest.Slot) {
	d.mu.Lock()
	c := d.card
	d.mu.Unlock()
	s, err := vpcd.Insert(context.Background(), slot.Addr, c)
	if err != nil {
		t.Errorf("put the card back after the pcscd restart: %v", err)
		return
	}
	d.mu.Lock()
	d.extra = append(d.extra, s)
	d.mu.Unlock()
}
