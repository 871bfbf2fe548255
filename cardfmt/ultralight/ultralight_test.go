package ultralight

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/encoder-bridge/encoder-bridge/cardfmt"
	"github.com/encoder-bridge/encoder-bridge/cardfmt/cardfmttest"
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

// keySet and credential are deterministic: the same arguments give the
// same keys and the same credential.
func keySet(t testing.TB, seed string, versions int) *cardfmt.KeySet {
	t.Helper()
	return cardfmttest.KeySet(t, seed, versions)
}

func credential(number string, entrances int) cardfmt.Credential {
	return cardfmttest.Credential(number, entrances)
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
	want0 := append(bytes.Clone(blankCfg0[:3]), auth0)
	want1 := append([]byte{blankCfg1[0]&^0xC7 | accessPROT | authLim}, blankCfg1[1:]...)
	if !bytes.Equal(cfg0, want0) || !bytes.Equal(cfg1, want1) {
		r.t.Fatalf("configuration % X / % X, want % X / % X", cfg0, cfg1, want0, want1)
	}
	// Without the password the marker reads, nothing from page 6 on does.
	k2 := r.connect()
	defer k2.card.Close()
	if b, err := k2.tag.ReadBinary(context.Background(), markerPage, readSize); err != nil || b[0] != 'E' || b[1] != 'U' || b[2] != v {
		r.t.Fatalf("unauthenticated READ of the marker: % X, %v", b, err)
	}
	if _, err := k2.tag.ReadBinary(context.Background(), bindPage, readSize); !errors.Is(err, reader.ErrRefused) {
		r.t.Fatalf("unauthenticated READ of page 6: %v, want refused", err)
	}
}

func TestSupportsCapacity(t *testing.T) {
	want := map[reader.Technology]int{
		reader.TechUL11: 36, reader.TechUL21: 116,
		reader.TechNTAG213: 132, reader.TechNTAG215: 492, reader.TechNTAG216: 876,
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
			// The old key set does not hold the version the marker
			// names.
			if s := r.scan(v1); s.Reason != cardfmt.ReasonUnknownKeyVersion {
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
		{"mf0ul11", reader.TechUL11, credential("1", 0), "holds 36"},
		{"mf0ul21 oversized", reader.TechUL21, credential("1001", maxEntrances(reader.TechUL21)+1), "holds 116"},
		{"ntag213 oversized", reader.TechNTAG213, credential("1001", maxEntrances(reader.TechNTAG213)+1), "holds 132"},
		{"ntag215 oversized", reader.TechNTAG215, credential("1001", cardfmt.MaxEntrances), "holds 492"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, tc.tech, uidA)
			before := r.pages()
			k := r.connect()
			defer k.card.Close()
			sent := k.card.Transmits
			err := errOf(Encode(context.Background(), k.tag, k.info, ks, tc.c))
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
		if err := errOf(Encode(context.Background(), nil, info, ks, credential("1", 0))); !errors.Is(err, cardfmt.ErrIncompatible) {
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
			// spent is the wrong PWD_AUTH attempts a scan and an encode
			// cost the card: only one that looks like a layout 1 card
			// (no marker, read-protected from page 4) gets a password.
			spent int
		}{
			{"read and write protected from page 4", func(r *rig) {
				r.chip.SetPassword(other, [2]byte{0x12, 0x34})
				setConfig(r.chip, 4, accessPROT|authLim)
			}, 2},
			{"read and write protected from page 6, no marker", func(r *rig) {
				r.chip.SetPassword(other, [2]byte{0x12, 0x34})
				setConfig(r.chip, 6, accessPROT|authLim)
			}, 0},
			{"write protected from page 4", func(r *rig) {
				r.chip.SetPassword(other, [2]byte{0x12, 0x34})
				setConfig(r.chip, 4, 0)
			}, 0},
			{"read protected from page 2", func(r *rig) {
				r.chip.SetPassword(other, [2]byte{0x12, 0x34})
				setConfig(r.chip, 2, accessPROT)
			}, 0},
			{"read protected from page 16", func(r *rig) {
				r.chip.SetPassword(other, [2]byte{0x12, 0x34})
				setConfig(r.chip, 16, accessPROT)
			}, 0},
			{"configuration protected", func(r *rig) {
				r.chip.SetPassword(other, [2]byte{0x12, 0x34})
				setConfig(r.chip, byte(r.chip.ConfigPage()), accessPROT)
			}, 0},
			{"this system's password, another PACK", func(r *rig) {
				k := cardKeyOf(t, ks, 2, r.chip.UID())
				r.chip.SetPassword(k.pwd, [2]byte{^k.pack[0], k.pack[1]})
				setConfig(r.chip, 4, accessPROT)
			}, 0},
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
				if n := r.chip.AuthFailures(); n != tc.spent || r.chip.PasswordBlocked() {
					t.Fatalf("%d wrong PWD_AUTH attempts (blocked %v), want %d", n, r.chip.PasswordBlocked(), tc.spent)
				}
			})
		}
	}
}

