package service

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	kservice "github.com/kardianos/service"
)

// fakeSystem is the installer's outside world: a root directory, the
// commands it ran and the accounts that exist.
type fakeSystem struct {
	root  string
	cmds  []string
	users map[string]bool
}

func newFakeInstaller(t *testing.T, o Options, systemd bool) (*unitInstaller, *fakeSystem) {
	t.Helper()
	fs := &fakeSystem{root: t.TempDir(), users: map[string]bool{}}
	if systemd {
		if err := os.MkdirAll(filepath.Join(fs.root, "run/systemd/system"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	i := newUnitInstaller(o)
	i.root = fs.root
	i.run = func(name string, args ...string) error {
		cmd := name + " " + strings.Join(args, " ")
		fs.cmds = append(fs.cmds, cmd)
		if name == "useradd" {
			fs.users[args[len(args)-1]] = true
		}
		return nil
	}
	i.lookupUser = func(name string) (int, int, error) {
		if !fs.users[name] {
			return 0, 0, errors.New("unknown user")
		}
		return os.Getuid(), os.Getgid(), nil
	}
	i.lookupGroup = func(name string) (int, error) {
		if !fs.users[name] {
			return 0, errors.New("unknown group")
		}
		return os.Getgid(), nil
	}
	return i, fs
}

func TestInstallWritesTheUnit(t *testing.T) {
	for _, tt := range []struct {
		name     string
		systemd  bool
		haveUser bool
		want     []string
	}{
		{name: "systemd running, new user", systemd: true, want: []string{
			"useradd --system --user-group --home-dir /var/lib/encoder-bridge --no-create-home --shell /usr/sbin/nologin --comment Encoder Bridge encoder-bridge",
			"systemctl daemon-reload",
			"systemctl enable encoder-bridge.service",
		}},
		// A container or a chroot: no manager to reload, enable only links.
		{name: "no systemd, user exists", haveUser: true, want: []string{
			"systemctl enable encoder-bridge.service",
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			i, fs := newFakeInstaller(t, Options{ConfigPath: "/etc/encoder-bridge/encoder-bridge.yaml", Executable: "/usr/local/bin/encoder-bridge"}, tt.systemd)
			fs.users[User] = tt.haveUser
			if err := i.install(); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(fs.cmds, tt.want) {
				t.Errorf("commands\n%q\nwant\n%q", fs.cmds, tt.want)
			}
			got, err := os.ReadFile(filepath.Join(fs.root, UnitFile))
			if err != nil {
				t.Fatal(err)
			}
			want, _ := Unit(UnitOptions{Executable: "/usr/local/bin/encoder-bridge", Config: "/etc/encoder-bridge/encoder-bridge.yaml"})
			if string(got) != string(want) {
				t.Errorf("installed unit differs from Unit():\n%s", got)
			}
			st, err := os.Stat(filepath.Join(fs.root, ConfigDir))
			if err != nil || st.Mode().Perm() != 0o750 || !st.IsDir() {
				t.Errorf("config dir: %v, %v", st, err)
			}
			st, err = os.Stat(filepath.Join(fs.root, UnitFile))
			if err != nil || st.Mode().Perm() != 0o644 {
				t.Errorf("unit file: %v, %v", st, err)
			}
		})
	}
}

func TestInstallRefuses(t *testing.T) {
	t.Run("twice", func(t *testing.T) {
		i, fs := newFakeInstaller(t, Options{ConfigPath: "/etc/encoder-bridge/encoder-bridge.yaml", Executable: "/usr/bin/encoder-bridge"}, true)
		if err := i.install(); err != nil {
			t.Fatal(err)
		}
		fs.cmds = nil
		if err := i.install(); err == nil || !strings.Contains(err.Error(), "already exists") {
			t.Fatalf("second install = %v", err)
		}
		if len(fs.cmds) != 0 {
			t.Errorf("second install ran %q", fs.cmds)
		}
	})
	// ProtectHome=yes hides /home and /root from the service: a unit
	// pointing there would never start.
	for _, p := range []string{"/root/bridge.yaml", "/home/it/bridge.yaml"} {
		t.Run(p, func(t *testing.T) {
			i, fs := newFakeInstaller(t, Options{ConfigPath: p, Executable: "/usr/bin/encoder-bridge"}, true)
			err := i.install()
			if err == nil || !strings.Contains(err.Error(), "ProtectHome") {
				t.Fatalf("install = %v", err)
			}
			if _, err := os.Stat(filepath.Join(fs.root, UnitFile)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("unit written: %v", err)
			}
		})
	}
}

func TestUninstall(t *testing.T) {
	for _, systemd := range []bool{true, false} {
		i, fs := newFakeInstaller(t, Options{ConfigPath: "/etc/encoder-bridge/encoder-bridge.yaml", Executable: "/usr/bin/encoder-bridge"}, systemd)
		if err := i.uninstall(); !errors.Is(err, kservice.ErrNotInstalled) {
			t.Fatalf("uninstall before install = %v", err)
		}
		if err := i.install(); err != nil {
			t.Fatal(err)
		}
		fs.cmds = nil
		if err := i.uninstall(); err != nil {
			t.Fatal(err)
		}
		want := []string{"systemctl disable encoder-bridge.service"}
		if systemd {
			want = []string{"systemctl stop encoder-bridge.service", "systemctl disable encoder-bridge.service", "systemctl daemon-reload"}
		}
		if !slices.Equal(fs.cmds, want) {
			t.Errorf("systemd %v: commands %q, want %q", systemd, fs.cmds, want)
		}
		if _, err := os.Stat(filepath.Join(fs.root, UnitFile)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("unit left: %v", err)
		}
	}
}

// New on Linux hands install to the unit installer, not to kardianos.
func TestNewInstallsTheUnit(t *testing.T) {
	s, err := New(Options{ConfigPath: "/etc/encoder-bridge/encoder-bridge.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.(*unitService); !ok {
		t.Fatalf("New = %T, want *unitService", s)
	}
}
