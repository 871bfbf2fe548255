package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.etcd.io/bbolt"

	"github.com/encoder-bridge/encoder-bridge/bridge"
	"github.com/encoder-bridge/encoder-bridge/bridge/config"
	"github.com/encoder-bridge/encoder-bridge/bridge/journal"
	"github.com/encoder-bridge/encoder-bridge/bridge/link"
	"github.com/encoder-bridge/encoder-bridge/cloud/cloudtest"
	"github.com/encoder-bridge/encoder-bridge/protocol"
	"github.com/encoder-bridge/encoder-bridge/reader/sim/chip"
)

func TestEncodeAndScanEndToEnd(t *testing.T) {
	h := newHarness(t)
	h.encoders = []config.Encoder{{Reader: "sim", Name: "Front desk"}}
	card := newCard(t)
	h.sim.Plug("Sim 00").Insert(card)
	h.start()
	cc := h.cloud.Next(t)

	enc := h.encoderID("Sim 00")
	want := protocol.Encoder{ID: enc, DisplayName: "Front desk", ReaderName: "Sim 00", Technologies: DefaultTechnologies}
	if len(cc.Hello.Encoders) != 1 || cc.Hello.Encoders[0].ID != want.ID || cc.Hello.Encoders[0].DisplayName != want.DisplayName ||
		!slices.Equal(cc.Hello.Encoders[0].Technologies, want.Technologies) {
		t.Fatalf("hello encoders = %+v", cc.Hello.Encoders)
	}
	if cc.Hello.BridgeID != testBridge || cc.Hello.ProtocolVersion != protocol.Version || cc.Hello.SoftwareVersion != "test" {
		t.Fatalf("hello = %+v", cc.Hello)
	}

	cc.Job(encodeJob("j-enc", enc, in(waitLong)))
	r := cc.ExpectResult(t, "j-enc")
	if r.Error != nil {
		t.Fatalf("encode failed: %+v", r.Error)
	}
	if r.Card.UID != uidHex(card.UID()) || r.Card.Technology != "mifare_classic_1k" || !r.Card.Valid ||
		r.Card.KeyVersion != 1 || r.Card.FormatVersion == 0 || r.Card.Credential == nil || r.Card.Credential.CardNumber != "100234" {
		t.Fatalf("result card = %+v", r.Card)
	}
	h.quiet()
	if e, err := h.j.Get("j-enc"); err != nil || e.State != journal.StateAcknowledged {
		t.Fatalf("after result_ack: %+v, %v", e, err)
	}

	cc.Job(scanJob("j-scan", enc, in(waitLong)))
	r = cc.ExpectResult(t, "j-scan")
	if r.Error != nil || !r.Card.Valid || r.Card.Credential == nil || r.Card.Credential.CredentialID != testCredential().CredentialID ||
		*r.Card.Credential.IssueSequence != 3 || r.Card.UID != uidHex(card.UID()) {
		t.Fatalf("scan result = %+v / %+v", r.Card, r.Error)
	}
}

// An encode result carries the versions of the record the layout
// verified on the card: an Ultralight or NTAG record is format version 2
// (bound to its marker and counter), which a scan of the card confirms.
func TestEncodeReportsRecordVersions(t *testing.T) {
	for _, kind := range []string{"mifare_classic_1k", "ntag213", "mifare_ultralight_ev1_mf0ul21"} {
		t.Run(kind, func(t *testing.T) {
			h := newHarness(t)
			c, err := chip.New(kind, nil)
			if err != nil {
				t.Fatal(err)
			}
			h.sim.Plug("Sim 00").Insert(c)
			h.start()
			cc := h.cloud.Next(t)
			enc := h.encoderID("Sim 00")
			cc.Job(encodeJob("e", enc, in(waitLong)))
			encoded := cc.ExpectResult(t, "e")
			cc.Job(scanJob("s", enc, in(waitLong)))
			scanned := cc.ExpectResult(t, "s")
			if encoded.Card == nil || scanned.Card == nil || !scanned.Card.Valid {
				t.Fatalf("encode %+v, scan %+v", encoded, scanned)
			}
			if encoded.Card.FormatVersion != scanned.Card.FormatVersion || encoded.Card.KeyVersion != scanned.Card.KeyVersion {
				t.Fatalf("encode reported format %d key %d, the card holds format %d key %d",
					encoded.Card.FormatVersion, encoded.Card.KeyVersion, scanned.Card.FormatVersion, scanned.Card.KeyVersion)
			}
		})
	}
}

