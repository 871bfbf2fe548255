package ultralight

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/encoder-bridge/encoder-bridge/cardfmt"
	"github.com/encoder-bridge/encoder-bridge/reader"
	"github.com/encoder-bridge/encoder-bridge/reader/sim"
	"github.com/encoder-bridge/encoder-bridge/reader/sim/chip"
)

const readerName = "Sim Reader 00"

// kinds are the chips that hold a record.
var kinds = []reader.Technology{reader.TechUL21, reader.TechNTAG213, reader.TechNTAG215, reader.TechNTAG216}

var models = map[reader.Technology]chip.UltralightModel{
	reader.TechUL11:    chip.MF0UL11,
	reader.TechUL21:    chip.MF0UL21,
	reader.TechNTAG213: chip.NTAG213,
	reader.TechNTAG215: chip.NTAG215,
	reader.TechNTAG216: chip.NTAG216,
}

var (
	uidA = []byte{0x04, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66}
	uidB = []byte{0x04, 0x99, 0x88, 0x77, 0x66, 0x55, 0x44}
)

// detRand is a deterministic byte stream, so that a test can build the same
// key set twice.
type detRand struct {
	seed string
	n    uint64
	buf  []byte
}

func (r *detRand) Read(p []byte) (int, error) {
	for i := range p {
		if len(r.buf) == 0 {
			var c [8]byte
			binary.BigEndian.PutUint64(c[:], r.n)
			r.n++
			h := sha256.Sum256(append([]byte(r.seed), c[:]...))
			r.buf = h[:]
		}
		p[i], r.buf = r.buf[0], r.buf[1:]
	}
	return len(p), nil
}

// keySet builds the key set named seed with versions 1..versions, the
// highest current. The same arguments give the same keys.
func keySet(t testing.TB, seed string, versions int) *cardfmt.KeySet {
	t.Helper()
	var r io.Reader = &detRand{seed: seed}
	ks, err := cardfmt.GenerateKeySet(r)
	if err != nil {
		t.Fatal(err)
	}
	for v := 2; v <= versions; v++ {
		if _, err := ks.Rotate(r); err != nil {
			t.Fatal(err)
		}
	}
	return ks
}

func credential(number string, entrances int) cardfmt.Credential {
	c := cardfmt.Credential{
		ID:            uuid.NewSHA1(uuid.NameSpaceOID, []byte(number)),
		CardNumber:    number,
		Function:      cardfmt.FunctionGuest,
		StartsAt:      time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC),
		EndsAt:        time.Date(2026, 11, 26, 11, 0, 0, 0, time.UTC),
		IssueSequence: 7,
	}
	for i := range entrances {
		c.Entrances = append(c.Entrances, uuid.NewSHA1(uuid.NameSpaceURL, fmt.Appendf(nil, "%s/%d", number, i)))
	}
	return c
}

// maxEntrances is the most entrances a record with a 4-character card
// number can have on tech.
func maxEntrances(tech reader.Technology) int {
	n := 0
	for cardfmt.SealedLen(credential("1001", n+1), 7) <= Capacity(tech) && n < cardfmt.MaxEntrances {
		n++
	}
	return n
}

// rig is a simulated reader with one Ultralight-family chip on it.
type rig struct {
	t    testing.TB
	sim  *sim.Context
	rdr  *sim.Reader
	chip *chip.Ultralight
}

func newRig(t testing.TB, tech reader.Technology, uid []byte) *rig {
	t.Helper()
	s := sim.New()
	r := &rig{t: t, sim: s, rdr: s.Plug(readerName), chip: chip.NewUltralight(models[tech], uid)}
	r.rdr.Insert(r.chip)
	return r
}

// conn is a fresh connection, as a new job opens, with the card identified.
type conn struct {
	tag  *reader.Tag
	info reader.Info
	card *sim.Card
}

func (r *rig) connect() conn {
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
	return conn{tag: tag, info: info, card: c.(*sim.Card)}
}

