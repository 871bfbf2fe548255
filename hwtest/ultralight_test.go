package hwtest_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/encoder-bridge/encoder-bridge/cardfmt"
	"github.com/encoder-bridge/encoder-bridge/hwtest"
	"github.com/encoder-bridge/encoder-bridge/protocol"
	"github.com/encoder-bridge/encoder-bridge/reader/sim/chip"
)

// TestUltralightOtherSite: through pcscd, a card another site keyed scans
// as foreign, scan after scan, without losing a single password attempt,
// and keeps working for its own site. Scanning it used to cost it one
// attempt per scan until AUTHLIM shut it for good.
func TestUltralightOtherSite(t *testing.T) {
	cred := credential(t)
	ctx := context.Background()
	for _, kind := range []string{"ntag213", "mifare_ultralight_ev1_mf0ul21"} {
		t.Run(kind, func(t *testing.T) {
			slot := hwtest.AcquireSlot(t)
			card, err := chip.New(kind, nil)
			if err != nil {
				t.Fatal(err)
			}
			u := card.(*chip.Ultralight)
			hwtest.InsertCard(t, slot, card)
			theirs := station(t, keys(t))
			if _, err := theirs.Encode(ctx, slot.Reader, cred, 5*time.Second); err != nil {
				t.Fatalf("encode at the other site: %v", err)
			}
			ours := station(t, keys(t))
			for i := range 8 {
				res, err := ours.Scan(ctx, slot.Reader, 5*time.Second)
				if err != nil || res.Reason != cardfmt.ReasonForeign {
					t.Fatalf("scan %d: %+v %v", i, res, err)
				}
			}
			_, err = ours.Encode(ctx, slot.Reader, cred, 5*time.Second)
			wantCode(t, err, protocol.ErrorIncompatibleCardFormat)
			if n := u.AuthFailures(); n != 0 || u.PasswordBlocked() {
				t.Fatalf("the card lost %d password attempts (blocked %v)", n, u.PasswordBlocked())
			}
			if res, err := theirs.Scan(ctx, slot.Reader, 5*time.Second); err != nil || !res.Valid() {
				t.Fatalf("scan at its own site: %+v %v", res, err)
			}
		})
	}
}

// TestUltralightRollback: through pcscd, an older record written back onto
// an Ultralight EV1 (its pages copied back, as whoever sniffed the card's
// password can) no longer verifies: the record is bound to the one-way
// counter the newer encode moved.
func TestUltralightRollback(t *testing.T) {
	ctx := context.Background()
	slot := hwtest.AcquireSlot(t)
	u := chip.NewUltralight(chip.MF0UL21, nil)
	hwtest.InsertCard(t, slot, u)
	st := station(t, keys(t))
	old := credential(t)
	if _, err := st.Encode(ctx, slot.Reader, old, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	saved := make([][]byte, u.ConfigPage())
	for p := range saved {
		saved[p] = u.Page(p)
	}
	next := old
	next.IssueSequence++
	if _, err := st.Encode(ctx, slot.Reader, next, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	for p := 4; p < len(saved); p++ {
		u.SetPage(p, saved[p])
	}
	res, err := st.Scan(ctx, slot.Reader, 5*time.Second)
	if err != nil || res.Reason != cardfmt.ReasonBadMAC || !strings.Contains(res.Detail, "superseded") {
		t.Fatalf("older record written back: %+v %v", res, err)
	}
}