func TestMessageOrderOfAJob(t *testing.T) {
	h := newHarness(t)
	h.cloud.AutoAck.Store(false)
	h.sim.Plug("Sim 00").Insert(newCard(t))
	h.start()
	cc := h.cloud.Next(t)
	cc.Job(encodeJob("j1", h.encoderID("Sim 00"), in(waitLong)))
	cc.ExpectResult(t, "j1")
	cc.Job(encodeJob("j2", h.encoderID("Sim 00"), in(waitLong)))
	var msgs []*protocol.Message
	for {
		m := cc.Expect(t, "messages of j2", func(m *protocol.Message) bool { return m.JobID() == "j2" })
		msgs = append(msgs, m)
		if m.Type == protocol.TypeResult {
			break
		}
	}
	got := typesOf(msgs)
	if !slices.Equal(got, []protocol.Type{protocol.TypeAck, protocol.TypeProgress, protocol.TypeResult}) {
		t.Fatalf("message types %v", got)
	}
	wantStages := []protocol.Stage{protocol.StageWaitingForCard, protocol.StageCardDetected, protocol.StageWriting, protocol.StageVerifying}
	if st := stages(msgs, "j2"); !slices.Equal(st, wantStages) {
		t.Fatalf("stages %v, want %v", st, wantStages)
	}
}

// A job delivered again runs once: a finished one gets its stored result,
// a running one just an ack, an acknowledged one an error.
func TestRedeliveredJobRunsOnce(t *testing.T) {
	h := newHarness(t)
	h.cloud.AutoAck.Store(false)
	card := newCard(t)
	r0 := h.sim.Plug("Sim 00")
	r0.Insert(card)
	h.start()
	cc := h.cloud.Next(t)
	enc := h.encoderID("Sim 00")

	j := encodeJob("j1", enc, in(waitLong))
	cc.Job(j)
	first := cc.ExpectResult(t, "j1")
	if first.Error != nil || card.writes.Load() != writesPerEncode() {
		t.Fatalf("first run: %+v, %d writes (want %d)", first.Error, card.writes.Load(), writesPerEncode())
	}
	cc.Job(j)
	cc.Expect(t, "ack of the redelivery", isType(protocol.TypeAck, "j1"))
	again := cc.ExpectResult(t, "j1")
	if !again.FinishedAt.Equal(first.FinishedAt) || again.Card.UID != first.Card.UID {
		t.Fatalf("redelivery got another result: %+v vs %+v", again, first)
	}
	cc.ResultAck("j1")
	h.quiet()
	cc.Job(j)
	e := cc.Expect(t, "error for a job already acknowledged", isType(protocol.TypeError, "j1"))
	if e.Error.Code != protocol.CodeUnexpected {
		t.Fatalf("error %+v", e.Error)
	}
	if n := card.writes.Load(); n != writesPerEncode() {
		t.Fatalf("%d card writes after three deliveries, want %d", n, writesPerEncode())
	}

	// Delivered again while it waits for a card: acked, not run twice.
	r0.Remove()
	card2 := newCard(t)
	k := encodeJob("k1", enc, in(waitLong))
	cc.Job(k)
	cc.Expect(t, "k1 waiting", isStage("k1", protocol.StageWaitingForCard))
	cc.Job(k)
	cc.Expect(t, "ack of the redelivered k1", isType(protocol.TypeAck, "k1"))
	r0.Insert(card2)
	cc.ExpectResult(t, "k1")
	cc.ResultAck("k1")
	h.quiet()
	rest := cc.Collect(100 * time.Millisecond)
	if n := resultsFor(&cloudtest.FakeConn{Hello: &protocol.Hello{}}, rest, "k1"); n != 0 {
		t.Fatalf("k1 finished %d more times", n)
	}
	if w := card2.writes.Load(); w != writesPerEncode() {
		t.Fatalf("k1 wrote %d times, want %d", w, writesPerEncode())
	}
}

