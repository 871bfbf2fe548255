package agent

import (
	"context"
	"crypto/rand"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/encoder-bridge/encoder-bridge/bridge"
	"github.com/encoder-bridge/encoder-bridge/bridge/clock"
	"github.com/encoder-bridge/encoder-bridge/bridge/config"
	"github.com/encoder-bridge/encoder-bridge/bridge/journal"
	"github.com/encoder-bridge/encoder-bridge/bridge/link"
	"github.com/encoder-bridge/encoder-bridge/cardfmt"
	"github.com/encoder-bridge/encoder-bridge/cloud/cloudtest"
	"github.com/encoder-bridge/encoder-bridge/protocol"
	"github.com/encoder-bridge/encoder-bridge/reader/sim"
	"github.com/encoder-bridge/encoder-bridge/reader/sim/chip"
)

const (
	testBridge = "bridge-test-1"
	testToken  = "test-token-0123"
	waitLong   = 10 * time.Second
)

func isType(t protocol.Type, jobID string) func(*protocol.Message) bool {
	return func(m *protocol.Message) bool { return m.Type == t && (jobID == "" || m.JobID() == jobID) }
}

func isStage(jobID string, st protocol.Stage) func(*protocol.Message) bool {
	return func(m *protocol.Message) bool {
		return m.Type == protocol.TypeProgress && m.Progress.JobID == jobID && m.Progress.Stage == st
	}
}

var jobSeq atomic.Int32

func seq(v uint32) *uint32 { return &v }

func testCredential() *protocol.Credential {
	return &protocol.Credential{
		CredentialID: "6f1c2d8e-3a4b-4c5d-9e6f-708192a3b4c5", CardNumber: "100234", CardFunctionType: "guest",
		StartsAt: "2026-11-23T15:00:00Z", EndsAt: "2036-11-26T11:00:00Z",
		EntranceIDs: []string{"0b7e4f2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b"}, IssueSequence: seq(3),
	}
}

func encodeJob(id string, encoder protocol.EncoderID, deadline time.Time) *protocol.Job {
	return &protocol.Job{JobID: id, ActionAttemptID: "aa-" + id, Kind: protocol.JobEncode, EncoderID: encoder, Deadline: deadline, Credential: testCredential()}
}

func scanJob(id string, encoder protocol.EncoderID, deadline time.Time) *protocol.Job {
	return &protocol.Job{JobID: id, ActionAttemptID: "aa-" + id, Kind: protocol.JobScan, EncoderID: encoder, Deadline: deadline}
}

func in(d time.Duration) time.Time { return time.Now().Add(d) }

// countingCard counts the card writes (UPDATE BINARY) that reach a chip,
// and can hold the first one until released.
type countingCard struct {
	chip.Card
	writes atomic.Int32
	gate   chan struct{}
}

func (c *countingCard) Transmit(apdu []byte) ([]byte, error) {
	if len(apdu) >= 2 && apdu[0] == 0xFF && apdu[1] == 0xD6 {
		if c.writes.Add(1) == 1 && c.gate != nil {
			<-c.gate
		}
	}
	return c.Card.Transmit(apdu)
}

func newCard(t *testing.T) *countingCard {
	t.Helper()
	c, err := chip.New("mifare_classic_1k", nil)
	if err != nil {
		t.Fatal(err)
	}
	return &countingCard{Card: c}
}

// writesPerEncode is how many card writes one encode of a fresh card
// makes, measured once with the Station alone.
var writesPerEncode = sync.OnceValue(func() int32 {
	ks, _ := cardfmt.GenerateKeySet(rand.Reader)
	s := sim.New()
	r := s.Plug("ref")
	c, _ := chip.New("mifare_classic_1k", nil)
	cc := &countingCard{Card: c}
	r.Insert(cc)
	cred, err := bridge.CredentialOf(*testCredential())
	if err != nil {
		panic(err)
	}
	st := &bridge.Station{Readers: s, Keys: ks}
	if _, err := st.EncodeWith(context.Background(), "ref", cred, bridge.JobOptions{}); err != nil {
		panic(err)
	}
	return cc.writes.Load()
})

