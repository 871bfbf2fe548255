package hwtest_test

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/encoder-bridge/encoder-bridge/bridge"
	"github.com/encoder-bridge/encoder-bridge/bridge/agent"
	"github.com/encoder-bridge/encoder-bridge/bridge/config"
	"github.com/encoder-bridge/encoder-bridge/bridge/journal"
	"github.com/encoder-bridge/encoder-bridge/bridge/link"
	"github.com/encoder-bridge/encoder-bridge/cardfmt"
	"github.com/encoder-bridge/encoder-bridge/cloud/cloudtest"
	"github.com/encoder-bridge/encoder-bridge/reader"
	"github.com/encoder-bridge/encoder-bridge/reader/pcsc"
)

// startDesk runs a bridge agent in this process, linked to env's cloud,
// with one encoder named "Desk" on reader, whose card I/O goes through
// wrap(the real pcscd context). It waits until the cloud lists the
// encoder, makes a credential valid now for three days, and returns both
// ids. Everything stops when the benchmark ends.
func startDesk(b *testing.B, env *cloudtest.Env, readerName string, wrap func(reader.Context) reader.Context) (encoderID, credentialID string) {
	b.Helper()
	rc, err := pcsc.Open(pcsc.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rc.Close() })
	ks, err := cardfmt.GenerateKeySet(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	j, err := journal.Open(b.TempDir(), journal.Options{})
	if err != nil {
		b.Fatal(err)
	}
	l, err := link.New(link.Options{URL: env.WebsocketURL(), Token: env.BridgeToken})
	if err != nil {
		b.Fatal(err)
	}
	a, err := agent.New(agent.Options{
		BridgeID: env.BridgeID,
		Encoders: []config.Encoder{{Reader: readerName, Name: "Desk"}},
		Link:     l, Store: j,
		Station: &bridge.Station{Readers: wrap(rc), Keys: ks},
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	b.Cleanup(func() {
		cancel()
		<-done
		j.Close()
	})

	for deadline := time.Now().Add(20 * time.Second); encoderID == ""; {
		if time.Now().After(deadline) {
			b.Fatal("the encoder did not come online")
		}
		for _, e := range env.MustCall("/acs/encoders/list", map[string]any{})["acs_encoders"].([]any) {
			if m := e.(map[string]any); m["display_name"] == "Desk" {
				encoderID = m["acs_encoder_id"].(string)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	now := time.Now()
	cred := env.CreateCredential(map[string]any{
		"starts_at": now.Add(-time.Hour).UTC().Format(time.RFC3339),
		"ends_at":   now.Add(72 * time.Hour).UTC().Format(time.RFC3339),
	})
	return encoderID, cred["acs_credential_id"].(string)
}
