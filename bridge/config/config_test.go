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
		{name: "bad level and empty reader", yaml: "version: 1\nlog:\n  level: loud\nencoders:\n  - name: x\n", wantErr: []string{`log.level: must be debug, info, warn or error, got "loud"`, "encoders[0].reader: must not be empty"}},
		{name: "duplicate reader", yaml: "version: 1\nencoders:\n  - reader: A\n  - reader: A\n", wantErr: []string{"encoders[1].reader: same reader as encoders[0]"}},
		{name: "negative wait", yaml: "version: 1\nwait: -1s\n", wantErr: []string{"wait: must not be negative"}},
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
	c, err := Load(filepath.Join("..", "..", "configs", "encoder-bridge.yaml"))
	if err != nil {
		t.Fatalf("configs/encoder-bridge.yaml: %v", err)
	}
	if len(c.Encoders) != 1 || time.Duration(c.Wait) != 30*time.Second {
		t.Fatalf("example parsed as %+v", c)
	}
}
