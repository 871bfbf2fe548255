package agent

import (
	"context"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/encoder-bridge/encoder-bridge/bridge"
	"github.com/encoder-bridge/encoder-bridge/bridge/clock"
	"github.com/encoder-bridge/encoder-bridge/bridge/config"
	"github.com/encoder-bridge/encoder-bridge/bridge/journal"
	"github.com/encoder-bridge/encoder-bridge/bridge/link"
	"github.com/encoder-bridge/encoder-bridge/cardfmt"
	"github.com/encoder-bridge/encoder-bridge/protocol"
	"github.com/encoder-bridge/encoder-bridge/reader/sim"
	"github.com/encoder-bridge/encoder-bridge/reader/sim/chip"
)

const (
	testBridge = "bridge-test-1"
	testToken  = "test-token-0123"
	waitLong   = 10 * time.Second
)

// fakeCloud is the cloud end of the protocol, small and strict: it
// checks the token, expects a hello, welcomes it, and records everything.
type fakeCloud struct {
	t     *testing.T
	srv   *httptest.Server
	conns chan *cloudConn
	n     atomic.Int32
	// autoAck answers every result with result_ack.
	autoAck atomic.Bool
	// refuse, when set, answers the upgrade with this HTTP status.
	refuse atomic.Int32
	// now, when set, is the cloud's clock for the welcome's server_time.
	now atomic.Pointer[func() time.Time]
}

func (c *fakeCloud) serverTime() time.Time {
	if f := c.now.Load(); f != nil {
		return (*f)().UTC()
	}
	return time.Now().UTC()
}

// cloudConn is one bridge connection as the cloud sees it.
type cloudConn struct {
	t     *testing.T
	index int
	ws    *websocket.Conn
	hello *protocol.Hello
	in    chan *protocol.Message
	wmu   sync.Mutex
	// dropOn, when it returns true for a message, drops the connection
	// abruptly right after that message is recorded.
	dropOn func(*protocol.Message) bool
	closed chan struct{}
}

