package desfire

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"

	"github.com/encoder-bridge/encoder-bridge/cardfmt"
	"github.com/encoder-bridge/encoder-bridge/cardfmt/cardfmttest"
	"github.com/encoder-bridge/encoder-bridge/reader"
	"github.com/encoder-bridge/encoder-bridge/reader/sim"
	"github.com/encoder-bridge/encoder-bridge/reader/sim/chip"
)

const readerName = "Sim Reader 00"

var uidA = []byte{0x04, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66}

// keySet and credential are deterministic: the same arguments give the
// same keys and the same credential.
func keySet(t testing.TB, seed string, versions int) *cardfmt.KeySet {
	t.Helper()
	return cardfmttest.KeySet(t, seed, versions)
}

func credential(number string, entrances int) cardfmt.Credential {
	return cardfmttest.Credential(number, entrances)
}

// rig is a simulated reader with one DESFire card on it.
type rig struct {
	t    testing.TB
	sim  *sim.Context
	rdr  *sim.Reader
	chip *chip.DESFire
}

func newRig(t testing.TB, o chip.DESFireOptions) *rig {
	t.Helper()
	if o.Generation == 0 {
		o.Generation = chip.DESFireEV2
	}
	if o.Size == 0 {
		o.Size = 4096
	}
	d, err := chip.NewDESFire(o, uidA)
	if err != nil {
		t.Fatal(err)
	}
	s := sim.New()
	r := &rig{t: t, sim: s, rdr: s.Plug(readerName), chip: d}
	r.rdr.Insert(d)
	return r
}

type link struct {
	tag  *reader.Tag
	info reader.Info
	card *sim.Card
}

func (r *rig) connect() link {
	r.t.Helper()
	c, err := r.sim.Connect(context.Background(), readerName)
	if err != nil {
		r.t.Fatal(err)
	}
	tag := reader.NewTag(c)
	info, err := reader.Identify(context.Background(), tag)
	if err != nil {
		r.t.Fatal(err)
	}
	return link{tag: tag, info: info, card: c.(*sim.Card)}
}

func (r *rig) encode(ks *cardfmt.KeySet, c cardfmt.Credential) error {
	r.t.Helper()
	k := r.connect()
	defer k.card.Close()
	return errOf(Encode(context.Background(), k.tag, k.info, ks, c))
}

func (r *rig) mustEncode(ks *cardfmt.KeySet, c cardfmt.Credential) {
	r.t.Helper()
	if err := r.encode(ks, c); err != nil {
		r.t.Fatalf("Encode: %v", err)
	}
}

func (r *rig) scan(ks *cardfmt.KeySet) cardfmt.Scan {
	r.t.Helper()
	k := r.connect()
	defer k.card.Close()
	s, err := Scan(context.Background(), k.tag, k.info, ks)
	if err != nil {
		r.t.Fatalf("Scan: %v", err)
	}
	return s
}

// apdus runs f on a fresh connection and counts the APDUs it sends.
func (r *rig) apdus(f func(k link) error) int {
	r.t.Helper()
	k := r.connect()
	defer k.card.Close()
	sent := k.card.Transmits
	if err := f(k); err != nil {
		r.t.Fatal(err)
	}
	return k.card.Transmits - sent
}

func sameCredential(t testing.TB, s cardfmt.Scan, want cardfmt.Credential) {
	t.Helper()
	if !s.Valid() {
		t.Fatalf("scan not valid: %s: %s", s.Reason, s.Detail)
	}
	g := s.Record.Credential
	if g.ID != want.ID || g.CardNumber != want.CardNumber || g.IssueSequence != want.IssueSequence ||
		fmt.Sprint(g.Entrances) != fmt.Sprint(want.Entrances) {
		t.Fatalf("scanned %+v, want %+v", g, want)
	}
}

