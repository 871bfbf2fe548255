package service

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	kservice "github.com/kardianos/service"

	"github.com/encoder-bridge/encoder-bridge/internal/durable"
)

// UnitFile is where install writes the unit. /etc/systemd/system takes
// precedence over the Debian package's copy in /usr/lib/systemd/system.
const UnitFile = "/etc/systemd/system/encoder-bridge.service"

// ConfigDir is the unit's ConfigurationDirectory.
const ConfigDir = "/etc/encoder-bridge"

// platformService replaces kardianos' systemd install, which writes a
// unit that runs as root with no sandbox, by the hardened unit. Start,
// stop and status stay kardianos'.
func platformService(s kservice.Service, o Options) (kservice.Service, error) {
	return &unitService{Service: s, inst: newUnitInstaller(o)}, nil
}

type unitService struct {
	kservice.Service
	inst *unitInstaller
}

func (u *unitService) Install() error   { return u.inst.install() }
func (u *unitService) Uninstall() error { return u.inst.uninstall() }

// unitInstaller installs the unit under root ("/" outside tests).
type unitInstaller struct {
	o    Options
	root string
	run  func(name string, args ...string) error
	// lookupUser and lookupGroup report whether the account exists.
	lookupUser  func(name string) (uid, gid int, err error)
	lookupGroup func(name string) (gid int, err error)
}

func newUnitInstaller(o Options) *unitInstaller {
	return &unitInstaller{
		o:    o,
		root: "/",
		run: func(name string, args ...string) error {
			out, err := exec.Command(name, args...).CombinedOutput()
			if err != nil {
				return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
			}
			return nil
		},
		lookupUser: func(name string) (int, int, error) {
			u, err := user.Lookup(name)
			if err != nil {
				return 0, 0, err
			}
			uid, _ := strconv.Atoi(u.Uid)
			gid, _ := strconv.Atoi(u.Gid)
			return uid, gid, nil
		},
		lookupGroup: func(name string) (int, error) {
			g, err := user.LookupGroup(name)
			if err != nil {
				return 0, err
			}
			return strconv.Atoi(g.Gid)
		},
	}
}

func (i *unitInstaller) path(p string) string { return filepath.Join(i.root, p) }

// systemdRunning reports whether systemd is the running init, the test
// sd_booted(3) uses. Without it, enable still links the unit for the next
// boot, and there is no manager to reload.
func (i *unitInstaller) systemdRunning() bool {
	_, err := os.Stat(i.path("/run/systemd/system"))
	return err == nil
}

// protectedHome are the trees ProtectHome= hides from the service.
var protectedHome = []string{"/home/", "/root/", "/run/user/"}

func (i *unitInstaller) install() error {
	if i.o.ConfigPath == "" {
		return errors.New("service: install needs the configuration path")
	}
	config, err := filepath.Abs(i.o.ConfigPath)
	if err != nil {
		return fmt.Errorf("service: %w", err)
	}
	for _, p := range protectedHome {
		if strings.HasPrefix(config, p) {
			return fmt.Errorf("service: the configuration %s is under %s, which the service cannot see (ProtectHome=yes); put it in %s", config, p, ConfigDir)
		}
	}
	exe := i.o.Executable
	if exe == "" {
		if exe, err = os.Executable(); err != nil {
			return fmt.Errorf("service: %w", err)
		}
	}
	name := i.o.UserName
	if name == "" {
		name = User
	}
	unit, err := Unit(UnitOptions{Executable: exe, Config: config, User: name})
	if err != nil {
		return err
	}
	unitFile := i.path(UnitFile)
	if _, err := os.Stat(unitFile); err == nil {
		return fmt.Errorf("service: %s already exists: uninstall first", UnitFile)
	}

	if err := i.ensureUser(name); err != nil {
		return err
	}
	gid, err := i.lookupGroup(name)
	if err != nil {
		return fmt.Errorf("service: group %s: %w", name, err)
	}
	// The service reads its configuration through the group; key and
	// token files stay 0600 and owned by the service user.
	dir := i.path(ConfigDir)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("service: %w", err)
	}
	if err := os.Chown(dir, 0, gid); err != nil {
		return fmt.Errorf("service: %w", err)
	}
	if err := os.Chmod(dir, 0o750); err != nil {
		return fmt.Errorf("service: %w", err)
	}

	if err := os.MkdirAll(filepath.Dir(unitFile), 0o755); err != nil {
		return fmt.Errorf("service: %w", err)
	}
	if err := durable.WriteFile(unitFile, unit, 0o644); err != nil {
		return fmt.Errorf("service: %w", err)
	}
	if i.systemdRunning() {
		if err := i.run("systemctl", "daemon-reload"); err != nil {
			return fmt.Errorf("service: %w", err)
		}
	}
	// Enabled, not started: it starts at boot, or with "service start",
	// and not before the configuration exists (ConditionPathExists).
	if err := i.systemctl("enable", Name+".service"); err != nil {
		return fmt.Errorf("service: %w", err)
	}
	return nil
}

// systemctl runs systemctl. Without a running systemd, enable and
// disable still edit the links, offline.
func (i *unitInstaller) systemctl(args ...string) error {
	return i.run("systemctl", args...)
}

func (i *unitInstaller) ensureUser(name string) error {
	if _, _, err := i.lookupUser(name); err == nil {
		return nil
	}
	if err := i.run("useradd", "--system", "--user-group", "--home-dir", "/var/lib/"+Name,
		"--no-create-home", "--shell", "/usr/sbin/nologin", "--comment", "Encoder Bridge", name); err != nil {
		return fmt.Errorf("service: creating the user %s: %w", name, err)
	}
	return nil
}

func (i *unitInstaller) uninstall() error {
	unitFile := i.path(UnitFile)
	if _, err := os.Stat(unitFile); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("service: %s: %w", UnitFile, kservice.ErrNotInstalled)
	}
	if i.systemdRunning() {
		// A running service would go on running from a deleted unit.
		if err := i.run("systemctl", "stop", Name+".service"); err != nil {
			return fmt.Errorf("service: %w", err)
		}
	}
	if err := i.systemctl("disable", Name+".service"); err != nil {
		return fmt.Errorf("service: %w", err)
	}
	if err := os.Remove(unitFile); err != nil {
		return fmt.Errorf("service: %w", err)
	}
	if i.systemdRunning() {
		if err := i.run("systemctl", "daemon-reload"); err != nil {
			return fmt.Errorf("service: %w", err)
		}
	}
	return nil
}