func (r *rig) encode(ks *cardfmt.KeySet, c cardfmt.Credential) error {
	r.t.Helper()
	k := r.connect()
	defer k.card.Close()
	return Encode(context.Background(), k.tag, k.info, ks, c)
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

func (r *rig) pages() [][]byte {
	out := make([][]byte, r.chip.Pages())
	for i := range out {
		out[i] = r.chip.Page(i)
	}
	return out
}

func (r *rig) samePages(before [][]byte) {
	r.t.Helper()
	for i, p := range r.pages() {
		if !bytes.Equal(p, before[i]) {
			r.t.Fatalf("page %#x changed", i)
		}
	}
}

func sameCredential(t testing.TB, s cardfmt.Scan, want cardfmt.Credential) {
	t.Helper()
	if !s.Valid() {
		t.Fatalf("scan not valid: %s: %s", s.Reason, s.Detail)
	}
	g := s.Record.Credential
	if g.ID != want.ID || g.CardNumber != want.CardNumber || g.Function != want.Function ||
		!g.StartsAt.Equal(want.StartsAt) || !g.EndsAt.Equal(want.EndsAt) ||
		g.IssueSequence != want.IssueSequence || fmt.Sprint(g.Entrances) != fmt.Sprint(want.Entrances) {
		t.Fatalf("scanned %+v, want %+v", g, want)
	}
}

func cardKeyOf(t testing.TB, ks *cardfmt.KeySet, v uint8, uid []byte) cardKey {
	t.Helper()
	sk, ok := ks.Version(v)
	if !ok {
		t.Fatalf("no key version %d", v)
	}
	full, err := sk.CardKey(cardfmt.PurposeUltralightPWD, uid)
	if err != nil {
		t.Fatal(err)
	}
	k := cardKey{version: v}
	copy(k.pwd[:], full[:4])
	copy(k.pack[:], full[4:6])
	return k
}

// checkProtected checks that the card carries key version v's PWD and
// PACK and this layout's configuration, with the other configuration bits
// as they were on the blank chip.
func (r *rig) checkProtected(ks *cardfmt.KeySet, v uint8, blankCfg0, blankCfg1 []byte) {
	r.t.Helper()
	k := cardKeyOf(r.t, ks, v, r.chip.UID())
	c := r.chip.ConfigPage()
	if !bytes.Equal(r.chip.Page(c+2), k.pwd[:]) || !bytes.Equal(r.chip.Page(c+3), []byte{k.pack[0], k.pack[1], 0, 0}) {
		r.t.Fatalf("PWD/PACK are not key version %d's", v)
	}
	cfg0, cfg1 := r.chip.Page(c), r.chip.Page(c+1)
	want0 := append(bytes.Clone(blankCfg0[:3]), headerPage)
	want1 := append([]byte{blankCfg1[0]&^0xC7 | accessPROT | authLim}, blankCfg1[1:]...)
	if !bytes.Equal(cfg0, want0) || !bytes.Equal(cfg1, want1) {
		r.t.Fatalf("configuration % X / % X, want % X / % X", cfg0, cfg1, want0, want1)
	}
	// Without the password nothing from page 4 on reads.
	k2 := r.connect()
	defer k2.card.Close()
	if _, err := k2.tag.ReadBinary(context.Background(), headerPage, readSize); !errors.Is(err, reader.ErrRefused) {
		r.t.Fatalf("unauthenticated READ of page 4: %v, want refused", err)
	}
}

func TestSupportsCapacity(t *testing.T) {
	want := map[reader.Technology]int{
		reader.TechUL11: 48, reader.TechUL21: 128,
		reader.TechNTAG213: 144, reader.TechNTAG215: 504, reader.TechNTAG216: 888,
		reader.TechClassic1K: 0, reader.TechDESFire: 0, reader.TechUnknown: 0,
	}
	for tech, n := range want {
		if Supports(tech) != (n > 0) || Capacity(tech) != n {
			t.Errorf("%s: Supports %v Capacity %d, want %d", tech, Supports(tech), Capacity(tech), n)
		}
	}
}

func TestEncodeScan(t *testing.T) {
	for _, tech := range kinds {
		t.Run(string(tech), func(t *testing.T) {
			r := newRig(t, tech, uidA)
			c := r.chip.ConfigPage()
			blank0, blank1 := r.chip.Page(c), r.chip.Page(c+1)
			ks := keySet(t, "site", 1)

			first := credential("1001", 1)
			r.mustEncode(ks, first)
			sameCredential(t, r.scan(ks), first)
			r.checkProtected(ks, 1, blank0, blank1)

			// Re-encode with a larger, then a smaller record.
			for _, c := range []cardfmt.Credential{credential("2002", maxEntrances(tech)), credential("3", 0)} {
				r.mustEncode(ks, c)
				sameCredential(t, r.scan(ks), c)
			}
			r.checkProtected(ks, 1, blank0, blank1)
			if n := r.chip.AuthFailures(); n != 0 {
				t.Fatalf("%d wrong PWD_AUTH attempts counted", n)
			}
		})
	}
}

func TestKeyRotation(t *testing.T) {
	for _, tech := range kinds {
		t.Run(string(tech), func(t *testing.T) {
			r := newRig(t, tech, uidA)
			c := r.chip.ConfigPage()
			blank0, blank1 := r.chip.Page(c), r.chip.Page(c+1)
			v1 := keySet(t, "site", 1)
			v2 := keySet(t, "site", 2)
			old := credential("1001", 1)
			r.mustEncode(v1, old)

			// A card keyed under version 1 scans with the rotated key set.
			s := r.scan(v2)
			sameCredential(t, s, old)
			if s.Record.KeyVersion != 1 {
				t.Fatalf("key version %d", s.Record.KeyVersion)
			}
			// Re-encoding re-keys it to version 2.
			c2 := credential("1002", 2)
			r.mustEncode(v2, c2)
			r.checkProtected(v2, 2, blank0, blank1)
			if s := r.scan(v2); s.Record == nil || s.Record.KeyVersion != 2 {
				t.Fatalf("after re-encode: %+v", s)
			}
			// Version 1 can go: nothing on the card needs it.
			if err := v2.Retire(1); err != nil {
				t.Fatal(err)
			}
			sameCredential(t, r.scan(v2), c2)
			// The old key set no longer opens the card.
			if s := r.scan(v1); s.Reason != cardfmt.ReasonForeign {
				t.Fatalf("old key set: %s", s.Reason)
			}

			// A blank card encoded after a rotation is keyed under the
			// new version at once.
			r2 := newRig(t, tech, uidB)
			r2.mustEncode(v2, c2)
			r2.checkProtected(v2, 2, blank0, blank1)
			sameCredential(t, r2.scan(v2), c2)
		})
	}
}

func TestIncompatible(t *testing.T) {
	ks := keySet(t, "site", 1)
	for _, tc := range []struct {
		name string
		tech reader.Technology
		c    cardfmt.Credential
		msg  string
	}{
		{"mf0ul11", reader.TechUL11, credential("1", 0), "holds 48"},
		{"mf0ul21 oversized", reader.TechUL21, credential("1001", maxEntrances(reader.TechUL21)+1), "holds 128"},
		{"ntag213 oversized", reader.TechNTAG213, credential("1001", maxEntrances(reader.TechNTAG213)+1), "holds 144"},
		{"ntag215 oversized", reader.TechNTAG215, credential("1001", cardfmt.MaxEntrances), "holds 504"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, tc.tech, uidA)
			before := r.pages()
			k := r.connect()
			defer k.card.Close()
			sent := k.card.Transmits
			err := Encode(context.Background(), k.tag, k.info, ks, tc.c)
			if !errors.Is(err, cardfmt.ErrIncompatible) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("Encode: %v", err)
			}
			if k.card.Transmits != sent {
				t.Fatalf("%d APDUs sent for a record that cannot fit", k.card.Transmits-sent)
			}
			r.samePages(before)
		})
	}
	// Not an Ultralight-family chip.
	for _, tech := range []reader.Technology{reader.TechClassic1K, reader.TechUnknown} {
		info := reader.Info{Technology: tech, UID: uidA}
		if err := Encode(context.Background(), nil, info, ks, credential("1", 0)); !errors.Is(err, cardfmt.ErrIncompatible) {
			t.Errorf("Encode %s: %v", tech, err)
		}
		if _, err := Scan(context.Background(), nil, info, ks); !errors.Is(err, cardfmt.ErrIncompatible) {
			t.Errorf("Scan %s: %v", tech, err)
		}
	}
	// An MF0UL11 scans (blank) even though it can hold no record.
	r := newRig(t, reader.TechUL11, uidA)
	if s := r.scan(ks); s.Reason != cardfmt.ReasonBlank {
		t.Fatalf("MF0UL11 scan: %s %s", s.Reason, s.Detail)
	}
}

