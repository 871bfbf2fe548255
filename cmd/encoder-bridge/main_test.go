package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/encoder-bridge/encoder-bridge/reader"
	"github.com/encoder-bridge/encoder-bridge/reader/sim"
	"github.com/encoder-bridge/encoder-bridge/reader/sim/chip"
)

const credJSON = `{
  "credential_id": "6f1c2d8e-3a4b-4c5d-9e6f-708192a3b4c5",
  "card_number": "100234",
  "card_function_type": "staff",
  "starts_at": "2026-11-23T15:00:00Z",
  "ends_at": "2036-11-26T11:00:00Z",
  "entrance_ids": ["0b7e4f2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b"],
  "issue_sequence": 2
}`

// cli runs the command against a simulated reader.
type cli struct {
	t   *testing.T
	sim *sim.Context
	dir string
}

func newCLI(t *testing.T) *cli {
	return &cli{t: t, sim: sim.New(), dir: t.TempDir()}
}

func (c *cli) run(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	a := &app{stdout: &out, stderr: &errb, openReaders: func(*zap.Logger) (reader.Context, error) { return noClose{c.sim}, nil }}
	code = a.run(context.Background(), args)
	return code, out.String(), errb.String()
}

// noClose keeps the shared simulator open across commands.
type noClose struct{ *sim.Context }

func (noClose) Close() error { return nil }

func (c *cli) file(name, content string) string {
	p := filepath.Join(c.dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		c.t.Fatal(err)
	}
	return p
}

func (c *cli) keys() string {
	p := filepath.Join(c.dir, "keys.json")
	if code, _, stderr := c.run("keys", "init", "--out", p); code != 0 {
		c.t.Fatalf("keys init: %d %s", code, stderr)
	}
	return p
}

func TestEncodeScanJSON(t *testing.T) {
	c := newCLI(t)
	card, _ := chip.New("ntag215", nil)
	c.sim.Plug("Virtual PCD 00 00").Insert(card)
	keys := c.keys()
	cred := c.file("cred.json", credJSON)

	code, out, stderr := c.run("encode", "--keys", keys, "--credential", cred, "--json")
	if code != 0 {
		t.Fatalf("encode: %d %s", code, stderr)
	}
	var enc map[string]any
	if err := json.Unmarshal([]byte(out), &enc); err != nil || enc["technology"] != "ntag215" || enc["card_number"] != "100234" {
		t.Fatalf("encode output %s (%v)", out, err)
	}

	code, out, stderr = c.run("scan", "--reader", "pcd 00", "--keys", keys, "--json")
	if code != 0 {
		t.Fatalf("scan: %d %s", code, stderr)
	}
	var scan struct {
		Valid            bool     `json:"valid"`
		UID              string   `json:"uid"`
		CardFunctionType string   `json:"card_function_type"`
		IssueSequence    int      `json:"issue_sequence"`
		KeyVersion       int      `json:"key_version"`
		Warnings         []string `json:"warnings"`
	}
	if err := json.Unmarshal([]byte(out), &scan); err != nil {
		t.Fatal(err)
	}
	if !scan.Valid || scan.CardFunctionType != "staff" || scan.IssueSequence != 2 || scan.KeyVersion != 1 || len(scan.UID) != 14 || scan.Warnings == nil {
		t.Fatalf("scan output %s", out)
	}

	// Text output, too.
	code, out, _ = c.run("scan", "--keys", keys)
	if code != 0 || !strings.Contains(out, "valid: yes") || !strings.Contains(out, "card_number: 100234") {
		t.Fatalf("text scan: %d %s", code, out)
	}
}

func TestScanVerdictIsSuccess(t *testing.T) {
	c := newCLI(t)
	card, _ := chip.New("mifare_classic_1k", nil)
	c.sim.Plug("R").Insert(card)
	code, out, stderr := c.run("scan", "--keys", c.keys(), "--json")
	if code != 0 {
		t.Fatalf("scan of a blank card: %d %s", code, stderr)
	}
	if !strings.Contains(out, `"valid": false`) || !strings.Contains(out, `"reason": "blank"`) {
		t.Fatalf("output %s", out)
	}
}