// harness is an agent over a simulated reader, the real journal and the
// real link, talking to a fakeCloud.
type harness struct {
	t     *testing.T
	cloud *cloudtest.FakeCloud
	sim   *sim.Context
	keys  *cardfmt.KeySet
	dir   string
	log   *zap.Logger

	encoders     []config.Encoder
	clock        clock.Clock // nil: the system clock
	writeGrace   time.Duration
	helloResults int
	observer     Observer

	j      *journal.Journal
	agent  *Agent
	cancel context.CancelFunc
	done   chan error
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	ks, err := cardfmt.GenerateKeySet(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, cloud: cloudtest.NewFakeCloud(t, testToken), sim: sim.New(), keys: ks, dir: t.TempDir(), log: zaptest.NewLogger(t)}
}

// encoderID is the id the agent announces for the reader readerName among
// the simulator's readers now.
func (h *harness) encoderID(readerName string) protocol.EncoderID {
	names, err := h.sim.Readers(context.Background())
	if err != nil {
		panic(err)
	}
	if !slices.Contains(names, readerName) {
		names = append(names, readerName)
	}
	return NewEncoderID(testBridge, Identities(Attach(context.Background(), h.sim, names))[readerName])
}

// start opens the journal and runs an agent until the test ends.
func (h *harness) start() {
	h.t.Helper()
	// The journal and the station read the PC's clock, as in production.
	var jopts journal.Options
	var stationNow func() time.Time
	if h.clock != nil {
		jopts.Now, stationNow = h.clock.Now, h.clock.Now
	}
	j, err := journal.Open(h.dir, jopts)
	if err != nil {
		h.t.Fatal(err)
	}
	l, err := link.New(link.Options{
		URL: h.cloud.URL(), Token: testToken, Log: h.log.Named("link"),
		Backoff: link.Backoff{Base: 5 * time.Millisecond, Max: 50 * time.Millisecond, Grace: time.Second},
	})
	if err != nil {
		h.t.Fatal(err)
	}
	a, err := New(Options{
		BridgeID: testBridge, SoftwareVersion: "test", Encoders: h.encoders,
		Link: l, Store: j, Station: &bridge.Station{Readers: h.sim, Keys: h.keys, Now: stationNow, Log: h.log.Named("station")},
		Log: h.log, Clock: h.clock, WriteGrace: h.writeGrace, ReaderRetry: 10 * time.Millisecond,
		Observer: h.observer,
	})
	if err != nil {
		h.t.Fatal(err)
	}
	if h.helloResults > 0 {
		a.helloResults = h.helloResults
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.j, h.agent, h.cancel, h.done = j, a, cancel, make(chan error, 1)
	done := h.done
	go func() { done <- a.Run(ctx) }()
	h.t.Cleanup(func() { h.stop() })
}

// stop stops the agent and closes the journal; it returns Run's error.
func (h *harness) stop() error {
	if h.cancel == nil {
		return nil
	}
	h.cancel()
	h.cancel = nil
	var err error
	select {
	case err = <-h.done:
	case <-time.After(waitLong):
		h.t.Error("Run did not return after cancel")
	}
	h.j.Close()
	return err
}

// quiet waits until the journal holds nothing: every result acknowledged.
func (h *harness) quiet() {
	h.t.Helper()
	deadline := time.Now().Add(waitLong)
	for time.Now().Before(deadline) {
		p, _ := h.j.Pending()
		a, _ := h.j.Active()
		if len(p) == 0 && len(a) == 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	h.t.Fatal("the journal still holds jobs")
}

// resultsFor counts the results for id a connection carried: in its hello
// and as messages.
func resultsFor(cc *cloudtest.FakeConn, msgs []*protocol.Message, id string) int {
	n := 0
	for _, r := range cc.Hello.Results {
		if r.JobID == id {
			n++
		}
	}
	for _, m := range msgs {
		if m.Type == protocol.TypeResult && m.Result.JobID == id {
			n++
		}
	}
	return n
}

func stages(msgs []*protocol.Message, id string) []protocol.Stage {
	var out []protocol.Stage
	for _, m := range msgs {
		if m.Type == protocol.TypeProgress && m.Progress.JobID == id {
			out = append(out, m.Progress.Stage)
		}
	}
	return out
}

func typesOf(msgs []*protocol.Message) []protocol.Type {
	var out []protocol.Type
	for _, m := range msgs {
		out = append(out, m.Type)
	}
	return slices.Compact(out)
}
