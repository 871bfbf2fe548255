package config

import (
	"errors"
	"os"
	"path/filepath"
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
		{name: "pin with ws", yaml: "version: 1\ncloud:\n  url: ws://localhost:1\n  bridge_id: b\n  token_file: t\n  spki_pin: " + pin + "\n", wantErr: []string{"cloud.spki_pin: needs a wss://"}},
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
