package hwtest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/encoder-bridge/encoder-bridge/cloud"
	"github.com/encoder-bridge/encoder-bridge/cloud/clock"
	"github.com/encoder-bridge/encoder-bridge/cloud/cloudtest"
	"github.com/encoder-bridge/encoder-bridge/hwtest"
	"github.com/encoder-bridge/encoder-bridge/reader"
	"github.com/encoder-bridge/encoder-bridge/reader/sim/chip"
)

// cardSpans wraps a reader.Context and records when each card connection
// was open (Connect to Close), in wall-clock time, so a call made by
// another process can be matched with the card I/O done during it.
type cardSpans struct {
	reader.Context
	mu    sync.Mutex
	spans [][2]time.Time
}

func (c *cardSpans) Connect(ctx context.Context, name string) (reader.Card, error) {
	start := time.Now()
	k, err := c.Context.Connect(ctx, name)
	if err != nil {
		return nil, err
	}
	return &spanCard{Card: k, c: c, start: start}, nil
}

type spanCard struct {
	reader.Card
	c     *cardSpans
	start time.Time
}

func (k *spanCard) Close() error {
	err := k.Card.Close()
	end := time.Now()
	k.c.mu.Lock()
	k.c.spans = append(k.c.spans, [2]time.Time{k.start, end})
	k.c.mu.Unlock()
	return err
}

// take is the card connection time recorded since the last take.
func (c *cardSpans) take() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	var d time.Duration
	for _, s := range c.spans {
		d += s[1].Sub(s[0])
	}
	c.spans = c.spans[:0]
	return d
}

// within is the card connection time that falls in [from, to].
func (c *cardSpans) within(from, to time.Time) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	var d time.Duration
	for _, s := range c.spans {
		if !s[0].Before(from) && !s[1].After(to) {
			d += s[1].Sub(s[0])
		}
	}
	return d
}

// BenchmarkSDK measures what a front-desk integrator waits for: Seam's own
// JavaScript SDK (conformance/node_modules; run npm ci there first) calls
// encodeCredential and scanCredential on its defaults, against the cloud
// with its answers held (settle=2s, the default) and not held (settle=off,
// Seam's behaviour: the SDK polls every second). The card, a Classic 1K
// the system issued, stays on the encoder. card is the bridge's card
// connection time during each call; the SDK's wall time is measured by
// conformance/bench-sdk.mjs, in the same wall clock. floor is an
// acs.encoders.get through the same SDK after each call: what any call
// costs without a job.
func BenchmarkSDK(b *testing.B) {
	node, err := exec.LookPath("node")
	if err != nil {
		b.Fatal("node is needed to run Seam's JavaScript SDK: ", err)
	}
	dir, err := filepath.Abs(filepath.Join("..", "conformance"))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@seamapi", "http")); err != nil {
		b.Fatal("Seam's SDK is not installed: run npm ci in conformance/: ", err)
	}
	for _, settle := range []struct {
		name string
		wait time.Duration
	}{{"settle=off", -1}, {"settle=2s", 2 * time.Second}} {
		for _, op := range []string{"encode", "scan"} {
			b.Run(settle.name+"/"+op, func(b *testing.B) {
				benchSDK(b, node, dir, settle.wait, op)
			})
		}
	}
}

func benchSDK(b *testing.B, node, dir string, settle time.Duration, op string) {
	slot := hwtest.AcquireSlot(b)
	card, err := chip.New("mifare_classic_1k", nil)
	if err != nil {
		b.Fatal(err)
	}
	hwtest.InsertCard(b, slot, card)
	env := cloudtest.New(b, cloudtest.Options{SettleWait: settle, Config: func(c *cloud.Config) { c.Clock = clock.Real{} }})
	cs := &cardSpans{}
	encoderID, credID := startDesk(b, env, slot.Reader, func(rc reader.Context) reader.Context {
		cs.Context = rc
		return cs
	})

	cmd := exec.Command(node, "bench-sdk.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"BENCH_ENDPOINT="+env.URL(), "BENCH_API_KEY="+env.APIKey, "BENCH_ENCODER_ID="+encoderID,
		"BENCH_CREDENTIAL_ID="+credID, "BENCH_OP="+op, "BENCH_N="+strconv.Itoa(b.N))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b.ResetTimer()
	out, err := cmd.Output()
	b.StopTimer()
	if err != nil {
		b.Fatalf("bench-sdk.mjs: %v\n%s", err, stderr.Bytes())
	}
	var res struct {
		Calls []struct {
			Start, End float64 // ms since the Unix epoch
			Status     string
		}
		Floor []float64 // ms
	}
	if err := json.Unmarshal(out, &res); err != nil || len(res.Calls) != b.N || len(res.Floor) != b.N {
		b.Fatalf("bench-sdk.mjs output (%d calls, want %d): %v\n%s", len(res.Calls), b.N, err, out)
	}
	var walls, cards, rest, floor []time.Duration
	for _, ms := range res.Floor {
		floor = append(floor, time.Duration(ms*float64(time.Millisecond)))
	}
	for _, c := range res.Calls {
		if c.Status != "success" {
			b.Fatalf("%s: %s", op, c.Status)
		}
		from, to := msTime(c.Start), msTime(c.End)
		wall, cardIO := to.Sub(from), cs.within(from, to)
		walls, cards, rest = append(walls, wall), append(cards, cardIO), append(rest, wall-cardIO)
	}
	for _, m := range []struct {
		name string
		d    []time.Duration
	}{{"sdk", walls}, {"card", cards}, {"rest", rest}, {"floor", floor}} {
		b.ReportMetric(percentile(m.d, 50), m.name+"-p50-ms")
		b.ReportMetric(percentile(m.d, 99), m.name+"-p99-ms")
	}
}

func msTime(ms float64) time.Time {
	return time.Unix(0, int64(ms*float64(time.Millisecond)))
}

func percentile(d []time.Duration, p int) float64 {
	s := slices.Clone(d)
	slices.Sort(s)
	return float64(s[min(len(s)-1, len(s)*p/100)].Microseconds()) / 1000
}
