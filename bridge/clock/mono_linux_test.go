package clock

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Real.Mono is CLOCK_BOOTTIME, which counts a suspend, not Go's
// CLOCK_MONOTONIC, which does not.
func TestRealMonoIsBootTime(t *testing.T) {
	boot := func() time.Duration {
		var ts unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
			t.Fatal(err)
		}
		return time.Duration(ts.Nano())
	}
	before := boot()
	got := Real{}.Mono()
	after := boot()
	if got < before || got > after {
		t.Fatalf("Real.Mono() = %v, not between CLOCK_BOOTTIME readings %v and %v", got, before, after)
	}
}