// pwdCounter counts the PWD_AUTH frames a card gets.
type pwdCounter struct {
	chip.Card
	n int
}

func (c *pwdCounter) Transmit(apdu []byte) ([]byte, error) {
	if len(apdu) > 7 && apdu[1] == 0xC2 && apdu[3] == 0x01 && apdu[5] == 0x95 && apdu[7] == cmdPwdAuth {
		c.n++
	}
	return c.Card.Transmit(apdu)
}

// TestNoPasswordSpent: the marker says which site and which key version
// keyed a card, so no scan or encode spends a password attempt on a card
// this key set cannot open, and a card it can open takes exactly one, the
// right one. Scanning another site's card used to cost it one attempt per
// scan until AUTHLIM shut it for its own site too.
func TestNoPasswordSpent(t *testing.T) {
	for _, tech := range kinds {
		t.Run(string(tech), func(t *testing.T) {
			r := newRig(t, tech, uidA)
			theirs := keySet(t, "other", 1)
			r.mustEncode(theirs, credential("1001", 1))
			before := r.pages()
			ks := keySet(t, "site", 3)
			for i := range 2 * authLim {
				if s := r.scan(ks); s.Reason != cardfmt.ReasonForeign {
					t.Fatalf("scan %d of another site's card: %s %s", i, s.Reason, s.Detail)
				}
			}
			if err := r.encode(ks, credential("1002", 1)); !errors.Is(err, cardfmt.ErrForeign) || errors.Is(err, cardfmt.ErrInterrupted) {
				t.Fatalf("Encode of another site's card: %v", err)
			}
			r.samePages(before)
			if n := r.chip.AuthFailures(); n != 0 {
				t.Fatalf("another site's card lost %d password attempts", n)
			}
			sameCredential(t, r.scan(theirs), credential("1001", 1))

			// This site's card under version 1, read with versions 1-9.
			r = newRig(t, tech, uidA)
			r.mustEncode(keySet(t, "site", 1), credential("1001", 1))
			pc := &pwdCounter{Card: r.chip}
			r.rdr.Insert(pc)
			ks9 := keySet(t, "site", 9)
			s := r.scan(ks9)
			sameCredential(t, s, credential("1001", 1))
			if s.Record.KeyVersion != 1 || pc.n != 1 || r.chip.AuthFailures() != 0 {
				t.Fatalf("key version %d after %d PWD_AUTH, %d refused", s.Record.KeyVersion, pc.n, r.chip.AuthFailures())
			}
			// Version 1 retired: the card is this site's, under a version
			// the key file no longer holds. No password is tried.
			if err := ks9.Retire(1); err != nil {
				t.Fatal(err)
			}
			before = r.pages()
			if s := r.scan(ks9); s.Reason != cardfmt.ReasonUnknownKeyVersion {
				t.Fatalf("retired version: %s %s", s.Reason, s.Detail)
			}
			err := r.encode(ks9, credential("1002", 1))
			if !errors.Is(err, cardfmt.ErrForeign) || !errors.Is(err, cardfmt.ErrUnknownKeyVersion) {
				t.Fatalf("Encode under a retired version: %v", err)
			}
			r.samePages(before)
			if pc.n != 1 {
				t.Fatalf("%d PWD_AUTH in all, want 1", pc.n)
			}
		})
	}
}

