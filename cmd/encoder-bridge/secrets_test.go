package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/encoder-bridge/encoder-bridge/cloud"
	"github.com/encoder-bridge/encoder-bridge/cloud/clock"
	"github.com/encoder-bridge/encoder-bridge/cloud/cloudtest"
	"github.com/encoder-bridge/encoder-bridge/internal/leakcheck"
	"github.com/encoder-bridge/encoder-bridge/internal/syncbuf"
	"github.com/encoder-bridge/encoder-bridge/reader/sim/chip"
)

// keyFileSecrets adds every key of the key file at path.
func keyFileSecrets(t *testing.T, s *leakcheck.Set, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		KeyID    string `json:"key_id"`
		Versions []struct {
			MACKey string `json:"mac_key"`
			DivKey string `json:"div_key"`
		} `json:"versions"`
	}
	if err := json.Unmarshal(b, &f); err != nil || len(f.Versions) == 0 {
		t.Fatalf("key file: %v %s", err, b)
	}
	// The key's ID is on every card in clear, and the status page shows it.
	s.Public(strings.ToLower(f.KeyID))
	s.Public(strings.ToUpper(f.KeyID))
	for _, v := range f.Versions {
		for what, k := range map[string]string{"a MAC key": v.MACKey, "a diversification key": v.DivKey} {
			kb, err := hex.DecodeString(k)
			if err != nil {
				t.Fatal(err)
			}
			s.Bytes(what, kb)
		}
	}
}

// TestNoSecretInLogs runs encodes and scans through the bridge's run
// command at debug level against a real cloud, whose own log is at debug
// level too, and greps both logs, the status page and the metrics for
// every secret the test handed out or that crossed the card: the bridge
// token, the API key, the site keys, the card's UID, and every byte sent
// to or read from the card (record blocks, sector trailers, PWDs,
// authentication cryptograms), in text, hex and base64.
func TestNoSecretInLogs(t *testing.T) {
	for _, kind := range []string{chip.KindClassic1K, chip.KindNTAG215, chip.KindDESFireEV2} {
		t.Run(kind, func(t *testing.T) {
			leaks := runAndCollectSecrets(t, kind)
			for _, l := range leaks {
				t.Error(l)
			}
		})
	}
}

func runAndCollectSecrets(t *testing.T, kind string) []string {
	var cloudLog syncbuf.Buffer
	env := cloudtest.New(t, cloudtest.Options{Config: func(cfg *cloud.Config) {
		// The bridge stamps its results with the system clock.
		cfg.Clock = clock.Real{}
		cfg.Logger = zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewDevelopmentEncoderConfig()),
			zapcore.AddSync(&cloudLog), zapcore.DebugLevel))
	}})
	c := newCLI(t)
	raw, err := chip.New(kind, nil)
	if err != nil {
		t.Fatal(err)
	}
	card := &leakcheck.Tap{Card: raw}
	c.sim.Plug("ACS ACR1252 00").Insert(card)
	keys := c.keys()
	token := c.file("token", env.BridgeToken+"\n")
	healthAddr := freeLoopbackAddr(t)
	// The log file gets what standard error gets, and is checked as well.
	logFile := filepath.Join(c.dir, "logs", "encoder-bridge.log")
	cfg := c.file("bridge.yaml", "version: 1\nkeys: "+keys+"\nlog:\n  level: debug\n  file:\n    path: "+logFile+"\ncloud:\n  url: "+env.WebsocketURL()+
		"\n  bridge_id: "+env.BridgeID+"\n  token_file: "+token+"\nstate_dir: "+c.dir+"/state\nhealth:\n  listen: "+healthAddr+"\n")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type res struct {
		code   int
		stderr string
	}
	done := make(chan res, 1)
	go func() {
		code, _, errs := c.runCtx(ctx, "run", "--config", cfg)
		done <- res{code, errs}
	}()

	encID := waitEncoder(t, env)
	if encID == "" {
		cancel()
		t.Fatalf("the bridge's encoder never showed in the cloud; the bridge's log:\n%s", (<-done).stderr)
	}
	now := time.Now().UTC()
	cred := env.MustCall("/acs/credentials/create", map[string]any{
		"access_method": "card", "acs_user_id": "6f1c2d8e-3a4b-4c5d-9e6f-708192a3b4c5",
		"starts_at": now.Format(time.RFC3339), "ends_at": now.Add(48 * time.Hour).Format(time.RFC3339),
	})["acs_credential"].(map[string]any)
	att := env.MustCall("/acs/encoders/encode_credential", map[string]any{"acs_encoder_id": encID, "acs_credential_id": cred["acs_credential_id"]})
	waitAttempt(t, env, att)
	att = env.MustCall("/acs/encoders/scan_credential", map[string]any{"acs_encoder_id": encID})
	waitAttempt(t, env, att)

	// The status page and the metrics, as they stand after the jobs.
	pages := map[string]string{}
	for _, path := range []string{"/", "/metrics", "/readyz", "/healthz"} {
		resp, err := http.Get("http://" + healthAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		pages[path] = string(b)
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
	// The logs must be there to be checked.
	if !strings.Contains(r.stderr, `"level":"debug"`) && !strings.Contains(r.stderr, "DEBUG") {
		t.Fatalf("the bridge's log has no debug line:\n%s", r.stderr)
	}
	// The cloud logs at info and above; it is given debug anyway.
	if !strings.Contains(cloudLog.String(), "job finished") {
		t.Fatalf("the cloud's log lacks the jobs:\n%s", cloudLog.String())
	}

	s := leakcheck.New()
	s.Text("the bridge token", env.BridgeToken)
	s.Text("the API key", env.APIKey)
	keyFileSecrets(t, s, keys)
	s.Bytes("the card's UID", raw.UID())
	if df, ok := raw.(*chip.DESFire); ok {
		s.Bytes("the card's real UID", df.RealUID())
	}
	if card.AddTo(s) == 0 {
		t.Fatal("no APDU data crossed the card")
	}
	fileLog, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	if string(fileLog) != r.stderr {
		t.Errorf("the log file differs from standard error:\n%s\n---\n%s", fileLog, r.stderr)
	}
	leaks := append(s.Find("the bridge's log", r.stderr), s.Find("the cloud's log", cloudLog.String())...)
	leaks = append(leaks, s.Find("the bridge's log file", string(fileLog))...)
	for path, page := range pages {
		leaks = append(leaks, s.Find("the bridge's "+path, page)...)
	}
	return leaks
}

func waitEncoder(t *testing.T, env *cloudtest.Env) string {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		status, out := env.Call(http.MethodPost, "/acs/encoders/list", nil)
		if status != http.StatusOK {
			t.Fatalf("list encoders: %d %v", status, out)
		}
		if encs, _ := out["acs_encoders"].([]any); len(encs) > 0 {
			return encs[0].(map[string]any)["acs_encoder_id"].(string)
		}
	}
	return ""
}

func waitAttempt(t *testing.T, env *cloudtest.Env, out map[string]any) {
	t.Helper()
	id := out["action_attempt"].(map[string]any)["action_attempt_id"]
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		a := env.MustCall("/action_attempts/get", map[string]any{"action_attempt_id": id})["action_attempt"].(map[string]any)
		switch a["status"] {
		case "success":
			return
		case "error":
			t.Fatalf("%s failed: %v", a["action_type"], a["error"])
		}
	}
	t.Fatalf("action attempt %v never finished", id)
}
