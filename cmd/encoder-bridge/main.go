// Command encoder-bridge encodes and scans hotel key cards on the card
// encoders (PC/SC readers) attached to this PC.
//
//	encoder-bridge readers [--json]
//	encoder-bridge encode --reader NAME --credential FILE.json [--json]
//	encoder-bridge scan --reader NAME [--json]
//	encoder-bridge keys init --out PATH
//	encoder-bridge keys rotate --keys PATH
//	encoder-bridge keys retire --keys PATH --version N [--verify-until TIME]
//	encoder-bridge keys show --keys PATH
//	encoder-bridge validate --config PATH
//	encoder-bridge run --config PATH
//	encoder-bridge verify --config PATH
//	encoder-bridge service install|uninstall|start|stop|restart|status [--config PATH]
//
// Exit status is 0 on success, 1 when the job failed, 2 on a usage error.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"go.uber.org/zap"

	"github.com/encoder-bridge/encoder-bridge/reader"
	"github.com/encoder-bridge/encoder-bridge/reader/pcsc"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, now, stop := notifyStop()
	a := &app{
		stdout:  os.Stdout,
		stderr:  os.Stderr,
		stopNow: now,
		openReaders: func(log *zap.Logger) (reader.Context, error) {
			return pcsc.Open(pcscOptions(log))
		},
	}
	code := a.run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

// app is the command with its outside world injected, so tests run it
// against the simulated reader and capture its output.
type app struct {
	stdout, stderr io.Writer
	// openReaders opens the reader layer; it logs its own transitions
	// (service down or back, context replaced) to log.
	openReaders func(log *zap.Logger) (reader.Context, error)
	// stopNow is closed by a second stop signal: run then returns without
	// waiting for the graceful stop the first one began.
	stopNow <-chan struct{}
}

// notifyStop returns a context that SIGINT or SIGTERM ends, and a channel
// that a second one closes. Under systemd the service manager's signal
// reaches both this and kardianos' handler, so the second signal works
// there too.
func notifyStop() (ctx context.Context, now <-chan struct{}, stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	c := make(chan struct{})
	go func() {
		<-sigs
		cancel()
		<-sigs
		close(c)
	}()
	return ctx, c, func() { signal.Stop(sigs); cancel() }
}

// pcscOptions sends the PC/SC layer's log lines (service down or back, a
// dead context replaced: each logged once per transition) to log.
func pcscOptions(log *zap.Logger) pcsc.Options {
	sugar := log.Named("pcsc").Sugar()
	// A refusal (polkit) needs an admin: a warning, which the service
	// manager's log gets too.
	return pcsc.Options{Logf: sugar.Infof, Warnf: sugar.Warnf}
}

// errUsage marks command-line mistakes (exit status 2).
var errUsage = errors.New("usage")

const usage = `encoder-bridge encodes and scans hotel key cards on PC/SC card encoders.

Usage:
  encoder-bridge readers [--json]
  encoder-bridge encode [--reader NAME] --credential FILE.json [--wait 30s] [--json]
  encoder-bridge scan [--reader NAME] [--wait 30s] [--json]
  encoder-bridge keys init --out PATH [--force]
  encoder-bridge keys rotate --keys PATH
  encoder-bridge keys retire --keys PATH --version N [--verify-until TIME|now]
  encoder-bridge keys show --keys PATH [--json]
  encoder-bridge validate --config PATH
  encoder-bridge run --config PATH [--shutdown-timeout 15s]
  encoder-bridge verify --config PATH
  encoder-bridge doctor --config PATH [--json]
  encoder-bridge service install|uninstall|start|stop|restart|status [--config PATH]
  encoder-bridge version

Common flags: --config PATH (YAML), --keys PATH (site key file).
Run "encoder-bridge COMMAND --help" for a command's flags.
`

func (a *app) run(ctx context.Context, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(a.stderr, usage)
		return 2
	}
	var cmd func(context.Context, []string) error
	switch args[0] {
	case "readers":
		cmd = a.cmdReaders
	case "encode":
		cmd = a.cmdEncode
	case "scan":
		cmd = a.cmdScan
	case "keys":
		cmd = a.cmdKeys
	case "validate":
		cmd = a.cmdValidate
	case "run":
		cmd = a.cmdRun
	case "verify":
		cmd = a.cmdVerify
	case "doctor":
		cmd = a.cmdDoctor
	case "service":
		cmd = a.cmdService
	case "version":
		fmt.Fprintln(a.stdout, "encoder-bridge", version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(a.stdout, usage)
		return 0
	default:
		fmt.Fprintf(a.stderr, "encoder-bridge: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	err := cmd(ctx, args[1:])
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(a.stderr, "encoder-bridge %s: %v\n", args[0], err)
		return 2
	case errors.Is(err, errReported):
		return 1
	}
	fmt.Fprintf(a.stderr, "encoder-bridge %s: %v\n", args[0], err)
	return 1
}

// errReported: the command already printed its error.
var errReported = errors.New("reported")