// The connection drops at each step of a job; after the reconnect the
// result arrives exactly once, and the card is written once.
func TestLinkDropsDuringAJob(t *testing.T) {
	steps := []struct {
		name   string
		dropOn func(*protocol.Message) bool
		// dropAfterJob drops right after the cloud sends the job.
		dropAfterJob bool
	}{
		{name: "after job", dropAfterJob: true},
		{name: "after ack", dropOn: func(m *protocol.Message) bool { return m.Type == protocol.TypeAck }},
		{name: "after result before result_ack", dropOn: func(m *protocol.Message) bool { return m.Type == protocol.TypeResult }},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			h := newHarness(t)
			card := newCard(t)
			h.sim.Plug("Sim 00").Insert(card)
			h.start()
			cc := h.cloud.Next(t)
			cc.DropOn = st.dropOn
			j := encodeJob("j1", h.encoderID("Sim 00"), in(waitLong))
			cc.Job(j)
			if st.dropAfterJob {
				cc.Drop()
			}
			<-cc.Closed

			c2 := h.cloud.Next(t)
			t.Logf("hello after the reconnect: active %v, %d results", c2.Hello.ActiveJobs, len(c2.Hello.Results))
			if !slices.Contains(c2.Hello.ActiveJobs, "j1") && resultsFor(c2, nil, "j1") == 0 {
				// The bridge never got it: the cloud offers it again.
				c2.Job(j)
			}
			if resultsFor(c2, nil, "j1") == 0 {
				c2.ExpectResult(t, "j1")
			}
			h.quiet()
			rest := c2.Collect(150 * time.Millisecond)
			// Count again from scratch: the hello plus every result message.
			n := resultsFor(c2, rest, "j1")
			if resultsFor(c2, nil, "j1") == 0 {
				n++ // the one expectResult consumed
			}
			if n != 1 {
				t.Fatalf("result delivered %d times after the reconnect", n)
			}
			if w := card.writes.Load(); w != writesPerEncode() {
				t.Fatalf("%d card writes, want %d (one encode)", w, writesPerEncode())
			}
		})
	}
}

