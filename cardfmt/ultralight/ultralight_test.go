package ultralight

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/encoder-bridge/encoder-bridge/cardfmt"
	"github.com/encoder-bridge/encoder-bridge/reader"
	"github.com/encoder-bridge/encoder-bridge/reader/sim"
	"github.com/encoder-bridge/encoder-bridge/reader/sim/chip"
)

const readerName = "Sim Reader 00"

var kinds = []string{"mifare_ultralight_ev1_mf0ul21", "ntag213", "ntag215", "ntag216"}

type rig struct {
	t    testing.TB
	sim  *sim.Context
	rdr  *sim.Reader
	chip *chip.Ultralight
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
	return &rig{t: t, sim: s, rdr: r, chip: c.(*chip.Ultralight)}
}

// with runs f on a fresh connection, as a new job would.
func (r *rig) with(f func(*reader.Tag, reader.Info, *sim.Card) error) error {
	r.t.Helper()
	c, err := r.sim.Connect(context.Background(), readerName)
	if err != nil {
		r.t.Fatal(err)
	}
	defer c.Close()
	tag := reader.NewTag(c)
	info, err := reader.Identify(context.Background(), tag)
	if err != nil {
		r.t.Fatal(err)
	}
	return f(tag, info, c.(*sim.Card))
}

func (r *rig) encode(ks *cardfmt.KeySet, c cardfmt.Credential) error {
	return r.with(func(tag *reader.Tag, info reader.Info, _ *sim.Card) error {
		return Encode(context.Background(), tag, info, ks, c)
	})
}

func (r *rig) scan(ks *cardfmt.KeySet) cardfmt.Scan {
	r.t.Helper()
	var s cardfmt.Scan
	err := r.with(func(tag *reader.Tag, info reader.Info, _ *sim.Card) error {
		var err error
		s, err = Scan(context.Background(), tag, info, ks)
		return err
	})
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

func cloneKeys(t testing.TB, ks *cardfmt.KeySet) *cardfmt.KeySet {
	p := t.TempDir() + "/k.json"
	if err := cardfmt.WriteKeySet(p, ks, false); err != nil {
		t.Fatal(err)
	}
	k, err := cardfmt.LoadKeySet(p)
	if err != nil {
		t.Fatal(err)
	}
	return k
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

func TestEncodeScan(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			r := newRig(t, kind)
			ks := keySet(t)
			c := credential("1001", 1)
			if err := r.encode(ks, c); err != nil {
				t.Fatalf("Encode: %v", err)
			}
			s := r.scan(ks)
			if !s.Valid() || s.Record.ID != c.ID || s.Record.CardNumber != c.CardNumber {
				t.Fatalf("scan: %s %s", s.Reason, s.Detail)
			}
			// The record is protected: without the password nothing
			// from page 4 on reads.
			m := chips[reader.Technology(kind)]
			cfg0 := r.chip.Page(m.cfg0)
			cfg1 := r.chip.Page(m.cfg1())
			if cfg0[3] != firstPage || cfg1[0]&accessPROT == 0 || cfg1[0]&accessLimit != authLimit || cfg1[0]&accessCFGLCK != 0 {
				t.Fatalf("protection not set: CFG0 % X CFG1 % X", cfg0, cfg1)
			}
			if bytes.Equal(r.chip.Page(m.pwd()), []byte{0xFF, 0xFF, 0xFF, 0xFF}) {
				t.Fatal("default password left on the card")
			}
			// Re-encode with a larger record.
			c2 := credential("1002", 3)
			if err := r.encode(ks, c2); err != nil {
				t.Fatalf("re-encode: %v", err)
			}
			if s := r.scan(ks); !s.Valid() || s.Record.ID != c2.ID {
				t.Fatalf("scan after re-encode: %s %s", s.Reason, s.Detail)
			}
		})
	}
}

