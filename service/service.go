// Package service runs encoder-bridge under the operating system's service
// manager (the Windows Service Control Manager, systemd) through
// kardianos/service: the installed service runs "encoder-bridge run
// --config PATH", and Program adapts that run to the manager's start and
// stop. It also forwards Warn and above to the manager's log. On Linux it
// installs its own hardened systemd unit (encoder-bridge.service), the one
// the Debian package ships, rather than kardianos' root one.
//
// It runs whatever run function it is given; it must not import
// bridge/agent, bridge/link, bridge/journal or reader.
package service

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	kservice "github.com/kardianos/service"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Name is the service's name with the service manager.
const Name = "encoder-bridge"

// DefaultStopTimeout bounds Program.Stop.
const DefaultStopTimeout = 15 * time.Second

// Options describe the installed service.
type Options struct {
	// ConfigPath is the configuration the service runs with; it is made
	// absolute, since services do not start in the installer's directory.
	// Only install needs it.
	ConfigPath string
	// Executable is the binary to run; empty: this one.
	Executable string
	// UserName runs the service as that account; empty: LocalSystem on
	// Windows, User under systemd.
	UserName string
}

// Config is the kardianos configuration of the service.
func Config(o Options) (*kservice.Config, error) {
	// --service: the process must not guess whether the manager started it.
	args := []string{"run", "--service"}
	if o.ConfigPath != "" {
		abs, err := filepath.Abs(o.ConfigPath)
		if err != nil {
			return nil, fmt.Errorf("service: %w", err)
		}
		args = append(args, "--config", abs)
	}
	c := &kservice.Config{
		Name:        Name,
		DisplayName: "Encoder Bridge",
		Description: "Encodes hotel key cards on the card encoders attached to this PC, for jobs from the cloud.",
		UserName:    o.UserName,
		Arguments:   args,
		Executable:  o.Executable,
		Option: kservice.KeyValue{
			// Windows: restart after a crash or a fatal exit (Program exits
			// non-zero), after a pause so a revoked token or a broken disk
			// does not turn into a tight loop; the failure count resets
			// after a day.
			"OnFailure":              "restart",
			"OnFailureDelayDuration": "10s",
			"OnFailureResetPeriod":   24 * 60 * 60,
			"StartType":              "automatic",
		},
	}
	// Linux installs the unit in encoder-bridge.service instead.
	return c, nil
}

// New returns the service handle for control commands.
func New(o Options) (kservice.Service, error) {
	c, err := Config(o)
	if err != nil {
		return nil, err
	}
	s, err := kservice.New(&Program{}, c)
	if err != nil {
		return nil, err
	}
	return platformService(s, o)
}

// Actions are the control commands Control accepts.
var Actions = []string{"install", "uninstall", "start", "stop", "restart"}

// Control installs, uninstalls, starts, stops or restarts the service.
func Control(s kservice.Service, action string) error {
	switch action {
	case "install":
		return s.Install()
	case "uninstall":
		return s.Uninstall()
	case "start":
		return s.Start()
	case "stop":
		return s.Stop()
	case "restart":
		return s.Restart()
	}
	return fmt.Errorf("service: unknown action %q (%s)", action, strings.Join(Actions, ", "))
}

// StatusText says a service status in words.
func StatusText(st kservice.Status, err error) string {
	switch {
	case errors.Is(err, kservice.ErrNotInstalled):
		return "not installed"
	case err != nil:
		return "unknown: " + err.Error()
	case st == kservice.StatusRunning:
		return "running"
	case st == kservice.StatusStopped:
		return "stopped"
	}
	return "unknown"
}

// Interactive reports whether the process runs from a terminal rather
// than under the service manager.
func Interactive() bool { return kservice.Interactive() }

// Program adapts a run function to the service manager: Start launches
// it and returns at once; Stop cancels it and waits, within StopTimeout.
// If run ends by itself, that is a failure: Program logs it and exits
// non-zero so the manager's restart policy applies.
type Program struct {
	Run         func(ctx context.Context) error
	StopTimeout time.Duration
	Log         *zap.Logger
	// Exit ends the process after run failed; nil means os.Exit.
	Exit func(code int)

	mu       sync.Mutex
	cancel   context.CancelFunc
	done     chan struct{}
	err      error
	stopping bool
}

