package agent

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"

	"github.com/encoder-bridge/encoder-bridge/protocol"
)

// A graceful stop: the card being written completes and its result
// reaches the cloud on the same connection and is acknowledged; a job
// offered meanwhile is refused, not acked, and runs when the cloud offers
// it again to the next start; the connection closes with 1001.
func TestGracefulStop(t *testing.T) {
	h := newHarness(t)
	stopping := make(chan struct{})
	var once sync.Once
	h.log = zaptest.NewLogger(t, zaptest.WrapOptions(zap.Hooks(func(e zapcore.Entry) error {
		if e.LoggerName == "" && len(e.Message) >= 9 && e.Message[:9] == "stopping:" {
			once.Do(func() { close(stopping) })
		}
		return nil
	})))
	card := newCard(t)
	card.gate = make(chan struct{})
	h.sim.Plug("Sim 00").Insert(card)
	h.start()
	cc := h.cloud.Next(t)
	enc := h.encoderID("Sim 00")
	cc.Job(encodeJob("j1", enc, in(waitLong)))
	cc.Expect(t, "writing", isStage("j1", protocol.StageWriting))

	// The stop begins while the first write is held on the card.
	h.cancel()
	h.cancel = nil
	select {
	case <-stopping:
	case <-time.After(waitLong):
		t.Fatal("the agent did not begin to stop")
	}
	cc.Job(scanJob("j2", enc, in(waitLong)))
	refused := cc.Expect(t, "j2 refused", isType(protocol.TypeError, "j2"))
	if refused.Error.Code != protocol.CodeStopping {
		t.Fatalf("j2 refused with %+v", refused.Error)
	}
	close(card.gate)
	if r := cc.ExpectResult(t, "j1"); r.Error != nil || r.Card == nil || !r.Card.Valid {
		t.Fatalf("j1 result %+v / %+v", r.Card, r.Error)
	}
	select {
	case err := <-h.done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-t.Context().Done():
		t.Fatal("Run did not return")
	}
	<-cc.Closed
	if cc.CloseCode != websocket.CloseGoingAway {
		t.Fatalf("close code %d, want %d (going away)", cc.CloseCode, websocket.CloseGoingAway)
	}
	for _, m := range cc.Collect(0) {
		if m.Type == protocol.TypeAck && m.Ack.JobID == "j2" {
			t.Fatal("j2 acked while stopping")
		}
	}
	if got := card.writes.Load(); got != writesPerEncode() {
		t.Fatalf("%d card writes, want %d (one encode)", got, writesPerEncode())
	}
	h.j.Close()

	// The next start: j1 is done and acknowledged, j2 unknown to it; the
	// cloud offers j2 again and it runs.
	h.start()
	c2 := h.cloud.Next(t)
	if resultsFor(c2, nil, "j1") != 0 || slices.Contains(c2.Hello.ActiveJobs, "j1") || slices.Contains(c2.Hello.ActiveJobs, "j2") {
		t.Fatalf("hello after the stop: %+v", c2.Hello)
	}
	c2.Job(scanJob("j2", enc, in(waitLong)))
	c2.Expect(t, "j2 acked", isType(protocol.TypeAck, "j2"))
	if r := c2.ExpectResult(t, "j2"); r.Error != nil || r.Card == nil || !r.Card.Valid {
		t.Fatalf("j2 result %+v / %+v", r.Card, r.Error)
	}
	h.quiet()
}