func TestTooSmall(t *testing.T) {
	r := newRig(t, "mifare_ultralight_ev1_mf0ul11")
	if err := r.encode(keySet(t), credential("1", 0)); !errors.Is(err, cardfmt.ErrIncompatible) {
		t.Fatalf("MF0UL11: %v", err)
	}
	r = newRig(t, "ntag213")
	if err := r.encode(keySet(t), credential("1", 6)); !errors.Is(err, cardfmt.ErrIncompatible) {
		t.Fatalf("oversized record on NTAG213: %v", err)
	}
	if Capacity(reader.TechNTAG213) != 144 || Capacity(reader.TechUL21) != 128 || Capacity(reader.TechClassic1K) != 0 {
		t.Fatal("capacities")
	}
}

func TestKeyRotation(t *testing.T) {
	r := newRig(t, "ntag215")
	ks := keySet(t)
	old := cloneKeys(t, ks)
	c := credential("2001", 2)
	if err := r.encode(ks, c); err != nil {
		t.Fatal(err)
	}
	if _, err := ks.Rotate(rand.Reader); err != nil {
		t.Fatal(err)
	}
	if s := r.scan(ks); !s.Valid() || s.Record.KeyVersion != 1 {
		t.Fatalf("v1 card after rotation: %s %s", s.Reason, s.Detail)
	}
	if err := r.encode(ks, c); err != nil {
		t.Fatal(err)
	}
	if s := r.scan(ks); !s.Valid() || s.Record.KeyVersion != 2 {
		t.Fatalf("after re-key: %s %s", s.Reason, s.Detail)
	}
	// The old key set no longer opens the card.
	if s := r.scan(old); s.Reason != cardfmt.ReasonForeign {
		t.Fatalf("old key set: %s", s.Reason)
	}
	if r.chip.PasswordBlocked() {
		t.Fatal("scanning used up the password attempt limit")
	}
}

func TestForeignAndLocked(t *testing.T) {
	tests := []struct {
		name      string
		setup     func(c *chip.Ultralight, m chipMap)
		reason    cardfmt.Reason
		encodeErr error
	}{
		{"read protected by another system", func(c *chip.Ultralight, m chipMap) {
			c.SetPassword([4]byte{1, 2, 3, 4}, [2]byte{5, 6})
			c.SetPage(m.cfg0, []byte{0x04, 0, 0, 0x04})
			c.SetPage(m.cfg1(), []byte{0x80, 0x05, 0, 0})
		}, cardfmt.ReasonForeign, cardfmt.ErrForeign},
		{"write protected by another system", func(c *chip.Ultralight, m chipMap) {
			c.SetPassword([4]byte{1, 2, 3, 4}, [2]byte{5, 6})
			c.SetPage(m.cfg0, []byte{0x04, 0, 0, 0x04})
		}, cardfmt.ReasonBlank, cardfmt.ErrForeign},
		{"static lock bits", func(c *chip.Ultralight, m chipMap) {
			p := c.Page(2)
			p[2] |= 0x10
			c.SetPage(2, p)
		}, cardfmt.ReasonBlank, cardfmt.ErrIncompatible},
		{"dynamic lock bits", func(c *chip.Ultralight, m chipMap) {
			p := c.Page(m.dynLock)
			p[0] = 0x01
			c.SetPage(m.dynLock, p)
		}, cardfmt.ReasonBlank, cardfmt.ErrIncompatible},
		{"configuration locked", func(c *chip.Ultralight, m chipMap) {
			c.SetPage(m.cfg1(), []byte{0x40, 0x05, 0, 0})
		}, cardfmt.ReasonBlank, cardfmt.ErrIncompatible},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, "ntag213")
			tt.setup(r.chip, chips[reader.TechNTAG213])
			r.chip.Reset()
			ks := keySet(t)
			if s := r.scan(ks); s.Reason != tt.reason {
				t.Fatalf("scan reason %q (%s), want %q", s.Reason, s.Detail, tt.reason)
			}
			before := dump(r.chip)
			if err := r.encode(ks, credential("9", 1)); !errors.Is(err, tt.encodeErr) {
				t.Fatalf("encode: %v, want %v", err, tt.encodeErr)
			}
			if !bytes.Equal(before, dump(r.chip)) {
				t.Fatal("a refused encode changed the card")
			}
		})
	}
}

