package agent_test

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
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
	"github.com/encoder-bridge/encoder-bridge/cloud/store"
	"github.com/encoder-bridge/encoder-bridge/reader/sim"
	"github.com/encoder-bridge/encoder-bridge/reader/sim/chip"
)

// heldCard counts card writes (UPDATE BINARY) and holds the first one
// until released, closing writing when it arrives.
type heldCard struct {
	chip.Card
	writes  atomic.Int32
	writing chan struct{}
	release chan struct{}
}

func (c *heldCard) Transmit(apdu []byte) ([]byte, error) {
	if len(apdu) >= 2 && apdu[0] == 0xFF && apdu[1] == 0xD6 && c.writes.Add(1) == 1 {
		close(c.writing)
		<-c.release
	}
	return c.Card.Transmit(apdu)
}

type runningAgent struct {
	j      *journal.Journal
	cancel context.CancelFunc
	done   chan error
}

func startAgent(t *testing.T, env *cloudtest.Env, dir string, readers *sim.Context, ks *cardfmt.KeySet) *runningAgent {
	t.Helper()
	log := zaptest.NewLogger(t)
	j, err := journal.Open(dir, journal.Options{Log: log.Named("journal")})
	if err != nil {
		t.Fatal(err)
	}
	l, err := link.New(link.Options{URL: env.WebsocketURL(), Token: env.BridgeToken,
		Backoff: link.Backoff{Base: 5 * time.Millisecond, Max: 50 * time.Millisecond, Grace: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Options{
		BridgeID: env.BridgeID, Encoders: []config.Encoder{{Reader: "Sim 00", Name: "Desk"}},
		Link: l, Store: j, Station: &bridge.Station{Readers: readers, Keys: ks},
		Log: log, WriteGrace: 10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningAgent{j: j, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- a.Run(ctx) }()
	return r
}

// eventually polls cond until it holds or ten seconds pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestJournalLostEndToEnd: the real agent, journal and cloud. The bridge
// dies while writing a card and its journal is found empty at the next
// start. The cloud shows the reset on the bridge's encoders, offers the
// job again, and the bridge answers encoding_interrupted without writing
// the card again: the integrator sees the attempt fail and encodes anew.
func TestJournalLostEndToEnd(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{Config: func(c *cloud.Config) { c.Clock = clock.Real{} }})
	ks, err := cardfmt.GenerateKeySet(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c, err := chip.New("mifare_classic_1k", nil)
	if err != nil {
		t.Fatal(err)
	}
	card := &heldCard{Card: c, writing: make(chan struct{}), release: make(chan struct{})}
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(card.release) }) }
	t.Cleanup(release)
	readers := sim.New()
	readers.Plug("Sim 00").Insert(card)
	dir := t.TempDir()

	first := startAgent(t, env, dir, readers, ks)
	encoders := func() []any { return env.MustCall("/acs/encoders/list", map[string]any{})["acs_encoders"].([]any) }
	eventually(t, "the encoder online", func() bool { return len(encoders()) == 1 })
	encoderID := encoders()[0].(map[string]any)["acs_encoder_id"]
	now := time.Now()
	cred := env.CreateCredential(map[string]any{
		"starts_at": now.Add(-time.Hour).UTC().Format(time.RFC3339),
		"ends_at":   now.Add(72 * time.Hour).UTC().Format(time.RFC3339),
	})
	att := env.MustCall("/acs/encoders/encode_credential", map[string]any{
		"acs_encoder_id": encoderID, "acs_credential_id": cred["acs_credential_id"],
	})["action_attempt"].(map[string]any)
	attemptID := att["action_attempt_id"].(string)

	select {
	case <-card.writing:
	case <-time.After(10 * time.Second):
		t.Fatal("the card was not written")
	}
	// The cloud has the ack once it has the writing stage: they travel in
	// order on one connection.
	st, err := store.Open(context.Background(), env.DB)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	eventually(t, "the cloud to record the writing stage", func() bool {
		j, err := st.Q().JobOfAttempt(context.Background(), attemptID)
		return err == nil && j.Stage == "writing" && j.AckedAt != nil
	})

	// "Kill" the first bridge mid-write, and lose its journal.
	first.cancel()
	first.j.Close()
	if err := os.Truncate(filepath.Join(dir, journal.FileName), 0); err != nil {
		t.Fatal(err)
	}

	second := startAgent(t, env, dir, readers, ks)
	defer func() {
		second.cancel()
		<-second.done
		second.j.Close()
	}()
	var got map[string]any
	eventually(t, "the action attempt to finish", func() bool {
		got = env.MustCall("/action_attempts/get", map[string]any{"action_attempt_id": attemptID})["action_attempt"].(map[string]any)
		return got["status"] != "pending"
	})
	if errObj, _ := got["error"].(map[string]any); got["status"] != "error" || errObj["type"] != "encoding_interrupted" {
		t.Fatalf("action attempt %v", got)
	}
	if w := card.writes.Load(); w != 1 {
		t.Fatalf("%d card writes, want 1: the job ran again", w)
	}
	meta := encoders()[0].(map[string]any)["encoder_bridge_metadata"].(map[string]any)
	if meta["bridge_journal_reset_at"] == nil || meta["bridge_journal_reset_reason"] == "" {
		t.Fatalf("the reset is not visible on the encoder: %v", meta)
	}
	if second.j.Reset() != nil {
		t.Fatal("the journal still has the reset to report after the cloud welcomed it")
	}

	release()
	select {
	case <-first.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the first agent did not stop")
	}
}
