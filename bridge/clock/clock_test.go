package clock

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/encoder-bridge/encoder-bridge/internal/deptest"
)

func TestFakeJumpMovesOnlyTheWallClock(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC)
	f := NewFake(t0)
	f.Advance(10 * time.Second)
	f.Jump(-time.Hour)
	f.Jump(3 * time.Hour)
	f.Advance(5 * time.Second)
	if got, want := f.Now(), t0.Add(2*time.Hour+15*time.Second); !got.Equal(want) {
		t.Errorf("wall %v, want %v", got, want)
	}
	if got := f.Mono(); got != 15*time.Second {
		t.Errorf("mono %v, want 15s", got)
	}
}

func TestRealMonoMovesForward(t *testing.T) {
	var r Real
	a := r.Mono()
	b := r.Mono()
	if a < 0 || b < a {
		t.Fatalf("mono went %v then %v", a, b)
	}
}

// TestImports enforces the package doc: no other package of this module.
func TestImports(t *testing.T) {
	deptest.Forbid(t, "bridge/agent", "bridge/config", "bridge/journal", "bridge/link", "bridge/health",
		"cardfmt", "cloud", "cmd", "hwtest", "protocol", "reader", "service")
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), deptest.Module+"/bridge\n") {
		t.Error("imports package bridge, which its package doc rules out")
	}
}