func TestBlankScan(t *testing.T) {
	ks := keySet(t, "site", 3)
	for _, tech := range append([]reader.Technology{reader.TechUL11}, kinds...) {
		r := newRig(t, tech, uidA)
		if s := r.scan(ks); s.Reason != cardfmt.ReasonBlank || s.Record != nil {
			t.Errorf("%s: %s %s", tech, s.Reason, s.Detail)
		}
		if n := r.chip.AuthFailures(); n != 0 {
			t.Errorf("%s: a blank scan sent %d passwords", tech, n)
		}
	}
}

// setConfig sets AUTH0 and ACCESS, keeping the other bytes.
func setConfig(u *chip.Ultralight, auth0, access byte) {
	c := u.ConfigPage()
	cfg0, cfg1 := u.Page(c), u.Page(c+1)
	cfg0[3], cfg1[0] = auth0, access
	u.SetPage(c, cfg0)
	u.SetPage(c+1, cfg1)
}

func TestForeign(t *testing.T) {
	ks := keySet(t, "site", 2)
	other := [4]byte{0xDE, 0xAD, 0xBE, 0xEF}
	for _, tech := range kinds {
		for _, tc := range []struct {
			name  string
			setup func(r *rig)
		}{
			{"read and write protected from page 4", func(r *rig) {
				r.chip.SetPassword(other, [2]byte{0x12, 0x34})
				setConfig(r.chip, 4, accessPROT|authLim)
			}},
			{"write protected from page 4", func(r *rig) {
				r.chip.SetPassword(other, [2]byte{0x12, 0x34})
				setConfig(r.chip, 4, 0)
			}},
			{"read protected from page 2", func(r *rig) {
				r.chip.SetPassword(other, [2]byte{0x12, 0x34})
				setConfig(r.chip, 2, accessPROT)
			}},
			{"read protected from page 16", func(r *rig) {
				r.chip.SetPassword(other, [2]byte{0x12, 0x34})
				setConfig(r.chip, 16, accessPROT)
			}},
			{"configuration protected", func(r *rig) {
				r.chip.SetPassword(other, [2]byte{0x12, 0x34})
				setConfig(r.chip, byte(r.chip.ConfigPage()), accessPROT)
			}},
			{"this system's password, another PACK", func(r *rig) {
				k := cardKeyOf(t, ks, 2, r.chip.UID())
				r.chip.SetPassword(k.pwd, [2]byte{^k.pack[0], k.pack[1]})
				setConfig(r.chip, 4, accessPROT)
			}},
		} {
			t.Run(fmt.Sprintf("%s/%s", tech, tc.name), func(t *testing.T) {
				r := newRig(t, tech, uidA)
				tc.setup(r)
				before := r.pages()
				if s := r.scan(ks); s.Reason != cardfmt.ReasonForeign || s.Record != nil {
					t.Fatalf("scan: %s %s", s.Reason, s.Detail)
				}
				if err := r.encode(ks, credential("1001", 1)); !errors.Is(err, cardfmt.ErrForeign) || errors.Is(err, cardfmt.ErrInterrupted) {
					t.Fatalf("Encode: %v", err)
				}
				r.samePages(before)
				if r.chip.PasswordBlocked() {
					t.Fatal("the other system's password limit was used up")
				}
			})
		}
	}
}

