package service

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	kservice "github.com/kardianos/service"
	"go.uber.org/zap"
)

func TestProgramStartStop(t *testing.T) {
	stopped := make(chan struct{})
	p := &Program{Run: func(ctx context.Context) error {
		<-ctx.Done()
		close(stopped)
		return nil
	}, Exit: func(int) { t.Error("exited after a requested stop") }}
	start := time.Now()
	if err := p.Start(nil); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 100*time.Millisecond {
		t.Fatalf("Start blocked %v", el)
	}
	if err := p.Stop(nil); err != nil {
		t.Fatalf("Stop = %v", err)
	}
	select {
	case <-stopped:
	default:
		t.Fatal("Stop returned before run did")
	}
}

func TestProgramStopTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	p := &Program{Run: func(ctx context.Context) error { <-release; return nil }, StopTimeout: 50 * time.Millisecond, Exit: func(int) {}}
	p.Start(nil)
	start := time.Now()
	err := p.Stop(nil)
	if err == nil || !strings.Contains(err.Error(), "did not stop within") {
		t.Fatalf("Stop = %v", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("Stop took %v", el)
	}
}

func TestProgramRunErrorAtStop(t *testing.T) {
	boom := errors.New("journal closed badly")
	p := &Program{Run: func(ctx context.Context) error { <-ctx.Done(); return boom }, Exit: func(int) { t.Error("exited") }}
	p.Start(nil)
	if err := p.Stop(nil); !errors.Is(err, boom) {
		t.Fatalf("Stop = %v", err)
	}
}

// A run that ends by itself is a failure: the process exits non-zero for
// the service manager to restart it.
func TestProgramFatalExitsNonZero(t *testing.T) {
	codes := make(chan int, 1)
	p := &Program{Run: func(context.Context) error { return errors.New("auth revoked") }, Exit: func(c int) { codes <- c }}
	p.Start(nil)
	select {
	case c := <-codes:
		if c != 1 {
			t.Fatalf("exit code %d", c)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no exit after a fatal error")
	}
}

type fakeLogger struct {
	mu    sync.Mutex
	lines []string
}

func (f *fakeLogger) add(level string, v ...any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lines = append(f.lines, level+" "+fmt.Sprint(v...))
	return nil
}
func (f *fakeLogger) Error(v ...any) error   { return f.add("E", v...) }
func (f *fakeLogger) Warning(v ...any) error { return f.add("W", v...) }
func (f *fakeLogger) Info(v ...any) error    { return f.add("I", v...) }
func (f *fakeLogger) Errorf(format string, a ...any) error {
	return f.add("E", fmt.Sprintf(format, a...))
}
func (f *fakeLogger) Warningf(format string, a ...any) error {
	return f.add("W", fmt.Sprintf(format, a...))
}
func (f *fakeLogger) Infof(format string, a ...any) error {
	return f.add("I", fmt.Sprintf(format, a...))
}

var _ kservice.Logger = (*fakeLogger)(nil)

func TestTeeForwardsWarnAndAbove(t *testing.T) {
	sl := &fakeLogger{}
	log := Tee(zap.NewNop(), sl).With(zap.String("job_id", "j1"))
	log.Debug("debug")
	log.Info("info")
	log.Warn("link down", zap.String("error", "timeout"))
	log.Error("journal failed")
	if len(sl.lines) != 2 {
		t.Fatalf("forwarded %q", sl.lines)
	}
	if !strings.HasPrefix(sl.lines[0], "W link down") || !strings.Contains(sl.lines[0], "link down") ||
		!strings.Contains(sl.lines[0], `"job_id": "j1"`) || !strings.Contains(sl.lines[0], `"error": "timeout"`) {
		t.Fatalf("warning line %q", sl.lines[0])
	}
	if !strings.HasPrefix(sl.lines[1], "E journal failed") || !strings.Contains(sl.lines[1], "journal failed") {
		t.Fatalf("error line %q", sl.lines[1])
	}
}

func TestConfig(t *testing.T) {
	if c, err := Config(Options{}); err != nil || strings.Join(c.Arguments, " ") != "run --service" {
		t.Fatalf("Config for control commands: %v, %v", c, err)
	}
	c, err := Config(Options{ConfigPath: "bridge.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs("bridge.yaml")
	if c.Name != Name || strings.Join(c.Arguments, " ") != "run --service --config "+abs {
		t.Fatalf("config %+v", c)
	}
	if c.Option["OnFailure"] != "restart" {
		t.Fatalf("no restart on failure: %v", c.Option)
	}
	if err := Control(nil, "explode"); err == nil {
		t.Fatal("unknown action accepted")
	}
}

func TestStatusText(t *testing.T) {
	for _, tt := range []struct {
		st   kservice.Status
		err  error
		want string
	}{
		{kservice.StatusRunning, nil, "running"},
		{kservice.StatusStopped, nil, "stopped"},
		{kservice.StatusUnknown, kservice.ErrNotInstalled, "not installed"},
		{kservice.StatusUnknown, errors.New("x"), "unknown: x"},
	} {
		if got := StatusText(tt.st, tt.err); got != tt.want {
			t.Errorf("StatusText(%v, %v) = %q", tt.st, tt.err, got)
		}
	}
}
