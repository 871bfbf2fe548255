package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	kservice "github.com/kardianos/service"

	"github.com/encoder-bridge/encoder-bridge/service"
)

const serviceUsage = `Usage:
  encoder-bridge service install --config PATH   install the system service; it runs "encoder-bridge run --config PATH"
  encoder-bridge service uninstall               remove it
  encoder-bridge service start|stop|restart      control it
  encoder-bridge service status                  print its state; exit status 0 only while it runs
  encoder-bridge service unit --config PATH [--executable PATH] [--user NAME]
                                                 print the systemd unit install writes

The service restarts after a failure (Windows: recovery actions; systemd:
Restart=on-failure). Install, uninstall, start and stop need administrator
rights. On Linux, install writes the hardened systemd unit the Debian
package ships, running as the user encoder-bridge (created if missing),
and enables it; it starts once the configuration exists.
`

// newService opens the service handle; tests replace it.
var newService = service.New

func (a *app) cmdService(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(a.stderr, serviceUsage)
		return fmt.Errorf("%w: service needs a subcommand", errUsage)
	}
	action := args[0]
	switch action {
	case "help", "-h", "--help":
		fmt.Fprint(a.stdout, serviceUsage)
		return nil
	case "unit":
		return a.cmdServiceUnit(args[1:])
	case "install", "uninstall", "start", "stop", "restart", "status":
	default:
		return fmt.Errorf("%w: unknown service subcommand %q", errUsage, action)
	}
	var configPath string
	fs := newFlags("service "+action, a.stderr)
	fs.StringVar(&configPath, "config", "", "configuration `file` the service runs with (required for install)")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	if action == "install" {
		if configPath == "" {
			return fmt.Errorf("%w: --config PATH is required", errUsage)
		}
		// A service that cannot start is worse than none: check first.
		if _, err := loadRunConfig(configPath); err != nil {
			return err
		}
	}
	svc, err := newService(service.Options{ConfigPath: configPath})
	if err != nil {
		return err
	}
	if action == "status" {
		st, err := svc.Status()
		fmt.Fprintf(a.stdout, "%s: %s\n", service.Name, service.StatusText(st, err))
		if err != nil && !errors.Is(err, kservice.ErrNotInstalled) {
			fmt.Fprintf(a.stderr, "encoder-bridge service status: %v\n", err)
		}
		if err != nil || st != kservice.StatusRunning {
			return errReported
		}
		return nil
	}
	if err := service.Control(svc, action); err != nil {
		return fmt.Errorf("%s %s: %w", action, service.Name, err)
	}
	past := map[string]string{"install": "installed", "uninstall": "uninstalled", "start": "started", "stop": "stopped", "restart": "restarted"}
	fmt.Fprintf(a.stdout, "%s: %s\n", service.Name, past[action])
	return nil
}

// cmdServiceUnit prints the systemd unit; the Debian package is built
// with it, so the package and "service install" run the same unit.
func (a *app) cmdServiceUnit(args []string) error {
	var o service.UnitOptions
	fs := newFlags("service unit", a.stderr)
	fs.StringVar(&o.Config, "config", "", "absolute `path` of the configuration the service runs with (required)")
	fs.StringVar(&o.Executable, "executable", "", "absolute `path` of the binary (default: this one)")
	fs.StringVar(&o.User, "user", service.User, "system `account` the service runs as")
	if err := parse(fs, args); err != nil {
		return err
	}
	if o.Config == "" {
		return fmt.Errorf("%w: --config PATH is required", errUsage)
	}
	if o.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		o.Executable = exe
	}
	unit, err := service.Unit(o)
	if err != nil {
		return err
	}
	_, err = a.stdout.Write(unit)
	return err
}
