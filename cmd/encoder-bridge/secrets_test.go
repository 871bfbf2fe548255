package main

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/encoder-bridge/encoder-bridge/cloud"
	"github.com/encoder-bridge/encoder-bridge/cloud/clock"
	"github.com/encoder-bridge/encoder-bridge/cloud/cloudtest"
	"github.com/encoder-bridge/encoder-bridge/internal/syncbuf"
	"github.com/encoder-bridge/encoder-bridge/reader/sim/chip"
)

// tappedCard records every byte that crosses the card's interface: the
// command data the bridge sends (record blocks, sector trailers with the
// diversified keys, PWDs, session keys' cryptograms) and the card's
// answers. Each is a card payload no log may show.
type tappedCard struct {
	chip.Card
	mu     sync.Mutex
	frames [][]byte
}

func (c *tappedCard) Transmit(apdu []byte) ([]byte, error) {
	resp, err := c.Card.Transmit(apdu)
	c.mu.Lock()
	defer c.mu.Unlock()
	// A command APDU's header is CLA INS P1 P2 Lc; its data follows.
	if len(apdu) > 5 {
		c.frames = append(c.frames, append([]byte(nil), apdu[5:]...))
	}
	if len(resp) > 2 {
		c.frames = append(c.frames, append([]byte(nil), resp[:len(resp)-2]...))
	}
	return resp, err
}

func (c *tappedCard) payloads() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.frames...)
}

// secretSet maps each spelling of a secret to what it is, for the
// failure message.
type secretSet map[string]string

func (s secretSet) text(what, v string) {
	if v != "" {
		s[v] = what
	}
}

// bytes adds b in upper and lower hex and in standard and URL base64.
// Short or uniform values (a default key FFFFFFFFFFFF, a zero block) are
// left out: they are public and would match by chance.
func (s secretSet) bytes(what string, b []byte) {
	if len(b) < 4 || distinct(b) < 3 {
		return
	}
	h := hex.EncodeToString(b)
	s[h] = what
	s[strings.ToUpper(h)] = what
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		// A base64 spelling of at least 8 characters is specific enough.
		if e := enc.EncodeToString(b); len(e) >= 8 {
			s[strings.TrimRight(e, "=")] = what
		}
	}
}

func distinct(b []byte) int {
	var seen [256]bool
	n := 0
	for _, x := range b {
		if !seen[x] {
			seen[x] = true
			n++
		}
	}
	return n
}

// leaks returns a line for each secret found in out.
func (s secretSet) leaks(name, out string) []string {
	var found []string
	for v, what := range s {
		if i := strings.Index(out, v); i >= 0 {
			// The message shows where, not the secret itself.
			lo, hi := max(0, i-120), min(len(out), i+len(v)+40)
			found = append(found, name+" shows "+what+" in: "+strings.ReplaceAll(out[lo:hi], v, "<"+what+">"))
		}
	}
	return found
}

// keyFileSecrets adds every key of the key file at path, as written and
// as bytes.
func keyFileSecrets(t *testing.T, s secretSet, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Versions []struct {
			MACKey string `json:"mac_key"`
			DivKey string `json:"div_key"`
		} `json:"versions"`
	}
	if err := json.Unmarshal(b, &f); err != nil || len(f.Versions) == 0 {
		t.Fatalf("key file: %v %s", err, b)
	}
	for _, v := range f.Versions {
		for what, k := range map[string]string{"a MAC key": v.MACKey, "a diversification key": v.DivKey} {
			kb, err := hex.DecodeString(k)
			if err != nil {
				t.Fatal(err)
			}
			s.bytes(what, kb)
		}
	}
}

// TestNoSecretInLogs runs encodes and scans through the bridge's run
// command at debug level against a real cloud, whose own log is at debug
// level too, and greps both logs for every secret the test handed out or
// that crossed the card: the bridge token, the API key, the site keys,
// the card's UID, and every byte sent to or read from the card (record
// blocks, sector trailers, PWDs, authentication cryptograms).
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
	card := &tappedCard{Card: raw}
	c.sim.Plug("ACS ACR1252 00").Insert(card)
	keys := c.keys()
	token := c.file("token", env.BridgeToken+"\n")
	cfg := c.file("bridge.yaml", "version: 1\nkeys: "+keys+"\nlog:\n  level: debug\ncloud:\n  url: "+env.WebsocketURL()+
		"\n  bridge_id: "+env.BridgeID+"\n  token_file: "+token+"\nstate_dir: "+c.dir+"/state\nhealth:\n  listen: "+freeLoopbackAddr(t)+"\n")

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

	s := secretSet{}
	s.text("the bridge token", env.BridgeToken)
	s.text("the API key", env.APIKey)
	keyFileSecrets(t, s, keys)
	s.bytes("the card's UID", raw.UID())
	if df, ok := raw.(*chip.DESFire); ok {
		s.bytes("the card's real UID", df.RealUID())
	}
	payloads := card.payloads()
	if len(payloads) == 0 {
		t.Fatal("no APDU data crossed the card")
	}
	for _, p := range payloads {
		s.bytes("card data", p)
	}
	return append(s.leaks("the bridge's log", r.stderr), s.leaks("the cloud's log", cloudLog.String())...)
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