func TestErrors(t *testing.T) {
	c := newCLI(t)
	keys := c.keys()
	cred := c.file("cred.json", credJSON)
	r := c.sim.Plug("R")

	tests := []struct {
		name     string
		args     []string
		code     int
		stderr   string
		jsonType string
	}{
		{"no card", []string{"encode", "--keys", keys, "--credential", cred, "--json"}, 1, "no_credential_on_encoder", "no_credential_on_encoder"},
		{"no card waits", []string{"scan", "--keys", keys, "--wait", "20ms"}, 1, "no_credential_on_encoder", ""},
		{"unknown reader", []string{"scan", "--keys", keys, "--reader", "Omnikey"}, 1, `no reader named "Omnikey"`, ""},
		{"malformed credential", []string{"encode", "--keys", keys, "--credential", c.file("bad.json", `{"card_number": 5}`), "--json"}, 1, "card_number: must be a string", "invalid_credential"},
		{"missing fields", []string{"encode", "--keys", keys, "--credential", c.file("empty.json", `{}`)}, 1, "credential_id: missing", ""},
		{"credential file missing", []string{"encode", "--keys", keys, "--credential", filepath.Join(c.dir, "nope.json")}, 1, "nope.json", ""},
		{"key file missing", []string{"scan", "--keys", filepath.Join(c.dir, "nokeys.json")}, 1, "keys init --out", ""},
		{"key file malformed", []string{"scan", "--keys", c.file("junk.json", "{")}, 1, "key_file_error", ""},
		{"no key file", []string{"scan"}, 1, "no key file", ""},
		{"unknown config key", []string{"scan", "--keys", keys, "--config", c.file("c.yaml", "version: 1\nwaits: 3s\n")}, 1, `line 2: unknown key "waits"`, ""},
		{"bad flag", []string{"scan", "--frobnicate"}, 2, "flag provided but not defined", ""},
		{"stray argument", []string{"readers", "extra"}, 2, `unexpected argument "extra"`, ""},
		{"unknown command", []string{"frob"}, 2, `unknown command "frob"`, ""},
		{"encode without credential", []string{"encode"}, 2, "--credential FILE is required", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, stderr := c.run(tt.args...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d (stderr %s)", code, tt.code, stderr)
			}
			if !strings.Contains(stderr, tt.stderr) {
				t.Fatalf("stderr %q lacks %q", stderr, tt.stderr)
			}
			if strings.Count(strings.TrimSpace(stderr), "\n") > 0 && tt.code == 1 {
				t.Fatalf("error is not one line: %q", stderr)
			}
			if tt.jsonType != "" {
				var v struct {
					Error struct{ Type, Message string }
				}
				if err := json.Unmarshal([]byte(out), &v); err != nil || v.Error.Type != tt.jsonType || v.Error.Message == "" {
					t.Fatalf("JSON error %q (%v)", out, err)
				}
			}
		})
	}
	_ = r
}

func TestKeyFilePermissions(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("mode bits do not apply on Windows")
	}
	c := newCLI(t)
	keys := c.keys()
	fi, err := os.Stat(keys)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v (%v)", fi.Mode(), err)
	}
	if code, _, stderr := c.run("keys", "init", "--out", keys); code != 1 || !strings.Contains(stderr, "exists") {
		t.Fatalf("keys init over an existing file: %d %s", code, stderr)
	}
	os.Chmod(keys, 0o644)
	code, _, stderr := c.run("scan", "--keys", keys)
	if code != 1 || !strings.Contains(stderr, "chmod 600") {
		t.Fatalf("readable key file: %d %s", code, stderr)
	}
	os.Chmod(keys, 0o600)
	if code, out, stderr := c.run("keys", "rotate", "--keys", keys); code != 0 || !strings.Contains(out, "new version 2") {
		t.Fatalf("rotate: %d %s %s", code, out, stderr)
	}
	code, out, _ := c.run("keys", "show", "--keys", keys, "--json")
	if code != 0 || !strings.Contains(out, `"current_version": 2`) {
		t.Fatalf("show: %s", out)
	}
	raw, _ := os.ReadFile(keys)
	var kf struct {
		Versions []struct {
			MACKey string `json:"mac_key"`
		} `json:"versions"`
	}
	json.Unmarshal(raw, &kf)
	if len(kf.Versions) != 2 || strings.Contains(out, kf.Versions[0].MACKey) {
		t.Fatal("keys show leaks key material or lost a version")
	}
}

func TestReadersAndValidate(t *testing.T) {
	c := newCLI(t)
	if code, out, _ := c.run("readers"); code != 0 || !strings.Contains(out, "no card reader attached") {
		t.Fatalf("no readers: %d %s", code, out)
	}
	c.sim.Plug("ACS ACR1252 1S CL Reader PICC 0")
	c.sim.PlugSerial("Identiv uTrust 3700 F 0", "55041234")
	c.sim.Plug("Broadcom Corp Contacted SmartCard 0")
	cfg := c.file("bridge.yaml", "version: 1\nencoders:\n  - reader: ACR1252\n    name: Front desk 1\n  - serial: \"55041234\"\n    name: Concierge\n")
	code, out, _ := c.run("readers", "--config", cfg, "--json")
	if code != 0 || !strings.Contains(out, `"display_name": "Front desk 1"`) || !strings.Contains(out, `"serial": "55041234"`) ||
		!strings.Contains(out, `"display_name": "Concierge"`) {
		t.Fatalf("readers: %d %s", code, out)
	}
	code, out, _ = c.run("readers", "--config", cfg)
	if code != 0 || !strings.Contains(out, "Broadcom Corp Contacted SmartCard 0\t(not offered") ||
		!strings.Contains(out, "Identiv uTrust 3700 F 0\tserial 55041234\t(Concierge)") {
		t.Fatalf("readers: %d %s", code, out)
	}
	if code, out, stderr := c.run("validate", "--config", cfg); code != 0 || !strings.Contains(out, "valid") {
		t.Fatalf("validate: %d %s %s", code, out, stderr)
	}
	bad := c.file("bad.yaml", "version: 1\nencoders:\n  - name: x\n")
	if code, _, stderr := c.run("validate", "--config", bad); code != 1 || !strings.Contains(stderr, "encoders[0]: needs reader (a name pattern) or serial") {
		t.Fatalf("validate bad: %d %s", code, stderr)
	}
}