func newFakeCloud(t *testing.T) *fakeCloud {
	c := &fakeCloud{t: t, conns: make(chan *cloudConn, 16)}
	c.autoAck.Store(true)
	up := websocket.Upgrader{}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if code := c.refuse.Load(); code != 0 {
			http.Error(w, "refused", int(code))
			return
		}
		if r.URL.Path != protocol.Path || r.Header.Get("Authorization") != "Bearer "+testToken {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		ws.SetReadLimit(protocol.MaxMessageSize)
		_, b, err := ws.ReadMessage()
		if err != nil {
			return
		}
		m, err := protocol.Decode(b)
		if err != nil || m.Type != protocol.TypeHello {
			t.Errorf("cloud: first message %q: %v", b, err)
			return
		}
		cc := &cloudConn{t: t, index: int(c.n.Add(1)), ws: ws, hello: m.Hello, in: make(chan *protocol.Message, 1024), closed: make(chan struct{})}
		defer close(cc.closed)
		w2 := protocol.New(protocol.TypeWelcome)
		w2.Welcome = &protocol.Welcome{BridgeID: m.Hello.BridgeID, ServerTime: c.serverTime()}
		cc.send(w2)
		if c.autoAck.Load() {
			for _, r := range m.Hello.Results {
				ra := protocol.New(protocol.TypeResultAck)
				ra.ResultAck = &protocol.ResultAck{JobID: r.JobID}
				cc.send(ra)
			}
		}
		c.conns <- cc
		for {
			_, b, err := ws.ReadMessage()
			if err != nil {
				return
			}
			m, err := protocol.Decode(b)
			if err != nil {
				t.Errorf("cloud: the bridge sent an invalid frame %q: %v", b, err)
				return
			}
			cc.in <- m
			if m.Type == protocol.TypeResult && c.autoAck.Load() && (cc.dropOn == nil || !cc.dropOn(m)) {
				ra := protocol.New(protocol.TypeResultAck)
				ra.ResultAck = &protocol.ResultAck{JobID: m.Result.JobID}
				cc.send(ra)
			}
			if cc.dropOn != nil && cc.dropOn(m) {
				cc.drop()
				return
			}
		}
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *fakeCloud) url() string { return strings.Replace(c.srv.URL, "http://", "ws://", 1) }

// next waits for the next bridge connection.
func (c *fakeCloud) next(t *testing.T) *cloudConn {
	t.Helper()
	select {
	case cc := <-c.conns:
		return cc
	case <-time.After(waitLong):
		t.Fatal("the bridge did not connect")
		return nil
	}
}

func (cc *cloudConn) send(m *protocol.Message) {
	cc.t.Helper()
	b, err := protocol.Encode(m)
	if err != nil {
		cc.t.Fatalf("cloud: encode: %v", err)
	}
	cc.sendRaw(websocket.TextMessage, b)
}

func (cc *cloudConn) sendRaw(mt int, b []byte) {
	cc.wmu.Lock()
	defer cc.wmu.Unlock()
	_ = cc.ws.WriteMessage(mt, b)
}

// drop cuts the TCP connection without a close frame, as a network
// failure does.
func (cc *cloudConn) drop() { cc.ws.UnderlyingConn().Close() }

// expect returns the next message matching ok, skipping others.
func (cc *cloudConn) expect(t *testing.T, what string, ok func(*protocol.Message) bool) *protocol.Message {
	t.Helper()
	timeout := time.After(waitLong)
	for {
		select {
		case m := <-cc.in:
			if ok(m) {
				return m
			}
		case <-timeout:
			t.Fatalf("conn %d: no %s", cc.index, what)
			return nil
		}
	}
}

// collect returns every message received within d.
func (cc *cloudConn) collect(d time.Duration) []*protocol.Message {
	var out []*protocol.Message
	timeout := time.After(d)
	for {
		select {
		case m := <-cc.in:
			out = append(out, m)
		case <-timeout:
			return out
		}
	}
}

func isType(t protocol.Type, jobID string) func(*protocol.Message) bool {
	return func(m *protocol.Message) bool { return m.Type == t && (jobID == "" || m.JobID() == jobID) }
}

func isStage(jobID string, st protocol.Stage) func(*protocol.Message) bool {
	return func(m *protocol.Message) bool {
		return m.Type == protocol.TypeProgress && m.Progress.JobID == jobID && m.Progress.Stage == st
	}
}

func (cc *cloudConn) expectResult(t *testing.T, jobID string) *protocol.Result {
	t.Helper()
	return cc.expect(t, "result for "+jobID, isType(protocol.TypeResult, jobID)).Result
}

func (cc *cloudConn) job(j *protocol.Job) {
	m := protocol.New(protocol.TypeJob)
	m.Job = j
	cc.send(m)
}

func (cc *cloudConn) resultAck(id string) {
	m := protocol.New(protocol.TypeResultAck)
	m.ResultAck = &protocol.ResultAck{JobID: id}
	cc.send(m)
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

func encodeJob(id, encoder string, deadline time.Time) *protocol.Job {
	return &protocol.Job{JobID: id, ActionAttemptID: "aa-" + id, Kind: protocol.JobEncode, EncoderID: encoder, Deadline: deadline, Credential: testCredential()}
}

func scanJob(id, encoder string, deadline time.Time) *protocol.Job {
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
	cloud *fakeCloud
	sim   *sim.Context
	keys  *cardfmt.KeySet
	dir   string
	log   *zap.Logger

	encoders     []config.Encoder
	clock        clock.Clock // nil: the system clock
	writeGrace   time.Duration
	helloResults int

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
	return &harness{t: t, cloud: newFakeCloud(t), sim: sim.New(), keys: ks, dir: t.TempDir(), log: zaptest.NewLogger(t)}
}

// encoderID is the id the agent announces for the reader readerName among
// the simulator's readers now.
func (h *harness) encoderID(readerName string) string {
	names, err := h.sim.Readers(context.Background())
	if err != nil {
		panic(err)
	}
	if !slices.Contains(names, readerName) {
		names = append(names, readerName)
	}
	return EncoderID(testBridge, Identities(Attach(context.Background(), h.sim, names))[readerName])
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
		URL: h.cloud.url(), Token: testToken, Log: h.log.Named("link"),
		Backoff: link.Backoff{Base: 5 * time.Millisecond, Max: 50 * time.Millisecond, Grace: time.Second},
	})
	if err != nil {
		h.t.Fatal(err)
	}
	a, err := New(Options{
		BridgeID: testBridge, SoftwareVersion: "test", Encoders: h.encoders,
		Link: l, Store: j, Station: &bridge.Station{Readers: h.sim, Keys: h.keys, Now: stationNow, Log: h.log.Named("station")},
		Log: h.log, Clock: h.clock, WriteGrace: h.writeGrace, ReaderRetry: 10 * time.Millisecond,
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
func resultsFor(cc *cloudConn, msgs []*protocol.Message, id string) int {
	n := 0
	for _, r := range cc.hello.Results {
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