// TestTryLimit: a key set with more versions than an EV1's attempt limit
// never locks a card's password in one operation.
func TestTryLimit(t *testing.T) {
	r := newRig(t, reader.TechUL21, uidA)
	r.mustEncode(keySet(t, "site", 1), credential("1001", 1))
	ks := keySet(t, "site", 9)
	if s := r.scan(ks); s.Reason != cardfmt.ReasonForeign {
		t.Fatalf("scan: %s %s", s.Reason, s.Detail)
	}
	if r.chip.PasswordBlocked() || r.chip.AuthFailures() != maxTries {
		t.Fatalf("blocked %v after %d failures", r.chip.PasswordBlocked(), r.chip.AuthFailures())
	}
	// The right version resets the chip's count.
	sameCredential(t, r.scan(keySet(t, "site", 1)), credential("1001", 1))
	if r.chip.AuthFailures() != 0 {
		t.Fatalf("%d failures left counted", r.chip.AuthFailures())
	}
}

// lastBitMissesRecord reports whether the last dynamic lock bit of tech
// covers only pages after the record TestLocked writes.
func lastBitMissesRecord(tech reader.Technology) bool {
	g := geometries[tech]
	last := headerPage + (cardfmt.SealedLen(credential("1001", 1), 7)+3)/4 - 1
	return 16+(g.userEnd-16)/g.dynGran*g.dynGran > last
}

