package clock

import (
	"time"

	"golang.org/x/sys/unix"
)

// mono reads CLOCK_BOOTTIME. Go's monotonic reading is CLOCK_MONOTONIC,
// which stops while the system is suspended, so a job waiting for a card
// across a sleep would keep the time it had.
func mono() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		// Linux has had CLOCK_BOOTTIME since 2.6.39; this does not happen.
		return time.Since(origin)
	}
	return time.Duration(ts.Nano())
}
