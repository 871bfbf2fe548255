package vpcd

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestMain fails the run if any slot goroutine outlives the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := slotGoroutines(5 * time.Second); leaked != "" {
			fmt.Fprintf(os.Stderr, "leaked slot goroutines:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// slotGoroutines waits up to wait for slot goroutines to end and returns the
// stacks of those left.
func slotGoroutines(wait time.Duration) string {
	deadline := time.Now().Add(wait)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var left []string
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "hwtest/vpcd.(*Slot)") || strings.Contains(g, "hwtest/vpcd.Insert") {
				left = append(left, g)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return strings.Join(left, "\n\n")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