func TestLocked(t *testing.T) {
	ks := keySet(t, "site", 1)
	for _, tech := range kinds {
		for _, tc := range []struct {
			name  string
			setup func(r *rig)
			msg   string
			fits  bool // the lock misses the record
		}{
			{"static lock page 10", func(r *rig) {
				p := r.chip.Page(2)
				p[3] |= 1 << (10 - 8)
				r.chip.SetPage(2, p)
			}, "page 10", false},
			{"static lock page 4", func(r *rig) {
				p := r.chip.Page(2)
				p[2] |= 1 << 4
				r.chip.SetPage(2, p)
			}, "page 4", false},
			{"dynamic lock page 16", func(r *rig) {
				p := r.chip.Page(r.chip.ConfigPage() - 1)
				p[0] |= 1
				r.chip.SetPage(r.chip.ConfigPage()-1, p)
			}, "page 16", false},
			{"dynamic lock of the last pages", func(r *rig) {
				// The last dynamic lock bit covers the end of user memory,
				// beyond a short record on the larger chips.
				g := geometries[tech]
				bit := (g.userEnd - 16) / g.dynGran
				p := r.chip.Page(g.cfgRead())
				p[bit/8] |= 1 << (bit % 8)
				r.chip.SetPage(g.cfgRead(), p)
			}, "", lastBitMissesRecord(tech)},
			{"CFGLCK", func(r *rig) {
				setConfig(r.chip, 0xFF, accessCFGLCK)
				r.chip.Reset()
			}, "CFGLCK", false},
		} {
			t.Run(fmt.Sprintf("%s/%s", tech, tc.name), func(t *testing.T) {
				r := newRig(t, tech, uidA)
				tc.setup(r)
				before := r.pages()
				if s := r.scan(ks); s.Reason != cardfmt.ReasonBlank {
					t.Fatalf("scan: %s %s", s.Reason, s.Detail)
				}
				c := credential("1001", 1)
				err := r.encode(ks, c)
				if tc.fits {
					if err != nil {
						t.Fatalf("Encode: %v", err)
					}
					sameCredential(t, r.scan(ks), c)
					return
				}
				if !errors.Is(err, cardfmt.ErrIncompatible) || !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("Encode: %v", err)
				}
				r.samePages(before)
			})
		}
	}
}

// TestLockedAfterEncode: lock bits anyone can set on a card of this system
// (page 2 is below AUTH0) stop a re-encode before it writes.
func TestLockedAfterEncode(t *testing.T) {
	ks := keySet(t, "site", 1)
	for _, tech := range kinds {
		r := newRig(t, tech, uidA)
		old := credential("1001", 1)
		r.mustEncode(ks, old)
		p := r.chip.Page(2)
		p[3] |= 1 << (12 - 8)
		r.chip.SetPage(2, p)
		before := r.pages()
		if err := r.encode(ks, credential("1002", 1)); !errors.Is(err, cardfmt.ErrIncompatible) || errors.Is(err, cardfmt.ErrInterrupted) {
			t.Fatalf("%s: Encode: %v", tech, err)
		}
		r.samePages(before)
		sameCredential(t, r.scan(ks), old)
	}
}