var _ kservice.Shutdowner = (*Program)(nil)

func (p *Program) log() *zap.Logger {
	if p.Log == nil {
		return zap.NewNop()
	}
	return p.Log
}

// Start launches Run in a goroutine.
func (p *Program) Start(kservice.Service) error {
	if p.Run == nil {
		return errors.New("service: nothing to run")
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.mu.Lock()
	p.cancel, p.done = cancel, make(chan struct{})
	done := p.done
	p.mu.Unlock()
	go func() {
		err := p.Run(ctx)
		p.mu.Lock()
		p.err = err
		stopping := p.stopping
		p.mu.Unlock()
		close(done)
		if stopping {
			return
		}
		if err == nil {
			err = errors.New("stopped by itself")
		}
		p.log().Error("encoder-bridge failed; exiting for the service manager to restart it", zap.Error(err))
		_ = p.log().Sync()
		exit := p.Exit
		if exit == nil {
			exit = os.Exit
		}
		exit(1)
	}()
	return nil
}

func (p *Program) stopTimeout() time.Duration {
	if p.StopTimeout <= 0 {
		return DefaultStopTimeout
	}
	return p.StopTimeout
}

// Stop cancels Run and waits for it, at most StopTimeout.
func (p *Program) Stop(kservice.Service) error {
	p.mu.Lock()
	p.stopping = true
	cancel, done := p.cancel, p.done
	p.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	timeout := p.stopTimeout()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.err
	case <-t.C:
		p.log().Error("did not stop in time", zap.Duration("timeout", timeout))
		return fmt.Errorf("service: did not stop within %s", timeout)
	}
}

// Shutdown is Stop: the machine is going down.
func (p *Program) Shutdown(s kservice.Service) error { return p.Stop(s) }

// RunService runs run under the service manager until it stops the
// service. The logger run gets is log with the manager's log added as a
// second sink for Warn and above.
func RunService(o Options, run func(ctx context.Context, log *zap.Logger) error, log *zap.Logger) error {
	c, err := Config(o)
	if err != nil {
		return err
	}
	p := &Program{StopTimeout: DefaultStopTimeout}
	s, err := kservice.New(p, c)
	if err != nil {
		return fmt.Errorf("service: %w", err)
	}
	if sl, err := s.Logger(nil); err == nil {
		log = Tee(log, sl)
	}
	p.Log = log
	p.Run = func(ctx context.Context) error { return run(ctx, log) }
	if handled, err := runManaged(p, log); handled {
		return err
	}
	return s.Run()
}

// Tee adds the service manager's log to log, for Warn and above.
func Tee(log *zap.Logger, sl kservice.Logger) *zap.Logger {
	sys := NewSystemCore(sl)
	return log.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core { return zapcore.NewTee(c, sys) }))
}

// systemCore writes Warn and above to a service manager's log, one line
// per entry; the manager adds its own time stamp.
type systemCore struct {
	out kservice.Logger
	enc zapcore.Encoder
}

// NewSystemCore is a zap core for the service manager's log (the Windows
// event log, syslog or the journal) taking Warn and above.
func NewSystemCore(out kservice.Logger) zapcore.Core {
	enc := zapcore.NewConsoleEncoder(zapcore.EncoderConfig{
		MessageKey:     "msg",
		NameKey:        "logger",
		LineEnding:     "",
		EncodeLevel:    zapcore.CapitalLevelEncoder,
		EncodeDuration: zapcore.StringDurationEncoder,
		EncodeName:     zapcore.FullNameEncoder,
	})
	return &systemCore{out: out, enc: enc}
}

func (c *systemCore) Enabled(l zapcore.Level) bool { return l >= zapcore.WarnLevel }

func (c *systemCore) With(fields []zapcore.Field) zapcore.Core {
	enc := c.enc.Clone()
	for _, f := range fields {
		f.AddTo(enc)
	}
	return &systemCore{out: c.out, enc: enc}
}

func (c *systemCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *systemCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	buf, err := c.enc.EncodeEntry(e, fields)
	if err != nil {
		return err
	}
	msg := strings.TrimSpace(buf.String())
	buf.Free()
	if e.Level >= zapcore.ErrorLevel {
		return c.out.Error(msg)
	}
	return c.out.Warning(msg)
}

func (c *systemCore) Sync() error { return nil }