// nakAsData passes a refused native frame up as a one-byte reply, as some
// readers do with a 4-bit NAK, instead of an exchange error.
type nakAsData struct{ chip.Card }

func (c nakAsData) Transmit(apdu []byte) ([]byte, error) {
	r, err := c.Card.Transmit(apdu)
	if err == nil && len(apdu) > 5 && apdu[1] == 0xC2 && apdu[3] == 0x01 && bytes.Contains(r, []byte{0xC0, 0x03, 0x01, 0x64, 0x01}) {
		return []byte{0xC0, 0x03, 0x00, 0x90, 0x00, 0x97, 0x01, 0x04, 0x90, 0x00}, nil
	}
	return r, err
}

// TestNAKAsData: a refused PWD_AUTH that the reader reports as a one-byte
// answer is a refusal, not a PACK. A card of another system protected from
// page 4 then scans as foreign, not as an error from reading its protected
// configuration; an open card with this site's marker copied onto it is
// read as open.
func TestNAKAsData(t *testing.T) {
	ks := keySet(t, "site", 1)
	for _, tech := range kinds {
		r := newRig(t, tech, uidA)
		r.chip.SetPassword([4]byte{1, 2, 3, 4}, [2]byte{5, 6})
		setConfig(r.chip, 4, accessPROT|authLim)
		r.rdr.Insert(nakAsData{r.chip})
		if s := r.scan(ks); s.Reason != cardfmt.ReasonForeign {
			t.Fatalf("%s: %s %s", tech, s.Reason, s.Detail)
		}

		a := newRig(t, tech, uidA)
		a.mustEncode(ks, credential("1001", 1))
		b := newRig(t, tech, uidB)
		copyPages(b.chip, a.chip, markerPage, geometries[tech].userEnd)
		b.rdr.Insert(nakAsData{b.chip})
		if s := b.scan(ks); s.Reason != cardfmt.ReasonUIDMismatch {
			t.Fatalf("%s: open card with a copied marker: %s %s", tech, s.Reason, s.Detail)
		}
	}
}

// TestRollback: whoever learnt a card's PWD (it crosses the air in clear)
// can write an older record of the same card back. On MIFARE Ultralight
// EV1 the record is bound to a one-way counter that each encode moves, so
// the older record no longer verifies. NTAG21x has no such counter: there
// the older record verifies again, as docs/card-format.md says.
func TestRollback(t *testing.T) {
	ks := keySet(t, "site", 1)
	for _, tech := range kinds {
		t.Run(string(tech), func(t *testing.T) {
			r := newRig(t, tech, uidA)
			old := credential("1001", 2)
			r.mustEncode(ks, old)
			saved := r.pages()
			r.mustEncode(ks, credential("1001", 1))
			for p := markerPage; p <= geometries[tech].userEnd; p++ {
				r.chip.SetPage(p, saved[p])
			}
			s := r.scan(ks)
			if !geometries[tech].counted() {
				sameCredential(t, s, old)
				return
			}
			if s.Reason != cardfmt.ReasonBadMAC || !strings.Contains(s.Detail, "superseded") {
				t.Fatalf("older record written back: %s %s", s.Reason, s.Detail)
			}
			if n := r.chip.Counter(counterNo); n != 2 {
				t.Fatalf("counter %d after two encodes", n)
			}
			c := credential("1003", 0)
			r.mustEncode(ks, c)
			sameCredential(t, r.scan(ks), c)
		})
	}
}

