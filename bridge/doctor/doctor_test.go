package doctor_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"go.uber.org/zap"

	"github.com/encoder-bridge/encoder-bridge/bridge/config"
	"github.com/encoder-bridge/encoder-bridge/bridge/doctor"
	"github.com/encoder-bridge/encoder-bridge/bridge/journal"
	"github.com/encoder-bridge/encoder-bridge/bridge/link"
	"github.com/encoder-bridge/encoder-bridge/cardfmt"
	"github.com/encoder-bridge/encoder-bridge/cloud/clock"
	"github.com/encoder-bridge/encoder-bridge/cloud/cloudtest"
	"github.com/encoder-bridge/encoder-bridge/reader"
	"github.com/encoder-bridge/encoder-bridge/reader/sim"
	"github.com/encoder-bridge/encoder-bridge/reader/sim/chip"
)

// setup is one front-desk PC: files in a temporary directory, a simulated
// reader service, a cloud on loopback.
type setup struct {
	t      *testing.T
	dir    string
	cloud  *cloudtest.Env
	sim    *sim.Context
	url    string
	urls   []string // when set, cloud.urls instead of cloud.url
	all    []doctor.Result
	token  string
	keys   string
	system fstest.MapFS
	env    doctor.Env
}

func newSetup(t *testing.T, cloudClock *clock.Fake) *setup {
	t.Helper()
	s := &setup{t: t, dir: t.TempDir(), sim: sim.New(), system: fstest.MapFS{}}
	s.cloud = cloudtest.New(t, cloudtest.Options{Clock: cloudClock})
	s.url = strings.Replace(s.cloud.URL(), "http://", "ws://", 1)
	s.token = s.cloud.BridgeToken
	ks, err := cardfmt.GenerateKeySet(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s.keys = filepath.Join(s.dir, "keys.json")
	if err := cardfmt.WriteKeySet(s.keys, ks, false); err != nil {
		t.Fatal(err)
	}
	s.env = doctor.Env{
		OpenReaders: func() (reader.Context, error) { return noClose{s.sim}, nil },
		System:      s.system,
		OS:          "linux",
		Version:     "test",
		Timeout:     5 * time.Second,
	}
	return s
}

// noClose keeps the simulator across runs.
type noClose struct{ *sim.Context }

func (noClose) Close() error { return nil }

// run writes the configuration and token file and runs the doctor.
func (s *setup) run() map[string]doctor.Result {
	s.t.Helper()
	tokenFile := filepath.Join(s.dir, "token")
	if err := os.WriteFile(tokenFile, []byte(s.token+"\n"), 0o600); err != nil {
		s.t.Fatal(err)
	}
	cfgPath := filepath.Join(s.dir, "bridge.yaml")
	urls := "url: " + s.url
	if s.urls != nil {
		urls = "urls: [" + strings.Join(s.urls, ", ") + "]"
	}
	yaml := fmt.Sprintf("version: 1\nkeys: %s\nstate_dir: %s\ncloud:\n  %s\n  bridge_id: %s\n  token_file: %s\n",
		s.keys, filepath.Join(s.dir, "state"), urls, s.cloud.BridgeID, tokenFile)
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		s.t.Fatal(err)
	}
	env := s.env
	env.ConfigPath = cfgPath
	env.NewLink = func(token, url string) (*link.Link, error) {
		if _, err := config.Load(cfgPath); err != nil {
			return nil, err
		}
		return link.New(link.Options{URL: url, Token: token, Log: zap.NewNop()})
	}
	rs := doctor.Run(context.Background(), env)
	s.all = rs
	out := map[string]doctor.Result{}
	for _, r := range rs {
		if r.Status == doctor.Fail && r.Fix == "" {
			s.t.Errorf("%s failed without a fix: %+v", r.Check, r)
		}
		if strings.Contains(r.Detail+r.Fix, s.token) {
			s.t.Errorf("%s shows the token", r.Check)
		}
		out[r.Check] = r
	}
	if len(out) != 13 {
		s.t.Errorf("%d checks reported, want 13: %+v", len(out), rs)
	}
	return out
}

func expect(t *testing.T, got map[string]doctor.Result, check string, status doctor.Status, contains ...string) {
	t.Helper()
	r, ok := got[check]
	if !ok {
		t.Errorf("%s: not reported", check)
		return
	}
	if r.Status != status {
		t.Errorf("%s: %s (%s; fix %q), want %s", check, r.Status, r.Detail, r.Fix, status)
	}
	for _, c := range contains {
		if !strings.Contains(r.Detail+" | "+r.Fix, c) {
			t.Errorf("%s: %q / %q does not mention %q", check, r.Detail, r.Fix, c)
		}
	}
}