func TestMirror(t *testing.T) {
	ks := keySet(t, "site", 1)
	for _, tech := range []reader.Technology{reader.TechNTAG213, reader.TechNTAG216} {
		g := geometries[tech]
		for _, page := range []int{10, g.userEnd - 5} {
			r := newRig(t, tech, uidA)
			cfg0 := r.chip.Page(g.cfg0)
			cfg0[0] |= 0x40 // UID mirror
			cfg0[2] = byte(page)
			r.chip.SetPage(g.cfg0, cfg0)
			c := credential("1001", 1)
			err := r.encode(ks, c)
			if page == 10 {
				if !errors.Is(err, cardfmt.ErrIncompatible) {
					t.Fatalf("%s mirror at page %d: %v", tech, page, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("%s mirror at page %d: %v", tech, page, err)
			}
			if got := r.chip.Page(g.cfg0); got[0] != cfg0[0] || got[2] != cfg0[2] {
				t.Fatalf("%s: mirror configuration not kept: % X", tech, got)
			}
		}
	}
}

// copyPages copies pages from..to of src onto dst through fixtures.
func copyPages(dst, src *chip.Ultralight, from, to int) {
	for p := from; p <= to; p++ {
		dst.SetPage(p, src.Page(p))
	}
}

func TestCopiedRecord(t *testing.T) {
	ks := keySet(t, "site", 1)
	for _, tech := range kinds {
		g := geometries[tech]
		t.Run(string(tech), func(t *testing.T) {
			a := newRig(t, tech, uidA)
			a.mustEncode(ks, credential("1001", 1))

			// Onto an open card.
			b := newRig(t, tech, uidB)
			copyPages(b.chip, a.chip, headerPage, g.userEnd)
			if s := b.scan(ks); s.Reason != cardfmt.ReasonUIDMismatch {
				t.Fatalf("copy onto an open card: %s %s", s.Reason, s.Detail)
			}
			// Onto a card this system keyed: it opens, the record does not.
			b = newRig(t, tech, uidB)
			b.mustEncode(ks, credential("2002", 0))
			copyPages(b.chip, a.chip, headerPage, g.userEnd)
			if s := b.scan(ks); s.Reason != cardfmt.ReasonUIDMismatch {
				t.Fatalf("copy onto a keyed card: %s %s", s.Reason, s.Detail)
			}
			// With the password too: it is not this card's password.
			b = newRig(t, tech, uidB)
			copyPages(b.chip, a.chip, headerPage, g.pages()-1)
			if s := b.scan(ks); s.Reason != cardfmt.ReasonForeign {
				t.Fatalf("copy with password: %s %s", s.Reason, s.Detail)
			}
			// A record altered in place.
			p := a.chip.Page(headerPage + 3) // inside the credential id
			p[0] ^= 0x01
			a.chip.SetPage(headerPage+3, p)
			if s := a.scan(ks); s.Reason != cardfmt.ReasonBadMAC {
				t.Fatalf("altered record: %s %s", s.Reason, s.Detail)
			}
		})
	}
}

func TestCorrupt(t *testing.T) {
	ks := keySet(t, "site", 1)
	for _, tech := range kinds {
		for _, tc := range []struct {
			name   string
			page   int // header page 4 or 5
			byteAt int
			value  byte
			want   cardfmt.Reason
		}{
			{"length beyond user memory", 5, 0, 0x03, cardfmt.ReasonCorrupt}, // 0x03xx bytes
			{"length below the minimum", 5, 0, 0x00, cardfmt.ReasonCorrupt},
			{"reserved flags", 5, 3, 0x80, cardfmt.ReasonCorrupt},
			{"format version", 4, 2, 0x09, cardfmt.ReasonCorrupt},
			{"key version unknown", 4, 3, 0x09, cardfmt.ReasonUnknownKeyVersion},
			{"magic gone", 4, 0, 0x00, cardfmt.ReasonBlank},
		} {
			t.Run(fmt.Sprintf("%s/%s", tech, tc.name), func(t *testing.T) {
				r := newRig(t, tech, uidA)
				r.mustEncode(ks, credential("1001", 1))
				p := r.chip.Page(tc.page)
				p[tc.byteAt] = tc.value
				if tc.name == "length below the minimum" {
					p[1] = 0x10
				}
				r.chip.SetPage(tc.page, p)
				if s := r.scan(ks); s.Reason != tc.want || s.Record != nil {
					t.Fatalf("scan: %s %s", s.Reason, s.Detail)
				}
				// Whatever the record says, the card stays re-encodable.
				c := credential("1002", 1)
				r.mustEncode(ks, c)
				sameCredential(t, r.scan(ks), c)
			})
		}
	}
	// Truncated: a record whose tail pages were never written.
	r := newRig(t, reader.TechNTAG213, uidA)
	r.mustEncode(ks, credential("1001", 1))
	p := r.chip.Page(5)
	p[0], p[1] = 0x00, 0x8C // 140 bytes: the MAC lies beyond what was written
	r.chip.SetPage(5, p)
	if s := r.scan(ks); s.Reason != cardfmt.ReasonBadMAC && s.Reason != cardfmt.ReasonCorrupt {
		t.Fatalf("truncated: %s %s", s.Reason, s.Detail)
	}
}

// TestTornRekey: a re-key pulled away between the PWD and the PACK page
// leaves a card that still opens, and the next encode completes it.
func TestTornRekey(t *testing.T) {
	for _, tech := range kinds {
		r := newRig(t, tech, uidA)
		v1, v2 := keySet(t, "site", 1), keySet(t, "site", 2)
		old := credential("1001", 1)
		r.mustEncode(v1, old)
		k2 := cardKeyOf(t, v2, 2, uidA)
		r.chip.SetPage(r.chip.ConfigPage()+2, k2.pwd[:]) // PWD of v2, PACK of v1
		sameCredential(t, r.scan(v2), old)
		c := credential("1002", 1)
		r.mustEncode(v2, c)
		if !bytes.Equal(r.chip.Page(r.chip.ConfigPage() + 3)[:2], k2.pack[:]) {
			t.Fatalf("%s: PACK not rewritten", tech)
		}
		sameCredential(t, r.scan(v2), c)
	}
}

// TestTornBlank: a blank card pulled away between its PWD and PACK writes
// takes this system's password with the factory PACK. No password is in
// force, so it is open, not foreign.
func TestTornBlank(t *testing.T) {
	ks := keySet(t, "site", 1)
	for _, tech := range kinds {
		r := newRig(t, tech, uidA)
		k := cardKeyOf(t, ks, 1, uidA)
		r.chip.SetPage(r.chip.ConfigPage()+2, k.pwd[:])
		if s := r.scan(ks); s.Reason != cardfmt.ReasonBlank {
			t.Fatalf("%s: scan: %s %s", tech, s.Reason, s.Detail)
		}
		c := credential("1001", 1)
		r.mustEncode(ks, c)
		sameCredential(t, r.scan(ks), c)
	}
}

// recorder notes the INS byte of every APDU the card gets.
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

// identifyAPDUs counts what reader.Identify sends before the layout runs.
func identifyAPDUs(t *testing.T, tech reader.Technology) int {
	r := newRig(t, tech, uidA)
	k := r.connect()
	defer k.card.Close()
	return k.card.Transmits
}

// TestInterrupted pulls the card away at every APDU of an encode. Encode
// must fail, with ErrInterrupted once it has written; the card must then
// never scan as a valid record other than the old or the new one, and must
// take a fresh encode.
func TestInterrupted(t *testing.T) {
	type scenario struct {
		name   string
		before int // key versions of the first encode; 0: blank card
		after  int // key versions of the interrupted encode
	}
	scenarios := []scenario{
		{"blank", 0, 1},
		{"re-encode", 1, 1},
		{"re-encode after rotation", 1, 2},
	}
	if testing.Short() {
		scenarios = scenarios[1:2]
	}
	for _, tech := range kinds {
		skip := identifyAPDUs(t, tech)
		for _, sc := range scenarios {
			t.Run(fmt.Sprintf("%s/%s", tech, sc.name), func(t *testing.T) {
				old := credential("1001", 1)
				next := credential("2002", 2)
				ks := keySet(t, "site", sc.after)
				// prepare builds the card as it was before the encode.
				prepare := func() (*rig, *chip.Ultralight) {
					r := newRig(t, tech, uidA)
					if sc.before > 0 {
						r.mustEncode(keySet(t, "site", sc.before), old)
					}
					return r, r.chip
				}

				// An uninterrupted run gives the APDU sequence.
				r, u := prepare()
				rec := &recorder{Card: u}
				r.rdr.Insert(rec)
				r.mustEncode(ks, next)
				seq := rec.ins[skip:]
				firstWrite := bytes.IndexByte(seq, 0xD6) + 1
				if firstWrite == 0 {
					t.Fatal("no write")
				}

				t.Logf("%d APDUs, first write at %d", len(seq), firstWrite)
				for n := 1; n <= len(seq); n++ {
					r, u := prepare()
					r.rdr.Insert(chip.WithFaults(u, chip.Faults{RemoveAt: skip + n}))
					err := r.encode(ks, next)
					switch {
					case err == nil:
						t.Fatalf("APDU %d: Encode succeeded with the card removed", n)
					case !errors.Is(err, reader.ErrCardRemoved):
						t.Fatalf("APDU %d: %v, want card removed", n, err)
					case errors.Is(err, cardfmt.ErrInterrupted) != (n >= firstWrite):
						t.Fatalf("APDU %d (first write %d): %v", n, firstWrite, err)
					}
					// The card comes back, without faults.
					r.rdr.Insert(u)
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
				}
			})
		}
	}
}

// apdus runs f on a fresh connection and counts the APDUs it sends.
func (r *rig) apdus(f func(k conn) error) int {
	r.t.Helper()
	k := r.connect()
	defer k.card.Close()
	sent := k.card.Transmits
	if err := f(k); err != nil {
		r.t.Fatal(err)
	}
	return k.card.Transmits - sent
}

// TestAPDUCounts pins the sequences docs/card-format.md gives, after
// reader.Identify on the same connection, for a record of P pages read back
// in R = ceil(P/4) READs: blank scan 3; blank encode P+R+10; re-encode of
// the same credential (header pages already right) P+R+1, with another
// card number length (page 5 changes) P+R+2; re-encode after a rotation
// P+R+7; scan 1+R, 4+R for a card under the previous version.
func TestAPDUCounts(t *testing.T) {
	ks := keySet(t, "site", 1)
	c := credential("1001", 1)        // 82 bytes: 21 pages
	longer := credential("100101", 1) // 84 bytes: 21 pages, another length
	pages := (cardfmt.SealedLen(c, 7) + 3) / 4
	reads := (pages + 3) / 4
	ctx := context.Background()
	scan := func(ks *cardfmt.KeySet) func(k conn) error {
		return func(k conn) error {
			s, err := Scan(ctx, k.tag, k.info, ks)
			if err == nil && s.Reason != cardfmt.ReasonNone && s.Reason != cardfmt.ReasonBlank {
				err = errors.New(string(s.Reason))
			}
			return err
		}
	}
	encode := func(ks *cardfmt.KeySet, c cardfmt.Credential) func(k conn) error {
		return func(k conn) error { return Encode(ctx, k.tag, k.info, ks, c) }
	}
	for _, tech := range kinds {
		r := newRig(t, tech, uidA)
		for _, step := range []struct {
			name string
			f    func(k conn) error
			want int
		}{
			{"blank scan", scan(ks), 3},
			{"blank encode", encode(ks, c), pages + reads + 10},
			{"re-encode", encode(ks, c), pages + reads + 1},
			{"re-encode, another length", encode(ks, longer), pages + reads + 2},
			{"scan", scan(ks), 1 + reads},
			{"re-encode after rotation", encode(keySet(t, "site", 2), longer), pages + reads + 7},
			{"scan after rotation", scan(keySet(t, "site", 2)), 1 + reads},
		} {
			if n := r.apdus(step.f); n != step.want {
				t.Errorf("%s %s: %d APDUs, want %d", tech, step.name, n, step.want)
			}
		}
		// A card under the previous version, scanned after a rotation.
		r = newRig(t, tech, uidA)
		r.mustEncode(ks, c)
		if n, want := r.apdus(scan(keySet(t, "site", 2))), 2+2+reads; n != want {
			t.Errorf("%s scan under the previous version: %d APDUs, want %d", tech, n, want)
		}
	}
}

// benchCredential is the credential docs/benchmarks.md counts with: a
// 6-character card number and 2 entrances, a 100-byte record (25 pages).
func benchCredential() cardfmt.Credential { return credential("100234", 2) }

// BenchmarkEncode and BenchmarkScan report the layout's own APDUs per job,
// after reader.Identify on the same connection.
func BenchmarkEncode(b *testing.B) {
	ks := keySet(b, "site", 1)
	c := benchCredential()
	for _, tech := range kinds {
		b.Run(string(tech)+"/blank", func(b *testing.B) {
			total := 0
			for b.Loop() {
				b.StopTimer()
				r := newRig(b, tech, uidA)
				b.StartTimer()
				total += r.apdus(func(k conn) error { return Encode(context.Background(), k.tag, k.info, ks, c) })
			}
			b.ReportMetric(float64(total)/float64(b.N), "apdus/op")
		})
		b.Run(string(tech)+"/re-encode", func(b *testing.B) {
			r := newRig(b, tech, uidA)
			r.mustEncode(ks, c)
			total := 0
			for b.Loop() {
				total += r.apdus(func(k conn) error { return Encode(context.Background(), k.tag, k.info, ks, c) })
			}
			b.ReportMetric(float64(total)/float64(b.N), "apdus/op")
		})
	}
}

func BenchmarkScan(b *testing.B) {
	ks := keySet(b, "site", 1)
	c := benchCredential()
	for _, tech := range kinds {
		for _, issued := range []bool{true, false} {
			name := string(tech) + "/issued"
			if !issued {
				name = string(tech) + "/blank"
			}
			b.Run(name, func(b *testing.B) {
				r := newRig(b, tech, uidA)
				if issued {
					r.mustEncode(ks, c)
				}
				total := 0
				for b.Loop() {
					total += r.apdus(func(k conn) error {
						s, err := Scan(context.Background(), k.tag, k.info, ks)
						if err == nil && s.Valid() != issued {
							err = fmt.Errorf("scan: %s", s.Reason)
						}
						return err
					})
				}
				b.ReportMetric(float64(total)/float64(b.N), "apdus/op")
			})
		}
	}
}

// BenchmarkAPDUs counts whole jobs as docs/benchmarks.md tabulates them:
// identification (GET DATA, transparent session, GET_VERSION) included.
func BenchmarkAPDUs(b *testing.B) {
	ks := keySet(b, "site", 1)
	c := benchCredential()
	for _, tech := range []reader.Technology{reader.TechNTAG213, reader.TechNTAG216, reader.TechUL21} {
		for _, op := range []string{"encode-blank", "encode-again", "scan"} {
			b.Run(fmt.Sprintf("%s/%s", tech, op), func(b *testing.B) {
				var apdus int
				for b.Loop() {
					r := newRig(b, tech, uidA)
					if op != "encode-blank" {
						r.mustEncode(ks, c)
					}
					k := r.connect()
					var err error
					if op == "scan" {
						_, err = Scan(context.Background(), k.tag, k.info, ks)
					} else {
						err = Encode(context.Background(), k.tag, k.info, ks, c)
					}
					apdus = k.card.Transmits
					k.card.Close()
					if err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(apdus), "apdus/op")
			})
		}
	}
}