// legacyCard keys a card as layout 1 did: the record from page 4 under
// the key set's current version, AUTH0 = 4, no marker.
func legacyCard(t *testing.T, tech reader.Technology, ks *cardfmt.KeySet, c cardfmt.Credential) *rig {
	t.Helper()
	r := newRig(t, tech, uidA)
	rec, err := cardfmt.Seal(c, ks, uidA)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(rec); i += pageSize {
		p := make([]byte, pageSize)
		copy(p, rec[i:])
		r.chip.SetPage(legacyHeaderPage+i/pageSize, p)
	}
	k := cardKeyOf(t, ks, ks.Current().Version, uidA)
	r.chip.SetPassword(k.pwd, k.pack)
	setConfig(r.chip, legacyHeaderPage, accessPROT|authLim)
	return r
}

// TestLegacyCard: a layout 1 card reads with one PWD_AUTH, the current
// version's, and an encode turns it into a layout 2 card.
func TestLegacyCard(t *testing.T) {
	for _, tech := range kinds {
		t.Run(string(tech), func(t *testing.T) {
			fresh := chip.NewUltralight(models[tech], uidA)
			blank0, blank1 := fresh.Page(fresh.ConfigPage()), fresh.Page(fresh.ConfigPage()+1)
			ks := keySet(t, "site", 1)
			old := credential("1001", 1)
			r := legacyCard(t, tech, ks, old)
			s := r.scan(ks)
			sameCredential(t, s, old)
			if s.Record.FormatVersion != cardfmt.FormatVersion {
				t.Fatalf("format version %d", s.Record.FormatVersion)
			}
			// After a rotation it holds no marker to name version 1: one
			// attempt with the current version, refused.
			if s := r.scan(keySet(t, "site", 2)); s.Reason != cardfmt.ReasonForeign || r.chip.AuthFailures() != 1 {
				t.Fatalf("after a rotation: %s %s, %d refused", s.Reason, s.Detail, r.chip.AuthFailures())
			}
			c := credential("1002", 1)
			r.mustEncode(ks, c)
			r.checkProtected(ks, 1, blank0, blank1)
			s = r.scan(ks)
			sameCredential(t, s, c)
			if s.Record.FormatVersion != cardfmt.FormatVersionBound {
				t.Fatalf("re-encoded: format version %d", s.Record.FormatVersion)
			}
		})
	}
}

// lastBitMissesRecord reports whether the last dynamic lock bit of tech
// covers only pages after the record TestLocked writes.
func lastBitMissesRecord(tech reader.Technology) bool {
	g := geometries[tech]
	last := markerPage + (boundLen+cardfmt.SealedLen(credential("1001", 1), 7)+3)/4 - 1
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
			copyPages(b.chip, a.chip, markerPage, g.userEnd)
			if s := b.scan(ks); s.Reason != cardfmt.ReasonUIDMismatch {
				t.Fatalf("copy onto an open card: %s %s", s.Reason, s.Detail)
			}
			// Onto a card this system keyed: it opens, the record does not.
			b = newRig(t, tech, uidB)
			b.mustEncode(ks, credential("2002", 0))
			copyPages(b.chip, a.chip, markerPage, g.userEnd)
			if s := b.scan(ks); s.Reason != cardfmt.ReasonUIDMismatch {
				t.Fatalf("copy onto a keyed card: %s %s", s.Reason, s.Detail)
			}
			// With the password too: it is not this card's password.
			b = newRig(t, tech, uidB)
			copyPages(b.chip, a.chip, markerPage, g.pages()-1)
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
			page   int // header page 7 or 8
			byteAt int
			value  byte
			want   cardfmt.Reason
		}{
			{"length beyond user memory", headerPage + 1, 0, 0x03, cardfmt.ReasonCorrupt}, // 0x03xx bytes
			{"length below the minimum", headerPage + 1, 0, 0x00, cardfmt.ReasonCorrupt},
			{"reserved flags", headerPage + 1, 3, 0x80, cardfmt.ReasonCorrupt},
			{"format version", headerPage, 2, 0x09, cardfmt.ReasonCorrupt},
			{"key version unknown", headerPage, 3, 0x09, cardfmt.ReasonUnknownKeyVersion},
			{"magic gone", headerPage, 0, 0x00, cardfmt.ReasonBlank},
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
	p := r.chip.Page(headerPage + 1)
	p[0], p[1] = 0x00, 0x80 // 128 bytes: the MAC lies beyond what was written
	r.chip.SetPage(headerPage+1, p)
	if s := r.scan(ks); s.Reason != cardfmt.ReasonBadMAC && s.Reason != cardfmt.ReasonCorrupt {
		t.Fatalf("truncated: %s %s", s.Reason, s.Detail)
	}
}

