//go:build !linux

package clock

import "time"

// mono is Go's monotonic reading. On Windows it is the interrupt time,
// which counts while the PC sleeps.
func mono() time.Duration { return time.Since(origin) }
