package chip

import (
	"bytes"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestFaultsRemoveAtLeavesMemoryUntouched(t *testing.T) {
	c := NewClassic1K(nil)
	f := WithFaults(c, Faults{RemoveAt: 3})
	loadKey(t, f, 0, keyFF)                              // APDU 1
	if got := authSW(t, f, 4, false, 0); got != "9000" { // APDU 2
		t.Fatal(got)
	}
	before := c.Block(4)
	_, err := f.Transmit(append(hx("FF D6 00 04 10"), bytes.Repeat([]byte{0xEE}, 16)...)) // APDU 3
	if !errors.Is(err, ErrRemoved) {
		t.Fatalf("APDU 3: %v", err)
	}
	if !bytes.Equal(c.Block(4), before) {
		t.Fatal("removed write was applied")
	}
	// Put back on the reader: freshly activated, the count keeps running.
	wantSW(t, f, "FF B0 00 04 10", "6982")
	f.Reset()
	if got := authSW(t, f, 4, false, 0); got != "9000" {
		t.Fatalf("after re-insertion: %s", got)
	}
	wantSW(t, f, "FF B0 00 04 10", "9000")

	u := NewUltralight(NTAG213, testUID7)
	fu := WithFaults(u, Faults{RemoveAt: 1})
	if _, err := fu.Transmit(hx("FF D6 00 04 04 DEADBEEF")); !errors.Is(err, ErrRemoved) {
		t.Fatal(err)
	}
	if hexOf(u.Page(4)) == "DEADBEEF" {
		t.Fatal("removed UL write was applied")
	}
}

func TestFaultsFailAt(t *testing.T) {
	u := NewUltralight(MF0UL11, testUID7)
	f := WithFaults(u, Faults{FailAt: 2})
	wantSW(t, f, "FF D6 00 04 04 01010101", "9000")
	if _, err := f.Transmit(hx("FF D6 00 05 04 02020202")); !errors.Is(err, ErrTransmit) {
		t.Fatalf("APDU 2: %v", err)
	}
	if hexOf(u.Page(5)) != "00000000" {
		t.Fatal("failed transmission reached the card")
	}
	wantSW(t, f, "FF D6 00 05 04 02020202", "9000")
	f.Reset()
	wantSW(t, f, "FF CA 00 00 00", "9000") // count is not reset: FailAt already passed
	if !bytes.Equal(f.UID(), u.UID()) || !bytes.Equal(f.ATR(), u.ATR()) {
		t.Fatal("wrapper UID/ATR")
	}
}

func TestFaultsDelay(t *testing.T) {
	f := WithFaults(NewClassic1K(nil), Faults{Delay: 20 * time.Millisecond})
	start := time.Now()
	wantSW(t, f, "FF CA 00 00 00", "9000")
	wantSW(t, f, "FF CA 00 00 00", "9000")
	if el := time.Since(start); el < 40*time.Millisecond {
		t.Fatalf("two APDUs took %v", el)
	}
}

func TestFaultsConcurrent(t *testing.T) {
	f := WithFaults(NewUltralight(NTAG216, nil), Faults{FailAt: 50})
	var wg sync.WaitGroup
	var mu sync.Mutex
	fails := 0
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				_, err := f.Transmit(hx("FF B0 00 04 10"))
				if err != nil {
					mu.Lock()
					fails++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if fails != 1 {
		t.Fatalf("%d failures, want exactly 1", fails)
	}
}

func TestFaultsCountSurvivesReset(t *testing.T) {
	f := WithFaults(NewUltralight(NTAG213, testUID7), Faults{FailAt: 3})
	wantSW(t, f, "FF CA 00 00 00", "9000") // 1
	f.Reset()
	wantSW(t, f, "FF CA 00 00 00", "9000") // 2
	f.Reset()
	if _, err := f.Transmit(hx("FF CA 00 00 00")); !errors.Is(err, ErrTransmit) { // 3
		t.Fatalf("APDU 3 after two resets: %v", err)
	}
}