// checkKeys checks that the application holds key version v's keys for
// the card's real UID.
func (r *rig) checkKeys(ks *cardfmt.KeySet, v uint8) {
	r.t.Helper()
	sk, _ := ks.Version(v)
	want, err := keysFor(sk, r.chip.RealUID())
	if err != nil {
		r.t.Fatal(err)
	}
	for k := range numKeys {
		got, ver, ok := r.chip.AppKey(AID, k)
		if !ok || got != want.k[k] || ver != v {
			r.t.Fatalf("key %d: not key version %d's (version byte %d)", k, v, ver)
		}
	}
}

var cardOptions = []struct {
	name string
	o    chip.DESFireOptions
}{
	{"EV2 4K", chip.DESFireOptions{Generation: chip.DESFireEV2, Size: 4096}},
	{"EV3 2K random UID", chip.DESFireOptions{Generation: chip.DESFireEV3, Size: 2048, RandomUID: true}},
	{"EV3 8K AES PICC key", chip.DESFireOptions{Generation: chip.DESFireEV3, Size: 8192, AESPICCKey: true}},
}

// A factory card takes the application, its keys and the record; it
// scans valid, re-encodes, and keeps nothing else changed.
func TestEncodeScan(t *testing.T) {
	for _, co := range cardOptions {
		t.Run(co.name, func(t *testing.T) {
			r := newRig(t, co.o)
			ks := keySet(t, "site", 1)
			if s := r.scan(ks); s.Valid() || s.Reason != cardfmt.ReasonBlank {
				t.Fatalf("factory card: %+v", s)
			}
			c1 := credential("1001", 2)
			r.mustEncode(ks, c1)
			sameCredential(t, r.scan(ks), c1)
			r.checkKeys(ks, 1)
			c2 := credential("2002", 32)
			r.mustEncode(ks, c2)
			sameCredential(t, r.scan(ks), c2)
			if apps := r.chip.Apps(); len(apps) != 1 || apps[0] != AID {
				t.Fatalf("applications %X", apps)
			}
			// Another site reads it as foreign and cannot write it.
			other := keySet(t, "other", 1)
			if s := r.scan(other); s.Reason != cardfmt.ReasonForeign {
				t.Fatalf("scan with another site's keys: %+v", s)
			}
			if err := r.encode(other, credential("3003", 0)); !errors.Is(err, cardfmt.ErrForeign) {
				t.Fatalf("encode with another site's keys: %v", err)
			}
			sameCredential(t, r.scan(ks), c2)
		})
	}
}

// A card of an older key version re-encodes under the current one and
// is re-keyed; a key file without the card's version reads it as
// unknown_key_version.
func TestRekeyOnRotation(t *testing.T) {
	for _, co := range cardOptions {
		t.Run(co.name, func(t *testing.T) {
			r := newRig(t, co.o)
			r.mustEncode(keySet(t, "site", 1), credential("1001", 1))
			ks2 := keySet(t, "site", 2)
			sameCredential(t, r.scan(ks2), credential("1001", 1))
			c := credential("2002", 1)
			r.mustEncode(ks2, c)
			r.checkKeys(ks2, 2)
			sameCredential(t, r.scan(ks2), c)
			if err := ks2.Retire(1); err != nil {
				t.Fatal(err)
			}
			sameCredential(t, r.scan(ks2), c)

			r3 := newRig(t, co.o)
			r3.mustEncode(ks2, c)
			if s := r3.scan(keySet(t, "site", 1)); s.Reason != cardfmt.ReasonUnknownKeyVersion {
				t.Fatalf("scan with an older key file: %+v", s)
			}
		})
	}
}

