package cloud_test

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/encoder-bridge/encoder-bridge/cloud/cloudtest"
	"github.com/encoder-bridge/encoder-bridge/protocol"
)

// FuzzBridgeFrame feeds arbitrary frames through the path a frame read
// from a bridge link takes (decode, validate, handle with the real job
// service and database). It must never panic, must answer every refused
// frame with an error message, and must only send messages that decode.
func FuzzBridgeFrame(f *testing.F) {
	env := cloudtest.New(f, cloudtest.Options{})
	b, encID := connect(f, env)
	credID := env.CreateCredential(nil)["acs_credential_id"].(string)
	env.MustCall("/acs/encoders/encode_credential", map[string]any{"acs_encoder_id": encID, "acs_credential_id": credID})
	job := b.Expect(protocol.TypeJob).Job

	res := cloudtest.Success(job, nil, env.Clock.Now())
	seeds := []*protocol.Message{
		{V: 1, Type: protocol.TypeHello, Hello: &protocol.Hello{BridgeID: env.BridgeID, ProtocolVersion: 1, Encoders: []protocol.Encoder{cloudtest.Encoder("e1")}, Results: []protocol.Result{res}}},
		{V: 1, Type: protocol.TypeAck, Ack: &protocol.Ack{JobID: job.JobID}},
		{V: 1, Type: protocol.TypeProgress, Progress: &protocol.Progress{JobID: job.JobID, Stage: protocol.StageCardDetected}},
		{V: 1, Type: protocol.TypeResult, Result: &res},
		{V: 1, Type: protocol.TypeResult, Result: &protocol.Result{JobID: job.JobID, Error: &protocol.JobError{Type: "encoding_interrupted"}}},
		{V: 1, Type: protocol.TypeEncoderAdded, Encoder: &protocol.Encoder{ID: "e2", ReaderName: "r"}},
		{V: 1, Type: protocol.TypeEncoderRemoved, EncoderID: "e2"},
		{V: 1, Type: protocol.TypeError, Error: &protocol.Error{Code: protocol.CodeUnknownEncoder, JobID: job.JobID}},
		{V: 1, Type: protocol.TypeResultAck, ResultAck: &protocol.ResultAck{JobID: "x"}},
	}
	for _, m := range seeds {
		data, _ := json.Marshal(m)
		f.Add(data, true)
		f.Add(data, false)
	}
	f.Add([]byte(`{"v":1,"type":"result","result":{"job_id":"`+job.JobID+`","card":{"uid":"","technology":"","valid":true,"credential":{"credential_id":"`+credID+`"}}}}`), true)
	f.Add([]byte(`{}`), true)
	f.Add([]byte("\xff\xfe"), false)

	f.Fuzz(func(t *testing.T, frame []byte, helloDone bool) {
		sent, _, err := env.Server.HandleFrameForTest(t.Context(), env.BridgeID, helloDone, frame)
		if err != nil {
			t.Fatal(err)
		}
		if _, decErr := protocol.Decode(frame); decErr != nil {
			if len(sent) != 1 || sent[0].Type != protocol.TypeError {
				t.Fatalf("refused frame answered with %v", sent)
			}
		}
		if len(sent) > 64 {
			t.Fatalf("%d replies to one frame", len(sent))
		}
	})
}

// BenchmarkDispatch measures the latency from an encode_credential call
// on the HTTP API to the job message arriving at a connected fake bridge,
// alone and with idle bridges attached (2000 by default; CLOUD_BENCH_BRIDGES
// or -bridges to change).
func BenchmarkDispatch(b *testing.B) {
	for _, idle := range []int{0, idleBridges(2000)} {
		b.Run(fmt.Sprintf("idle=%d", idle), func(b *testing.B) { benchDispatch(b, idle) })
	}
}

func benchDispatch(b *testing.B, idle int) {
	env := cloudtest.New(b, cloudtest.Options{})
	br := env.Connect(cloudtest.Encoder("e1"))
	list := env.MustCall("/acs/encoders/list", nil)
	encID := obj(arr(list["acs_encoders"])[0])["acs_encoder_id"].(string)
	credID := env.CreateCredential(nil)["acs_credential_id"].(string)
	if idle > 0 {
		cloudtest.HoldIdleBridges(b, env, idle)
	}
	body := map[string]any{"acs_encoder_id": encID, "acs_credential_id": credID}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if status, out := env.Call(http.MethodPost, "/acs/encoders/encode_credential", body); status != 200 {
			b.Fatalf("%d %v", status, out)
		}
		select {
		case <-br.In:
		case <-time.After(5 * time.Second):
			b.Fatal("no job")
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

var (
	idleOnce  sync.Once
	idleStats cloudtest.IdleStats
)

var bridgesFlag = flag.Int("bridges", 0, "idle bridge links for TestIdleBridges/BenchmarkIdleBridges (env CLOUD_BENCH_BRIDGES also works)")

func idleBridges(def int) int {
	if *bridgesFlag > 0 {
		return *bridgesFlag
	}
	if n, err := strconv.Atoi(os.Getenv("CLOUD_BENCH_BRIDGES")); err == nil && n > 0 {
		return n
	}
	return def
}

// TestIdleBridges holds a few idle links (CLOUD_BENCH_BRIDGES or -bridges
// for more) and checks that each costs a bounded amount of memory.
func TestIdleBridges(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{})
	st := cloudtest.HoldIdleBridges(t, env, idleBridges(20))
	t.Logf("%d idle links: %.0f bytes and %.1f goroutines per link (setup %s)", st.Links, st.BytesPerLink, st.GoroutinesPerLink, st.Setup)
	if st.GoroutinesPerLink > 2.5 {
		t.Errorf("%.1f goroutines per idle link, want at most 2 (reader, writer)", st.GoroutinesPerLink)
	}
	if st.BytesPerLink > 64<<10 {
		t.Errorf("%.0f bytes per idle link", st.BytesPerLink)
	}
}

// BenchmarkIdleBridges reports the memory of N idle links (default 2000;
// CLOUD_BENCH_BRIDGES or -bridges to change). It runs the setup once.
func BenchmarkIdleBridges(b *testing.B) {
	n := idleBridges(2000)
	// The framework calls a benchmark again with a larger b.N when one
	// round was quick; the links are measured once.
	idleOnce.Do(func() {
		env := cloudtest.New(b, cloudtest.Options{})
		idleStats = cloudtest.HoldIdleBridges(b, env, n)
	})
	st := idleStats
	b.ReportMetric(st.BytesPerLink, "bytes/link")
	b.ReportMetric(st.GoroutinesPerLink, "goroutines/link")
	b.ReportMetric(float64(n), "links")
	b.ReportMetric(st.Setup.Seconds(), "setup-s")
}
