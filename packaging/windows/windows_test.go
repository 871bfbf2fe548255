package windows

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/encoder-bridge/encoder-bridge/cloud/clock"
	"github.com/encoder-bridge/encoder-bridge/cloud/cloudtest"
	"github.com/encoder-bridge/encoder-bridge/internal/leakcheck"
)

// require skips the test when a tool is missing, unless CI is set: there
// the set-up installs them, so a missing one is a failure.
func require(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s not found (CI is set: scripts/setup-debian.sh installs it)", tool)
			}
			t.Skipf("%s not found; install it (scripts/setup-debian.sh) to run this test", tool)
		}
	}
}

const (
	wine64   = "/usr/lib/wine/wine64"
	repoRoot = "../.."
)

// buildMSI builds the installer with the given version into dir.
func buildMSI(t *testing.T, dir, version string) string {
	t.Helper()
	out := filepath.Join(dir, "encoder-bridge-"+version+".msi")
	cmd := exec.Command("scripts/build-msi.sh", out)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "VERSION="+version, "MSI_VERSION="+version)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build-msi.sh: %v\n%s", err, b)
	}
	return out
}

// table returns an MSI table's rows, each a tab-separated line, without
// the three header lines msiinfo prints.
func table(t *testing.T, msi, name string) []string {
	t.Helper()
	b, err := exec.Command("msiinfo", "export", msi, name).Output()
	if err != nil {
		t.Fatalf("msiinfo export %s: %v", name, err)
	}
	lines := strings.Split(strings.TrimRight(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n"), "\n")
	if len(lines) < 3 {
		return nil
	}
	return lines[3:]
}

func hasRow(rows []string, fields ...string) bool {
	for _, r := range rows {
		ok := true
		for _, f := range fields {
			if !strings.Contains("\t"+r+"\t", "\t"+f+"\t") {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// The installer's tables say what Windows Installer will do: the service,
// its start type and arguments, stop and removal on uninstall, the
// in-place upgrade, the Event Log source, and no file of the
// administrator's (bridge.yaml, keys, token, journal) among its own.
func TestMSITables(t *testing.T) {
	require(t, "wixl", "msiinfo")
	msi := buildMSI(t, t.TempDir(), "1.2.3")

	svc := table(t, msi, "ServiceInstall")
	// ServiceType 16 own process, StartType 2 automatic, ErrorControl 1.
	if !hasRow(svc, "encoder-bridge", "16", "2", "1", "LocalSystem", `run --service --config "[CommonAppDataFolder]encoder-bridge\bridge.yaml"`) {
		t.Errorf("ServiceInstall: %q", svc)
	}
	// 0xA2: stop at install and uninstall, remove at uninstall.
	if ctl := table(t, msi, "ServiceControl"); !hasRow(ctl, "encoder-bridge", "162") {
		t.Errorf("ServiceControl: %q", ctl)
	}
	up := table(t, msi, "Upgrade")
	if !hasRow(up, "{6E2C3A1F-4B7D-4F0E-9C52-8D1A7B3E5F60}", "WIX_UPGRADE_DETECTED") || !hasRow(up, "WIX_DOWNGRADE_DETECTED") {
		t.Errorf("Upgrade: %q", up)
	}
	if seq := table(t, msi, "InstallExecuteSequence"); !hasRow(seq, "RemoveExistingProducts") {
		t.Error("no RemoveExistingProducts: an upgrade would install beside the old version")
	}
	if props := table(t, msi, "Property"); !hasRow(props, "ProductVersion", "1.2.3") {
		t.Errorf("Property: %q", props)
	}
	reg := table(t, msi, "Registry")
	const src = `SYSTEM\CurrentControlSet\Services\EventLog\Application\encoder-bridge`
	if !hasRow(reg, src, "EventMessageFile") || !hasRow(reg, src, "TypesSupported", "#7") {
		t.Errorf("Registry (Event Log source): %q", reg)
	}
	files := table(t, msi, "File")
	if !hasRow(files, "encoder-bridge.exe") || !hasRow(files, "bridge.example.yaml") || len(files) != 2 {
		t.Errorf("File: %q", files)
	}
}

// wine runs Windows programs in a prefix of its own.
type wine struct {
	t      *testing.T
	prefix string
	env    []string
}

func newWine(t *testing.T) *wine {
	t.Helper()
	w := &wine{t: t, prefix: filepath.Join(t.TempDir(), "prefix")}
	w.env = append(os.Environ(), "WINEPREFIX="+w.prefix, "WINEDEBUG=-all,err+sc", "WINEDLLOVERRIDES=mscoree,mshtml=")
	if err := os.MkdirAll(w.prefix, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.shutdown)
	w.boot("--init")
	dll := filepath.Join(w.prefix, "drive_c", "windows", "system32", "bcryptprimitives.dll")
	cc := exec.Command("x86_64-w64-mingw32-gcc", "-shared", "-O2", "-o", dll, "wineprng/bcryptprimitives.c", "-ladvapi32")
	if b, err := cc.CombinedOutput(); err != nil {
		t.Fatalf("build the ProcessPrng stand-in: %v\n%s", err, b)
	}
	return w
}

// boot starts the prefix's Windows: a persistent wineserver, which keeps
// the service manager and the services alive between commands (it
// outlives the command that starts it, so it gets no pipe of ours to hold
// open), and wineboot, which starts the automatic services.
func (w *wine) boot(args ...string) {
	w.t.Helper()
	server := exec.Command("/usr/lib/wine/wineserver", "-p")
	server.Env = w.env
	if err := server.Run(); err != nil {
		w.t.Fatalf("wineserver -p: %v", err)
	}
	if _, err := w.run(3*time.Minute, append([]string{"wineboot"}, args...)...); err != nil {
		w.t.Fatalf("wineboot: %v", err)
	}
}

func (w *wine) shutdown() {
	kill := exec.Command("/usr/lib/wine/wineserver", "-k")
	kill.Env = w.env
	_ = kill.Run()
}

// reboot restarts the prefix's Windows. Wine's service manager knows a
// service that Wine's msiexec registered only after this, where Windows
// knows it at once.
func (w *wine) reboot() {
	w.t.Helper()
	w.shutdown()
	w.boot()
}

// run runs a Windows program and returns its standard output; the error
// carries its standard error.
func (w *wine) run(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, wine64, args...)
	cmd.Env = w.env
	// Files, not pipes: Wine's helper processes inherit them and outlive
	// the command, and a pipe would keep Wait waiting for them.
	stdout, err := os.CreateTemp(w.t.TempDir(), "stdout")
	if err != nil {
		w.t.Fatal(err)
	}
	defer stdout.Close()
	stderr, err := os.CreateTemp(w.t.TempDir(), "stderr")
	if err != nil {
		w.t.Fatal(err)
	}
	defer stderr.Close()
	cmd.Stdout, cmd.Stderr = stdout, stderr
	err = cmd.Run()
	out, _ := os.ReadFile(stdout.Name())
	if err != nil {
		errOut, _ := os.ReadFile(stderr.Name())
		err = fmt.Errorf("wine %s: %w\n%s%s", strings.Join(args, " "), err, out, errOut)
	}
	return string(out), err
}

func (w *wine) must(args ...string) string {
	w.t.Helper()
	out, err := w.run(2*time.Minute, args...)
	if err != nil {
		w.t.Fatal(err)
	}
	return out
}

// path is a Windows path in the prefix, as a Linux path.
func (w *wine) path(parts ...string) string {
	return filepath.Join(append([]string{w.prefix, "drive_c"}, parts...)...)
}

// waitFor polls cond until it holds or the bound passes; the bound only
// keeps a broken build from hanging CI.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(90 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 90 s", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// The Windows build as a hotel installs it: the MSI under Wine, the
// service started by the service manager and connected to a cloud on
// loopback, an upgrade in place that keeps configuration, keys, token and
// journal, and an uninstall that removes the service and the program but
// none of those.
func TestWindowsServiceUnderWine(t *testing.T) {
	require(t, wine64, "wixl", "x86_64-w64-mingw32-gcc")
	dir := t.TempDir()
	v1, v2 := buildMSI(t, dir, "1.0.0"), buildMSI(t, dir, "1.0.1")
	w := newWine(t)
	env := cloudtest.New(t, cloudtest.Options{Clock: clock.NewFake(time.Now())})

	exe := `C:\Program Files\encoder-bridge\encoder-bridge.exe`
	w.must("msiexec", "/i", v1, "/qn")
	for _, p := range [][]string{{"Program Files", "encoder-bridge", "encoder-bridge.exe"}, {"ProgramData", "encoder-bridge", "bridge.example.yaml"}} {
		if _, err := os.Stat(w.path(p...)); err != nil {
			t.Fatalf("after install: %v", err)
		}
	}
	if out := w.must(exe, "version"); strings.TrimSpace(out) != "encoder-bridge 1.0.0" {
		t.Fatalf("version: %q", out)
	}
	// Wine's msiexec returns before the last actions (the service's
	// registration) are done.
	var query string
	waitFor(t, "the service is registered", func() bool {
		query, _ = w.run(time.Minute, "sc", "query", "encoder-bridge")
		return strings.Contains(query, "SERVICE_NAME: encoder-bridge")
	})
	if !strings.Contains(query, "STOPPED") {
		t.Fatalf("the installer must register the service without starting it:\n%s", query)
	}

	// The administrator's part: key file, token, configuration.
	data := w.path("ProgramData", "encoder-bridge")
	w.must(exe, "keys", "init", "--out", `C:\ProgramData\encoder-bridge\keys.json`)
	if err := os.WriteFile(filepath.Join(data, "bridge.token"), []byte(env.BridgeToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf("version: 1\nkeys: keys.json\ncloud:\n  url: %s\n  bridge_id: %s\n  token_file: bridge.token\n",
		strings.Replace(env.URL(), "http://", "ws://", 1), env.BridgeID)
	if err := os.WriteFile(filepath.Join(data, "bridge.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	const cfgWin = `C:\ProgramData\encoder-bridge\bridge.yaml`
	if out := w.must(exe, "validate", "--config", cfgWin); !strings.Contains(out, "valid") {
		t.Fatalf("validate: %q", out)
	}

	// The doctor under Wine: no PC/SC (Wine's winscard does not reach
	// pcscd), the cloud checks all pass.
	out, err := w.run(2*time.Minute, exe, "doctor", "--json", "--config", cfgWin)
	var doc struct {
		Checks []struct{ Check, Status, Detail string } `json:"checks"`
	}
	if jerr := json.Unmarshal([]byte(out), &doc); jerr != nil {
		t.Fatalf("doctor --json: %v (%v)\n%s", jerr, err, out)
	}
	status := map[string]string{}
	for _, c := range doc.Checks {
		status[c.Check] = c.Status
	}
	for _, c := range []string{"configuration", "key file", "token file", "cloud TCP", "cloud token", "clock"} {
		if status[c] != "pass" {
			t.Errorf("doctor under Wine: %s is %q, want pass (%+v)", c, status[c], doc.Checks)
		}
	}

	// At the next boot the service manager starts it (automatic start);
	// it connects with no readers. Stopped and started by the manager.
	w.reboot()
	waitFor(t, "the service starts at boot and connects to the cloud", func() bool { return env.Server.Online(env.BridgeID) })
	waitFor(t, "the service manager reports it running", func() bool {
		out, _ := w.run(time.Minute, "sc", "query", "encoder-bridge")
		return strings.Contains(out, "RUNNING")
	})
	// Wine's sc exits non-zero when the state it asked for is still
	// pending; what counts is the state reached.
	if out, err := w.run(time.Minute, "sc", "stop", "encoder-bridge"); err != nil {
		t.Logf("sc stop: %s %v", out, err)
	}
	waitFor(t, "the service stops and disconnects", func() bool {
		out, _ := w.run(time.Minute, "sc", "query", "encoder-bridge")
		return strings.Contains(out, "STOPPED") && !env.Server.Online(env.BridgeID)
	})
	_, _ = w.run(time.Minute, "sc", "start", "encoder-bridge")
	waitFor(t, "the service starts again", func() bool { return env.Server.Online(env.BridgeID) })
	if _, err := os.Stat(filepath.Join(data, "journal.db")); err != nil {
		t.Errorf("the service's journal: %v", err)
	}
	checkServiceLog(t, filepath.Join(data, "logs", "encoder-bridge.log"), env.BridgeToken, filepath.Join(data, "keys.json"))

	keep := map[string][]byte{}
	for _, f := range []string{"bridge.yaml", "keys.json", "bridge.token"} {
		b, err := os.ReadFile(filepath.Join(data, f))
		if err != nil {
			t.Fatal(err)
		}
		keep[f] = b
	}

	// Upgrade in place while it runs: stopped, replaced, registered again.
	w.must("msiexec", "/i", v2, "/qn")
	waitFor(t, "the upgrade replaces the program", func() bool {
		out, _ := w.run(time.Minute, exe, "version")
		return strings.TrimSpace(out) == "encoder-bridge 1.0.1"
	})
	waitFor(t, "the upgrade registers the service again", func() bool {
		out, _ := w.run(time.Minute, "sc", "query", "encoder-bridge")
		return strings.Contains(out, "SERVICE_NAME: encoder-bridge")
	})
	for f, b := range keep {
		if now, err := os.ReadFile(filepath.Join(data, f)); err != nil || !bytes.Equal(now, b) {
			t.Errorf("the upgrade changed %s: %v", f, err)
		}
	}
	w.reboot()
	waitFor(t, "the upgraded service starts at boot and connects", func() bool { return env.Server.Online(env.BridgeID) })

	// Uninstall: the service stops and goes, the program goes, the
	// property's files stay.
	w.must("msiexec", "/x", v2, "/qn")
	waitFor(t, "the service disconnects", func() bool { return !env.Server.Online(env.BridgeID) })
	waitFor(t, "the program is removed", func() bool {
		_, err := os.Stat(w.path("Program Files", "encoder-bridge", "encoder-bridge.exe"))
		return errors.Is(err, os.ErrNotExist)
	})
	waitFor(t, "the service is removed", func() bool {
		out, _ := w.run(time.Minute, "sc", "query", "encoder-bridge")
		return !strings.Contains(out, "SERVICE_NAME: encoder-bridge")
	})
	for _, f := range []string{"bridge.yaml", "keys.json", "bridge.token", "journal.db"} {
		if _, err := os.Stat(filepath.Join(data, f)); err != nil {
			t.Errorf("uninstall removed %s: %v", f, err)
		}
	}
}

// checkServiceLog: the service's standard error goes nowhere on Windows,
// so its log is the file under ProgramData\encoder-bridge\logs. Two
// starts and the stop between them are in it, in the bridge's own
// format, and neither the token nor a key is.
func checkServiceLog(t *testing.T, path, token, keyFile string) {
	t.Helper()
	var text string
	// The line for the start that just connected may still be in flight.
	waitFor(t, "the log file has both starts", func() bool {
		b, err := os.ReadFile(path)
		text = string(b)
		return err == nil && strings.Count(text, "encoder-bridge starting") >= 2
	})
	for _, want := range []string{"INFO\t", "encoder-bridge stopped", `"bridge_id"`, "link"} {
		if !strings.Contains(text, want) {
			t.Errorf("the log file lacks %q:\n%s", want, text)
		}
	}
	s := leakcheck.New()
	s.Text("the bridge token", token)
	b, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	var keys struct {
		Versions []struct {
			MACKey string `json:"mac_key"`
			DivKey string `json:"div_key"`
		} `json:"versions"`
	}
	if err := json.Unmarshal(b, &keys); err != nil || len(keys.Versions) == 0 {
		t.Fatalf("key file: %v", err)
	}
	for _, v := range keys.Versions {
		for _, k := range []string{v.MACKey, v.DivKey} {
			kb, err := hex.DecodeString(k)
			if err != nil {
				t.Fatal(err)
			}
			s.Bytes("a site key", kb)
		}
	}
	for _, leak := range s.Find("the service's log file", text) {
		t.Error(leak)
	}
}

// The log file's rotation on Windows' file system semantics (renaming
// closed files over older ones, the protected directory): the
// internal/logfile tests, built for Windows, run under Wine.
func TestLogFileUnderWine(t *testing.T) {
	require(t, wine64, "x86_64-w64-mingw32-gcc")
	exe := filepath.Join(t.TempDir(), "logfile.test.exe")
	build := exec.Command("go", "test", "-c", "-o", exe, "./internal/logfile")
	build.Dir = repoRoot
	build.Env = append(os.Environ(), "GOOS=windows", "GOARCH=amd64", "CGO_ENABLED=0")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the tests for Windows: %v\n%s", err, b)
	}
	w := newWine(t)
	// TestImports runs go list, which is not in the prefix.
	out, err := w.run(5*time.Minute, exe, "-test.v", "-test.skip", "TestImports")
	if err != nil {
		t.Fatalf("the log file's tests under Wine: %v", err)
	}
	if !strings.Contains(out, "--- PASS: TestRotation") || !strings.Contains(out, "--- PASS: TestRotationBlocked") || !strings.HasSuffix(strings.TrimSpace(out), "PASS") {
		t.Fatalf("the log file's tests under Wine:\n%s", out)
	}
	t.Logf("under Wine:\n%s", out)
}