// TestTornRekey: a re-key pulled away after the marker named the new
// version, before or after the new PWD, leaves a card that a scan spends
// no password on and the next encode opens (with the new version, else
// the one the marker says is being replaced) and completes.
func TestTornRekey(t *testing.T) {
	for _, tech := range kinds {
		for _, pwdWritten := range []bool{false, true} {
			r := newRig(t, tech, uidA)
			v1, v2 := keySet(t, "site", 1), keySet(t, "site", 2)
			r.mustEncode(v1, credential("1001", 1))
			p := r.chip.Page(markerPage)
			p[2], p[3] = 2, 1
			r.chip.SetPage(markerPage, p)
			k2 := cardKeyOf(t, v2, 2, uidA)
			if pwdWritten {
				r.chip.SetPage(r.chip.ConfigPage()+2, k2.pwd[:]) // PWD of v2, PACK of v1
			}
			if s := r.scan(v2); s.Reason != cardfmt.ReasonCorrupt || r.chip.AuthFailures() != 0 {
				t.Fatalf("%s: scan: %s %s, %d refused", tech, s.Reason, s.Detail, r.chip.AuthFailures())
			}
			c := credential("1002", 1)
			r.mustEncode(v2, c)
			if !bytes.Equal(r.chip.Page(r.chip.ConfigPage() + 3)[:2], k2.pack[:]) {
				t.Fatalf("%s: PACK not rewritten", tech)
			}
			sameCredential(t, r.scan(v2), c)
			if n := r.chip.AuthFailures(); n != 0 {
				t.Fatalf("%s: %d refused attempts left counted", tech, n)
			}
		}
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
// reader.Identify on the same connection, for a record of P pages: Q =
// P+3 pages from page 4 (marker, binding page, record), read back in R4 =
// ceil(Q/32) FAST_READs; a scan reads pages 6-9 (binding page, header)
// with one READ and the rest of the record's P+1 pages from page 6 with
// FAST_READ: R6 = 1 + ceil((P-3)/32). blank scan 2; blank encode
// P+R4+11; re-encode of the same credential P+R4+1 (pages 6-9 unchanged,
// not written), of another one of another length P+R4+3 (pages 8-9
// change); re-encode after a rotation P+R4+6; scan 2+R6, under any
// version the key set holds. A counted chip (Ultralight EV1) adds
// READ_CNT to every encode and issued scan, and INCR_CNT and the binding
// page's write to every encode.
func TestAPDUCounts(t *testing.T) {
	ks := keySet(t, "site", 1)
	c := credential("1001", 1)        // 82 bytes: 21 pages
	longer := credential("100101", 1) // 84 bytes: 21 pages, another length
	pages := (cardfmt.SealedLen(c, 7) + 3) / 4
	fast := func(n int) int { return (n + reader.FastReadPages - 1) / reader.FastReadPages }
	r4 := fast(pages + 3)
	r6 := 1 + fast(pages+1-readSize/pageSize)
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
		return func(k conn) error { return errOf(Encode(ctx, k.tag, k.info, ks, c)) }
	}
	for _, tech := range kinds {
		cnt := 0 // READ_CNT
		if geometries[tech].counted() {
			cnt = 1
		}
		r := newRig(t, tech, uidA)
		for _, step := range []struct {
			name string
			f    func(k conn) error
			want int
		}{
			{"blank scan", scan(ks), 2},
			{"blank encode", encode(ks, c), pages + r4 + 11 + 2*cnt},
			{"re-encode", encode(ks, c), pages + r4 + 1 + 3*cnt},
			{"re-encode, another length", encode(ks, longer), pages + r4 + 3 + 3*cnt},
			{"scan", scan(ks), 2 + r6 + cnt},
			{"scan under the previous version", scan(keySet(t, "site", 2)), 2 + r6 + cnt},
			{"re-encode after rotation", encode(keySet(t, "site", 2), longer), pages + r4 + 6 + 3*cnt},
			{"scan after rotation", scan(keySet(t, "site", 2)), 2 + r6 + cnt},
		} {
			if n := r.apdus(step.f); n != step.want {
				t.Errorf("%s %s: %d APDUs, want %d", tech, step.name, n, step.want)
			}
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
				total += r.apdus(func(k conn) error { return errOf(Encode(context.Background(), k.tag, k.info, ks, c)) })
			}
			b.ReportMetric(float64(total)/float64(b.N), "apdus/op")
		})
		b.Run(string(tech)+"/re-encode", func(b *testing.B) {
			r := newRig(b, tech, uidA)
			r.mustEncode(ks, c)
			total := 0
			for b.Loop() {
				total += r.apdus(func(k conn) error { return errOf(Encode(context.Background(), k.tag, k.info, ks, c)) })
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
						err = errOf(Encode(context.Background(), k.tag, k.info, ks, c))
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

// TestCardChangedAfterReset puts a second card in the field and lets the
// reader select it at each card reset a job makes in turn: the job stops
// with reader.ErrCardChanged and the second card, down to its failed-password
// counter, is left exactly as it was. This system's own cards take no
// reset; cards of other systems do.
func TestCardChangedAfterReset(t *testing.T) {
	ks := keySet(t, "site", 2)
	other := [4]byte{0xDE, 0xAD, 0xBE, 0xEF}
	scan := func(tag *reader.Tag, info reader.Info) error {
		_, err := Scan(context.Background(), tag, info, ks)
		return err
	}
	encode := func(tag *reader.Tag, info reader.Info) error {
		return errOf(Encode(context.Background(), tag, info, ks, credential("3001", 1)))
	}
	for _, tc := range []struct {
		name  string
		setup func(u *chip.Ultralight) // the first card, another system's
	}{
		{"read protected from page 2", func(u *chip.Ultralight) {
			u.SetPassword(other, [2]byte{0x12, 0x34})
			setConfig(u, 2, accessPROT)
		}},
		{"read and write protected from page 4", func(u *chip.Ultralight) {
			u.SetPassword(other, [2]byte{0x12, 0x34})
			setConfig(u, 4, accessPROT|authLim)
		}},
		{"read and write protected from page 6, no marker", func(u *chip.Ultralight) {
			u.SetPassword(other, [2]byte{0x12, 0x34})
			setConfig(u, 6, accessPROT|authLim)
		}},
	} {
		for _, job := range []struct {
			name string
			f    func(tag *reader.Tag, info reader.Info) error
		}{{"scan", scan}, {"encode", encode}} {
			t.Run(tc.name+"/"+job.name, func(t *testing.T) {
				run := func(swapAt int) (error, int) {
					first := chip.NewUltralight(chip.NTAG213, uidA)
					tc.setup(first)
					second := chip.NewUltralight(chip.NTAG213, uidB)
					pair := chip.NewPair(first, second)
					s := sim.New()
					r := &rig{t: t, sim: s, rdr: s.Plug(readerName), chip: first}
					r.rdr.Insert(pair)
					before, err := chip.Marshal(second)
					if err != nil {
						t.Fatal(err)
					}
					k := r.connect()
					pair.SwapAtReset(swapAt)
					err = job.f(k.tag, k.info)
					resets := pair.Resets()
					k.card.Close()
					after, _ := chip.Marshal(second)
					if !bytes.Equal(before, after) {
						t.Fatalf("swap at reset %d: the second card changed", swapAt)
					}
					return err, resets
				}
				err, resets := run(0)
				if errors.Is(err, reader.ErrCardChanged) || resets == 0 {
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
}

// errOf drops the record Encode returns, for tests about its error.
func errOf(_ cardfmt.Record, err error) error { return err }
