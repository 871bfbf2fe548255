package agent_test

import (
	"context"
	"crypto/rand"
	"log"

	"go.uber.org/zap"

	"github.com/encoder-bridge/encoder-bridge/bridge"
	"github.com/encoder-bridge/encoder-bridge/bridge/agent"
	"github.com/encoder-bridge/encoder-bridge/bridge/journal"
	"github.com/encoder-bridge/encoder-bridge/bridge/link"
	"github.com/encoder-bridge/encoder-bridge/cardfmt"
	"github.com/encoder-bridge/encoder-bridge/reader/sim"
	"github.com/encoder-bridge/encoder-bridge/reader/sim/chip"
)

// An agent in-process, as a test of the cloud runs one: a simulated
// reader with a card, a journal in a temporary directory, and a link to
// the cloud's loopback address.
func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	readers := sim.New()
	card, _ := chip.New("mifare_classic_1k", nil)
	readers.Plug("Sim 00").Insert(card)
	keys, _ := cardfmt.GenerateKeySet(rand.Reader)

	j, err := journal.Open("/tmp/bridge-state", journal.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer j.Close() // after Run has returned

	l, err := link.New(link.Options{URL: "ws://127.0.0.1:8080", Token: "bridge-token"})
	if err != nil {
		log.Fatal(err)
	}
	a, err := agent.New(agent.Options{
		BridgeID: "bridge-1",
		Link:     l,
		Store:    j,
		Station:  &bridge.Station{Readers: readers, Keys: keys},
		Log:      zap.NewNop(),
	})
	if err != nil {
		log.Fatal(err)
	}
	// The encoder's id, as the hello announces it.
	_ = agent.Offered("bridge-1", nil, nil, nil, agent.Attach(ctx, readers, []string{"Sim 00"}))[0].ID
	if err := a.Run(ctx); err != nil { // until ctx ends, or auth is revoked
		log.Fatal(err)
	}
}
