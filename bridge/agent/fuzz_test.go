package agent

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/encoder-bridge/encoder-bridge/bridge"
	"github.com/encoder-bridge/encoder-bridge/bridge/journal"
	"github.com/encoder-bridge/encoder-bridge/bridge/link"
	"github.com/encoder-bridge/encoder-bridge/cardfmt"
	"github.com/encoder-bridge/encoder-bridge/protocol"
	"github.com/encoder-bridge/encoder-bridge/reader/sim"
)

type noLink struct{}

func (noLink) Run(context.Context, func(context.Context, link.Session) error) error { return nil }

// FuzzHandle feeds arbitrary frames to the message handling of a
// connected agent (real journal, no readers): it must not panic, must
// answer every frame it cannot decode with an error message, must only
// ever send valid frames, and must not fail its journal.
func FuzzHandle(f *testing.F) {
	future := time.Now().Add(time.Hour).UTC()
	seed := func(m *protocol.Message) {
		b, err := protocol.Encode(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, j := range []*protocol.Job{encodeJob("f1", "e1", future), scanJob("f2", "e2", future), scanJob("f3", "e3", time.Unix(0, 0))} {
		m := protocol.New(protocol.TypeJob)
		m.Job = j
		seed(m)
	}
	ra := protocol.New(protocol.TypeResultAck)
	ra.ResultAck = &protocol.ResultAck{JobID: "f1"}
	seed(ra)
	e := protocol.New(protocol.TypeError)
	e.Error = &protocol.Error{Code: protocol.CodeInternal, Message: "x", JobID: "f1"}
	seed(e)
	f.Add([]byte(`{"v":1,"type":"job","job":{"job_id":"x"}}`))
	f.Add([]byte(`{"v":1,"type":"hello","hello":{"bridge_id":"b","encoders":[]}}`))
	f.Add([]byte("\xff\xfe"))
	f.Add([]byte(`null`))

	j, err := journal.Open(f.TempDir(), journal.Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { j.Close() })
	ks, err := cardfmt.GenerateKeySet(rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	a, err := New(Options{BridgeID: "fuzz", Link: noLink{}, Store: j, Station: &bridge.Station{Readers: sim.New(), Keys: ks}})
	if err != nil {
		f.Fatal(err)
	}
	var fatal error
	a.jobBase = context.Background()
	a.fatalRun = func(err error) { fatal = err }
	s := &session{conn: nil, out: make(chan []byte, outQueue), cancel: func(error) {}, log: zap.NewNop(), sent: map[string]bool{}}
	a.sess = s

	f.Fuzz(func(t *testing.T, frame []byte) {
		_, derr := protocol.Decode(frame)
		a.handle(s, frame)
		a.jobsWG.Wait()
		var replies []*protocol.Message
		for len(s.out) > 0 {
			b := <-s.out
			m, err := protocol.Decode(b)
			if err != nil {
				t.Fatalf("sent an invalid frame %q: %v", b, err)
			}
			replies = append(replies, m)
		}
		if derr != nil && (len(replies) != 1 || replies[0].Type != protocol.TypeError || replies[0].Error.Code == "") {
			t.Fatalf("undecodable frame answered with %+v", replies)
		}
		if fatal != nil {
			t.Fatalf("journal failed: %v", fatal)
		}
	})
}
