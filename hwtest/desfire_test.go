package hwtest_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/encoder-bridge/encoder-bridge/cardfmt"
	"github.com/encoder-bridge/encoder-bridge/cardfmt/cardfmttest"
	"github.com/encoder-bridge/encoder-bridge/cardfmt/desfire"
	"github.com/encoder-bridge/encoder-bridge/hwtest"
	"github.com/encoder-bridge/encoder-bridge/hwtest/vpcd"
	"github.com/encoder-bridge/encoder-bridge/internal/ev1"
	"github.com/encoder-bridge/encoder-bridge/protocol"
	"github.com/encoder-bridge/encoder-bridge/reader"
	"github.com/encoder-bridge/encoder-bridge/reader/pcsc"
	"github.com/encoder-bridge/encoder-bridge/reader/sim/chip"
)

func newDESFire(t *testing.T, o chip.DESFireOptions) *chip.DESFire {
	t.Helper()
	d, err := chip.NewDESFire(o, nil)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestDESFire encodes factory DESFire EV2 and EV3 cards through pcscd,
// fixed and random UID, scans them, re-encodes them, re-keys them after
// a key rotation, and leaves another system's card as it was.
func TestDESFire(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		o    chip.DESFireOptions
		tech reader.Technology
	}{
		{"EV2 4K", chip.DESFireOptions{Generation: chip.DESFireEV2, Size: 4096}, reader.TechDESFireEV2},
		{"EV3 2K random UID", chip.DESFireOptions{Generation: chip.DESFireEV3, Size: 2048, RandomUID: true}, reader.TechDESFireEV3},
		{"EV3 8K AES PICC key", chip.DESFireOptions{Generation: chip.DESFireEV3, Size: 8192, AESPICCKey: true}, reader.TechDESFireEV3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			slot := hwtest.AcquireSlot(t)
			d := newDESFire(t, tc.o)
			hwtest.InsertCard(t, slot, d)
			ks := keys(t)
			st := station(t, ks)
			cred := credential(t)

			got, err := st.Encode(ctx, slot.Reader, cred, 5*time.Second)
			if err != nil {
				t.Fatalf("encode: %v", err)
			}
			if got.Technology != tc.tech {
				t.Fatalf("technology %s, want %s", got.Technology, tc.tech)
			}
			if tc.o.RandomUID == bytes.Equal(got.UID, d.RealUID()) {
				t.Fatalf("reported UID % X, real % X, random %v", got.UID, d.RealUID(), tc.o.RandomUID)
			}
			res, err := st.Scan(ctx, slot.Reader, 5*time.Second)
			if err != nil || !res.Valid() || res.Record.ID != cred.ID {
				t.Fatalf("scan: %+v %v", res, err)
			}
			next := cred
			next.IssueSequence++
			if _, err := st.Encode(ctx, slot.Reader, next, 5*time.Second); err != nil {
				t.Fatalf("re-encode: %v", err)
			}
			if _, err := ks.Rotate(rand.Reader); err != nil {
				t.Fatal(err)
			}
			next.IssueSequence++
			if _, err := st.Encode(ctx, slot.Reader, next, 5*time.Second); err != nil {
				t.Fatalf("re-encode after rotation: %v", err)
			}
			res, err = st.Scan(ctx, slot.Reader, 5*time.Second)
			if err != nil || !res.Valid() || res.Record.IssueSequence != next.IssueSequence || res.Record.KeyVersion != 2 {
				t.Fatalf("scan after rotation: %+v %v", res, err)
			}

			// Another site: foreign, and the card is left as it was.
			before, err := chip.Marshal(d)
			if err != nil {
				t.Fatal(err)
			}
			theirs := station(t, keys(t))
			if res, err := theirs.Scan(ctx, slot.Reader, 5*time.Second); err != nil || res.Reason != cardfmt.ReasonForeign {
				t.Fatalf("scan at another site: %+v %v", res, err)
			}
			_, err = theirs.Encode(ctx, slot.Reader, cred, 5*time.Second)
			wantCode(t, err, protocol.ErrorIncompatibleCardFormat)
			if after, _ := chip.Marshal(d); !bytes.Equal(after, before) {
				t.Fatal("another site's encode changed the card")
			}
		})
	}
}