func TestCopiedRecord(t *testing.T) {
	ks := keySet(t)
	src := newRig(t, "ntag213")
	if err := src.encode(ks, credential("5001", 1)); err != nil {
		t.Fatal(err)
	}
	// Copy the record pages onto an unprotected card with another UID.
	dst := newRig(t, "ntag213")
	m := chips[reader.TechNTAG213]
	for p := firstPage; p <= m.lastUser; p++ {
		dst.chip.SetPage(p, src.chip.Page(p))
	}
	if s := dst.scan(ks); s.Reason != cardfmt.ReasonUIDMismatch {
		t.Fatalf("copied record: %s (%s)", s.Reason, s.Detail)
	}
	// A corrupted header.
	p := dst.chip.Page(firstPage)
	p[2] = 0
	dst.chip.SetPage(firstPage, p)
	if s := dst.scan(ks); s.Reason != cardfmt.ReasonCorrupt {
		t.Fatalf("corrupt header: %s", s.Reason)
	}
}

// TestRemovedAtEveryAPDU pulls the card away during each APDU of an
// encode in turn: the encode fails, the card never scans as a valid record
// other than the old or the new one, and a fresh encode then succeeds.
func TestRemovedAtEveryAPDU(t *testing.T) {
	for _, scenario := range []string{"blank", "reencode", "rotate"} {
		t.Run(scenario, func(t *testing.T) {
			old, next := credential("6000", 1), credential("6001", 3)
			base := keySet(t)
			setup := func() (*rig, *cardfmt.KeySet) {
				ks := cloneKeys(t, base)
				r := newRig(t, "ntag213")
				if scenario != "blank" {
					if err := r.encode(ks, old); err != nil {
						t.Fatal(err)
					}
				}
				if scenario == "rotate" {
					if _, err := ks.Rotate(rand.Reader); err != nil {
						t.Fatal(err)
					}
				}
				return r, ks
			}
			// Count the APDUs of an undisturbed encode, after Identify.
			r, ks := setup()
			var ident, total int
			err := r.with(func(tag *reader.Tag, info reader.Info, c *sim.Card) error {
				ident = c.Transmits
				err := Encode(context.Background(), tag, info, ks, next)
				total = c.Transmits - ident
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			for n := 1; n <= total; n++ {
				r, ks := setup()
				r.rdr.Insert(chip.WithFaults(r.chip, chip.Faults{RemoveAt: ident + n}))
				err := r.encode(ks, next)
				if !errors.Is(err, reader.ErrCardRemoved) {
					t.Fatalf("APDU %d of %d: %v", n, total, err)
				}
				r.rdr.Insert(r.chip)
				s := r.scan(ks)
				if s.Valid() && s.Record.ID != old.ID && s.Record.ID != next.ID {
					t.Fatalf("APDU %d: a valid wrong record", n)
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

func dump(c *chip.Ultralight) []byte {
	var b []byte
	for i := 0; i < c.Pages(); i++ {
		b = append(b, c.Page(i)...)
	}
	return b
}

func BenchmarkAPDUs(b *testing.B) {
	for _, kind := range []string{"ntag213", "ntag216", "mifare_ultralight_ev1_mf0ul21"} {
		for _, op := range []string{"encode-blank", "encode-again", "scan"} {
			b.Run(fmt.Sprintf("%s/%s", kind, op), func(b *testing.B) {
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
					err := r.with(func(tag *reader.Tag, info reader.Info, card *sim.Card) error {
						var err error
						if op == "scan" {
							_, err = Scan(context.Background(), tag, info, ks)
						} else {
							err = Encode(context.Background(), tag, info, ks, c)
						}
						apdus = card.Transmits
						return err
					})
					if err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(apdus), "apdus/op")
			})
		}
	}
}
