package hwtest_test

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/encoder-bridge/encoder-bridge/cloud"
	"github.com/encoder-bridge/encoder-bridge/cloud/clock"
	"github.com/encoder-bridge/encoder-bridge/cloud/cloudtest"
	"github.com/encoder-bridge/encoder-bridge/hwtest"
	"github.com/encoder-bridge/encoder-bridge/internal/leakcheck"
	"github.com/encoder-bridge/encoder-bridge/internal/syncbuf"
	"github.com/encoder-bridge/encoder-bridge/reader/sim/chip"
)

// TestBinaryLeaksNoSecret runs the encoder-bridge binary at debug level
// against the test cloud with a virtual Classic card on a vpcd encoder,
// encodes and scans it, stops the bridge, and greps the bridge's output
// and the cloud's log for the token, the API key, the site keys, the UID
// and every byte that crossed the card.
func TestBinaryLeaksNoSecret(t *testing.T) {
	slot := hwtest.AcquireSlot(t)
	raw, _ := chip.New(chip.KindClassic1K, nil)
	card := &leakcheck.Tap{Card: raw}
	hwtest.InsertCard(t, slot, card)

	var cloudLog syncbuf.Buffer
	env := cloudtest.New(t, cloudtest.Options{Config: func(c *cloud.Config) {
		c.Clock = clock.Real{}
		c.Logger = zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewDevelopmentEncoderConfig()),
			zapcore.AddSync(&cloudLog), zapcore.DebugLevel))
	}})
	br := startBinBridge(t, env, slot, "debug")
	log := br.Log
	page := br.Page
	waitPage(t, page, `id="link" data-state="up"`, log)
	encoderID := ""
	for deadline := time.Now().Add(30 * time.Second); encoderID == "" && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		for _, e := range env.MustCall("/acs/encoders/list", map[string]any{})["acs_encoders"].([]any) {
			if m := e.(map[string]any); m["display_name"] == "Front desk" {
				encoderID = m["acs_encoder_id"].(string)
			}
		}
	}
	if encoderID == "" {
		t.Fatalf("the cloud lists no encoder; bridge log:\n%s", log)
	}
	now := time.Now()
	cred := env.CreateCredential(map[string]any{
		"starts_at": now.Add(-time.Hour).UTC().Format(time.RFC3339),
		"ends_at":   now.Add(72 * time.Hour).UTC().Format(time.RFC3339),
	})
	for _, call := range []struct {
		path string
		body map[string]any
	}{
		{"/acs/encoders/encode_credential", map[string]any{"acs_encoder_id": encoderID, "acs_credential_id": cred["acs_credential_id"]}},
		{"/acs/encoders/scan_credential", map[string]any{"acs_encoder_id": encoderID}},
	} {
		id := env.MustCall(call.path, call.body)["action_attempt"].(map[string]any)["action_attempt_id"]
		status := ""
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			a := env.MustCall("/action_attempts/get", map[string]any{"action_attempt_id": id})["action_attempt"].(map[string]any)
			if status, _ = a["status"].(string); status != "pending" {
				break
			}
		}
		if status != "success" {
			t.Fatalf("%s: attempt %s; bridge log:\n%s", call.path, status, log)
		}
	}
	br.Stop()

	s := leakcheck.New()
	s.Text("the bridge token", env.BridgeToken)
	s.Text("the API key", env.APIKey)
	kf, err := os.ReadFile(br.Keys)
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
	if err := json.Unmarshal(kf, &f); err != nil || len(f.Versions) == 0 {
		t.Fatalf("key file: %v", err)
	}
	s.Public(strings.ToLower(f.KeyID))
	s.Public(strings.ToUpper(f.KeyID))
	for _, v := range f.Versions {
		for _, k := range []string{v.MACKey, v.DivKey} {
			b, err := hex.DecodeString(k)
			if err != nil {
				t.Fatal(err)
			}
			s.Bytes("a site key", b)
		}
	}
	s.Bytes("the card's UID", raw.UID())
	if card.AddTo(s) == 0 {
		t.Fatal("no APDU data crossed the card")
	}
	if !strings.Contains(log.String(), "DEBUG") {
		t.Fatalf("the bridge logged nothing at debug level:\n%s", log)
	}
	for _, l := range append(s.Find("the bridge's output", log.String()), s.Find("the cloud's log", cloudLog.String())...) {
		t.Error(l)
	}
}
