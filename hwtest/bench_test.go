package hwtest_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/ebfe/scard"

	"github.com/encoder-bridge/encoder-bridge/bridge"
	"github.com/encoder-bridge/encoder-bridge/hwtest"
	"github.com/encoder-bridge/encoder-bridge/reader"
	"github.com/encoder-bridge/encoder-bridge/reader/pcsc"
	"github.com/encoder-bridge/encoder-bridge/reader/sim/chip"
)

// recorder wraps a reader.Context and keeps the APDUs of the last
// connection, so the same sequence can be replayed without the bridge.
type recorder struct {
	reader.Context
	mu     sync.Mutex
	apdus  [][]byte
	resets int
}

func (r *recorder) Connect(ctx context.Context, name string) (reader.Card, error) {
	c, err := r.Context.Connect(ctx, name)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.apdus, r.resets = nil, 0
	r.mu.Unlock()
	return &recordingCard{Card: c, r: r}, nil
}

type recordingCard struct {
	reader.Card
	r *recorder
}

func (c *recordingCard) Transmit(ctx context.Context, apdu []byte) ([]byte, error) {
	c.r.mu.Lock()
	c.r.apdus = append(c.r.apdus, append([]byte(nil), apdu...))
	c.r.mu.Unlock()
	return c.Card.Transmit(ctx, apdu)
}

func (c *recordingCard) Reset(ctx context.Context) error {
	c.r.mu.Lock()
	c.r.resets++
	c.r.mu.Unlock()
	return c.Card.Reset(ctx)
}

// BenchmarkCardIO measures re-encoding and scanning a card this system
// issued (the everyday front-desk case) through pcscd and vpcd, and, in
// the same iteration, a raw replay of the same card I/O through scard with
// no logic: connect, read the ATR, transmit each recorded APDU, disconnect
// with a card reset (as reader/pcsc does). The ratio metric is bridge time
// over replay time; 1.00 means the bridge adds nothing to the card I/O.
// A DESFire card draws a new random number at every authentication, so
// its replay is refused from the second authentication frame on: the
// same APDUs and round trips, answered with errors.
func BenchmarkCardIO(b *testing.B) {
	for _, kind := range []string{"mifare_classic_1k", "ntag213", "mifare_desfire_ev2"} {
		for _, op := range []string{"encode", "scan"} {
			b.Run(kind+"/"+op, func(b *testing.B) { benchCardIO(b, kind, op) })
		}
	}
}

func benchCardIO(b *testing.B, kind, op string) {
	slot := hwtest.AcquireSlot(b)
	card, err := chip.New(kind, nil)
	if err != nil {
		b.Fatal(err)
	}
	hwtest.InsertCard(b, slot, card)
	rc, err := pcsc.Open(pcsc.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer rc.Close()
	rec := &recorder{Context: rc}
	st := &bridge.Station{Readers: rec, Keys: keys(b)}
	cred := credential(b)
	ctx := context.Background()
	run := func() {
		var err error
		if op == "encode" {
			_, err = st.Encode(ctx, slot.Reader, cred, 0)
		} else {
			var res bridge.ScanResult
			res, err = st.Scan(ctx, slot.Reader, 0)
			if err == nil && !res.Valid() {
				b.Fatalf("scan not valid: %s", res.Reason)
			}
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	// The first encode keys a blank card; from then on every encode is
	// the same re-encode sequence.
	if _, err := st.Encode(ctx, slot.Reader, cred, 0); err != nil {
		b.Fatal(err)
	}
	run()
	if rec.resets != 0 {
		b.Fatalf("steady-state %s resets the card %d times; the replay would diverge", op, rec.resets)
	}
	apdus := rec.apdus

	sc, err := scard.EstablishContext()
	if err != nil {
		b.Fatal(err)
	}
	defer sc.Release()
	replay := func() {
		c, err := sc.Connect(slot.Reader, scard.ShareExclusive, scard.ProtocolAny)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Status(); err != nil {
			b.Fatal(err)
		}
		for _, a := range apdus {
			resp, err := c.Transmit(a)
			if err != nil || len(resp) < 2 {
				b.Fatalf("replay: % X → % X %v", a[:2], resp, err)
			}
		}
		c.Disconnect(scard.ResetCard)
	}

	var bridgeTime, replayTime time.Duration
	b.ResetTimer()
	// Alternate which goes first, so neither pays for what the other
	// leaves behind in pcscd.
	timed := func(f func()) time.Duration {
		t0 := time.Now()
		f()
		return time.Since(t0)
	}
	odd := false
	for b.Loop() {
		if odd {
			replayTime += timed(replay)
			bridgeTime += timed(run)
		} else {
			bridgeTime += timed(run)
			replayTime += timed(replay)
		}
		odd = !odd
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(float64(len(apdus)), "apdus/op")
	b.ReportMetric(float64(bridgeTime.Microseconds())/n/1000, "bridge-ms/op")
	b.ReportMetric(float64(replayTime.Microseconds())/n/1000, "replay-ms/op")
	b.ReportMetric(float64(bridgeTime)/float64(replayTime), "ratio")
}
