package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	kservice "github.com/kardianos/service"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/encoder-bridge/encoder-bridge/bridge/config"
	"github.com/encoder-bridge/encoder-bridge/cloud/cloudtest"
	"github.com/encoder-bridge/encoder-bridge/internal/syncbuf"
	"github.com/encoder-bridge/encoder-bridge/protocol"
	"github.com/encoder-bridge/encoder-bridge/reader"
	"github.com/encoder-bridge/encoder-bridge/reader/sim/chip"
	"github.com/encoder-bridge/encoder-bridge/service"
)

const cloudToken = "cmd-test-token-42"

// job1 is the encode job the tests offer the bridge's first encoder.
func job1(encoderID protocol.EncoderID) *protocol.Job {
	seq := uint32(2)
	return &protocol.Job{JobID: "job-1", ActionAttemptID: "aa-1", Kind: protocol.JobEncode, EncoderID: encoderID,
		Deadline: time.Now().Add(30 * time.Second), Credential: &protocol.Credential{
			CredentialID: "6f1c2d8e-3a4b-4c5d-9e6f-708192a3b4c5", CardNumber: "100234", CardFunctionType: "staff",
			StartsAt: "2026-11-23T15:00:00Z", EndsAt: "2036-11-26T11:00:00Z", IssueSequence: &seq}}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// bridgeConfig writes a configuration for the fake cloud, with a key file
// and a token file, and returns its path.
func (c *cli) bridgeConfig(cloudURL string) string {
	keys := c.keys()
	token := c.file("token", cloudToken+"\n")
	return c.file("bridge.yaml", "version: 1\nkeys: "+keys+"\nlog:\n  level: debug\ncloud:\n  url: "+cloudURL+
		"\n  bridge_id: desk-1\n  token_file: "+token+"\nstate_dir: "+filepath.Join(c.dir, "state")+"\n")
}

func (c *cli) runCtx(ctx context.Context, args ...string) (code int, stdout, stderr string) {
	var out, errb syncbuf.Buffer
	a := &app{stdout: &out, stderr: &errb, openReaders: func(log *zap.Logger) (reader.Context, error) {
		// As pcsc's own lines would go.
		pcscOptions(log).Logf("pcsc: %s available again", "test reader layer")
		return noClose{c.sim}, nil
	}}
	code = a.run(ctx, args)
	return code, out.String(), errb.String()
}

func TestRunEndToEnd(t *testing.T) {
	cloud := cloudtest.NewFakeCloud(t, cloudToken)
	c := newCLI(t)
	card, _ := chip.New("mifare_classic_1k", nil)
	c.sim.Plug("ACS ACR1252 00").Insert(card)
	cfg := c.bridgeConfig(cloud.URL())
	healthAddr := freeLoopbackAddr(t)
	appendFile(t, cfg, "health:\n  listen: "+healthAddr+"\n")

	ctx, cancel := context.WithCancel(context.Background())
	type res struct {
		code           int
		stdout, stderr string
	}
	done := make(chan res, 1)
	go func() {
		code, out, errs := c.runCtx(ctx, "run", "--config", cfg)
		done <- res{code, out, errs}
	}()
	cc := cloud.Next(t)
	if len(cc.Hello.Encoders) != 1 {
		t.Fatalf("hello encoders %+v", cc.Hello.Encoders)
	}
	cc.Job(job1(cc.Hello.Encoders[0].ID))
	if r := cc.ExpectResult(t, "job-1"); r.Error != nil || r.Card == nil || !r.Card.Valid || r.Card.Technology != "mifare_classic_1k" {
		t.Fatalf("result %+v / %+v", r.Card, r.Error)
	}
	// Linked and with its encoder, the bridge is ready.
	resp, err := http.Get("http://" + healthAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	var ready map[string]any
	json.NewDecoder(resp.Body).Decode(&ready)
	resp.Body.Close()
	if resp.StatusCode != 200 || ready["connected"] != true || ready["encoders"] != float64(1) {
		t.Fatalf("readyz: %d %v", resp.StatusCode, ready)
	}
	// The metrics and the status page count the job, and show neither
	// the card's UID nor the credential.
	for path, wants := range map[string][]string{
		"/metrics": {`encoder_bridge_jobs_total{outcome="ok",type="encode"} 1`, "encoder_bridge_link_up 1", `encoder_bridge_build_info{goversion=`},
		"/":        {"ACS ACR1252 00", `data-state="up"`, `data-outcome="ok"`},
	} {
		resp, err := http.Get("http://" + healthAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, w := range wants {
			if !strings.Contains(string(b), w) {
				t.Errorf("%s lacks %q:\n%s", path, w, b)
			}
		}
		for _, secret := range []string{uidOf(card), "6f1c2d8e", cloudToken} {
			if strings.Contains(strings.ToUpper(string(b)), strings.ToUpper(secret)) {
				t.Errorf("%s shows %q", path, secret)
			}
		}
	}
	cancel()
	var r res
	select {
	case r = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("run did not stop")
	}
	if r.code != 0 {
		t.Fatalf("run exit %d\n%s", r.code, r.stderr)
	}
	t.Logf("run log:\n%s", r.stderr)
	if strings.Contains(r.stderr, cloudToken) {
		t.Fatal("the log shows the token")
	}
	if strings.Contains(strings.ToUpper(r.stderr), strings.ToUpper(uidOf(card))) {
		t.Fatal("the log shows the card UID")
	}
	if !strings.Contains(r.stderr, "pcsc: test reader layer available again") {
		t.Errorf("the reader layer's log lines do not reach the run's log:\n%s", r.stderr)
	}
	if !strings.Contains(r.stderr, "job done") || !strings.Contains(r.stderr, `"job_id": "job-1"`) {
		t.Fatalf("log lacks the job:\n%s", r.stderr)
	}
	if _, err := os.Stat(filepath.Join(c.dir, "state", "journal.db")); err != nil {
		t.Fatalf("journal: %v", err)
	}
}

func uidOf(card chip.Card) string {
	const hexd = "0123456789ABCDEF"
	var b strings.Builder
	for _, x := range card.UID() {
		b.WriteByte(hexd[x>>4])
		b.WriteByte(hexd[x&15])
	}
	return b.String()
}

func TestRunRefusesBadSetup(t *testing.T) {
	c := newCLI(t)
	keys := c.keys()
	token := c.file("token", cloudToken)
	tests := []struct {
		name, yaml, want string
		code             int
	}{
		{"no cloud", "version: 1\nkeys: " + keys + "\n", "cloud.url: required", 1},
		{"remote ws", "version: 1\nkeys: " + keys + "\ncloud:\n  url: ws://cloud.example.com\n  bridge_id: b\n  token_file: " + token + "\n", "cloud.url: ws:// (unencrypted)", 1},
		{"missing CA file", "version: 1\nkeys: " + keys + "\ncloud:\n  url: wss://127.0.0.1:9\n  bridge_id: b\n  token_file: " + token + "\n  ca_file: " + filepath.Join(c.dir, "none.pem") + "\nstate_dir: " + c.dir + "\n", "cloud.ca_file", 1},
		{"missing token file", "version: 1\nkeys: " + keys + "\ncloud:\n  url: ws://127.0.0.1:9\n  bridge_id: b\n  token_file: " + filepath.Join(c.dir, "none") + "\nstate_dir: " + c.dir + "\n", "cloud.token_file", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := c.run("run", "--config", c.file("r.yaml", tt.yaml))
			if code != tt.code || !strings.Contains(stderr, tt.want) {
				t.Fatalf("exit %d, stderr %q; want %d with %q", code, stderr, tt.code, tt.want)
			}
		})
	}
	if code, _, _ := c.run("run"); code != 2 {
		t.Fatalf("run without --config: exit %d", code)
	}
	if runtime.GOOS != "windows" {
		os.Chmod(token, 0o644)
		cfg := c.file("r.yaml", "version: 1\nkeys: "+keys+"\ncloud:\n  url: ws://127.0.0.1:9\n  bridge_id: b\n  token_file: "+token+"\nstate_dir: "+c.dir+"\n")
		code, _, stderr := c.run("run", "--config", cfg)
		if code != 1 || !strings.Contains(stderr, "chmod 600") {
			t.Fatalf("group-readable token: exit %d, %q", code, stderr)
		}
		os.Chmod(token, 0o600)
	}
}

// A revoked token is fatal: run exits non-zero rather than retrying.
func TestRunAuthRevoked(t *testing.T) {
	cloud := cloudtest.NewFakeCloud(t, cloudToken)
	cloud.Refuse.Store(401)
	c := newCLI(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	code, _, stderr := c.runCtx(ctx, "run", "--config", c.bridgeConfig(cloud.URL()))
	if code != 1 || !strings.Contains(stderr, "auth revoked") {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
}

func TestVerify(t *testing.T) {
	cloud := cloudtest.NewFakeCloud(t, cloudToken)
	c := newCLI(t)
	c.sim.Plug("ACS ACR1252 00")
	cfg := c.bridgeConfig(cloud.URL())
	code, out, stderr := c.run("verify", "--config", cfg)
	t.Logf("verify:\n%s", out)
	if code != 0 {
		t.Fatalf("verify: exit %d\n%s\n%s", code, out, stderr)
	}
	for _, want := range []string{"configuration   ok", "key file        ok", "token file      ok", "readers         ok: 1 attached", "cloud           ok:", `welcomed bridge "desk-1"`, "All checks passed."} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if cloud.Connections() != 1 {
		t.Fatalf("verify said hello %d times, want once", cloud.Connections())
	}
	if h := cloud.Next(t).Hello; h.BridgeID != "desk-1" || len(h.Encoders) != 1 || h.Encoders[0].ReaderName != "ACS ACR1252 00" {
		t.Fatalf("verify's hello %+v", h)
	}

	// Several instances: the first refuses (gone), the second welcomes.
	dead := "ws://" + freeLoopbackAddr(t)
	several := c.file("several.yaml", strings.Replace(mustRead(t, cfg), "url: "+cloud.URL(), "urls: ["+dead+", "+cloud.URL()+"]", 1))
	code, out, stderr = c.run("verify", "--config", several)
	if code != 0 || !strings.Contains(out, cloud.URL()) || !strings.Contains(out, "welcomed bridge") || !strings.Contains(out, "after 1 URL(s) that did not") || !strings.Contains(out, dead) {
		t.Fatalf("verify with the first of two URLs down: exit %d\n%s\n%s", code, out, stderr)
	}
	cloud.Next(t)

	cloud.Refuse.Store(401)
	code, out, _ = c.run("verify", "--config", cfg)
	if code != 1 || !strings.Contains(out, "cloud           FAILED: link: auth revoked") || !strings.Contains(out, "1 check(s) did not pass") {
		t.Fatalf("verify with a revoked token: exit %d\n%s", code, out)
	}

	code, out, _ = c.run("verify", "--config", c.file("bad.yaml", "version: 1\ncloud:\n  url: http://x\n"))
	if code != 1 || !strings.Contains(out, "configuration   FAILED") || !strings.Contains(out, "cloud           skipped") {
		t.Fatalf("verify with a bad configuration: exit %d\n%s", code, out)
	}
}

// fakeService stands in for the operating system's service manager.
type fakeService struct {
	status  kservice.Status
	err     error
	actions []string
}

func (f *fakeService) Run() error                                         { return nil }
func (f *fakeService) Start() error                                       { f.actions = append(f.actions, "start"); return nil }
func (f *fakeService) Stop() error                                        { f.actions = append(f.actions, "stop"); return nil }
func (f *fakeService) Restart() error                                     { f.actions = append(f.actions, "restart"); return nil }
func (f *fakeService) Install() error                                     { f.actions = append(f.actions, "install"); return nil }
func (f *fakeService) Uninstall() error                                   { f.actions = append(f.actions, "uninstall"); return nil }
func (f *fakeService) Logger(chan<- error) (kservice.Logger, error)       { return nil, nil }
func (f *fakeService) SystemLogger(chan<- error) (kservice.Logger, error) { return nil, nil }
func (f *fakeService) String() string                                     { return "encoder-bridge" }
func (f *fakeService) Platform() string                                   { return "fake" }
func (f *fakeService) Status() (kservice.Status, error)                   { return f.status, f.err }

func TestServiceCommands(t *testing.T) {
	fake := &fakeService{}
	var got service.Options
	old := newService
	newService = func(o service.Options) (kservice.Service, error) { got = o; return fake, nil }
	defer func() { newService = old }()
	c := newCLI(t)

	fake.status = kservice.StatusRunning
	if code, out, _ := c.run("service", "status"); code != 0 || !strings.Contains(out, "running") {
		t.Fatalf("status running: exit %d %q", code, out)
	}
	fake.status = kservice.StatusStopped
	if code, out, _ := c.run("service", "status"); code != 1 || !strings.Contains(out, "stopped") {
		t.Fatalf("status stopped: exit %d %q", code, out)
	}
	fake.err = kservice.ErrNotInstalled
	if code, out, _ := c.run("service", "status"); code != 1 || !strings.Contains(out, "not installed") {
		t.Fatalf("status not installed: exit %d %q", code, out)
	}
	fake.err = nil

	if code, _, _ := c.run("service", "install"); code != 2 {
		t.Fatalf("install without --config: exit %d", code)
	}
	if code, _, stderr := c.run("service", "install", "--config", c.file("x.yaml", "version: 1\n")); code != 1 || !strings.Contains(stderr, "cloud.url") {
		t.Fatalf("install with a configuration that cannot run: exit %d %q", code, stderr)
	}
	cfg := c.bridgeConfig("wss://cloud.example.com")
	if code, out, stderr := c.run("service", "install", "--config", cfg); code != 0 || !strings.Contains(out, "installed") {
		t.Fatalf("install: exit %d %q %q", code, out, stderr)
	}
	if got.ConfigPath != cfg {
		t.Fatalf("service options %+v", got)
	}
	for _, a := range []string{"start", "stop", "restart", "uninstall"} {
		if code, _, stderr := c.run("service", a); code != 0 {
			t.Fatalf("%s: exit %d %s", a, code, stderr)
		}
	}
	if strings.Join(fake.actions, ",") != "install,start,stop,restart,uninstall" {
		t.Fatalf("actions %v", fake.actions)
	}
	if code, _, _ := c.run("service", "explode"); code != 2 {
		t.Fatalf("unknown subcommand: exit %d", code)
	}
}

// "service unit" prints what service.Unit renders; the Debian package is
// built from it.
func TestServiceUnit(t *testing.T) {
	c := newCLI(t)
	code, out, stderr := c.run("service", "unit", "--config", "/etc/encoder-bridge/encoder-bridge.yaml", "--executable", "/usr/bin/encoder-bridge")
	if code != 0 {
		t.Fatalf("exit %d %s", code, stderr)
	}
	want, err := service.Unit(service.UnitOptions{Executable: "/usr/bin/encoder-bridge", Config: "/etc/encoder-bridge/encoder-bridge.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	if out != string(want) {
		t.Fatalf("unit:\n%s\nwant\n%s", out, want)
	}
	if code, _, _ := c.run("service", "unit"); code != 2 {
		t.Fatalf("without --config: exit %d", code)
	}
	if code, _, stderr := c.run("service", "unit", "--config", "bridge.yaml"); code != 1 || !strings.Contains(stderr, "absolute") {
		t.Fatalf("relative config: exit %d %q", code, stderr)
	}
}

func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func appendFile(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}

// pcscd refusing this account through polkit needs an admin: pcsc's
// Warnf line reaches the service's log as a warning under "pcsc", where
// the service manager's log gets it too.
func TestPCSCRefusalIsAWarning(t *testing.T) {
	var buf syncbuf.Buffer
	log, err := newLogger(config.Log{Level: "info", Format: "console"}, zapcore.AddSync(&buf))
	if err != nil {
		t.Fatal(err)
	}
	o := pcscOptions(log)
	if o.Warnf == nil || o.Logf == nil {
		t.Fatalf("pcsc options without a log: %+v", o)
	}
	o.Warnf("pcsc: pcscd refused this process (uid %d): polkit said %q", 998, "NOT authorized for action: access_pcsc")
	line := buf.String()
	if !strings.Contains(line, "WARN") || !strings.Contains(line, "pcsc") || !strings.Contains(line, "NOT authorized for action: access_pcsc") {
		t.Fatalf("refusal logged as %q", line)
	}
}

// An empty journal file (a crash while it was made, a restore gone wrong)
// is set aside with an error in the run's log, and the cloud is told.
func TestRunDamagedJournal(t *testing.T) {
	cloud := cloudtest.NewFakeCloud(t, cloudToken)
	c := newCLI(t)
	c.sim.Plug("ACS ACR1252 00")
	cfg := c.bridgeConfig(cloud.URL())
	state := filepath.Join(c.dir, "state")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(state, "journal.db"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan string, 1)
	go func() {
		_, _, errs := c.runCtx(ctx, "run", "--config", cfg)
		done <- errs
	}()
	cc := cloud.Next(t)
	if cc.Hello.JournalReset == nil {
		t.Fatal("the hello does not tell the cloud the journal was reset")
	}
	cancel()
	var logs string
	select {
	case logs = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("run did not stop")
	}
	var found bool
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "the job journal was damaged") && strings.Contains(l, "ERROR") {
			found = true
		}
	}
	if !found {
		t.Fatalf("no error line about the journal in the run's log:\n%s", logs)
	}
	if old, _ := filepath.Glob(filepath.Join(state, "journal.db.damaged-*")); len(old) != 1 {
		t.Fatalf("set aside: %v", old)
	}
}

// TestRunHealthAddressBusy: the default monitoring address taken by
// another program costs the page, not the service; an address the
// configuration sets that cannot be used stops run, and so does a log
// file it names that cannot be opened.
func TestRunHealthAddressBusy(t *testing.T) {
	// Hold the default address; if another program holds it already,
	// it is just as busy.
	if ln, err := net.Listen("tcp", config.DefaultHealthListen); err == nil {
		defer ln.Close()
	}
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()

	tests := []struct {
		name   string
		health string // appended to the configuration
		want   []string
		// dialled: run went on to the cloud
		dialled bool
	}{
		{"default busy", "", []string{"status page and metrics off"}, true},
		{"configured busy", "health:\n  listen: " + held.Addr().String() + "\n", []string{"health.listen:"}, false},
		// A log file the configuration names must open; here its directory
		// is a file.
		{"log file unusable", "  file:\n    path: bridge.yaml/run.log\n", []string{"log.file.path:", "bridge.yaml"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cloud := cloudtest.NewFakeCloud(t, cloudToken)
			cloud.Refuse.Store(401) // run ends at its first dial
			c := newCLI(t)
			cfg := c.bridgeConfig(cloud.URL())
			if strings.HasPrefix(tt.health, "  file:") {
				b, _ := os.ReadFile(cfg)
				c.file("bridge.yaml", strings.Replace(string(b), "  level: debug\n", "  level: debug\n"+tt.health, 1))
			} else {
				appendFile(t, cfg, tt.health)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			code, _, stderr := c.runCtx(ctx, "run", "--config", cfg)
			if code != 1 {
				t.Fatalf("exit %d, stderr:\n%s", code, stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			if dialled := strings.Contains(stderr, "auth revoked"); dialled != tt.dialled {
				t.Errorf("dialled the cloud: %v, want %v:\n%s", dialled, tt.dialled, stderr)
			}
		})
	}
}