// A job whose journal entry no longer decodes may have been writing a
// card: the journal hands it back as damaged and the agent, not the
// journal, finishes it as encoding_interrupted; the job beside it runs.
func TestDamagedEntryFinishedAsInterrupted(t *testing.T) {
	h := newHarness(t)
	j, err := journal.Open(h.dir, journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	enc := h.encoderID("Sim 00")
	for _, id := range []string{"bad", "good"} {
		if _, _, err := j.Receive(journal.Entry{Job: *scanJob(id, enc, in(waitLong)), Reader: "Sim 00", State: journal.StateQueued}); err != nil {
			t.Fatal(err)
		}
	}
	j.Close()
	db, err := bbolt.Open(filepath.Join(h.dir, journal.FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket([]byte("jobs")).Put([]byte("bad"), []byte(`{"job": {"job_id": "bad", "deadl`))
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}

	h.sim.Plug("Sim 00")
	h.start()
	cc := h.cloud.Next(t)
	var got *protocol.Result
	for _, r := range cc.Hello.Results {
		if r.JobID == "bad" {
			got = &r
		}
	}
	if got == nil || got.Error == nil || got.Error.Type != protocol.ErrorEncodingInterrupted {
		t.Fatalf("hello results: %+v, want bad finished as encoding_interrupted", cc.Hello.Results)
	}
	if slices.Contains(cc.Hello.ActiveJobs, "bad") || !slices.Contains(cc.Hello.ActiveJobs, "good") {
		t.Fatalf("hello active jobs %v, want good and not bad", cc.Hello.ActiveJobs)
	}
}

// The bridge dies while writing a card; at the next start the job is
// finished as encoding_interrupted.
func TestKilledMidWrite(t *testing.T) {
	h := newHarness(t)
	h.writeGrace = 20 * time.Millisecond
	card := newCard(t)
	card.gate = make(chan struct{})
	h.sim.Plug("Sim 00").Insert(card)
	h.start()
	cc := h.cloud.Next(t)
	cc.Job(encodeJob("j1", h.encoderID("Sim 00"), in(waitLong)))
	cc.Expect(t, "writing", isStage("j1", protocol.StageWriting))
	if e, err := h.j.Get("j1"); err != nil || e.State != journal.StateWriting {
		t.Fatalf("journal before the first write: %+v, %v", e, err)
	}

	// "Kill": the process is gone without finishing the job. The first
	// agent is stuck on the card; its journal is closed under it.
	first := h.done
	h.cancel()
	h.cancel = nil
	h.j.Close()

	// The journal says writing, with the card's UID: the new agent does
	// not report the job before it has looked at that card, which the
	// stuck one still holds.
	h2 := &harness{t: t, cloud: h.cloud, sim: h.sim, keys: h.keys, dir: h.dir, log: h.log}
	h2.start()
	c2 := h.cloud.Next(t)
	if len(c2.Hello.Results) != 0 || !slices.Contains(c2.Hello.ActiveJobs, "j1") {
		t.Fatalf("hello after the restart: %+v", c2.Hello)
	}
	close(card.gate)
	select {
	case err := <-first:
		// Its journal is gone, so it cannot record the outcome.
		if err == nil {
			t.Fatal("the first agent finished a job without its journal and said nothing")
		}
	case <-time.After(waitLong):
		t.Fatal("first agent did not stop")
	}
	// The stuck agent's write completed, or its stop cut it after the
	// first block, which leaves the card blank: the new agent finds the
	// job's record, or writes it again, and reports it once read back.
	if r := c2.ExpectResult(t, "j1"); r.Error != nil || !r.Card.Valid {
		t.Fatalf("result after the restart: %+v", r)
	}
	h2.stop()
	if sc := scanOn(t, card, h.keys); !sc.Valid() || !holdsJob(sc.Record, jobCredential(t)) {
		t.Fatalf("success reported, and the card scans as %+v", sc.Scan)
	}
}

func TestDeadlinePassedOnReceipt(t *testing.T) {
	h := newHarness(t)
	card := newCard(t)
	h.sim.Plug("Sim 00").Insert(card)
	h.start()
	cc := h.cloud.Next(t)
	cc.Job(encodeJob("late", h.encoderID("Sim 00"), time.Now().Add(-time.Second)))
	r := cc.ExpectResult(t, "late")
	if r.Error == nil || r.Error.Type != protocol.ErrorActionAttemptExpired {
		t.Fatalf("result %+v", r)
	}
	if card.writes.Load() != 0 {
		t.Fatal("an expired job touched the card")
	}
}

func TestNoCardUntilDeadline(t *testing.T) {
	h := newHarness(t)
	h.sim.Plug("Sim 00")
	h.start()
	cc := h.cloud.Next(t)
	start := time.Now()
	cc.Job(scanJob("s1", h.encoderID("Sim 00"), in(300*time.Millisecond)))
	cc.Expect(t, "waiting", isStage("s1", protocol.StageWaitingForCard))
	r := cc.ExpectResult(t, "s1")
	if r.Error == nil || r.Error.Type != protocol.ErrorNoCredentialOnEncoder {
		t.Fatalf("result %+v", r)
	}
	if el := time.Since(start); el < 250*time.Millisecond {
		t.Fatalf("gave up after %v, before the deadline", el)
	}
}

// Two encoders run in parallel; one encoder runs one job at a time.
func TestEncodersInParallel(t *testing.T) {
	h := newHarness(t)
	r0, r1 := h.sim.Plug("Sim 00"), h.sim.Plug("Sim 01")
	h.start()
	cc := h.cloud.Next(t)
	e0, e1 := h.encoderID("Sim 00"), h.encoderID("Sim 01")
	cc.Job(encodeJob("a1", e0, in(waitLong)))
	cc.Job(encodeJob("b1", e1, in(waitLong)))
	cc.Job(encodeJob("a2", e0, in(waitLong)))

	var log []*protocol.Message
	seen := func(ok func(*protocol.Message) bool) bool { return slices.ContainsFunc(log, ok) }
	until := func(what string, ok func(*protocol.Message) bool) {
		t.Helper()
		for !seen(ok) {
			log = append(log, cc.Expect(t, what, func(*protocol.Message) bool { return true }))
		}
	}
	until("a1 waiting", isStage("a1", protocol.StageWaitingForCard))
	until("b1 waiting", isStage("b1", protocol.StageWaitingForCard))
	log = append(log, cc.Collect(100*time.Millisecond)...)
	if seen(isStage("a2", protocol.StageWaitingForCard)) {
		t.Fatal("a2 started while a1 held the encoder")
	}
	r1.Insert(newCard(t))
	until("b1 result", isType(protocol.TypeResult, "b1"))
	if seen(isType(protocol.TypeResult, "a1")) {
		t.Fatal("a1 finished without a card")
	}
	r0.Insert(newCard(t))
	until("a1 result", isType(protocol.TypeResult, "a1"))
	until("a2 result", isType(protocol.TypeResult, "a2"))
	ia1 := slices.IndexFunc(log, isType(protocol.TypeResult, "a1"))
	ia2 := slices.IndexFunc(log, isStage("a2", protocol.StageWaitingForCard))
	if ia2 < ia1 {
		t.Fatal("a2 began before a1 finished")
	}
	for _, id := range []string{"a1", "a2", "b1"} {
		if r := log[slices.IndexFunc(log, isType(protocol.TypeResult, id))].Result; r.Error != nil {
			t.Fatalf("%s: %+v", id, r.Error)
		}
	}
}

func TestReadersPluggedAndUnplugged(t *testing.T) {
	h := newHarness(t)
	h.start()
	cc := h.cloud.Next(t)
	if len(cc.Hello.Encoders) != 0 {
		t.Fatalf("hello encoders %+v", cc.Hello.Encoders)
	}
	h.sim.Plug("Sim 07")
	id := h.encoderID("Sim 07")
	m := cc.Expect(t, "encoder_added", isType(protocol.TypeEncoderAdded, ""))
	// Shown without the plug-order index, which a replug changes.
	if m.Encoder.ID != id || m.Encoder.ReaderName != "Sim 07" || m.Encoder.DisplayName != "Sim" {
		t.Fatalf("encoder_added %+v", m.Encoder)
	}
	h.sim.Unplug("Sim 07")
	m = cc.Expect(t, "encoder_removed", isType(protocol.TypeEncoderRemoved, ""))
	if m.EncoderID != id {
		t.Fatalf("encoder_removed %q, want %q", m.EncoderID, id)
	}

	// A job for the unplugged encoder: not online, no protocol error.
	cc.Job(scanJob("gone", id, in(waitLong)))
	r := cc.ExpectResult(t, "gone")
	if r.Error == nil || r.Error.Type != protocol.ErrorEncoderNotOnline {
		t.Fatalf("job for an unplugged encoder: %+v", r)
	}
	// A job for an encoder this bridge never had: an error message and a
	// result, so the action attempt ends.
	cc.Job(scanJob("alien", "enc-of-another-bridge", in(waitLong)))
	e := cc.Expect(t, "unknown_encoder", isType(protocol.TypeError, "alien"))
	if e.Error.Code != protocol.CodeUnknownEncoder || !strings.Contains(e.Error.Message, "enc-of-another-bridge") {
		t.Fatalf("error %+v", e.Error)
	}
	r = cc.ExpectResult(t, "alien")
	if r.Error == nil || r.Error.Type != protocol.ErrorUncategorized || !strings.Contains(r.Error.Message, "enc-of-another-bridge") {
		t.Fatalf("result %+v", r)
	}
}

func TestMalformedMessagesKeepTheLink(t *testing.T) {
	h := newHarness(t)
	h.sim.Plug("Sim 00").Insert(newCard(t))
	h.start()
	cc := h.cloud.Next(t)
	tests := []struct {
		frame string
		code  protocol.ErrorCode
		jobID string
	}{
		{`not json`, protocol.CodeMalformed, ""},
		{`{"v":2,"type":"job"}`, protocol.CodeUnsupported, ""},
		{`{"v":1,"type":"reboot"}`, protocol.CodeUnknownType, ""},
		{`{"v":1,"type":"job","job":{"job_id":"bad1","kind":"encode","encoder_id":"e","deadline":"2030-01-01T00:00:00Z"}}`, protocol.CodeMalformed, "bad1"},
		{`{"v":1,"type":"job","job":{"job_id":"bad2"},"extra":true}`, protocol.CodeMalformed, "bad2"},
		{`{"v":1,"type":"ack","ack":{"job_id":"x1"}}`, protocol.CodeUnexpected, "x1"},
		{`{"v":1,"type":"welcome","welcome":{"bridge_id":"b","server_time":"2026-01-01T00:00:00Z"}}`, protocol.CodeUnexpected, ""},
		{`{"v":1,"type":"result_ack","result_ack":{"job_id":"never"}}`, protocol.CodeUnexpected, "never"},
	}
	for _, tt := range tests {
		cc.SendRaw(websocket.TextMessage, []byte(tt.frame))
		m := cc.Expect(t, "error for "+tt.frame, isType(protocol.TypeError, ""))
		if m.Error.Code != tt.code || m.Error.JobID != tt.jobID {
			t.Errorf("%s: error %+v, want code %s job %q", tt.frame, m.Error, tt.code, tt.jobID)
		}
	}
	cc.SendRaw(websocket.BinaryMessage, []byte{0xff, 0x00})
	if m := cc.Expect(t, "error for a binary frame", isType(protocol.TypeError, "")); m.Error.Code != protocol.CodeMalformed {
		t.Errorf("binary frame: %+v", m.Error)
	}
	// An error from the cloud is never answered.
	e := protocol.New(protocol.TypeError)
	e.Error = &protocol.Error{Code: protocol.CodeInternal, Message: "oops"}
	cc.Send(e)

	cc.Job(encodeJob("ok", h.encoderID("Sim 00"), in(waitLong)))
	if r := cc.ExpectResult(t, "ok"); r.Error != nil {
		t.Fatalf("job after malformed messages: %+v", r.Error)
	}
	if n := h.cloud.Connections(); n != 1 {
		t.Fatalf("%d connections: malformed messages dropped the link", n)
	}
	for _, m := range cc.Collect(100 * time.Millisecond) {
		if m.Type == protocol.TypeError {
			t.Fatalf("answered the cloud's error: %+v", m.Error)
		}
	}
}

// Jobs in the journal at startup are announced as active; once the
// welcome tells the cloud's time, those in time run and expired ones are
// reported.
func TestJobsResumeAfterRestart(t *testing.T) {
	h := newHarness(t)
	j, err := journal.Open(h.dir, journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	enc := h.encoderID("Sim 00")
	j.Receive(journal.Entry{Job: *encodeJob("fresh", enc, in(waitLong)), Reader: "Sim 00"})
	j.Receive(journal.Entry{Job: *encodeJob("stale", enc, time.Now().Add(-time.Minute)), Reader: "Sim 00"})
	j.Close()

	h.sim.Plug("Sim 00").Insert(newCard(t))
	h.start()
	cc := h.cloud.Next(t)
	if !slices.Contains(cc.Hello.ActiveJobs, "fresh") || !slices.Contains(cc.Hello.ActiveJobs, "stale") || len(cc.Hello.Results) != 0 {
		t.Fatalf("hello before the cloud's time is known: %+v", cc.Hello)
	}
	if r := cc.ExpectResult(t, "stale"); r.Error == nil || r.Error.Type != protocol.ErrorActionAttemptExpired {
		t.Fatalf("stale: %+v", r)
	}
	if r := cc.ExpectResult(t, "fresh"); r.Error != nil {
		t.Fatalf("fresh: %+v", r.Error)
	}
	h.quiet()
}

// A stop leaves a job that waits for a card in the journal; it runs at
// the next start.
func TestStopLeavesWaitingJob(t *testing.T) {
	h := newHarness(t)
	r0 := h.sim.Plug("Sim 00")
	h.start()
	cc := h.cloud.Next(t)
	cc.Job(encodeJob("w1", h.encoderID("Sim 00"), in(waitLong)))
	cc.Expect(t, "waiting", isStage("w1", protocol.StageWaitingForCard))
	start := time.Now()
	if err := h.stop(); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("stop took %v", el)
	}

	r0.Insert(newCard(t))
	h.start()
	c2 := h.cloud.Next(t)
	if !slices.Contains(c2.Hello.ActiveJobs, "w1") && resultsFor(c2, nil, "w1") == 0 {
		t.Fatalf("w1 lost: %+v", c2.Hello)
	}
	if resultsFor(c2, nil, "w1") == 0 {
		if r := c2.ExpectResult(t, "w1"); r.Error != nil {
			t.Fatalf("w1: %+v", r.Error)
		}
	}
	h.quiet()
}

func TestAuthRevokedStopsRun(t *testing.T) {
	h := newHarness(t)
	h.cloud.Refuse.Store(401)
	h.start()
	select {
	case err := <-h.done:
		if !errors.Is(err, link.ErrAuthRevoked) {
			t.Fatalf("Run = %v, want ErrAuthRevoked", err)
		}
		h.done <- err // for stop
	case <-time.After(waitLong):
		t.Fatal("Run kept retrying a revoked token")
	}
}

func attachedNames(names ...string) []Attached {
	out := make([]Attached, len(names))
	for i, n := range names {
		out[i] = Attached{Name: n}
	}
	return out
}

func TestOffered(t *testing.T) {
	readers := attachedNames("ACS ACR1252 1S CL Reader PICC 0", "ACS ACR1252 1S CL Reader SAM 0", "HID Omnikey 5422 0", "Other", "Broadcom Corp Contacted SmartCard 0")
	readers = append(readers, Attached{Name: "Identiv uTrust 3700 F 0", Serial: "55041234"})
	picks := []config.Encoder{
		{Reader: "ACR1252", Name: "Desk"},
		{Reader: "HID Omnikey 5422 0", Name: "Back office"},
		{Reader: "picc"},
		{Serial: "55041234", Name: "Concierge"},
		{Reader: "*Contacted*", Name: "Never"},
	}
	got := Offered("b", picks, []string{"broadcom"}, []string{"ntag213"}, readers)
	ids := Identities(readers)
	var shown []string
	for _, e := range got {
		shown = append(shown, e.ReaderName+"="+e.DisplayName)
		if e.ID != NewEncoderID("b", ids[e.ReaderName]) || len(e.ID) != 32 {
			t.Errorf("id %q for %q", e.ID, e.ReaderName)
		}
	}
	want := []string{
		"ACS ACR1252 1S CL Reader PICC 0=Desk (ACS ACR1252 1S CL Reader PICC)",
		"ACS ACR1252 1S CL Reader SAM 0=Desk (ACS ACR1252 1S CL Reader SAM)",
		"HID Omnikey 5422 0=Back office",
		"Identiv uTrust 3700 F 0=Concierge",
	}
	if !slices.Equal(shown, want) {
		t.Fatalf("offered %q\nwant %q", shown, want)
	}
	if NewEncoderID("b", "x") == NewEncoderID("c", "x") || NewEncoderID("b", "x") != NewEncoderID("b", "x") {
		t.Fatal("encoder ids not stable per bridge")
	}
	if all := Offered("b", nil, nil, nil, readers); len(all) != 6 || all[0].DisplayName != "ACS ACR1252 1S CL Reader PICC" {
		t.Fatalf("no picks: %+v", all)
	}
	// Two of one model: the second, told apart by its index, shows it.
	two := Offered("b", nil, nil, nil, attachedNames("Sim 1", "Sim 0"))
	if len(two) != 2 || two[0].DisplayName != "Sim" || two[1].DisplayName != "Sim 1" {
		t.Fatalf("two of one model: %+v", two)
	}
	if some := Offered("b", nil, []string{"*reader*", "omnikey"}, nil, readers); len(some) != 3 {
		t.Fatalf("exclusions: %+v", some)
	}
}

// An encoder keeps its id (and so its acs_encoder_id and name in the
// cloud) when its reader comes back under another name.
func TestIdentities(t *testing.T) {
	id := func(readers []Attached, name string) string { return Identities(readers)[name] }
	const (
		acr0 = "ACS ACR1252 1S CL Reader [ACR1252 Dual Reader PICC] 00 00"
		acr1 = "ACS ACR1252 1S CL Reader [ACR1252 Dual Reader PICC] 01 00"
		sam0 = "ACS ACR1252 1S CL Reader [ACR1252 Dual Reader SAM] 00 01"
	)
	// Replugged into another port: another index, the same identity.
	if a, b := id(attachedNames(acr0), acr0), id(attachedNames(acr1), acr1); a != b {
		t.Errorf("replugged reader: %q then %q", a, b)
	}
	// Slots of one reader stay apart.
	if a, b := id(attachedNames(acr0, sam0), acr0), id(attachedNames(acr0, sam0), sam0); a == b {
		t.Errorf("PICC and SAM slots share identity %q", a)
	}
	// Two of one model without serials: the first keeps its identity when
	// the second is plugged in; the second gets one of its own.
	both := attachedNames(acr1, acr0)
	if id(both, acr0) != id(attachedNames(acr0), acr0) || id(both, acr1) == id(both, acr0) {
		t.Errorf("two readers of one model: %q", Identities(both))
	}
	// With serial numbers, the name does not matter at all.
	s1 := []Attached{{Name: acr0, Serial: "RR1"}, {Name: acr1, Serial: "RR2"}}
	s2 := []Attached{{Name: acr1, Serial: "RR1"}, {Name: acr0, Serial: "RR2"}}
	if id(s1, acr0) != id(s2, acr1) || id(s1, acr1) != id(s2, acr0) || id(s1, acr0) == id(s1, acr1) {
		t.Errorf("serials: %q vs %q", Identities(s1), Identities(s2))
	}
}

// A reader replugged into another USB port comes back under another name:
// the same encoder, announced again with its new reader name, and jobs
// for it reach the card there. With a serial number, even a new model
// name would not matter.
func TestReaderReplugKeepsEncoder(t *testing.T) {
	for _, tc := range []struct {
		name, before, after, serial string
	}{
		{"by name", "ACS ACR1252 1S CL Reader [PICC] 00 00", "ACS ACR1252 1S CL Reader [PICC] 01 00", ""},
		{"by serial", "Reader A 00 00", "Reader B 00 00", "RR7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.sim.PlugSerial(tc.before, tc.serial)
			h.start()
			cc := h.cloud.Next(t)
			if len(cc.Hello.Encoders) != 1 {
				t.Fatalf("hello encoders %+v", cc.Hello.Encoders)
			}
			id := cc.Hello.Encoders[0].ID

			h.sim.Unplug(tc.before)
			if m := cc.Expect(t, "encoder_removed", isType(protocol.TypeEncoderRemoved, "")); m.EncoderID != id {
				t.Fatalf("encoder_removed %q, want %q", m.EncoderID, id)
			}
			h.sim.PlugSerial(tc.after, tc.serial).Insert(newCard(t))
			m := cc.Expect(t, "encoder_added", isType(protocol.TypeEncoderAdded, ""))
			if m.Encoder.ID != id || m.Encoder.ReaderName != tc.after {
				t.Fatalf("encoder_added %+v, want id %s on %q", m.Encoder, id, tc.after)
			}
			if tc.serial == "" && m.Encoder.DisplayName != cc.Hello.Encoders[0].DisplayName {
				t.Errorf("display name %q after the replug, %q before", m.Encoder.DisplayName, cc.Hello.Encoders[0].DisplayName)
			}
			cc.Job(scanJob("s1", id, in(waitLong)))
			if r := cc.ExpectResult(t, "s1"); r.Error != nil {
				t.Fatalf("scan on the replugged reader: %+v", r.Error)
			}
		})
	}
}

func TestNewRefusesMissingParts(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Fatal("New with nothing succeeded")
	}
	_, err := New(Options{BridgeID: "b", Link: &link.Link{}, Store: &journal.Journal{}, Station: &bridge.Station{}})
	if err == nil {
		t.Fatal("New without readers succeeded")
	}
}