func TestHealthyInstallation(t *testing.T) {
	s := newSetup(t, clock.NewFake(time.Now()))
	card, err := chip.New("mifare_classic_1k", nil)
	if err != nil {
		t.Fatal(err)
	}
	s.sim.Plug("ACS ACR1252 1S CL Reader PICC 0").Insert(card)
	s.sim.Plug("HID Omnikey 5422 0")
	got := s.run()
	for _, c := range []string{"configuration", "key file", "token file", "state directory", "smart-card service", "kernel NFC drivers", "readers", "cards", "cloud DNS", "cloud TCP", "cloud token", "clock"} {
		expect(t, got, c, doctor.Pass)
	}
	expect(t, got, "cloud TLS", doctor.Skip, "ws://")
	expect(t, got, "readers", doctor.Pass, "2 attached, 2 offered")
	if doctor.Failed(mapValues(got)) {
		t.Error("Failed says yes")
	}
}

func mapValues(m map[string]doctor.Result) []doctor.Result {
	var out []doctor.Result
	for _, r := range m {
		out = append(out, r)
	}
	return out
}

func TestFailures(t *testing.T) {
	down := func() (reader.Context, error) {
		return nil, fmt.Errorf("pcsc: establish context: %w", reader.ErrNoService)
	}
	for _, tc := range []struct {
		name   string
		clock  *clock.Fake // nil: cloudtest's, months from today
		change func(s *setup)
		check  string
		status doctor.Status
		says   []string
	}{
		{name: "key file readable by others", change: func(s *setup) { os.Chmod(s.keys, 0o644) },
			check: "key file", status: doctor.Fail, says: []string{"readable by group or others", "chmod 600"}},
		{name: "key file missing", change: func(s *setup) { os.Remove(s.keys) },
			check: "key file", status: doctor.Fail, says: []string{"backup"}},
		{name: "wrong token", change: func(s *setup) { s.token = "ebt_wrong" },
			check: "cloud token", status: doctor.Fail, says: []string{"refused the token", "bridge-token create"}},
		{name: "cloud down", change: func(s *setup) { s.url = "ws://" + closedPort(t) },
			check: "cloud TCP", status: doctor.Fail, says: []string{"refused", "outgoing"}},
		{name: "pcscd not running", change: func(s *setup) { s.env.OpenReaders = down },
			check: "smart-card service", status: doctor.Fail, says: []string{"pcscd is not running", "systemctl enable --now pcscd.socket"}},
		{name: "pcscd refuses this user", change: func(s *setup) {
			s.env.OpenReaders = down
			s.system["run/pcscd/pcscd.comm"] = &fstest.MapFile{}
		}, check: "smart-card service", status: doctor.Fail, says: []string{"NOT authorized for action: access_pcsc", "polkit"}},
		{name: "pcscd answers with a polkit refusal", change: func(s *setup) {
			s.env.OpenReaders = func() (reader.Context, error) {
				return nil, fmt.Errorf("pcsc: establish context: %w (SCARD_W_SECURITY_VIOLATION)", reader.ErrNotAuthorized)
			}
		}, check: "smart-card service", status: doctor.Fail, says: []string{"refused this user through polkit", "NOT authorized for action: access_pcsc", "60-encoder-bridge.rules"}},
		{name: "Windows smart-card service stopped", change: func(s *setup) {
			s.env.OpenReaders = down
			s.env.OS = "windows"
		}, check: "smart-card service", status: doctor.Fail, says: []string{"SCardSvr"}},
		{name: "pn533 holds the ACR122U", change: func(s *setup) {
			s.system["proc/modules"] = &fstest.MapFile{Data: []byte("pn533_usb 20480 0 - Live 0x0\npn533 45056 1 pn533_usb, Live 0x0\nnfc 135168 1 pn533, Live 0x0\n")}
			s.system["sys/bus/usb/devices/1-2/idVendor"] = &fstest.MapFile{Data: []byte("072f\n")}
			s.system["sys/bus/usb/devices/1-2/idProduct"] = &fstest.MapFile{Data: []byte("2200\n")}
		}, check: "kernel NFC drivers", status: doctor.Fail, says: []string{"Unable to claim USB interface", "blacklist pn533_usb"}},
		{name: "pn533 loaded, no reader it claims", change: func(s *setup) {
			s.system["proc/modules"] = &fstest.MapFile{Data: []byte("pn533_usb 20480 0 - Live 0x0\n")}
		}, check: "kernel NFC drivers", status: doctor.Pass, says: []string{"no reader they claim"}},
		{name: "no reader", check: "readers", status: doctor.Fail, says: []string{"plug the encoder in"}},
		{name: "clock 10 minutes behind", clock: clock.NewFake(time.Now().Add(10 * time.Minute)),
			check: "clock", status: doctor.Fail, says: []string{"behind", "set-ntp"}},
		{name: "clock 45 s ahead", clock: clock.NewFake(time.Now().Add(-45 * time.Second)),
			check: "clock", status: doctor.Warn, says: []string{"ahead of"}},
		{name: "journal damaged", change: func(s *setup) {
			os.MkdirAll(filepath.Join(s.dir, "state"), 0o700)
			os.WriteFile(filepath.Join(s.dir, "state", journal.FileName), nil, 0o600)
		}, check: "state directory", status: doctor.Warn, says: []string{"empty", "sets the file aside"}},
		{name: "damaged journal set aside", change: func(s *setup) {
			os.MkdirAll(filepath.Join(s.dir, "state"), 0o700)
			os.WriteFile(filepath.Join(s.dir, "state", journal.FileName+".damaged-20261123T150000.000000000Z"), nil, 0o600)
		}, check: "state directory", status: doctor.Warn, says: []string{"1 damaged journal(s) set aside", "support ticket"}},
		{name: "bad configuration", change: func(s *setup) { s.url = "http://x" },
			check: "configuration", status: doctor.Fail, says: []string{"cloud.url", "encoder-bridge validate"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.clock
			if c == nil {
				c = clock.NewFake(time.Now())
			}
			s := newSetup(t, c)
			if tc.name != "no reader" {
				s.sim.Plug("ACS ACR1252 1S CL Reader PICC 0")
			}
			if tc.change != nil {
				tc.change(s)
			}
			got := s.run()
			expect(t, got, tc.check, tc.status, tc.says...)
		})
	}
}

