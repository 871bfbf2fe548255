package hwtest_test

import (
	"slices"
	"testing"
	"time"

	"github.com/encoder-bridge/encoder-bridge/cloud"
	"github.com/encoder-bridge/encoder-bridge/cloud/clock"
	"github.com/encoder-bridge/encoder-bridge/cloud/cloudtest"
	"github.com/encoder-bridge/encoder-bridge/hwtest"
	"github.com/encoder-bridge/encoder-bridge/reader"
	"github.com/encoder-bridge/encoder-bridge/reader/sim/chip"
)

// pollEvery is how often the benchmark asks for the action attempt. The
// poller shares two cores with the cloud, the bridge and the virtual
// card; polling harder slows the card I/O it measures.
var pollEvery = 1 * time.Millisecond

// BenchmarkEndToEnd measures an integrator's encode: POST
// /acs/encoders/encode_credential on the cloud, through the bridge's
// websocket, the agent, its journal and the card, until
// /action_attempts/get says success. Everything is real and in this
// process except the card, which is the virtual card on pcscd. The
// breakdown: card = the card connections' time; api = the encode_credential
// call itself; overhead = total - card, which is what the cloud, the link
// and the bridge add.
func BenchmarkEndToEnd(b *testing.B) {
	slot := hwtest.AcquireSlot(b)
	card, err := chip.New("mifare_classic_1k", nil)
	if err != nil {
		b.Fatal(err)
	}
	hwtest.InsertCard(b, slot, card)

	env := cloudtest.New(b, cloudtest.Options{Config: func(c *cloud.Config) { c.Clock = clock.Real{} }})
	cc := &cardSpans{}
	encoderID, credID := startDesk(b, env, slot.Reader, func(rc reader.Context) reader.Context {
		cc.Context = rc
		return cc
	})

	encode := func() (total, api, cardIO time.Duration) {
		cc.take()
		t0 := time.Now()
		att := env.MustCall("/acs/encoders/encode_credential", map[string]any{
			"acs_encoder_id": encoderID, "acs_credential_id": credID,
		})["action_attempt"].(map[string]any)
		api = time.Since(t0)
		id := att["action_attempt_id"]
		for {
			got := env.MustCall("/action_attempts/get", map[string]any{"action_attempt_id": id})["action_attempt"].(map[string]any)
			switch got["status"] {
			case "pending":
				time.Sleep(pollEvery)
				continue
			case "success":
				return time.Since(t0), api, cc.take()
			}
			b.Fatalf("encode: %v", got["error"])
		}
	}
	encode() // the first encode keys the blank card

	var totals, cards, overheads []time.Duration
	var apis time.Duration
	for b.Loop() {
		total, api, cardIO := encode()
		totals = append(totals, total)
		cards = append(cards, cardIO)
		overheads = append(overheads, total-cardIO)
		apis += api
	}
	pct := func(d []time.Duration, p int) float64 {
		s := slices.Clone(d)
		slices.Sort(s)
		return float64(s[min(len(s)-1, len(s)*p/100)].Microseconds()) / 1000
	}
	b.ReportMetric(pct(totals, 50), "total-p50-ms")
	b.ReportMetric(pct(totals, 99), "total-p99-ms")
	b.ReportMetric(pct(cards, 50), "card-p50-ms")
	b.ReportMetric(pct(cards, 99), "card-p99-ms")
	b.ReportMetric(pct(overheads, 50), "overhead-p50-ms")
	b.ReportMetric(pct(overheads, 99), "overhead-p99-ms")
	b.ReportMetric(float64(apis.Microseconds())/float64(len(totals))/1000, "api-call-ms")
}