// More results than a hello carries: the rest follow the welcome.
func TestManyPendingResults(t *testing.T) {
	h := newHarness(t)
	h.helloResults = 4
	j, err := journal.Open(h.dir, journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 7
	for i := range n {
		id := fmt.Sprintf("r%03d", i)
		j.Receive(journal.Entry{Job: *scanJob(id, "e", in(time.Hour)), Reader: "x"})
		if _, err := j.Finish(id, errorResult(protocol.ErrorNoCredentialOnEncoder, "no card")); err != nil {
			t.Fatal(err)
		}
	}
	j.Close()
	h.start()
	cc := h.cloud.Next(t)
	if len(cc.Hello.Results) != h.helloResults {
		t.Fatalf("hello carried %d results", len(cc.Hello.Results))
	}
	for range n - h.helloResults {
		cc.Expect(t, "a result after the welcome", isType(protocol.TypeResult, ""))
	}
	h.quiet()
}

// Status (and so /readyz) says connected only once the cloud welcomed the
// hello: before that no job can arrive.
func TestConnectedOnlyAfterWelcome(t *testing.T) {
	h := newHarness(t)
	h.sim.Plug("Sim 00")
	helloIn, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	h.cloud.BeforeWelcome = func(*protocol.Hello) {
		once.Do(func() { close(helloIn) })
		<-release
	}
	h.start()
	<-helloIn
	if h.agent.Status().Connected {
		t.Error("connected before the cloud welcomed the hello")
	}
	close(release)
	cc := h.cloud.Next(t)
	// The agent answers a job only after the welcome.
	cc.Job(scanJob("x", "no-such-encoder", in(waitLong)))
	cc.Expect(t, "an answer to job x", func(m *protocol.Message) bool { return m.JobID() == "x" })
	if !h.agent.Status().Connected {
		t.Error("not connected after the welcome")
	}
}

// The bridge dies while writing a card and its journal is then found
// empty (a crash right after creation, a restore gone wrong). The new
// journal says so in the hello until the cloud welcomed it, and the job
// the cloud offers again as acked is answered encoding_interrupted:
// the card is not written a second time.
func TestJournalLostMidWrite(t *testing.T) {
	h := newHarness(t)
	h.writeGrace = 20 * time.Millisecond
	card := newCard(t)
	card.gate = make(chan struct{})
	h.sim.Plug("Sim 00").Insert(card)
	h.start()
	cc := h.cloud.Next(t)
	enc := h.encoderID("Sim 00")
	job := encodeJob("j1", enc, in(waitLong))
	cc.Job(job)
	cc.Expect(t, "writing", isStage("j1", protocol.StageWriting))

	first := h.done
	h.cancel()
	h.cancel = nil
	h.j.Close()
	if err := os.Truncate(filepath.Join(h.dir, journal.FileName), 0); err != nil {
		t.Fatal(err)
	}

	h2 := &harness{t: t, cloud: h.cloud, sim: h.sim, keys: h.keys, dir: h.dir, log: h.log}
	h2.start()
	c2 := h.cloud.Next(t)
	if r := c2.Hello.JournalReset; r == nil || !strings.Contains(r.Reason, "empty") {
		t.Fatalf("hello after the journal was lost: journal_reset %+v", r)
	}
	if resultsFor(c2, nil, "j1") != 0 || slices.Contains(c2.Hello.ActiveJobs, "j1") {
		t.Fatalf("the lost journal still knows j1: %+v", c2.Hello)
	}
	again := *job
	again.Acked = true
	c2.Job(&again)
	r := c2.ExpectResult(t, "j1")
	if r.Error == nil || r.Error.Type != protocol.ErrorEncodingInterrupted {
		t.Fatalf("j1 offered again: %+v", r)
	}
	if w := card.writes.Load(); w != 1 {
		t.Fatalf("%d card writes, want only the first agent's one", w)
	}
	// A scan writes nothing: offered again as acked, it runs.
	scan := scanJob("s1", enc, in(waitLong))
	scan.Acked = true
	c2.Job(scan)
	c2.Expect(t, "s1 running", isType(protocol.TypeProgress, "s1"))

	c2.Drop()
	c3 := h.cloud.Next(t)
	if c3.Hello.JournalReset != nil {
		t.Fatalf("journal_reset sent again after a welcome: %+v", c3.Hello.JournalReset)
	}
	close(card.gate)
	<-first
}
