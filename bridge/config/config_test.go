package config

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		wantErr []string // substrings, all required
	}{
		{name: "empty uses defaults", yaml: ""},
		{name: "full", yaml: "version: 1\nkeys: /etc/eb/keys.json\nwait: 45s\nlog:\n  level: debug\n  format: json\nencoders:\n  - reader: ACR1252\n    name: Front desk\n"},
		{name: "unknown key with line", yaml: "version: 1\nwiat: 5s\n", wantErr: []string{`line 2: unknown key "wiat"`}},
		{name: "unknown nested key", yaml: "version: 1\nlog:\n  lvl: debug\n", wantErr: []string{`line 3: unknown key "lvl"`}},
		{name: "bad duration", yaml: "version: 1\nwait: soon\n", wantErr: []string{"line 2", `"soon" is not a duration`}},
		{name: "wrong version", yaml: "version: 2\n", wantErr: []string{"version: must be 1, got 2"}},
		{name: "bad level and empty reader", yaml: "version: 1\nlog:\n  level: loud\nencoders:\n  - name: x\n", wantErr: []string{`log.level: must be debug, info, warn or error, got "loud"`, "encoders[0]: needs reader (a name pattern) or serial"}},
		{name: "duplicate reader", yaml: "version: 1\nencoders:\n  - reader: A\n  - reader: A\n", wantErr: []string{"encoders[1].reader: same reader as encoders[0]"}},
		{name: "by serial and pattern", yaml: "version: 1\nencoders:\n  - serial: RR123\n    name: Desk 1\n  - reader: \"ACS ACR1252*PICC*\"\nexclude_readers: [Broadcom, \"*SAM*\"]\n"},
		{name: "reader and serial", yaml: "version: 1\nencoders:\n  - reader: A\n    serial: B\n", wantErr: []string{"encoders[0]: set reader or serial, not both"}},
		{name: "duplicate serial", yaml: "version: 1\nencoders:\n  - serial: B\n  - serial: B\n", wantErr: []string{"encoders[1].serial: same reader as encoders[0]"}},
		{name: "empty exclusion", yaml: "version: 1\nexclude_readers: [\" \"]\n", wantErr: []string{"exclude_readers[0]: must not be empty"}},
		{name: "negative wait", yaml: "version: 1\nwait: -1s\n", wantErr: []string{"wait: must not be negative"}},
		{name: "health on loopback", yaml: "version: 1\nhealth:\n  listen: 127.0.0.1:9477\n"},
		{name: "health beyond loopback", yaml: "version: 1\nhealth:\n  listen: 0.0.0.0:9477\n", wantErr: []string{"health.listen: must be a loopback address"}},
		{name: "health without port", yaml: "version: 1\nhealth:\n  listen: localhost\n", wantErr: []string{"health.listen: must be host:port"}},
		{name: "health off", yaml: "version: 1\nhealth:\n  listen: \"off\"\n"},
		{name: "not yaml", yaml: "version: [1\n", wantErr: []string{"invalid configuration"}},
		{name: "log file", yaml: "version: 1\nlog:\n  file:\n    path: logs/bridge.log\n    max_size: 512KB\n    max_files: 3\n"},
		{name: "log file off", yaml: "version: 1\nlog:\n  file:\n    path: \"off\"\n"},
		{name: "log file size in bytes", yaml: "version: 1\nlog:\n  file:\n    max_size: 1048576\n"},
		{name: "log file size not a size", yaml: "version: 1\nlog:\n  file:\n    max_size: big\n", wantErr: []string{"line 4", `"big" is not a size such as 10MB`}},
		{name: "log file too small", yaml: "version: 1\nlog:\n  file:\n    max_size: 1KB\n", wantErr: []string{"log.file.max_size: must be between 64KB and 1GB, got 1KB"}},
		{name: "log file too large", yaml: "version: 1\nlog:\n  file:\n    max_size: 2GB\n", wantErr: []string{"log.file.max_size: must be between 64KB and 1GB, got 2GB"}},
		{name: "log file keeps none", yaml: "version: 1\nlog:\n  file:\n    max_files: 0\n", wantErr: []string{"log.file.max_files: must be between 1 and 100", "got 0"}},
		{name: "log file a directory", yaml: "version: 1\nlog:\n  file:\n    path: logs/\n", wantErr: []string{"log.file.path: must name a file"}},
		{name: "log file unknown key", yaml: "version: 1\nlog:\n  file:\n    size: 1MB\n", wantErr: []string{`line 4: unknown key "size"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.yaml))
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if c.Version != Version {
					t.Errorf("version = %d", c.Version)
				}
				return
			}
			if err == nil {
				t.Fatalf("Parse succeeded, want error containing %q", tt.wantErr)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse([]byte("version: 1\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Wait != 0 || c.Log.Level != "info" || c.Log.Format != "console" {
		t.Errorf("defaults not applied: %+v", c)
	}
}

func TestParseByteSize(t *testing.T) {
	tests := []struct {
		in   string
		want ByteSize
		bad  bool
	}{
		{in: "10MB", want: 10 << 20},
		{in: "512kb", want: 512 << 10},
		{in: "1GB", want: 1 << 30},
		{in: "2048", want: 2048},
		{in: "64 KB", want: 64 << 10},
		{in: "7B", want: 7},
		{in: "", bad: true},
		{in: "MB", bad: true},
		{in: "-1MB", bad: true},
		{in: "1.5MB", bad: true},
		{in: "9999999999999GB", bad: true},
	}
	for _, tc := range tests {
		got, err := ParseByteSize(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("ParseByteSize(%q) = %d, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
		if back, err := ParseByteSize(got.String()); err != nil || back != got {
			t.Errorf("%d written as %q reads back as %d, %v", got, got.String(), back, err)
		}
	}
}

// TestLogFilePath: on by default on Windows only, under the state
// directory; a path in the file is taken from the file's directory; off
// is off everywhere.
func TestLogFilePath(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) *Config {
		t.Helper()
		p := filepath.Join(dir, "b.yaml")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(p)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := write("version: 1\nstate_dir: state\n")
	want := ""
	if runtime.GOOS == "windows" {
		want = filepath.Join(dir, "state", "logs", "encoder-bridge.log")
	}
	if got := c.LogFilePath(); got != want {
		t.Errorf("default: %q, want %q", got, want)
	}
	if c.Log.File.MaxSize != DefaultLogMaxSize || c.Log.File.MaxFiles != DefaultLogMaxFiles {
		t.Errorf("default bounds: %+v", c.Log.File)
	}
	if got := write("version: 1\nlog:\n  file:\n    path: logs/b.log\n").LogFilePath(); got != filepath.Join(dir, "logs", "b.log") {
		t.Errorf("relative: %q", got)
	}
	if got := write("version: 1\nlog:\n  file:\n    path: \"off\"\n").LogFilePath(); got != "" {
		t.Errorf("off: %q", got)
	}
}

// TestHealthAddress: the monitoring listener is on by default, on
// loopback, and "off" turns it off.
func TestHealthAddress(t *testing.T) {
	tests := []struct{ yaml, want string }{
		{"version: 1\n", DefaultHealthListen},
		{"version: 1\nhealth:\n  listen: \"[::1]:9000\"\n", "[::1]:9000"},
		{"version: 1\nhealth:\n  listen: \"off\"\n", ""},
	}
	for _, tt := range tests {
		c, err := Parse([]byte(tt.yaml))
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Health.Address(); got != tt.want {
			t.Errorf("%q: Address() = %q, want %q", tt.yaml, got, tt.want)
		}
	}
}

func TestLoadRelativeKeys(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "bridge.yaml")
	if err := os.WriteFile(p, []byte("version: 1\nkeys: keys.json\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "keys.json"); c.Keys != want {
		t.Errorf("keys = %q, want %q", c.Keys, want)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("version: 1\nwait: 5s\n"))
	f.Add([]byte("encoders:\n  - reader: x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err == nil && c.Validate() != nil {
			t.Fatalf("Parse accepted a config that does not validate")
		}
	})
}

func TestShippedExample(t *testing.T) {
	for _, name := range []string{"encoder-bridge.yaml", "encoder-bridge-windows.yaml"} {
		c, err := Load(filepath.Join("..", "..", "configs", name))
		if err != nil {
			t.Fatalf("configs/%s: %v", name, err)
		}
		if len(c.Encoders) != 1 || time.Duration(c.Wait) != 30*time.Second || c.Cloud.URL == "" {
			t.Fatalf("configs/%s parsed as %+v", name, c)
		}
	}
}

func TestCloud(t *testing.T) {
	const pin = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
	tests := []struct {
		name    string
		yaml    string
		wantErr []string
	}{
		{name: "full", yaml: "version: 1\ncloud:\n  url: wss://cloud.example.com\n  bridge_id: hotel-42.desk-1\n  token_file: token\n  ca_file: ca.pem\n  spki_pin: " + pin + "\nstate_dir: /var/lib/eb\n"},
		{name: "loopback ws", yaml: "version: 1\ncloud:\n  url: ws://127.0.0.1:8080\n  bridge_id: b\n  token_file: t\n"},
		{name: "pin with prefix", yaml: "version: 1\ncloud:\n  url: wss://c.example\n  bridge_id: b\n  token_file: t\n  spki_pin: sha256/" + pin + "\n"},
		{name: "url missing", yaml: "version: 1\ncloud:\n  bridge_id: b\n", wantErr: []string{"cloud.url: required", "cloud.token_file: required"}},
		{name: "ws to a remote host", yaml: "version: 1\ncloud:\n  url: ws://cloud.example.com\n  bridge_id: b\n  token_file: t\n", wantErr: []string{"cloud.url: ws:// (unencrypted) is only allowed to a loopback host"}},
		{name: "http scheme", yaml: "version: 1\ncloud:\n  url: https://cloud.example.com\n  bridge_id: b\n  token_file: t\n", wantErr: []string{`cloud.url: must be a wss:// URL, got scheme "https"`}},
		{name: "credentials in url", yaml: "version: 1\ncloud:\n  url: wss://u:p@cloud.example.com\n  bridge_id: b\n  token_file: t\n", wantErr: []string{"cloud.url: must not hold credentials"}},
		{name: "bad bridge id", yaml: "version: 1\ncloud:\n  url: wss://c.example\n  bridge_id: \"front desk\"\n  token_file: t\n", wantErr: []string{"cloud.bridge_id: must be"}},
		{name: "bad pin", yaml: "version: 1\ncloud:\n  url: wss://c.example\n  bridge_id: b\n  token_file: t\n  spki_pin: abc\n", wantErr: []string{"cloud.spki_pin: must be the base64 SHA-256"}},
		{name: "pin with ws", yaml: "version: 1\ncloud:\n  url: ws://localhost:1\n  bridge_id: b\n  token_file: t\n  spki_pin: " + pin + "\n", wantErr: []string{"cloud.spki_pin: needs wss:// cloud URLs, not ws://localhost:1"}},
		{name: "urls", yaml: "version: 1\ncloud:\n  urls: [wss://a.example, wss://b.example/prefix]\n  bridge_id: b\n  token_file: t\n  spki_pin: " + pin + "\n"},
		{name: "urls on loopback", yaml: "version: 1\ncloud:\n  urls:\n    - ws://127.0.0.1:8080\n    - ws://localhost:8081\n  bridge_id: b\n  token_file: t\n"},
		{name: "url and urls", yaml: "version: 1\ncloud:\n  url: wss://a.example\n  urls: [wss://b.example]\n  bridge_id: b\n  token_file: t\n", wantErr: []string{"cloud.url, cloud.urls: set one of them, not both"}},
		{name: "urls empty", yaml: "version: 1\ncloud:\n  urls: []\n  bridge_id: b\n  token_file: t\n", wantErr: []string{"cloud.urls: must list at least one URL"}},
		{name: "urls bad entries", yaml: "version: 1\ncloud:\n  urls: [wss://a.example, https://b.example, ws://c.example, \"\"]\n  bridge_id: b\n  token_file: t\n", wantErr: []string{
			`cloud.urls[1]: must be a wss:// URL, got scheme "https"`, "cloud.urls[2]: ws:// (unencrypted) is only allowed to a loopback host", "cloud.urls[3]: must not be empty"}},
		{name: "urls duplicate", yaml: "version: 1\ncloud:\n  urls: [wss://a.example, wss://a.example/]\n  bridge_id: b\n  token_file: t\n", wantErr: []string{"cloud.urls[1]: same URL as cloud.urls[0]"}},
		{name: "urls pin with ws", yaml: "version: 1\ncloud:\n  urls: [wss://a.example, ws://127.0.0.1:1]\n  bridge_id: b\n  token_file: t\n  spki_pin: " + pin + "\n", wantErr: []string{"cloud.spki_pin: needs wss:// cloud URLs, not ws://127.0.0.1:1"}},
		{name: "urls not a list", yaml: "version: 1\ncloud:\n  urls: wss://a.example\n  bridge_id: b\n  token_file: t\n", wantErr: []string{"line 3"}},
		{name: "unknown cloud key", yaml: "version: 1\ncloud:\n  token: abc\n", wantErr: []string{`line 3: unknown key "token"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml))
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v", err)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestCloudEndpoints(t *testing.T) {
	tests := []struct {
		name  string
		cloud Cloud
		want  []string
	}{
		{name: "none", cloud: Cloud{}, want: nil},
		{name: "url", cloud: Cloud{URL: "wss://a"}, want: []string{"wss://a"}},
		{name: "urls in order", cloud: Cloud{URLs: []string{"wss://b", "wss://a"}}, want: []string{"wss://b", "wss://a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.cloud.Endpoints(); !slices.Equal(got, tt.want) {
				t.Fatalf("Endpoints() = %q, want %q", got, tt.want)
			}
		})
	}
	if !(Cloud{URLs: []string{}}).Configured() {
		t.Fatal("an empty cloud.urls list is configured (and then refused), not ignored")
	}
}

func TestCloudPathsAndDefaults(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "bridge.yaml")
	os.WriteFile(p, []byte("version: 1\ncloud:\n  url: wss://c.example\n  bridge_id: b\n  token_file: token\n  ca_file: ca.pem\nstate_dir: state\n"), 0o600)
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.Cloud.TokenFile != filepath.Join(dir, "token") || c.Cloud.CAFile != filepath.Join(dir, "ca.pem") || c.StatePath() != filepath.Join(dir, "state") {
		t.Fatalf("paths not resolved: %+v %s", c.Cloud, c.StateDir)
	}
	if err := c.RequireCloud(); err != nil {
		t.Fatal(err)
	}
	d := Default()
	if err := d.RequireCloud(); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "cloud.url") {
		t.Fatalf("RequireCloud without cloud: %v", err)
	}
	if d.StatePath() != DefaultStateDir() || DefaultStateDir() == "" {
		t.Fatalf("state path %q", d.StatePath())
	}
}

func TestMatchReader(t *testing.T) {
	name := "ACS ACR1252 1S CL Reader [ACR1252 Dual Reader PICC] 01 00"
	for _, c := range []struct {
		pattern string
		want    bool
	}{
		{name, true},
		{"acr1252", true},
		{"PICC", true},
		{"SAM", false},
		{"ACS ACR1252*PICC*", true},
		{"acs acr1252*sam*", false},
		{"ACR1252*", false}, // a glob matches the whole name
		{"*ACR1252*", true},
		{"ACS ACR1252 1S CL Reader [ACR1252 Dual Reader PICC] 0? 00", true},
		{"*[ACR1252 Dual Reader PICC]*", true},
		{"*[P]*", false},
		{"[SAM]", false},
		{`*\*`, false},
	} {
		if got := MatchReader(c.pattern, name); got != c.want {
			t.Errorf("MatchReader(%q) = %v, want %v", c.pattern, got, c.want)
		}
	}
}