// snapshot is everything a card stores, to check a refused card is left
// exactly as it was.
func snapshot(t testing.TB, c chip.Card) []byte {
	t.Helper()
	b, err := chip.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// An application of another system under this AID, or a PICC that
// refuses application creation, gives a clear error and changes nothing.
func TestForeignAndLockedCardsUntouched(t *testing.T) {
	ks := keySet(t, "site", 1)
	r := newRig(t, chip.DESFireOptions{})
	r.mustEncode(keySet(t, "another system", 3), credential("1001", 0))
	before := snapshot(t, r.chip)
	if err := r.encode(ks, credential("2002", 0)); !errors.Is(err, cardfmt.ErrForeign) {
		t.Fatalf("another system's application: %v", err)
	}
	if !bytes.Equal(snapshot(t, r.chip), before) {
		t.Fatal("another system's card changed")
	}
	// Its key version 3 is one this site's key file lacks, yet its DF name
	// names the other system: foreign, not unknown_key_version.
	if s := r.scan(ks); s.Reason != cardfmt.ReasonForeign {
		t.Fatalf("scan of another system's card: %+v", s)
	}
	if s := r.scan(keySet(t, "another system", 2)); s.Reason != cardfmt.ReasonUnknownKeyVersion {
		t.Fatalf("scan with that system's older key file: %+v", s)
	}
	err := r.encode(keySet(t, "another system", 2), credential("2002", 0))
	if !errors.Is(err, cardfmt.ErrForeign) || !errors.Is(err, cardfmt.ErrUnknownKeyVersion) {
		t.Fatalf("encode with that system's older key file: %v", err)
	}

	// A transit application beside ours stays as it was.
	r2 := newRig(t, chip.DESFireOptions{AESPICCKey: true})
	k := r2.connect()
	transit := [3]byte{0x11, 0x22, 0x33}
	if _, st, err := k.tag.Wrapped(context.Background(), 0xCA, append(transit[:], 0x0F, 0x81)); err != nil || st != 0 {
		t.Fatalf("create transit application: %02X %v", st, err)
	}
	k.card.Close()
	r2.mustEncode(ks, credential("1001", 0))
	if apps := r2.chip.Apps(); len(apps) != 2 || apps[0] != transit {
		t.Fatalf("applications %X", apps)
	}
	if key, v, _ := r2.chip.AppKey(transit, 0); key != ([16]byte{}) || v != 0 {
		t.Fatal("transit application's key changed")
	}

	// A PICC whose key settings need the master key to create one.
	r3 := newRig(t, chip.DESFireOptions{AESPICCKey: true})
	lockPICC(t, r3)
	before = snapshot(t, r3.chip)
	err = r3.encode(ks, credential("1001", 0))
	if !errors.Is(err, cardfmt.ErrIncompatible) {
		t.Fatalf("locked PICC: %v", err)
	}
	if !bytes.Equal(snapshot(t, r3.chip), before) {
		t.Fatal("locked PICC card changed")
	}
	if s := r3.scan(ks); s.Reason != cardfmt.ReasonBlank {
		t.Fatalf("locked PICC scan: %+v", s)
	}
}

// lockPICC restores the card with PICC key settings 0x09: no
// application creation without the PICC master key.
func lockPICC(t *testing.T, r *rig) {
	t.Helper()
	b := bytes.Replace(snapshot(t, r.chip), []byte(`"key_settings": 15`), []byte(`"key_settings": 9`), 1)
	c, err := chip.Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	r.chip = c.(*chip.DESFire)
	r.rdr.Insert(r.chip)
}

// recorder notes the INS byte of every APDU.
type recorder struct {
	chip.Card
	ins []byte
}

func (r *recorder) Transmit(apdu []byte) ([]byte, error) {
	if len(apdu) > 1 {
		r.ins = append(r.ins, apdu[1])
	}
	return r.Card.Transmit(apdu)
}

// TestInterrupted pulls the card away at every APDU of an encode. Encode
// must fail, with ErrInterrupted once it has written; the card must then
// never scan as a valid record other than the old or the new one, and must
// take a fresh encode.
func TestInterrupted(t *testing.T) {
	type scenario struct {
		name   string
		before int // key versions of the first encode; 0: factory card
		after  int // key versions of the interrupted encode
	}
	scenarios := []scenario{
		{"factory", 0, 1},
		{"re-encode", 1, 1},
		{"re-encode after rotation", 1, 2},
	}
	for _, co := range cardOptions[:2] {
		for _, sc := range scenarios {
			t.Run(co.name+"/"+sc.name, func(t *testing.T) {
				old := credential("1001", 1)
				next := credential("2002", 12)
				ks := keySet(t, "site", sc.after)
				prepare := func() (*rig, *chip.DESFire) {
					r := newRig(t, co.o)
					if sc.before > 0 {
						r.mustEncode(keySet(t, "site", sc.before), old)
					}
					return r, r.chip
				}
				r, d := prepare()
				k := r.connect()
				skip := k.card.Transmits // what reader.Identify sent
				k.card.Close()
				rec := &recorder{Card: d}
				r.rdr.Insert(rec)
				r.mustEncode(ks, next)
				seq := rec.ins[skip:]
				firstWrite := bytes.IndexByte(seq, insWriteData) + 1
				if firstWrite == 0 {
					t.Fatal("no write")
				}
				t.Logf("%d APDUs, first write at %d", len(seq), firstWrite)
				for n := 1; n <= len(seq); n++ {
					r, d := prepare()
					r.rdr.Insert(chip.WithFaults(d, chip.Faults{RemoveAt: skip + n}))
					err := r.encode(ks, next)
					switch {
					case err == nil:
						t.Fatalf("APDU %d: Encode succeeded with the card removed", n)
					case !errors.Is(err, reader.ErrCardRemoved):
						t.Fatalf("APDU %d: %v, want card removed", n, err)
					case errors.Is(err, cardfmt.ErrInterrupted) != (n >= firstWrite):
						t.Fatalf("APDU %d (first write %d): %v", n, firstWrite, err)
					}
					r.rdr.Insert(d)
					s := r.scan(ks)
					if s.Valid() {
						id := s.Record.ID
						if id != next.ID && (sc.before == 0 || id != old.ID) {
							t.Fatalf("APDU %d: a valid record that is neither the old nor the new one", n)
						}
					} else if s.Reason == cardfmt.ReasonForeign {
						t.Fatalf("APDU %d: card reads as foreign: %s", n, s.Detail)
					}
					again := credential("3003", 0)
					if err := r.encode(ks, again); err != nil {
						t.Fatalf("APDU %d: encode after the interruption: %v", n, err)
					}
					sameCredential(t, r.scan(ks), again)
					r.checkKeys(ks, uint8(sc.after))
				}
			})
		}
	}
}

// TestAPDUCounts pins the sequences docs/card-format.md gives, after
// reader.Identify, for an 84-byte record.
func TestAPDUCounts(t *testing.T) {
	ks := keySet(t, "site", 1)
	c := credential("100234", 1)
	if n := cardfmt.SealedLen(c, 7); n != 84 {
		t.Fatalf("record of %d bytes", n)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		name          string
		o             chip.DESFireOptions
		factory, re   int
		scan, rekeyed int
	}{
		{"fixed UID", chip.DESFireOptions{}, 21, 12, 5, 23},
		{"random UID", chip.DESFireOptions{RandomUID: true}, 22, 15, 8, 26},
	} {
		r := newRig(t, tc.o)
		enc := func(k link) error { return errOf(Encode(ctx, k.tag, k.info, ks, c)) }
		scan := func(k link) error {
			s, err := Scan(ctx, k.tag, k.info, ks)
			if err == nil && !s.Valid() {
				err = fmt.Errorf("scan %s", s.Reason)
			}
			return err
		}
		if n := r.apdus(enc); n != tc.factory {
			t.Errorf("%s: factory encode %d APDUs, want %d", tc.name, n, tc.factory)
		}
		if n := r.apdus(enc); n != tc.re {
			t.Errorf("%s: re-encode %d APDUs, want %d", tc.name, n, tc.re)
		}
		if n := r.apdus(scan); n != tc.scan {
			t.Errorf("%s: scan %d APDUs, want %d", tc.name, n, tc.scan)
		}
		ks2 := keySet(t, "site", 2)
		rekey := func(k link) error { return errOf(Encode(ctx, k.tag, k.info, ks2, c)) }
		if n := r.apdus(rekey); n != tc.rekeyed {
			t.Errorf("%s: re-encode from an older key version %d APDUs, want %d", tc.name, n, tc.rekeyed)
		}
	}
}

// An encode reads the record back with the read key after the commit: a
// card that acknowledges the write but does not keep it fails the encode
// as interrupted, and the card never scans as a valid wrong record.
func TestReadBack(t *testing.T) {
	ks := keySet(t, "site", 1)
	r := newRig(t, chip.DESFireOptions{})
	old := credential("1001", 1)
	r.mustEncode(ks, old)

	rec := &recorder{Card: r.chip}
	r.rdr.Insert(rec)
	next := credential("2002", 1)
	r.mustEncode(ks, next)
	commit := bytes.LastIndexByte(rec.ins, insCommit)
	if commit < 0 || !bytes.Equal(rec.ins[commit+1:], []byte{insAuthEV2NonFirst, insMoreFrames, insReadData, insMoreFrames}) {
		t.Fatalf("after the commit: % X, want NonFirst (2 frames) and ReadData (2 frames)", rec.ins[commit+1:])
	}

	r.rdr.Insert(r.chip)
	r.chip.WearByte(AID, fileNo, 40) // inside the card number
	err := r.encode(ks, credential("3003", 1))
	if !errors.Is(err, cardfmt.ErrInterrupted) || !errors.Is(err, errReadBack) {
		t.Fatalf("encode onto a worn cell: %v, want interrupted, reads back differently", err)
	}
	if s := r.scan(ks); s.Valid() || s.Reason != cardfmt.ReasonBadMAC {
		t.Fatalf("scan after the failed read-back: %+v, want bad_mac", s)
	}
}

// encodeLegacy writes the first generation's layout: the application at
// the private AID 5EB001 with its ISO names, as encodes did before the
// move to the MAD form.
func (r *rig) encodeLegacy(ks *cardfmt.KeySet, c cardfmt.Credential) {
	r.t.Helper()
	current, legacy = legacy, current
	defer func() { current, legacy = legacy, current }()
	r.mustEncode(ks, c)
	if apps := r.chip.Apps(); len(apps) != 1 || apps[0] != [3]byte{0x01, 0xB0, 0x5E} {
		r.t.Fatalf("legacy card's applications %X", apps)
	}
}

// A card written at the legacy AID scans valid; an encode moves it to the
// MAD-form AID (re-keyed to the current version) and deletes the legacy
// application, or, on a card without room for both, re-encodes it where
// it is. Another system's application at the legacy AID stays.
func TestMoveLegacy(t *testing.T) {
	for _, co := range cardOptions {
		t.Run(co.name, func(t *testing.T) {
			r := newRig(t, co.o)
			old := credential("1001", 1)
			r.encodeLegacy(keySet(t, "site", 1), old)
			ks := keySet(t, "site", 2)
			sameCredential(t, r.scan(ks), old)
			next := credential("100234", 1) // the 84-byte record of TestAPDUCounts
			n := r.apdus(func(k link) error { return errOf(Encode(context.Background(), k.tag, k.info, ks, next)) })
			t.Logf("%d APDUs", n)
			if co.o == (chip.DESFireOptions{Generation: chip.DESFireEV2, Size: 4096}) && n != 28 {
				t.Errorf("move of a fixed-UID card: %d APDUs, want 28 (docs/card-format.md)", n)
			}
			sameCredential(t, r.scan(ks), next)
			if co.o.Size == 2048 {
				if apps := r.chip.Apps(); len(apps) != 1 || apps[0] != legacy.aid {
					t.Fatalf("2K card: applications %X, want the legacy one kept", apps)
				}
				return
			}
			if apps := r.chip.Apps(); len(apps) != 1 || apps[0] != AID {
				t.Fatalf("applications after the move %X", apps)
			}
			r.checkKeys(ks, 2)
		})
	}

	// Another system's application at the legacy AID.
	r := newRig(t, chip.DESFireOptions{})
	r.encodeLegacy(keySet(t, "another system", 1), credential("1001", 0))
	ks := keySet(t, "site", 1)
	if s := r.scan(ks); s.Reason != cardfmt.ReasonForeign {
		t.Fatalf("scan: %+v", s)
	}
	c := credential("2002", 0)
	r.mustEncode(ks, c)
	sameCredential(t, r.scan(ks), c)
	if apps := r.chip.Apps(); len(apps) != 2 {
		t.Fatalf("applications %X, want the other system's kept", apps)
	}
}

// testdata/legacy_5eb001.json is a random-UID DESFire EV2 4K card the
// first-generation layout (commit 706022c, AID 5EB001) issued with
// credential("1001", 1) under keySet("site", 1): the real thing, not
// the swapped names of encodeLegacy. It scans valid and an encode moves
// it. hwtest/testdata holds the same card for the test through pcscd.
func TestLegacyCardGolden(t *testing.T) {
	b, err := os.ReadFile("testdata/legacy_5eb001.json")
	if err != nil {
		t.Fatal(err)
	}
	c, err := chip.Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	d := c.(*chip.DESFire)
	s := sim.New()
	r := &rig{t: t, sim: s, rdr: s.Plug(readerName), chip: d}
	r.rdr.Insert(d)
	ks := keySet(t, "site", 1)
	sameCredential(t, r.scan(ks), credential("1001", 1))
	next := credential("2002", 3)
	r.mustEncode(ks, next)
	sameCredential(t, r.scan(ks), next)
	if apps := d.Apps(); len(apps) != 1 || apps[0] != AID {
		t.Fatalf("applications after the move %X", apps)
	}
	r.checkKeys(ks, 1)
}

// A move pulled away at any APDU leaves the old record or the new one,
// never a valid wrong record or a foreign card, and a fresh encode
// succeeds.
func TestMoveLegacyInterrupted(t *testing.T) {
	old, next := credential("1001", 1), credential("2002", 12)
	ks := keySet(t, "site", 1)
	prepare := func() (*rig, *chip.DESFire) {
		r := newRig(t, chip.DESFireOptions{RandomUID: true})
		r.encodeLegacy(ks, old)
		return r, r.chip
	}
	r, d := prepare()
	k := r.connect()
	skip := k.card.Transmits
	k.card.Close()
	rec := &recorder{Card: d}
	r.rdr.Insert(rec)
	r.mustEncode(ks, next)
	total := len(rec.ins) - skip
	t.Logf("%d APDUs per move", total)
	for n := 1; n <= total; n++ {
		r, d := prepare()
		r.rdr.Insert(chip.WithFaults(d, chip.Faults{RemoveAt: skip + n}))
		if err := r.encode(ks, next); err == nil {
			t.Fatalf("APDU %d: Encode succeeded with the card removed", n)
		}
		r.rdr.Insert(d)
		s := r.scan(ks)
		switch {
		case s.Valid() && s.Record.ID != old.ID && s.Record.ID != next.ID:
			t.Fatalf("APDU %d: a valid record that is neither the old nor the new one", n)
		case !s.Valid() && s.Reason == cardfmt.ReasonForeign:
			t.Fatalf("APDU %d: foreign: %s", n, s.Detail)
		}
		again := credential("3003", 0)
		if err := r.encode(ks, again); err != nil {
			t.Fatalf("APDU %d: encode after the interruption: %v", n, err)
		}
		sameCredential(t, r.scan(ks), again)
	}
}

// The record travels encrypted: what crosses the air holds neither the
// record nor the card number.
func TestRecordEncryptedOnTheAir(t *testing.T) {
	ks := keySet(t, "site", 1)
	r := newRig(t, chip.DESFireOptions{})
	c := credential("CARDNUMBER-77", 1)
	w := &wire{Card: r.chip}
	r.rdr.Insert(w)
	r.mustEncode(ks, c)
	sameCredential(t, r.scan(ks), c)
	rec, err := cardfmt.Seal(c, ks, uidA)
	if err != nil {
		t.Fatal(err)
	}
	for _, needle := range [][]byte{[]byte("CARDNUMBER-77"), rec[8:24]} {
		if bytes.Contains(w.all.Bytes(), needle) {
			t.Fatalf("%q crossed the air in clear", needle)
		}
	}
}

type wire struct {
	chip.Card
	all bytes.Buffer
}

func (w *wire) Transmit(apdu []byte) ([]byte, error) {
	w.all.Write(apdu)
	r, err := w.Card.Transmit(apdu)
	w.all.Write(r)
	return r, err
}

func TestIncompatibleTechnology(t *testing.T) {
	ks := keySet(t, "site", 1)
	info := reader.Info{Technology: reader.TechNTAG213, UID: uidA}
	if err := errOf(Encode(context.Background(), nil, info, ks, credential("1", 0))); !errors.Is(err, cardfmt.ErrIncompatible) {
		t.Fatalf("Encode on NTAG213: %v", err)
	}
	if _, err := Scan(context.Background(), nil, info, ks); !errors.Is(err, cardfmt.ErrIncompatible) {
		t.Fatalf("Scan on NTAG213: %v", err)
	}
}

// errOf drops the record Encode returns, for tests about its error.
func errOf(_ cardfmt.Record, err error) error { return err }

// The layout reports a random-UID card's real UID to the Trace before it
// writes, on encode and scan, and a refusal leaves the record as it was;
// a fixed-UID card's UID is its real one and is not reported.
func TestTraceRealUID(t *testing.T) {
	errRefused := errors.New("another card")
	for _, tc := range []struct {
		name   string
		o      chip.DESFireOptions
		report bool
	}{
		{"EV2 fixed UID", chip.DESFireOptions{}, false},
		{"EV2 random UID", chip.DESFireOptions{RandomUID: true}, true},
		{"EV3 random UID", chip.DESFireOptions{Generation: chip.DESFireEV3, RandomUID: true}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, tc.o)
			ks := keySet(t, "site", 1)
			var seen [][]byte
			var refuse error
			ctx := cardfmt.WithTrace(context.Background(), &cardfmt.Trace{RealUID: func(uid []byte) error {
				seen = append(seen, slices.Clone(uid))
				return refuse
			}})
			encode := func(c cardfmt.Credential) error {
				k := r.connect()
				defer k.card.Close()
				return errOf(Encode(ctx, k.tag, k.info, ks, c))
			}
			c1 := credential("1001", 2)
			if err := encode(c1); err != nil {
				t.Fatalf("Encode: %v", err)
			}
			k := r.connect()
			if _, err := Scan(ctx, k.tag, k.info, ks); err != nil {
				t.Fatalf("Scan: %v", err)
			}
			k.card.Close()
			if !tc.report {
				if len(seen) != 0 {
					t.Fatalf("a fixed-UID card reported % X", seen)
				}
				return
			}
			if len(seen) < 2 {
				t.Fatalf("reported %d real UIDs for an encode and a scan", len(seen))
			}
			for _, uid := range seen {
				if !bytes.Equal(uid, r.chip.RealUID()) {
					t.Fatalf("reported % X, the card's real UID is % X", uid, r.chip.RealUID())
				}
			}
			refuse = errRefused
			if err := encode(credential("2002", 0)); !errors.Is(err, errRefused) {
				t.Fatalf("Encode refused by the Trace: %v", err)
			}
			sameCredential(t, r.scan(ks), c1)
		})
	}
}
