package agent

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/encoder-bridge/encoder-bridge/bridge/config"
	"github.com/encoder-bridge/encoder-bridge/bridge/status"
)

// notifying is a status.Recorder that signals after every event, so a
// test waits for the state it expects instead of sleeping.
type notifying struct {
	*status.Recorder
	ch chan struct{}
}

func newNotifying() *notifying {
	return &notifying{Recorder: status.New(status.Options{Version: "test"}), ch: make(chan struct{}, 1)}
}

func (n *notifying) poke() {
	select {
	case n.ch <- struct{}{}:
	default:
	}
}

func (n *notifying) LinkUp()                            { n.Recorder.LinkUp(); n.poke() }
func (n *notifying) Contact()                           { n.Recorder.Contact(); n.poke() }
func (n *notifying) SetEncoders(e []status.EncoderInfo) { n.Recorder.SetEncoders(e); n.poke() }
func (n *notifying) CardPresent(id string, p bool)      { n.Recorder.CardPresent(id, p); n.poke() }
func (n *notifying) JobDone(j status.JobReport)         { n.Recorder.JobDone(j); n.poke() }
func (n *notifying) ReadersFailed(err error)            { n.Recorder.ReadersFailed(err); n.poke() }

// await waits until ok holds for the recorder's snapshot.
func (n *notifying) await(t *testing.T, what string, ok func(status.Snapshot) bool) status.Snapshot {
	t.Helper()
	timeout := time.After(waitLong)
	for {
		s := n.Snapshot()
		if ok(s) {
			return s
		}
		select {
		case <-n.ch:
		case <-timeout:
			t.Fatalf("%s: never happened; last snapshot %+v", what, s)
		}
	}
}

func cardIs(present bool) func(status.Snapshot) bool {
	return func(s status.Snapshot) bool {
		return len(s.Encoders) == 1 && s.Encoders[0].CardKnown && s.Encoders[0].CardPresent == present
	}
}

// TestObserver follows an encoder, its card, a job and the link through
// the hooks the status page and metrics are fed by.
func TestObserver(t *testing.T) {
	h := newHarness(t)
	obs := newNotifying()
	h.observer = obs
	h.encoders = []config.Encoder{{Reader: "Sim 00", Name: "Front desk"}}
	card := newCard(t)
	r := h.sim.Plug("Sim 00")
	h.start()
	cc := h.cloud.Next(t)
	enc := h.encoderID("Sim 00")

	s := obs.await(t, "link up, encoder without a card", func(s status.Snapshot) bool { return s.Link.Up && cardIs(false)(s) })
	if e := s.Encoders[0]; e.ID != string(enc) || e.Name != "Front desk" || e.Reader != "Sim 00" || e.LastJob != nil {
		t.Fatalf("encoder %+v", e)
	}
	r.Insert(card)
	obs.await(t, "card on", cardIs(true))

	cc.Job(encodeJob("j-enc", enc, in(waitLong)))
	if res := cc.ExpectResult(t, "j-enc"); res.Error != nil {
		t.Fatalf("encode: %+v", res.Error)
	}
	s = obs.await(t, "job seen", func(s status.Snapshot) bool { return len(s.Encoders) == 1 && s.Encoders[0].LastJob != nil })
	if j := s.Encoders[0].LastJob; !j.OK() || j.Kind != "encode" || j.Duration <= 0 {
		t.Fatalf("last job %+v", j)
	}
	if s.Link.LastContact.IsZero() {
		t.Fatal("no contact recorded")
	}

	r.Remove()
	obs.await(t, "card off", cardIs(false))

	// A job on an empty encoder fails and is listed with its remedy.
	cc.Job(scanJob("j-scan", enc, in(300*time.Millisecond)))
	cc.ExpectResult(t, "j-scan")
	s = obs.await(t, "failed job listed", func(s status.Snapshot) bool { return len(s.Problems) > 0 })
	if p := s.Problems[0]; p.Where != "Front desk" || p.Remedy != status.JobRemedy(s.Encoders[0].LastJob.Outcome) || s.Encoders[0].LastJob.OK() {
		t.Fatalf("problem %+v, last job %+v", p, s.Encoders[0].LastJob)
	}

	h.sim.Unplug("Sim 00")
	obs.await(t, "encoder gone", func(s status.Snapshot) bool { return len(s.Encoders) == 0 })
}

// TestObserverCountsAPDUs: the metrics see how many APDUs a job sent.
func TestObserverCountsAPDUs(t *testing.T) {
	h := newHarness(t)
	rec := &apduRecorder{notifying: newNotifying()}
	h.observer = rec
	h.sim.Plug("Sim 00").Insert(newCard(t))
	h.start()
	cc := h.cloud.Next(t)
	cc.Job(encodeJob("j-enc", h.encoderID("Sim 00"), in(waitLong)))
	cc.ExpectResult(t, "j-enc")
	rec.await(t, "job seen", func(s status.Snapshot) bool { return len(s.Encoders) == 1 && s.Encoders[0].LastJob != nil })
	// A Classic 1K encode writes writesPerEncode blocks, each after an
	// authentication, and reads them back: more APDUs than writes.
	if n := rec.apdus.Load(); n <= writesPerEncode() {
		t.Fatalf("apdus %d, want more than the %d writes", n, writesPerEncode())
	}
}

type apduRecorder struct {
	*notifying
	apdus atomic.Int32
}

func (r *apduRecorder) JobDone(j status.JobReport) {
	r.apdus.Store(int32(j.APDUs))
	r.notifying.JobDone(j)
}
