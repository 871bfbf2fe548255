package hwtest_test

import (
	"context"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/encoder-bridge/encoder-bridge/bridge"
	"github.com/encoder-bridge/encoder-bridge/cardfmt"
	"github.com/encoder-bridge/encoder-bridge/hwtest"
	"github.com/encoder-bridge/encoder-bridge/protocol"
	"github.com/encoder-bridge/encoder-bridge/reader/pcsc"
	"github.com/encoder-bridge/encoder-bridge/reader/sim/chip"
)

const credJSON = `{
  "credential_id": "6f1c2d8e-3a4b-4c5d-9e6f-708192a3b4c5",
  "card_number": "100234",
  "card_function_type": "guest",
  "starts_at": "2026-11-23T15:00:00Z",
  "ends_at": "2036-11-26T11:00:00Z",
  "entrance_ids": ["0b7e4f2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b", "5d6e7f80-9a0b-4c1d-8e2f-3a4b5c6d7e8f"],
  "issue_sequence": 1
}`

func credential(t testing.TB) cardfmt.Credential {
	c, err := bridge.ParseCredential([]byte(credJSON))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func keys(t testing.TB) *cardfmt.KeySet {
	ks, err := cardfmt.GenerateKeySet(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

// station opens the real pcscd.
func station(t testing.TB, ks *cardfmt.KeySet) *bridge.Station {
	rc, err := pcsc.Open(pcsc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close() })
	return &bridge.Station{Readers: rc, Keys: ks}
}

// TestEncodeScan encodes and scans every supported card type through
// ebfe/scard, libpcsclite, pcscd, vpcd and the virtual card.
func TestEncodeScan(t *testing.T) {
	ks := keys(t)
	cred := credential(t)
	for _, kind := range []string{"mifare_classic_1k", "mifare_classic_4k", "mifare_ultralight_ev1_mf0ul21", "ntag213", "ntag215", "ntag216"} {
		t.Run(kind, func(t *testing.T) {
			slot := hwtest.AcquireSlot(t)
			card, err := chip.New(kind, nil)
			if err != nil {
				t.Fatal(err)
			}
			hwtest.InsertCard(t, slot, card)
			st := station(t, ks)
			ctx := context.Background()

			got, err := st.Encode(ctx, slot.Reader, cred, 5*time.Second)
			if err != nil {
				t.Fatalf("encode: %v", err)
			}
			if string(got.Technology) != kind {
				t.Fatalf("technology %s, want %s", got.Technology, kind)
			}
			res, err := st.Scan(ctx, slot.Reader, 5*time.Second)
			if err != nil {
				t.Fatalf("scan: %v", err)
			}
			if !res.Valid() || res.Record.ID != cred.ID || res.Record.CardNumber != cred.CardNumber {
				t.Fatalf("scan: valid=%v reason=%s %s", res.Valid(), res.Reason, res.Detail)
			}
			// Re-encoding a card this system issued works.
			next := cred
			next.IssueSequence++
			if _, err := st.Encode(ctx, slot.Reader, next, 5*time.Second); err != nil {
				t.Fatalf("re-encode: %v", err)
			}
			if res, _ := st.Scan(ctx, slot.Reader, 5*time.Second); !res.Valid() || res.Record.IssueSequence != next.IssueSequence {
				t.Fatalf("scan after re-encode: %+v", res)
			}
		})
	}
}

// TestRemovedMidEncode pulls the virtual card out of the reader in the
// middle of writing. pcscd reports it as a 0-byte response or a failed
// transmit; either way the job ends in encoding_interrupted and the card,
// put back, encodes cleanly.
func TestRemovedMidEncode(t *testing.T) {
	for _, kind := range []string{"mifare_classic_1k", "ntag213"} {
		t.Run(kind, func(t *testing.T) {
			ks := keys(t)
			cred := credential(t)
			slot := hwtest.AcquireSlot(t)
			card, err := chip.New(kind, nil)
			if err != nil {
				t.Fatal(err)
			}
			// APDU 14 is past identification and inside the writes for
			// both layouts.
			vs := hwtest.InsertCard(t, slot, chip.WithFaults(card, chip.Faults{RemoveAt: 14}))
			st := station(t, ks)
			ctx := context.Background()
			_, err = st.Encode(ctx, slot.Reader, cred, 5*time.Second)
			var je *bridge.JobError
			if !errors.As(err, &je) || je.Code != protocol.ErrorEncodingInterrupted {
				t.Fatalf("encode with the card pulled: %v", err)
			}
			<-vs.Done()
			if err := hwtest.WaitCard(slot.Reader, false, nil, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			hwtest.InsertCard(t, slot, card)
			if _, err := st.Encode(ctx, slot.Reader, cred, 5*time.Second); err != nil {
				t.Fatalf("encode after putting the card back: %v", err)
			}
			if res, err := st.Scan(ctx, slot.Reader, 5*time.Second); err != nil || !res.Valid() {
				t.Fatalf("scan: %+v %v", res, err)
			}
		})
	}
}

func TestCardErrors(t *testing.T) {
	ks := keys(t)
	cred := credential(t)
	ctx := context.Background()

	t.Run("no card", func(t *testing.T) {
		slot := hwtest.AcquireSlot(t)
		st := station(t, ks)
		_, err := st.Scan(ctx, slot.Reader, 300*time.Millisecond)
		wantCode(t, err, protocol.ErrorNoCredentialOnEncoder)
		_, err = st.Encode(ctx, slot.Reader, cred, 0)
		wantCode(t, err, protocol.ErrorNoCredentialOnEncoder)
	})
	t.Run("card too small", func(t *testing.T) {
		slot := hwtest.AcquireSlot(t)
		card, _ := chip.New("mifare_ultralight_ev1_mf0ul11", nil)
		hwtest.InsertCard(t, slot, card)
		_, err := station(t, ks).Encode(ctx, slot.Reader, cred, 5*time.Second)
		wantCode(t, err, protocol.ErrorIncompatibleCardFormat)
	})
	t.Run("keyed by another system", func(t *testing.T) {
		slot := hwtest.AcquireSlot(t)
		card := chip.NewClassic1K(nil)
		foreign := []byte{1, 2, 3, 4, 5, 6}
		tr := card.Block(3)
		copy(tr[:6], foreign)
		copy(tr[10:], foreign)
		card.SetBlock(3, tr)
		hwtest.InsertCard(t, slot, card)
		st := station(t, ks)
		_, err := st.Encode(ctx, slot.Reader, cred, 5*time.Second)
		wantCode(t, err, protocol.ErrorIncompatibleCardFormat)
		res, err := st.Scan(ctx, slot.Reader, 5*time.Second)
		if err != nil || res.Reason != cardfmt.ReasonForeign {
			t.Fatalf("scan: %+v %v", res, err)
		}
	})
	t.Run("unknown reader", func(t *testing.T) {
		hwtest.Require(t)
		_, err := station(t, ks).Scan(ctx, "No Such Reader 00 00", 0)
		wantCode(t, err, protocol.ErrorEncoderNotOnline)
	})
}

func wantCode(t *testing.T, err error, want protocol.ErrorType) {
	t.Helper()
	var je *bridge.JobError
	if !errors.As(err, &je) || je.Code != want {
		t.Fatalf("err = %v, want %s", err, want)
	}
}
