package cloud_test

import (
	"context"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/encoder-bridge/encoder-bridge/cloud"
	"github.com/encoder-bridge/encoder-bridge/cloud/clock"
	"github.com/encoder-bridge/encoder-bridge/cloud/cloudtest"
)

// gateClock is a fake clock whose next Now, once armed, blocks until the
// gate opens, and which notes every After after that.
type gateClock struct {
	*clock.Fake
	mu      sync.Mutex
	gate    chan struct{}
	entered chan struct{}
	afters  atomic.Int32 // After calls since a gated Now returned
	passed  atomic.Bool
}

func (g *gateClock) arm() (entered chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.gate, g.entered = make(chan struct{}), make(chan struct{})
	return g.entered
}

func (g *gateClock) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	close(g.gate)
}

func (g *gateClock) Now() time.Time {
	g.mu.Lock()
	gate, entered := g.gate, g.entered
	g.entered = nil
	g.mu.Unlock()
	if entered != nil {
		close(entered)
		<-gate
		g.passed.Store(true)
	}
	return g.Fake.Now()
}

func (g *gateClock) After(d time.Duration) <-chan time.Time {
	if g.passed.Load() {
		g.afters.Add(1)
	}
	return g.Fake.After(d)
}

// Serve returns only after its sweeper has stopped, so the database it
// then closes is never closed under a sweep.
func TestServeWaitsForSweeper(t *testing.T) {
	gc := &gateClock{Fake: clock.NewFake(cloudtest.Start)}
	// The webhook deliverer keeps the real clock: the gate is for the
	// sweeper alone.
	srv, err := cloud.New(cloud.Config{DB: filepath.Join(t.TempDir(), "cloud.db"), Clock: gc, SweepInterval: time.Second, WebhookClock: clock.Real{}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()

	<-gc.Waiting(1) // the sweeper is parked
	entered := gc.arm()
	gc.Advance(time.Second)
	<-entered // the sweeper is inside a sweep, held there
	cancel()
	// Serve must not return while the sweep is held. The window only
	// bounds how long the test looks; a slow machine can make it miss a
	// regression, never fail a correct Serve.
	select {
	case <-served:
		gc.open()
		t.Fatal("Serve returned while its sweeper was inside a sweep")
	case <-time.After(200 * time.Millisecond):
	}
	gc.open()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	// After a sweep, Run asks the clock for the next one before it sees
	// ctx: that call is the sweep's end.
	if gc.afters.Load() == 0 {
		t.Fatal("Serve returned before its sweeper finished the sweep")
	}
}