func TestDoctor(t *testing.T) {
	c := newCLI(t)
	code, out, _ := c.run("doctor", "--config", filepath.Join(t.TempDir(), "missing.yaml"))
	if code != 1 || !strings.Contains(out, "configuration") || !strings.Contains(out, "FAIL") || !strings.Contains(out, "fix: copy configs/encoder-bridge.yaml") {
		t.Fatalf("doctor without a configuration: exit %d\n%s", code, out)
	}
	code, out, _ = c.run("doctor", "--json", "--config", filepath.Join(t.TempDir(), "missing.yaml"))
	var res struct {
		OK     bool `json:"ok"`
		Checks []struct {
			Check, Status, Detail, Fix string
		} `json:"checks"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || code != 1 || res.OK || len(res.Checks) != 13 || res.Checks[0].Status != "fail" || res.Checks[1].Status != "skip" {
		t.Fatalf("doctor --json: exit %d, %v\n%s", code, err, out)
	}
}

// keys retire refuses the current version; with --verify-until it keeps
// the version, so that its cards scan as retired and re-encode under the
// current one; without, it removes the version.
func TestKeysRetire(t *testing.T) {
	c := newCLI(t)
	card, _ := chip.New("mifare_classic_1k", nil)
	c.sim.Plug("R").Insert(card)
	keys := c.keys()
	cred := c.file("cred.json", credJSON)
	if code, _, stderr := c.run("encode", "--keys", keys, "--credential", cred); code != 0 {
		t.Fatalf("encode: %d %s", code, stderr)
	}
	if code, _, stderr := c.run("keys", "rotate", "--keys", keys); code != 0 {
		t.Fatalf("rotate: %d %s", code, stderr)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"current version", []string{"--version", "2"}, 1, "key version 2 is current; rotate first"},
		{"current version, dated", []string{"--version", "2", "--verify-until", "now"}, 1, "key version 2 is current"},
		{"missing version", []string{"--version", "7"}, 1, "no key version 7"},
		{"no version", nil, 2, "--version must be"},
		{"bad time", []string{"--version", "1", "--verify-until", "tomorrow"}, 2, "--verify-until must be an RFC 3339 time"},
	} {
		code, _, stderr := c.run(append([]string{"keys", "retire", "--keys", keys}, tc.args...)...)
		if code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Errorf("%s: exit %d, %s; want %d, %q", tc.name, code, stderr, tc.code, tc.want)
		}
	}

	code, out, stderr := c.run("keys", "retire", "--keys", keys, "--version", "1", "--verify-until", "2026-01-01T00:00:00Z")
	if code != 0 || !strings.Contains(out, "version 1 is accepted until 2026-01-01T00:00:00Z") {
		t.Fatalf("retire --verify-until: %d %s %s", code, out, stderr)
	}
	if code, out, _ := c.run("keys", "show", "--keys", keys, "--json"); code != 0 || !strings.Contains(out, `"1": "2026-01-01T00:00:00Z"`) {
		t.Fatalf("show: %s", out)
	}
	code, out, _ = c.run("scan", "--keys", keys, "--json")
	if code != 0 || !strings.Contains(out, `"reason": "retired_key_version"`) {
		t.Fatalf("scan of a card under the retired version: %d %s", code, out)
	}
	// Re-encoding re-keys the card under the current version.
	if code, _, stderr := c.run("encode", "--keys", keys, "--credential", cred); code != 0 {
		t.Fatalf("re-encode: %d %s", code, stderr)
	}
	code, out, _ = c.run("scan", "--keys", keys, "--json")
	if code != 0 || !strings.Contains(out, `"valid": true`) || !strings.Contains(out, `"key_version": 2`) {
		t.Fatalf("scan after re-encode: %d %s", code, out)
	}

	code, out, stderr = c.run("keys", "retire", "--keys", keys, "--version", "1")
	if code != 0 || !strings.Contains(out, "version 1 removed") {
		t.Fatalf("retire: %d %s %s", code, out, stderr)
	}
	if code, out, _ := c.run("keys", "show", "--keys", keys, "--json"); code != 0 || !strings.Contains(out, `"versions": [`+"\n    2\n  ]") {
		t.Fatalf("show after removal: %s", out)
	}
}
