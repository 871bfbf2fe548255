package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/encoder-bridge/encoder-bridge/cloud/cloudtest"
	"github.com/encoder-bridge/encoder-bridge/cloud/cloudtest/fleet"
)

// TestRun holds three bridges on a real cloud, prints a job line for an
// encode it answers, a stats line on request, and a final line when
// stdin ends.
func TestRun(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{SettleWait: 10 * time.Second})
	got, err := env.Server.CreateBridgeTokens(t.Context(), env.Workspace.ID, []string{"A", "B", "C"})
	if err != nil {
		t.Fatal(err)
	}
	toks := make([]fleet.Token, len(got))
	for i, g := range got {
		toks[i] = fleet.Token{BridgeID: g.BridgeID, Token: g.Token}
	}
	file := filepath.Join(t.TempDir(), "tokens.jsonl")
	if err := fleet.WriteTokensFile(file, toks); err != nil {
		t.Fatal(err)
	}
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	var stderr strings.Builder
	code := make(chan int, 1)
	go func() {
		code <- run(context.Background(), []string{"--tokens", file, "--url", env.URL(), "--answer", "--jobs"}, inR, outW, &stderr)
		outW.Close()
	}()
	lines := make(chan map[string]any, 16)
	go func() {
		sc := bufio.NewScanner(outR)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Errorf("stdout line %q: %v", sc.Text(), err)
				continue
			}
			lines <- m
		}
		close(lines)
	}()
	next := func(event string) map[string]any {
		t.Helper()
		select {
		case m, ok := <-lines:
			if !ok {
				t.Fatalf("stdout ended waiting for %s; stderr: %s", event, stderr.String())
			}
			if m["event"] != event {
				t.Fatalf("got %v, want a %s line", m, event)
			}
			return m
		case <-time.After(20 * time.Second):
			t.Fatalf("no %s line", event)
		}
		return nil
	}
	if m := next("ready"); m["links"] != 3.0 {
		t.Fatalf("ready %v", m)
	}
	enc := env.MustCall("/acs/encoders/list", nil)["acs_encoders"].([]any)[0].(map[string]any)["acs_encoder_id"]
	cred := env.CreateCredential(nil)["acs_credential_id"]
	att := env.MustCall("/acs/encoders/encode_credential", map[string]any{"acs_encoder_id": enc, "acs_credential_id": cred})["action_attempt"].(map[string]any)
	if att["status"] != "success" {
		t.Fatalf("attempt %v", att)
	}
	if j := next("job"); j["action_attempt_id"] != att["action_attempt_id"] || j["kind"] != "encode" || j["at_unix_ns"].(float64) <= 0 {
		t.Fatalf("job line %v for attempt %v", j, att)
	}
	// The cloud acknowledges the result on the link after it settled
	// the attempt: ask for stats until the ack is counted.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := io.WriteString(inW, "stats\n"); err != nil {
			t.Fatal(err)
		}
		s := next("stats")
		if s["links"] != 3.0 || s["jobs"] != 1.0 || s["dropped"] != 0.0 {
			t.Fatalf("stats %v", s)
		}
		if s["result_acks"] == 1.0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no result ack: stats %v", s)
		}
	}
	inW.Close()
	if s := next("final"); s["links"] != 0.0 || s["dropped"] != 0.0 || s["result_acks"] != 1.0 {
		t.Fatalf("final %v", s)
	}
	if c := <-code; c != 0 {
		t.Fatalf("exit %d: %s", c, stderr.String())
	}
}

func TestRunRefused(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.jsonl")
	if err := os.WriteFile(bad, []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		say  string
	}{
		{"no flags", nil, 2, "--tokens and --url are required"},
		{"no url", []string{"--tokens", bad}, 2, "--tokens and --url are required"},
		{"zero encoders", []string{"--tokens", bad, "--url", "http://127.0.0.1:1", "--encoders", "0"}, 2, "must be positive"},
		{"missing file", []string{"--tokens", filepath.Join(dir, "none"), "--url", "http://127.0.0.1:1"}, 1, "no such file"},
		{"bad file", []string{"--tokens", bad, "--url", "http://127.0.0.1:1"}, 1, "bad tokens file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr strings.Builder
			if c := run(context.Background(), tc.args, strings.NewReader(""), io.Discard, &stderr); c != tc.code || !strings.Contains(stderr.String(), tc.say) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", c, stderr.String(), tc.code, tc.say)
			}
		})
	}
}
