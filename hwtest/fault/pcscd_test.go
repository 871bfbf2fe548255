package fault_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ebfe/scard"

	"github.com/encoder-bridge/encoder-bridge/hwtest"
	"github.com/encoder-bridge/encoder-bridge/hwtest/vpcd"
	"github.com/encoder-bridge/encoder-bridge/reader/sim/chip"
)

const pcscdPidFile = "/run/pcscd/pcscd.pid"

// restartPCSCD stops the machine's pcscd (SIGTERM, as its service
// manager would) and starts it again as scripts/setup-debian.sh does,
// then waits until it lists the vpcd readers again.
func restartPCSCD(readers []string) error {
	raw, err := os.ReadFile(pcscdPidFile)
	if err != nil {
		return fmt.Errorf("pcscd pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimRight(string(raw), "\n\x00 "))
	if err != nil {
		return fmt.Errorf("pcscd pid file: %w", err)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("stop pcscd: %w", err)
	}
	for deadline := time.Now().Add(15 * time.Second); syscall.Kill(pid, 0) == nil; {
		if time.Now().After(deadline) {
			return fmt.Errorf("pcscd (pid %d) did not stop on SIGTERM", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if out, err := exec.Command("pcscd").CombinedOutput(); err != nil {
		return fmt.Errorf("start pcscd: %v: %s", err, out)
	}
	for deadline := time.Now().Add(15 * time.Second); ; {
		ok := true
		for _, r := range readers {
			if hwtest.WaitCard(r, false, nil, 250*time.Millisecond) != nil {
				ok = false
			}
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pcscd restarted but does not list the vpcd readers")
		}
	}
}

// TestPCSCDRestart stops and restarts pcscd at each step of an encode
// where the card is involved, then puts the card back (vpcd's card
// connection dies with pcscd). pcscd is the machine's: this runs only
// with CI set, where the test owns it, and holds every vpcd slot so no
// other hardware test, in this process or another, is using a reader.
func TestPCSCDRestart(t *testing.T) {
	if os.Getenv("CI") == "" {
		t.Skip("restarts the machine's pcscd: runs only with CI set")
	}
	if _, err := os.Stat(pcscdPidFile); err != nil {
		t.Fatalf("with CI set the test restarts pcscd, and needs its pid file: %v", err)
	}
	readers := listedReaders(t)
	slot := hwtest.AcquireSlot(t)
	for range readers[1:] {
		hwtest.AcquireSlot(t)
	}
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
				if err := restartPCSCD(readers); err != nil {
					t.Error(err)
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

// listedReaders are the vpcd readers pcscd lists now: the slots the test
// holds, and the readers it waits for after a restart.
func listedReaders(t *testing.T) []string {
	t.Helper()
	ctx, err := scard.EstablishContext()
	if err != nil {
		t.Fatalf("pcscd not reachable: %v", err)
	}
	defer ctx.Release()
	names, err := ctx.ListReaders()
	if err != nil {
		t.Fatalf("pcscd: list readers: %v", err)
	}
	var out []string
	for _, s := range hwtest.Slots() {
		if slices.Contains(names, s.Reader) {
			out = append(out, s.Reader)
		}
	}
	if len(out) == 0 {
		t.Fatalf("pcscd lists no vpcd reader (it lists %q)", names)
	}
	return out
}
