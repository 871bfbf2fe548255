package classic

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/encoder-bridge/encoder-bridge/cardfmt"
	"github.com/encoder-bridge/encoder-bridge/reader"
	"github.com/encoder-bridge/encoder-bridge/reader/sim"
	"github.com/encoder-bridge/encoder-bridge/reader/sim/chip"
)

const readerName = "Sim Reader 00"

// rig is a simulated reader with one card on it.
type rig struct {
	t    testing.TB
	sim  *sim.Context
	rdr  *sim.Reader
	chip *chip.Classic
}

func newRig(t testing.TB, kind string) *rig {
	t.Helper()
	c, err := chip.New(kind, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := sim.New()
	r := s.Plug(readerName)
	r.Insert(c)
	return &rig{t: t, sim: s, rdr: r, chip: c.(*chip.Classic)}
}

// connect opens a fresh connection, as a new job would; the caller closes
// it.
func (r *rig) connect() (*reader.Tag, reader.Info, *sim.Card) {
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
	return tag, info, c.(*sim.Card)
}

func (r *rig) encode(ks *cardfmt.KeySet, c cardfmt.Credential) error {
	tag, info, conn := r.connect()
	defer conn.Close()
	return errOf(Encode(context.Background(), tag, info, ks, c))
}

func (r *rig) scan(ks *cardfmt.KeySet) cardfmt.Scan {
	r.t.Helper()
	tag, info, conn := r.connect()
	defer conn.Close()
	s, err := Scan(context.Background(), tag, info, ks)
	if err != nil {
		r.t.Fatalf("Scan: %v", err)
	}
	return s
}

func keySet(t testing.TB) *cardfmt.KeySet {
	ks, err := cardfmt.GenerateKeySet(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

func credential(number string, entrances int) cardfmt.Credential {
	c := cardfmt.Credential{
		ID:            uuid.New(),
		CardNumber:    number,
		Function:      cardfmt.FunctionGuest,
		StartsAt:      time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC),
		EndsAt:        time.Date(2026, 11, 26, 11, 0, 0, 0, time.UTC),
		IssueSequence: 1,
	}
	for i := 0; i < entrances; i++ {
		c.Entrances = append(c.Entrances, uuid.New())
	}
	return c
}

func sameCredential(t testing.TB, got *cardfmt.Record, want cardfmt.Credential) {
	t.Helper()
	if got == nil {
		t.Fatal("no record")
	}
	g := got.Credential
	if g.ID != want.ID || g.CardNumber != want.CardNumber || g.Function != want.Function ||
		!g.StartsAt.Equal(want.StartsAt) || !g.EndsAt.Equal(want.EndsAt) ||
		g.IssueSequence != want.IssueSequence || fmt.Sprint(g.Entrances) != fmt.Sprint(want.Entrances) {
		t.Fatalf("scanned %+v, want %+v", g, want)
	}
}

func TestEncodeScan(t *testing.T) {
	for _, kind := range []string{"mifare_classic_1k", "mifare_classic_4k"} {
		for _, entrances := range []int{0, 1, 5, 32} {
			t.Run(fmt.Sprintf("%s/%d", kind, entrances), func(t *testing.T) {
				r := newRig(t, kind)
				ks := keySet(t)
				c := credential("1001", entrances)
				if err := r.encode(ks, c); err != nil {
					t.Fatalf("Encode: %v", err)
				}
				s := r.scan(ks)
				if !s.Valid() {
					t.Fatalf("scan not valid: %s %s", s.Reason, s.Detail)
				}
				sameCredential(t, s.Record, c)
				// Every sector the record uses is keyed with this card's
				// diversified keys and this system's access conditions.
				secs := (len(mustSeal(t, c, ks, r.chip.UID())) + sectorData - 1) / sectorData
				for sec := 1; sec <= secs; sec++ {
					tr := r.chip.Block(trailerBlock(sec))
					if bytes.Equal(tr[:6], transportKey) || bytes.Equal(tr[10:], transportKey) || !bytes.Equal(tr[6:10], appAccess) {
						t.Errorf("sector %d trailer not keyed by this system", sec)
					}
				}
				if tr := r.chip.Block(3); !bytes.Equal(tr[:6], madKeyA) || bytes.Equal(tr[10:], transportKey) || !bytes.Equal(tr[6:10], madAccess) {
					t.Error("sector 0 is not a MAD sector keyed by this system")
				}
			})
		}
	}
}

func TestReencode(t *testing.T) {
	r := newRig(t, "mifare_classic_1k")
	ks := keySet(t)
	first := credential("1001", 8)
	if err := r.encode(ks, first); err != nil {
		t.Fatal(err)
	}
	// A shorter record, then a longer one that needs another sector.
	for _, c := range []cardfmt.Credential{credential("1002", 0), credential("1003", 20)} {
		if err := r.encode(ks, c); err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		s := r.scan(ks)
		if !s.Valid() {
			t.Fatalf("scan: %s %s", s.Reason, s.Detail)
		}
		sameCredential(t, s.Record, c)
	}
}

func TestKeyRotation(t *testing.T) {
	r := newRig(t, "mifare_classic_1k")
	ks := keySet(t)
	old, err := cardfmt.ParseKeySet(mustMarshal(t, ks))
	if err != nil {
		t.Fatal(err)
	}
	c1 := credential("2001", 2)
	if err := r.encode(ks, c1); err != nil {
		t.Fatal(err)
	}
	if _, err := ks.Rotate(rand.Reader); err != nil {
		t.Fatal(err)
	}
	// A card written under version 1 still scans after the rotation.
	s := r.scan(ks)
	if !s.Valid() || s.Record.KeyVersion != 1 {
		t.Fatalf("scan after rotation: valid=%v reason=%s", s.Valid(), s.Reason)
	}
	// Re-encoding re-keys it under version 2.
	c2 := credential("2002", 2)
	if err := r.encode(ks, c2); err != nil {
		t.Fatal(err)
	}
	s = r.scan(ks)
	if !s.Valid() || s.Record.KeyVersion != 2 {
		t.Fatalf("scan after re-key: valid=%v reason=%s", s.Valid(), s.Reason)
	}
	sameCredential(t, s.Record, c2)
	// A key file that never had version 2 recognises the card as this
	// system's but cannot read it.
	if s := r.scan(old); s.Reason != cardfmt.ReasonUnknownKeyVersion {
		t.Fatalf("old key set: reason %q, want unknown_key_version", s.Reason)
	}
	// And cannot re-encode it.
	if err := r.encode(old, c1); !errors.Is(err, cardfmt.ErrForeign) {
		t.Fatalf("encode with old key set: %v", err)
	}
}

func mustMarshal(t testing.TB, ks *cardfmt.KeySet) []byte {
	t.Helper()
	p := t.TempDir() + "/keys.json"
	if err := cardfmt.WriteKeySet(p, ks, false); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBlank(t *testing.T) {
	r := newRig(t, "mifare_classic_1k")
	if s := r.scan(keySet(t)); s.Reason != cardfmt.ReasonBlank {
		t.Fatalf("blank card: reason %q", s.Reason)
	}
}

func TestForeign(t *testing.T) {
	foreignKey := []byte{1, 2, 3, 4, 5, 6}
	tests := []struct {
		name  string
		setup func(c *chip.Classic)
		// encodeErr is what encoding must return.
		encodeErr error
	}{
		{
			name: "sector 0 keyed by another system",
			setup: func(c *chip.Classic) {
				c.SetBlock(3, trailer(foreignKey, []byte{0xFF, 0x07, 0x80, 0x69}, foreignKey))
			},
			encodeErr: cardfmt.ErrForeign,
		},
		{
			name: "another system's directory",
			setup: func(c *chip.Classic) {
				m := &mad{info: 0x01}
				for i := range m.aids {
					m.aids[i] = aid{0x01, 0x08}
				}
				b := m.bytes()
				c.SetBlock(1, b[:16])
				c.SetBlock(2, b[16:])
				c.SetBlock(3, trailer(madKeyA, madAccess, foreignKey))
			},
			encodeErr: cardfmt.ErrIncompatible,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, "mifare_classic_1k")
			tt.setup(r.chip)
			before := dump(r.chip)
			ks := keySet(t)
			if s := r.scan(ks); s.Reason != cardfmt.ReasonForeign {
				t.Fatalf("scan reason %q (%s), want foreign", s.Reason, s.Detail)
			}
			if err := r.encode(ks, credential("9", 1)); !errors.Is(err, tt.encodeErr) {
				t.Fatalf("encode: %v, want %v", err, tt.encodeErr)
			}
			if !bytes.Equal(before, dump(r.chip)) {
				t.Fatal("a refused encode changed the card")
			}
		})
	}
}

func TestForeignSector(t *testing.T) {
	// Sector 0 is blank but sector 1 is keyed by someone else.
	r := newRig(t, "mifare_classic_1k")
	foreignKey := []byte{1, 2, 3, 4, 5, 6}
	r.chip.SetBlock(trailerBlock(1), trailer(foreignKey, []byte{0xFF, 0x07, 0x80, 0x69}, foreignKey))
	err := r.encode(keySet(t), credential("9", 1))
	if !errors.Is(err, cardfmt.ErrForeign) {
		t.Fatalf("encode: %v", err)
	}
}

func TestBrickedSector(t *testing.T) {
	r := newRig(t, "mifare_classic_1k")
	ks := keySet(t)
	c := credential("3001", 1)
	if err := r.encode(ks, c); err != nil {
		t.Fatal(err)
	}
	// Malformed access bits brick the first record sector, as on the chip.
	tr := r.chip.Block(trailerBlock(1))
	tr[6] ^= 0x01
	r.chip.SetBlock(trailerBlock(1), tr)
	if !r.chip.Bricked(1) {
		t.Fatal("fixture did not brick sector 1")
	}
	s := r.scan(ks)
	if s.Valid() {
		t.Fatal("bricked card scans valid")
	}
	if err := r.encode(ks, c); !errors.Is(err, cardfmt.ErrForeign) {
		t.Fatalf("encode onto a bricked sector: %v", err)
	}
}

func TestNotEnoughSectors(t *testing.T) {
	r := newRig(t, "mifare_classic_1k")
	// A directory on a transport-keyed sector 0 that leaves one sector free.
	m := &mad{info: 0x01}
	for i := range m.aids[:14] {
		m.aids[i] = aid{0x03, 0xE1}
	}
	b := m.bytes()
	r.chip.SetBlock(1, b[:16])
	r.chip.SetBlock(2, b[16:])
	err := r.encode(keySet(t), credential("4001", 10))
	if !errors.Is(err, cardfmt.ErrIncompatible) {
		t.Fatalf("encode: %v", err)
	}
}

func TestCopiedRecord(t *testing.T) {
	ks := keySet(t)
	src := newRig(t, "mifare_classic_1k")
	if err := src.encode(ks, credential("5001", 1)); err != nil {
		t.Fatal(err)
	}
	// A byte-for-byte copy of every block, trailers included, onto a card
	// with another UID: the keys and the MAC are bound to the UID.
	dst := newRig(t, "mifare_classic_1k")
	for b := 1; b < dst.chip.Blocks(); b++ {
		dst.chip.SetBlock(b, src.chip.Block(b))
	}
	s := dst.scan(ks)
	if s.Valid() {
		t.Fatal("copied card scans valid")
	}
	if s.Reason != cardfmt.ReasonUnknownKeyVersion {
		t.Logf("copied card: %s (%s)", s.Reason, s.Detail)
	}
}

func TestWrongTechnology(t *testing.T) {
	err := errOf(Encode(context.Background(), nil, reader.Info{Technology: reader.TechNTAG213, UID: make([]byte, 7)}, keySet(t), credential("1", 0)))
	if !errors.Is(err, cardfmt.ErrIncompatible) {
		t.Fatalf("got %v", err)
	}
}

// TestRemovedAtEveryAPDU pulls the card away during each APDU of an
// encode in turn. The encode must fail, the card must never scan as a
// valid record other than the old or the new one, and a fresh encode must
// then succeed.
func TestRemovedAtEveryAPDU(t *testing.T) {
	for _, scenario := range []string{"blank", "reencode", "rotate"} {
		t.Run(scenario, func(t *testing.T) {
			ks := keySet(t)
			old := credential("6000", 3)
			next := credential("6001", 12) // needs more sectors than old
			// Count the APDUs of an undisturbed encode.
			probe := newRig(t, "mifare_classic_1k")
			prepare(t, probe, ks, old, scenario)
			ident := identifyAPDUs(t, probe)
			tag, info, counter := probe.connect()
			if err := errOf(Encode(context.Background(), tag, info, ks, next)); err != nil {
				t.Fatal(err)
			}
			total := counter.Transmits - ident
			counter.Close()
			if total < 5 {
				t.Fatalf("only %d APDUs", total)
			}
			for n := 1; n <= total; n++ {
				ks := ks
				if scenario == "rotate" {
					ks = cloneKeys(t, ks)
				}
				r := newRig(t, "mifare_classic_1k")
				prepare(t, r, ks, old, scenario)
				faulty := chip.WithFaults(r.chip, chip.Faults{RemoveAt: n + ident})
				r.rdr.Insert(faulty)
				err := r.encode(ks, next)
				if err == nil {
					t.Fatalf("APDU %d: encode succeeded with the card removed", n)
				}
				if !errors.Is(err, reader.ErrCardRemoved) {
					t.Fatalf("APDU %d: %v", n, err)
				}
				r.rdr.Insert(r.chip)
				s := r.scan(ks)
				if s.Valid() && s.Record.ID != old.ID && s.Record.ID != next.ID {
					t.Fatalf("APDU %d: card reads as a valid wrong record", n)
				}
				if err := r.encode(ks, next); err != nil {
					t.Fatalf("APDU %d: re-encode after interruption: %v", n, err)
				}
				if s := r.scan(ks); !s.Valid() || s.Record.ID != next.ID {
					t.Fatalf("APDU %d: after re-encode: %s %s", n, s.Reason, s.Detail)
				}
			}
		})
	}
}

// identifyAPDUs is how many APDUs connect spends before the layout runs.
func identifyAPDUs(t testing.TB, r *rig) int {
	_, _, c := r.connect()
	n := c.Transmits
	c.Close()
	return n
}

func prepare(t testing.TB, r *rig, ks *cardfmt.KeySet, old cardfmt.Credential, scenario string) {
	t.Helper()
	switch scenario {
	case "reencode":
		if err := r.encode(ks, old); err != nil {
			t.Fatal(err)
		}
	case "rotate":
		if err := r.encode(ks, old); err != nil {
			t.Fatal(err)
		}
		if _, err := ks.Rotate(rand.Reader); err != nil {
			t.Fatal(err)
		}
	}
}

// cloneKeys copies a key set so a scenario can rotate its own copy.
func cloneKeys(t testing.TB, ks *cardfmt.KeySet) *cardfmt.KeySet {
	k, err := cardfmt.ParseKeySet(mustMarshal(t, ks))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func dump(c *chip.Classic) []byte {
	var b []byte
	for i := 0; i < c.Blocks(); i++ {
		b = append(b, c.Block(i)...)
	}
	return b
}

func TestMADCRC(t *testing.T) {
	// AN10787 example from libfreefare's test suite: info 01 and AID E103
	// in sectors 1..5 give CRC C4.
	b := make([]byte, 31)
	b[0] = 0x01
	for i := 0; i < 5; i++ {
		b[1+2*i], b[2+2*i] = 0x03, 0xE1
	}
	if got := madCRC(b); got != 0xC4 {
		t.Fatalf("CRC = %#x, want 0xc4", got)
	}
	m := &mad{info: 1}
	m.aids[3] = AppAID
	got, err := parseMAD(m.bytes())
	if err != nil || got.sectorsWith(AppAID)[0] != 4 {
		t.Fatalf("round trip: %v %v", got, err)
	}
	bad := m.bytes()
	bad[5] ^= 1
	if _, err := parseMAD(bad); err == nil {
		t.Fatal("corrupt MAD accepted")
	}
}

func FuzzParseMAD(f *testing.F) {
	f.Add((&mad{info: 1}).bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseMAD(b)
		if err == nil && !bytes.Equal(m.bytes(), b) {
			t.Fatal("accepted MAD does not round-trip")
		}
	})
}

func mustSeal(t testing.TB, c cardfmt.Credential, ks *cardfmt.KeySet, uid []byte) []byte {
	t.Helper()
	b, err := cardfmt.Seal(c, ks, uid)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// BenchmarkAPDUs reports the APDUs of each job, identification included.
func BenchmarkAPDUs(b *testing.B) {
	for _, kind := range []string{"mifare_classic_1k", "mifare_classic_4k"} {
		for _, op := range []string{"encode-blank", "encode-again", "scan"} {
			b.Run(kind+"/"+op, func(b *testing.B) {
				ks := keySet(b)
				c := credential("100234", 2)
				var apdus int
				for b.Loop() {
					r := newRig(b, kind)
					if op != "encode-blank" {
						if err := r.encode(ks, c); err != nil {
							b.Fatal(err)
						}
					}
					tag, info, card := r.connect()
					var err error
					if op == "scan" {
						_, err = Scan(context.Background(), tag, info, ks)
					} else {
						err = errOf(Encode(context.Background(), tag, info, ks, c))
					}
					apdus = card.Transmits
					card.Close()
					if err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(apdus), "apdus/op")
			})
		}
	}
}

// TestCardChangedAfterReset puts a second card in the field and lets the
// reader select it at each card reset a job makes in turn: the job stops
// with reader.ErrCardChanged and the second card is left exactly as it was.
func TestCardChangedAfterReset(t *testing.T) {
	cred := credential("3001", 2)
	for _, tc := range []struct {
		name  string
		setup func(r *rig, ks *cardfmt.KeySet) // on card A alone
		job   func(tag *reader.Tag, info reader.Info, ks *cardfmt.KeySet) error
	}{
		{"scan, blank card", nil, func(tag *reader.Tag, info reader.Info, ks *cardfmt.KeySet) error {
			_, err := Scan(context.Background(), tag, info, ks)
			return err
		}},
		{"encode, blank card", nil, func(tag *reader.Tag, info reader.Info, ks *cardfmt.KeySet) error {
			return errOf(Encode(context.Background(), tag, info, ks, cred))
		}},
		{"scan after a rotation", rotated(cred), func(tag *reader.Tag, info reader.Info, ks *cardfmt.KeySet) error {
			_, err := Scan(context.Background(), tag, info, ks)
			return err
		}},
		{"re-encode after a rotation", rotated(cred), func(tag *reader.Tag, info reader.Info, ks *cardfmt.KeySet) error {
			return errOf(Encode(context.Background(), tag, info, ks, cred))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// run sets up a fresh pair and runs the job with the swap at
			// the swapAt-th reset; it returns the job's error and the
			// number of resets the job made.
			run := func(swapAt int) (error, int) {
				second := chip.NewClassic1K([]byte{0x55, 0x66, 0x77, 0x88})
				pair := chip.NewPair(chip.NewClassic1K([]byte{0x11, 0x22, 0x33, 0x44}), second)
				s := sim.New()
				r := &rig{t: t, sim: s, rdr: s.Plug(readerName)}
				r.rdr.Insert(pair)
				ks := keySet(t)
				if tc.setup != nil {
					tc.setup(r, ks)
				}
				before, err := chip.Marshal(second)
				if err != nil {
					t.Fatal(err)
				}
				tag, info, conn := r.connect()
				pair.SwapAtReset(swapAt)
				err = tc.job(tag, info, ks)
				resets := pair.Resets()
				conn.Close()
				after, _ := chip.Marshal(second)
				if !bytes.Equal(before, after) {
					t.Fatalf("swap at reset %d: the second card changed", swapAt)
				}
				return err, resets
			}
			err, resets := run(0)
			if err != nil || resets == 0 {
				t.Fatalf("without a swap: %v after %d resets; the case must reset the card", err, resets)
			}
			for n := 1; n <= resets; n++ {
				err, _ := run(n)
				if !errors.Is(err, reader.ErrCardChanged) {
					t.Errorf("swap at reset %d of %d: %v, want reader.ErrCardChanged", n, resets, err)
				}
			}
		})
	}
}

// rotated encodes c under ks and then rotates ks.
func rotated(c cardfmt.Credential) func(r *rig, ks *cardfmt.KeySet) {
	return func(r *rig, ks *cardfmt.KeySet) {
		if err := r.encode(ks, c); err != nil {
			r.t.Fatal(err)
		}
		if _, err := ks.Rotate(rand.Reader); err != nil {
			r.t.Fatal(err)
		}
	}
}

// TestRekeyedFreeSector: unused sectors keep the transport key, so a
// guest can re-key one. A later, longer encode claims other free sectors,
// or, when none is left, fails as incompatible before writing anything;
// never as an interrupted encode.
func TestRekeyedFreeSector(t *testing.T) {
	guestKey := []byte{0xA1, 0xB2, 0xC3, 0xD4, 0xE5, 0xF6}
	rekey := func(r *rig, sector int) {
		r.chip.SetBlock(trailerBlock(sector), trailer(guestKey, []byte{0xFF, 0x07, 0x80, 0x69}, guestKey))
	}
	short := credential("1", 0)     // 2 sectors: 1 and 2
	longer := credential("1002", 3) // 3 sectors
	longest := credential("1003", 30)
	for _, tc := range []struct {
		name      string
		rekeyed   []int
		c         cardfmt.Credential
		want      error // nil: encodes
		sectors   []int // the record's sectors when it encodes
		untouched []int
	}{
		{"next free sector re-keyed", []int{3}, longer, nil, []int{1, 2, 4}, []int{3}},
		{"two free sectors re-keyed", []int{3, 4}, longer, nil, []int{1, 2, 5}, []int{3, 4}},
		{"every free sector re-keyed", []int{3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, longer, cardfmt.ErrIncompatible, nil, nil},
		{"too few free sectors left", []int{4, 5, 6, 7, 8, 9, 10, 11, 12}, longest, cardfmt.ErrIncompatible, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, "mifare_classic_1k")
			ks := keySet(t)
			if err := r.encode(ks, short); err != nil {
				t.Fatal(err)
			}
			for _, sec := range tc.rekeyed {
				rekey(r, sec)
			}
			before := dump(r.chip)
			err := r.encode(ks, tc.c)
			if tc.want != nil {
				if !errors.Is(err, tc.want) || errors.Is(err, cardfmt.ErrInterrupted) {
					t.Fatalf("encode: %v, want %v and not interrupted", err, tc.want)
				}
				if !bytes.Equal(before, dump(r.chip)) {
					t.Fatal("a refused encode changed the card")
				}
				sameCredential(t, r.scan(ks).Record, short)
				return
			}
			if err != nil {
				t.Fatalf("encode: %v", err)
			}
			sameCredential(t, r.scan(ks).Record, tc.c)
			tag, _, conn := r.connect()
			defer conn.Close()
			dir, err := readDirectory(context.Background(), newSession(tag))
			if err != nil {
				t.Fatal(err)
			}
			if got := dir.mad.sectorsWith(AppAID); !slices.Equal(got, tc.sectors) {
				t.Fatalf("record sectors %v, want %v", got, tc.sectors)
			}
			for _, sec := range tc.untouched {
				for b := 4 * sec; b < 4*sec+4; b++ {
					if !bytes.Equal(before[16*b:16*b+16], r.chip.Block(b)) {
						t.Fatalf("block %d of re-keyed sector %d changed", b, sec)
					}
				}
			}
		})
	}
}

// A card without a directory whose third sector another system keyed is
// foreign, and refused before anything is written.
func TestForeignSectorBeyondTheFirst(t *testing.T) {
	r := newRig(t, "mifare_classic_1k")
	foreignKey := []byte{1, 2, 3, 4, 5, 6}
	r.chip.SetBlock(trailerBlock(3), trailer(foreignKey, []byte{0xFF, 0x07, 0x80, 0x69}, foreignKey))
	before := dump(r.chip)
	err := r.encode(keySet(t), credential("1002", 3))
	if !errors.Is(err, cardfmt.ErrForeign) || errors.Is(err, cardfmt.ErrInterrupted) {
		t.Fatalf("encode: %v, want ErrForeign and not interrupted", err)
	}
	if !bytes.Equal(before, dump(r.chip)) {
		t.Fatal("a refused encode changed the card")
	}
}

// TestAPDUCounts pins the sequences docs/card-format.md gives, after
// reader.Identify on the same connection (its GET DATA not counted), for a
// record of D data blocks in S sectors:
//
//	blank scan      7             MAD key refused, reset, GET DATA, transport key, MAD
//	scan            5 + S + D     MAD (4), LOAD key A, AUTHENTICATE each sector, READ each block
//	scan, older     8 + S + D     the newest key A refused first: AUTHENTICATE, GET DATA, LOAD KEYS
//	blank encode    13 + 4S + 2D  directory 7, probe S, write S-1 + D + S, MAD 3, verify 3 + 1 + S + D
//	re-encode       5 + S + 2D    directory 4, LOAD key B, each sector AUTHENTICATE + WRITE + READ
//	re-key          18 + 3S + 2D  the old key B found after one refusal (5), MAD key B (2),
//	                              write with the old keys, sector 0's trailer (3), verify
//	                              through the MAD key (2) and the new key A (1 + S + D)
//
// A directory block that keeps its content is neither written nor read
// back: block 2 (sectors 8-15) on every card here, block 1 on a re-key. A
// longer re-encode that claims N more sectors pins its own sum below.
func TestAPDUCounts(t *testing.T) {
	ctx := context.Background()
	for _, kind := range []string{"mifare_classic_1k", "mifare_classic_4k"} {
		t.Run(kind, func(t *testing.T) {
			r := newRig(t, kind)
			ks := keySet(t)
			c := credential("100234", 2)
			longer := credential("100234", 5)
			size := func(c cardfmt.Credential) (sectors, blocks int) {
				n := len(mustSeal(t, c, ks, r.chip.UID()))
				return (n + sectorData - 1) / sectorData, (n + blockSize - 1) / blockSize
			}
			S, D := size(c)
			S2, D2 := size(longer)
			N := S2 - S
			// Blocks of the longer record in the sectors c already has,
			// and in the N new ones.
			kept := min(D2, S*3)
			added := D2 - kept
			if N != 1 || added < 1 {
				t.Fatalf("fixture: the longer record must claim one more sector (%d sectors, %d blocks)", S2, D2)
			}
			scan := func(ks *cardfmt.KeySet, want cardfmt.Reason) func(tag *reader.Tag, info reader.Info) error {
				return func(tag *reader.Tag, info reader.Info) error {
					s, err := Scan(ctx, tag, info, ks)
					if err == nil && s.Reason != want {
						err = fmt.Errorf("scan: %s, want %q", s.Reason, want)
					}
					return err
				}
			}
			encode := func(ks *cardfmt.KeySet, c cardfmt.Credential) func(tag *reader.Tag, info reader.Info) error {
				return func(tag *reader.Tag, info reader.Info) error { return errOf(Encode(ctx, tag, info, ks, c)) }
			}
			rotated := cloneKeys(t, ks)
			if _, err := rotated.Rotate(rand.Reader); err != nil {
				t.Fatal(err)
			}
			for _, step := range []struct {
				name string
				f    func(tag *reader.Tag, info reader.Info) error
				want int
			}{
				{"blank scan", scan(ks, cardfmt.ReasonBlank), 7},
				{"blank encode", encode(ks, c), 13 + 4*S + 2*D},
				{"scan", scan(ks, cardfmt.ReasonNone), 5 + S + D},
				{"re-encode", encode(ks, c), 5 + S + 2*D},
				// Directory 4; sector 0 must take MAD key B (2); probe
				// the new sector (LOAD transport + N); the kept sectors
				// with key B (1 + S, a WRITE and a READ per block); the
				// new ones with the transport key (1 + N, WRITE, trailer);
				// directory block 1 (LOAD, AUTHENTICATE, WRITE, READ: the
				// trailer is current); the new sectors through key A.
				{"re-encode, one sector more", encode(ks, longer),
					4 + 2 + (1 + N) + (1 + S + 2*kept) + (1 + N + added + N) + 4 + (1 + N + added)},
				{"re-encode, one sector fewer", encode(ks, c), 5 + S + 2*D},
				{"scan under the previous version", scan(rotated, cardfmt.ReasonNone), 8 + S + D},
				{"re-key", encode(rotated, c), 18 + 3*S + 2*D},
				{"scan after the re-key", scan(rotated, cardfmt.ReasonNone), 5 + S + D},
			} {
				tag, info, card := r.connect()
				sent := card.Transmits
				err := step.f(tag, info)
				n := card.Transmits - sent
				card.Close()
				if err != nil {
					t.Fatalf("%s: %v", step.name, err)
				}
				if n != step.want {
					t.Errorf("%s: %d APDUs, want %d", step.name, n, step.want)
				}
			}
		})
	}
}

// lostWrite acknowledges its drop-th UPDATE BINARY without passing it to
// the card: a write the card never stored. noop says the block already
// held the data, so losing the write changed nothing.
type lostWrite struct {
	*chip.Classic
	drop, writes int
	noop         bool
}

func (l *lostWrite) Transmit(apdu []byte) ([]byte, error) {
	if len(apdu) == 5+blockSize && apdu[0] == 0xFF && apdu[1] == 0xD6 {
		l.writes++
		if l.writes == l.drop {
			l.noop = bytes.Equal(l.Block(int(apdu[3])), apdu[5:])
			return []byte{0x90, 0x00}, nil
		}
	}
	return l.Classic.Transmit(apdu)
}

// TestReadBackCatchesLostWrite drops each write of an encode in turn:
// whether the block is read back in the session that wrote it, through
// the new key A or through the MAD key, the encode must not report
// success.
func TestReadBackCatchesLostWrite(t *testing.T) {
	for _, scenario := range []string{"blank", "reencode", "rotate"} {
		t.Run(scenario, func(t *testing.T) {
			ks := keySet(t)
			old := credential("7000", 3)
			next := credential("7001", 12) // claims another sector
			run := func(drop int) (*lostWrite, error) {
				ks := cloneKeys(t, ks)
				r := newRig(t, "mifare_classic_1k")
				prepare(t, r, ks, old, scenario)
				l := &lostWrite{Classic: r.chip, drop: drop}
				r.rdr.Insert(l)
				return l, r.encode(ks, next)
			}
			all, err := run(0)
			if err != nil || all.writes == 0 {
				t.Fatalf("undisturbed: %v after %d writes", err, all.writes)
			}
			for n := 1; n <= all.writes; n++ {
				l, err := run(n)
				if l.noop {
					t.Fatalf("write %d rewrites a block with its own content", n)
				}
				if !errors.Is(err, cardfmt.ErrInterrupted) {
					t.Fatalf("write %d of %d lost: encode returned %v, want ErrInterrupted", n, all.writes, err)
				}
			}
		})
	}
}

// errOf drops the record Encode returns, for tests about its error.
func errOf(_ cardfmt.Record, err error) error { return err }