// TestDESFireRemovedAtEveryAPDU pulls the card out of the reader at each
// APDU of a factory issue, a re-encode and a re-key through pcscd; the
// card put back scans as the old record, the new one or not valid, and
// takes a fresh encode.
func TestDESFireRemovedAtEveryAPDU(t *testing.T) {
	if testing.Short() {
		t.Skip("a card insertion per APDU: run without -short")
	}
	ctx := context.Background()
	for _, sc := range []struct {
		name    string
		issued  bool // the card holds a record of key version 1
		rotated bool // the interrupted encode runs after a rotation
	}{
		{"factory", false, false},
		{"re-encode", true, false},
		{"re-encode after rotation", true, true},
	} {
		t.Run(sc.name, func(t *testing.T) {
			slot := hwtest.AcquireSlot(t)
			ks := keys(t)
			st := station(t, ks)
			old, next := credential(t), credential(t)
			next.IssueSequence, next.CardNumber = 9, "900900"

			// The card as it was before the encode, saved once.
			d := newDESFire(t, chip.DESFireOptions{Generation: chip.DESFireEV2, Size: 4096})
			vs := hwtest.InsertCard(t, slot, d)
			if sc.issued {
				if _, err := st.Encode(ctx, slot.Reader, old, 5*time.Second); err != nil {
					t.Fatal(err)
				}
			}
			removeCard(t, slot, vs)
			saved, err := chip.Marshal(d)
			if err != nil {
				t.Fatal(err)
			}
			if sc.rotated {
				if _, err := ks.Rotate(rand.Reader); err != nil {
					t.Fatal(err)
				}
			}
			fresh := func() chip.Card {
				c, err := chip.Unmarshal(saved)
				if err != nil {
					t.Fatal(err)
				}
				return c
			}

			// An uninterrupted encode gives the APDU count.
			vs = hwtest.InsertCard(t, slot, fresh())
			if _, err := st.Encode(ctx, slot.Reader, next, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			total := vs.APDUs()
			removeCard(t, slot, vs)
			t.Logf("%d APDUs per encode, identification included", total)

			for n := 1; n <= total; n++ {
				c := fresh()
				vs := hwtest.InsertCard(t, slot, chip.WithFaults(c, chip.Faults{RemoveAt: n}))
				if _, err := st.Encode(ctx, slot.Reader, next, 5*time.Second); err == nil {
					t.Fatalf("APDU %d: encode succeeded with the card removed", n)
				}
				<-vs.Done()
				if err := hwtest.WaitCard(slot.Reader, false, nil, 5*time.Second); err != nil {
					t.Fatal(err)
				}
				vs = hwtest.InsertCard(t, slot, c)
				res, err := st.Scan(ctx, slot.Reader, 5*time.Second)
				if err != nil {
					t.Fatalf("APDU %d: scan: %v", n, err)
				}
				switch {
				case res.Valid() && res.Record.CardNumber != next.CardNumber && (!sc.issued || res.Record.CardNumber != old.CardNumber):
					t.Fatalf("APDU %d: a valid record that is neither the old nor the new one", n)
				case res.Reason == cardfmt.ReasonForeign:
					t.Fatalf("APDU %d: the card reads as foreign: %s", n, res.Detail)
				}
				if _, err := st.Encode(ctx, slot.Reader, next, 5*time.Second); err != nil {
					t.Fatalf("APDU %d: encode after the interruption: %v", n, err)
				}
				if res, err := st.Scan(ctx, slot.Reader, 5*time.Second); err != nil || !res.Valid() {
					t.Fatalf("APDU %d: scan after the re-encode: %+v %v", n, res, err)
				}
				removeCard(t, slot, vs)
			}
		})
	}
}

// removeCard takes the card out and waits until pcscd sees the reader
// empty.
func removeCard(t *testing.T, slot hwtest.Slot, vs *vpcd.Slot) {
	t.Helper()
	if err := vs.Remove(); err != nil {
		t.Fatal(err)
	}
	if err := hwtest.WaitCard(slot.Reader, false, nil, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestDESFireOtherApplications issues a card that already carries another
// system's applications (a transit application with its own AES key, and
// one at this layout's first-generation AID keyed by another system)
// through pcscd: both are left exactly as they were, the record lands in
// this system's application, and a card of an older key version is
// re-keyed to the current one on its next encode.
func TestDESFireOtherApplications(t *testing.T) {
	ctx := context.Background()
	slot := hwtest.AcquireSlot(t)
	d := newDESFire(t, chip.DESFireOptions{Generation: chip.DESFireEV3, Size: 8192, RandomUID: true})
	transit := [3]byte{0x11, 0x22, 0x33}
	oldAID := [3]byte{0x01, 0xB0, 0x5E}
	for _, aid := range [][3]byte{transit, oldAID} {
		// CreateApplication: key settings 0F, AES, 2 keys; both keys all zero.
		apdu := append([]byte{0x90, 0xCA, 0x00, 0x00, 0x05}, aid[:]...)
		apdu = append(apdu, 0x0F, 0x82, 0x00)
		if r, err := d.Transmit(apdu); err != nil || !bytes.Equal(r, []byte{0x91, 0x00}) {
			t.Fatalf("create application %X: % X %v", aid, r, err)
		}
	}
	theirs := func() [][]byte {
		var out [][]byte
		for _, aid := range [][3]byte{transit, oldAID} {
			for k := range 2 {
				key, v, ok := d.AppKey(aid, k)
				if !ok {
					t.Fatalf("application %X lost key %d", aid, k)
				}
				out = append(out, append(key[:], v))
			}
		}
		return out
	}
	before := theirs()
	hwtest.InsertCard(t, slot, d)
	ks := keys(t)
	st := station(t, ks)
	cred := credential(t)
	if _, err := st.Encode(ctx, slot.Reader, cred, 5*time.Second); err != nil {
		t.Fatalf("encode: %v", err)
	}
	if _, err := ks.Rotate(rand.Reader); err != nil {
		t.Fatal(err)
	}
	cred.IssueSequence++
	if _, err := st.Encode(ctx, slot.Reader, cred, 5*time.Second); err != nil {
		t.Fatalf("re-encode after rotation: %v", err)
	}
	res, err := st.Scan(ctx, slot.Reader, 5*time.Second)
	if err != nil || !res.Valid() || res.Record.IssueSequence != cred.IssueSequence || res.Record.KeyVersion != 2 {
		t.Fatalf("scan: %+v %v", res, err)
	}
	if apps := d.Apps(); len(apps) != 3 {
		t.Fatalf("applications %X, want the two others and this system's", apps)
	}
	if after := theirs(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatal("another system's application keys changed")
	}
	for _, aid := range [][3]byte{transit, oldAID} {
		if f := d.FileData(aid, 1); f != nil {
			t.Fatalf("application %X gained a file", aid)
		}
	}
}

// TestDESFireLegacyAID takes a card the first-generation layout issued at
// the private AID 5EB001 (testdata/desfire_legacy_5eb001.json: random
// UID, cardfmttest's "site" key set, version 1) through pcscd: it scans
// valid, an encode moves it to F51E80 and deletes the old application,
// and the moved card scans as the new record.
func TestDESFireLegacyAID(t *testing.T) {
	ctx := context.Background()
	b, err := os.ReadFile("testdata/desfire_legacy_5eb001.json")
	if err != nil {
		t.Fatal(err)
	}
	c, err := chip.Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	d := c.(*chip.DESFire)
	slot := hwtest.AcquireSlot(t)
	hwtest.InsertCard(t, slot, d)
	ks := cardfmttest.KeySet(t, "site", 1)
	st := station(t, ks)
	res, err := st.Scan(ctx, slot.Reader, 5*time.Second)
	old := cardfmttest.Credential("1001", 1)
	if err != nil || !res.Valid() || res.Record.ID != old.ID {
		t.Fatalf("scan of the legacy card: %+v %v", res, err)
	}
	cred := credential(t)
	if _, err := st.Encode(ctx, slot.Reader, cred, 5*time.Second); err != nil {
		t.Fatalf("encode: %v", err)
	}
	if apps := d.Apps(); len(apps) != 1 || apps[0] != desfire.AID {
		t.Fatalf("applications after the move %X", apps)
	}
	res, err = st.Scan(ctx, slot.Reader, 5*time.Second)
	if err != nil || !res.Valid() || res.Record.ID != cred.ID {
		t.Fatalf("scan after the move: %+v %v", res, err)
	}
}

// TestDESFireFactoryPICCKeyUID reads a random-UID factory card's real UID
// through pcscd with the PICC master key as shipped: the legacy
// Authenticate and AuthenticateISO with the all-zero 2K3DES key, then
// GetCardUID in EV1 secure messaging. The card is unchanged.
func TestDESFireFactoryPICCKeyUID(t *testing.T) {
	ctx := context.Background()
	slot := hwtest.AcquireSlot(t)
	d := newDESFire(t, chip.DESFireOptions{Generation: chip.DESFireEV3, Size: 4096, RandomUID: true})
	before, err := chip.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	hwtest.InsertCard(t, slot, d)
	rc, err := pcsc.Open(pcsc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	for _, scheme := range []ev1.Scheme{ev1.Legacy, ev1.ISO} {
		c, err := rc.Connect(ctx, slot.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tag := reader.NewTag(c)
		info, err := reader.Identify(ctx, tag)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(info.UID, d.RealUID()) {
			t.Fatalf("anticollision gave the real UID")
		}
		encB, st, err := tag.Wrapped(ctx, byte(scheme), []byte{0x00})
		if err != nil || st != 0xAF {
			t.Fatalf("%02X: %02X %v", byte(scheme), st, err)
		}
		rndA := make([]byte, 8)
		if _, err := rand.Read(rndA); err != nil {
			t.Fatal(err)
		}
		rd, token, err := ev1.ReaderStep(scheme, ev1.Key{}, encB, rndA)
		if err != nil {
			t.Fatal(err)
		}
		resp, st, err := tag.Wrapped(ctx, 0xAF, token)
		if err != nil || st != 0x00 {
			t.Fatalf("%02X second frame: %02X %v", byte(scheme), st, err)
		}
		s, err := rd.Finish(resp)
		if err != nil {
			t.Fatal(err)
		}
		s.Command(0x51, nil)
		enc, st, err := tag.Wrapped(ctx, 0x51, nil)
		if err != nil || st != 0x00 {
			t.Fatalf("GetCardUID: %02X %v", st, err)
		}
		uid, err := s.OpenFull(0x00, enc, 7)
		if err != nil || !bytes.Equal(uid, d.RealUID()) {
			t.Fatalf("GetCardUID after %02X: % X %v, want % X", byte(scheme), uid, err, d.RealUID())
		}
		c.Close()
	}
	if after, _ := chip.Marshal(d); !bytes.Equal(after, before) {
		t.Fatal("reading the UID changed the card")
	}
}
