package agent_test

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/encoder-bridge/encoder-bridge/bridge"
	"github.com/encoder-bridge/encoder-bridge/bridge/agent"
	"github.com/encoder-bridge/encoder-bridge/bridge/config"
	"github.com/encoder-bridge/encoder-bridge/bridge/journal"
	"github.com/encoder-bridge/encoder-bridge/bridge/link"
	"github.com/encoder-bridge/encoder-bridge/cardfmt"
	"github.com/encoder-bridge/encoder-bridge/cloud"
	"github.com/encoder-bridge/encoder-bridge/cloud/clock"
	"github.com/encoder-bridge/encoder-bridge/cloud/cloudtest"
	"github.com/encoder-bridge/encoder-bridge/reader/sim"
	"github.com/encoder-bridge/encoder-bridge/reader/sim/chip"
)

// TestFailoverToAnotherInstance: the real agent with two cloud URLs, two
// cloud instances on one database. The first instance dies; the bridge
// moves to the second, and a job made there is written and finished.
func TestFailoverToAnotherInstance(t *testing.T) {
	a := cloudtest.New(t, cloudtest.Options{Config: func(c *cloud.Config) { c.Clock = clock.Real{} }})
	b := a.Instance()
	ks, err := cardfmt.GenerateKeySet(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	card, err := chip.New("mifare_classic_1k", nil)
	if err != nil {
		t.Fatal(err)
	}
	readers := sim.New()
	readers.Plug("Sim 00").Insert(card)
	log := zaptest.NewLogger(t)
	j, err := journal.Open(t.TempDir(), journal.Options{Log: log.Named("journal")})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	dialed := make(chan string, 8)
	l, err := link.New(link.Options{URLs: []string{a.WebsocketURL(), b.WebsocketURL()}, Token: a.BridgeToken,
		Backoff: link.Backoff{Base: 5 * time.Millisecond, Max: 50 * time.Millisecond, Grace: time.Second},
		Dialed:  func(u string) { dialed <- u }})
	if err != nil {
		t.Fatal(err)
	}
	ag, err := agent.New(agent.Options{
		BridgeID: a.BridgeID, Encoders: []config.Encoder{{Reader: "Sim 00", Name: "Desk"}},
		Link: l, Store: j, Station: &bridge.Station{Readers: readers, Keys: ks}, Log: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ag.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	if u := <-dialed; u != a.WebsocketURL() {
		t.Fatalf("first connection to %s, want the first URL %s", u, a.WebsocketURL())
	}
	eventually(t, "the bridge online on the first instance", func() bool { return a.Server.Online(a.BridgeID) })

	a.Stop()
	if u := <-dialed; u != b.WebsocketURL() {
		t.Fatalf("after the first instance died the bridge dialled %s, want %s", u, b.WebsocketURL())
	}
	eventually(t, "the bridge online on the second instance", func() bool { return b.Server.Online(b.BridgeID) })

	encoders := b.MustCall("/acs/encoders/list", map[string]any{})["acs_encoders"].([]any)
	if len(encoders) != 1 {
		t.Fatalf("encoders %v", encoders)
	}
	now := time.Now()
	cred := b.CreateCredential(map[string]any{
		"starts_at": now.Add(-time.Hour).UTC().Format(time.RFC3339),
		"ends_at":   now.Add(72 * time.Hour).UTC().Format(time.RFC3339),
	})
	att := b.MustCall("/acs/encoders/encode_credential", map[string]any{
		"acs_encoder_id": encoders[0].(map[string]any)["acs_encoder_id"], "acs_credential_id": cred["acs_credential_id"],
	})["action_attempt"].(map[string]any)
	var got map[string]any
	eventually(t, "the action attempt to finish", func() bool {
		got = b.MustCall("/action_attempts/get", map[string]any{"action_attempt_id": att["action_attempt_id"]})["action_attempt"].(map[string]any)
		return got["status"] != "pending"
	})
	if got["status"] != "success" {
		t.Fatalf("action attempt %v", got)
	}
}