// A TLS-inspecting proxy re-signs the cloud's certificate with its own CA:
// the doctor names the issuer and says what to do.
func TestTLSInterception(t *testing.T) {
	s := newSetup(t, clock.NewFake(time.Now()))
	s.sim.Plug("R 0")
	mitm := httptest.NewUnstartedServer(nil)
	mitm.Config.ErrorLog = log.New(io.Discard, "", 0)
	mitm.StartTLS()
	defer mitm.Close()
	s.url = strings.Replace(mitm.URL, "https://", "wss://", 1)
	got := s.run()
	expect(t, got, "cloud TCP", doctor.Pass)
	expect(t, got, "cloud TLS", doctor.Fail, "does not trust", "inspecting TLS", "cloud.ca_file")
	expect(t, got, "cloud token", doctor.Skip)
}

// With several cloud URLs every instance is checked, and each detail names
// the URL it is about.
func TestSeveralCloudURLs(t *testing.T) {
	s := newSetup(t, clock.NewFake(time.Now()))
	s.sim.Plug("R 0")
	dead := "ws://" + closedPort(t)
	s.urls = []string{dead, s.url}
	s.run()
	byURL := map[string]map[string]doctor.Status{}
	for _, r := range s.all {
		for _, u := range s.urls {
			if strings.HasPrefix(r.Detail, u+": ") {
				if byURL[u] == nil {
					byURL[u] = map[string]doctor.Status{}
				}
				byURL[u][r.Check] = r.Status
			}
		}
	}
	if st := byURL[dead]; st["cloud TCP"] != doctor.Fail || st["cloud token"] != doctor.Skip {
		t.Errorf("the dead instance: %v, want cloud TCP failed and the hello skipped", st)
	}
	if st := byURL[s.url]; st["cloud TCP"] != doctor.Pass || st["cloud token"] != doctor.Pass || st["clock"] != doctor.Pass {
		t.Errorf("the live instance: %v, want its checks passed", st)
	}
	var welcomed bool
	for _, r := range s.all {
		welcomed = welcomed || (r.Check == "cloud token" && r.Status == doctor.Pass && strings.Contains(r.Detail, s.url+"/bridge/v1/connect welcomed"))
	}
	if !welcomed {
		t.Errorf("no check names the instance that welcomed the bridge: %+v", s.all)
	}
}

func TestDNSFailure(t *testing.T) {
	s := newSetup(t, nil)
	s.url = "wss://cloud.example.invalid"
	s.env.LookupHost = func(ctx context.Context, host string) ([]string, error) {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	got := s.run()
	expect(t, got, "cloud DNS", doctor.Fail, "cloud.example.invalid", "no such host", "DNS")
	expect(t, got, "cloud TCP", doctor.Skip)
}

func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
