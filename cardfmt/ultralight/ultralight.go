// Package ultralight lays the credential record (cardfmt) onto MIFARE
// Ultralight EV1 (MF0UL11, MF0UL21) and NTAG213/215/216 cards (layout
// version 2): a public marker in pages 4-5 naming the site's key set and
// the key version, a binding page (page 6) and the record from page 7,
// sealed as format version 2 over the marker and binding page; everything
// from page 6 on read and write protected by a 32-bit password (PWD) and
// 16-bit acknowledge (PACK) diversified per card and per key version,
// with a limit on wrong password attempts. A card is offered only the
// password its marker names. On Ultralight EV1 the record is also bound
// to a one-way counter each encode moves. The configuration lock (CFGLCK)
// is never set, so a card stays re-encodable. Layout 1 cards (the record
// from page 4, no marker) still read. docs/card-format.md gives the page
// map and the exact APDU sequences.
//
// It talks to the card through the small Tag interface; it must not import
// bridge or reader/pcsc.
package ultralight

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"

	"github.com/encoder-bridge/encoder-bridge/cardfmt"
	"github.com/encoder-bridge/encoder-bridge/reader"
)

// Tag is what the layout needs from a card connection; *reader.Tag
// implements it.
type Tag interface {
	ReadBinary(ctx context.Context, page, n int) ([]byte, error)
	UpdateBinary(ctx context.Context, page int, data []byte) error
	Native(ctx context.Context, frame []byte) ([]byte, error)
	// FastRead reads pages first..last with FAST_READ (3A), which both
	// chip families know, in as few commands as the reader allows.
	FastRead(ctx context.Context, first, last int) ([]byte, error)
	// Reset re-activates the card; it fails with reader.ErrCardChanged
	// when another card answers (two cards in the field).
	Reset(ctx context.Context) error
}

var _ Tag = (*reader.Tag)(nil)

const (
	pageSize = 4
	readSize = 16 // READ answers four pages
	lockPage = 2  // static lock bytes in bytes 2-3
	// Layout version 2 (docs/card-format.md): the public marker in pages
	// 4-5, below AUTH0; the binding page (flags, one-way counter value)
	// in page 6, the first protected page; the record from page 7.
	markerPage = 4
	bindPage   = 6
	headerPage = 7
	auth0      = bindPage
	boundLen   = 12 // pages 4-6: the bytes the record's MAC covers beside it
	// Layout version 1 cards hold the record from page 4, everything from
	// there on behind the password (AUTH0 = 4), and no marker.
	legacyHeaderPage = 4

	cmdPwdAuth = 0x1B
	cmdReadCnt = 0x39
	cmdIncrCnt = 0xA5
	// counterNo is the MF0ULx1 one-way counter the record is bound to.
	counterNo  = 0
	maxCounter = 0xFFFFFF
)

// geometry is a chip's page map (MF0ULx1 and NTAG213/215/216 datasheets,
// §8.5 "Memory organization").
type geometry struct {
	userEnd int // last user page
	cfg0    int // CFG0 (AUTH0 in byte 3); CFG1, PWD and PACK follow
	// dynGran is how many pages, from page 16 on, one dynamic lock bit
	// locks; 0 on MF0UL11, which has no dynamic lock bytes. The dynamic
	// lock page is the one before CFG0.
	dynGran int
	ntag    bool
}

var geometries = map[reader.Technology]geometry{
	reader.TechUL11:    {userEnd: 0x0F, cfg0: 0x10},
	reader.TechUL21:    {userEnd: 0x23, cfg0: 0x25, dynGran: 2},
	reader.TechNTAG213: {userEnd: 0x27, cfg0: 0x29, dynGran: 2, ntag: true},
	reader.TechNTAG215: {userEnd: 0x81, cfg0: 0x83, dynGran: 16, ntag: true},
	reader.TechNTAG216: {userEnd: 0xE1, cfg0: 0xE3, dynGran: 16, ntag: true},
}

func (g geometry) pages() int    { return g.cfg0 + 4 }
func (g geometry) cfg1() int     { return g.cfg0 + 1 }
func (g geometry) pwdPage() int  { return g.cfg0 + 2 }
func (g geometry) packPage() int { return g.cfg0 + 3 }

// counted reports whether the chip has one-way counters that only INCR_CNT
// moves (MF0ULx1, counter functionality): the record is bound to one. The NTAG21x NFC
// counter moves on every read and cannot serve.
func (g geometry) counted() bool { return !g.ntag }

// cfgRead is the page a configuration READ starts at: the page before
// CFG0 (dynamic lock bytes, or the last user page on MF0UL11), so one READ
// answers it, CFG0, CFG1 and PWD (which reads as zeros).
func (g geometry) cfgRead() int { return g.cfg0 - 1 }

func (g geometry) capacity() int { return (g.userEnd - headerPage + 1) * pageSize }

// Supports reports whether t is a chip this layout handles. MF0UL11 is
// supported but too small for any record: Encode refuses it as
// incompatible.
func Supports(t reader.Technology) bool {
	_, ok := geometries[t]
	return ok
}

// Capacity is how many bytes of user memory t offers the record; 0 for a
// technology the layout does not handle.
func Capacity(t reader.Technology) int {
	g, ok := geometries[t]
	if !ok {
		return 0
	}
	return g.capacity()
}

// ACCESS (CFG1 byte 0) bits: configuration pages, NTAG213/215/216 §8.5.7
// and the same bits on MF0ULx1.
const (
	accessPROT    = 0x80 // the password guards reads as well as writes
	accessCFGLCK  = 0x40 // CFG0/CFG1 frozen for good from the next activation
	accessAUTHLIM = 0x07 // limit on wrong PWD_AUTH attempts
)

// authLim is the AUTHLIM this layout writes. MF0ULx1 §8.6.2 allows
// AUTHLIM wrong attempts (7); NTAG213/215/216 §8.8.2 allows 2^AUTHLIM
// (128; early NTAG21x datasheets and some emulators read it as AUTHLIM,
// 7). Past the limit PWD_AUTH fails for good, even with the right
// password. A guess of the 32-bit password then succeeds with
// probability at most 128/2^32. This system spends a wrong attempt only
// on a card its own marker misnames (docs/card-format.md, "AUTHLIM").
const authLim = 7

// Configuration bytes of NTAG21x CFG0 (§8.5.7): the UID/counter ASCII
// mirror, which would replace record bytes in READ answers.
const (
	cfg0MirrorConf = 0xC0 // byte 0 bits 7-6; 00b: no mirror
	cfg0MirrorPage = 2    // byte index of MIRROR_PAGE
)

// cardKey is one key version's PWD and PACK for one card.
type cardKey struct {
	version uint8
	pwd     [4]byte
	pack    [2]byte
}

// deriveKey returns key version v's PWD (bytes 0-3 of the card key) and
// PACK (bytes 4-5); ok is false when the key set does not hold v.
func deriveKey(ks *cardfmt.KeySet, v uint8, uid []byte) (cardKey, bool, error) {
	k, ok := ks.Version(v)
	if !ok {
		return cardKey{}, false, nil
	}
	full, err := k.CardKey(cardfmt.PurposeUltralightPWD, uid)
	if err != nil {
		return cardKey{}, false, err
	}
	ck := cardKey{version: v}
	copy(ck.pwd[:], full[0:4])
	copy(ck.pack[:], full[4:6])
	clear(full[:])
	return ck, true, nil
}

// currentKey returns the current version's PWD and PACK.
func currentKey(ks *cardfmt.KeySet, uid []byte) (cardKey, error) {
	if ks == nil {
		return cardKey{}, errors.New("ultralight: nil key set")
	}
	cur := ks.Current()
	if cur == nil {
		return cardKey{}, errors.New("ultralight: key set has no current version")
	}
	k, _, err := deriveKey(ks, cur.Version, uid)
	return k, err
}

// markerMagic starts page 4 of a layout 2 card: "EU".
var markerMagic = [2]byte{0x45, 0x55}

// marker is pages 4 and 5 of a layout 2 card, readable without the
// password: which site's key set and which key version keyed the card, so
// that a card is opened with the one password that fits, or not at all.
type marker struct {
	keyVersion uint8
	// prev is the key version being replaced while a re-key is under
	// way, 0 otherwise. The record is only ever sealed with 0 here.
	prev  uint8
	keyID [4]byte // the first 4 bytes of the key set's id
}

func parseMarker(b []byte) (marker, bool) {
	if len(b) < 2*pageSize || b[0] != markerMagic[0] || b[1] != markerMagic[1] || b[2] == 0 {
		return marker{}, false
	}
	m := marker{keyVersion: b[2], prev: b[3]}
	copy(m.keyID[:], b[4:8])
	return m, true
}

func (m marker) bytes() []byte {
	return []byte{markerMagic[0], markerMagic[1], m.keyVersion, m.prev, m.keyID[0], m.keyID[1], m.keyID[2], m.keyID[3]}
}

func siteID(ks *cardfmt.KeySet) [4]byte {
	id := ks.ID()
	return [4]byte(id[:4])
}

// Binding page (page 6) flags.
const flagCounted = 0x01 // the record is bound to one-way counter counterNo

// binding is page 6: flags and, on a counted chip, the value the one-way
// counter had once the encode that sealed the record had moved it.
type binding struct {
	counted bool
	counter uint32
}

func parseBinding(b []byte) (binding, error) {
	if b[0]&^flagCounted != 0 {
		return binding{}, fmt.Errorf("ultralight: reserved binding flags 0x%02x are set: %w", b[0]&^flagCounted, cardfmt.ErrCorrupt)
	}
	return binding{counted: b[0]&flagCounted != 0, counter: uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])}, nil
}

func (b binding) bytes() []byte {
	var f byte
	if b.counted {
		f = flagCounted
	}
	return []byte{f, byte(b.counter >> 16), byte(b.counter >> 8), byte(b.counter)}
}

// uidPages returns pages 0 and 1 as a 7-byte UID fills them
// (NTAG213/215/216 §8.5.1):
// UID0-2, BCC0 = CT(88h) ^ UID0 ^ UID1 ^ UID2, UID3-6.
func uidPages(uid []byte) []byte {
	if len(uid) != 7 {
		return nil
	}
	return []byte{uid[0], uid[1], uid[2], 0x88 ^ uid[0] ^ uid[1] ^ uid[2], uid[3], uid[4], uid[5], uid[6]}
}

// rolledOver reports whether the 8 bytes at b are pages 0 and 1: without
// authentication READ rolls over to page 0 at AUTH0 when PROT is set
// (READ, §10.2 of both datasheets), so a READ of pages 2-5 that answers
// pages 2, 3, 0, 1 says that protection starts at page 4: a layout 1 card.
func rolledOver(b, uid []byte) bool {
	p := uidPages(uid)
	return p != nil && len(b) >= len(p) && bytes.Equal(b[:len(p)], p)
}

// config is the dynamic lock page and CFG0/CFG1 as read.
type config struct {
	dyn, cfg0, cfg1 [4]byte
	// protected: a password is in force somewhere (AUTH0 inside the
	// memory). Only meaningful for a read made without authentication.
	protected bool
}

func (c config) auth0() int { return int(c.cfg0[3]) }

// readConfig reads the dynamic lock bytes, CFG0 and CFG1 in one READ.
func readConfig(ctx context.Context, t Tag, g geometry, uid []byte) (config, error) {
	b, err := t.ReadBinary(ctx, g.cfgRead(), readSize)
	if err != nil {
		return config{}, err
	}
	var c config
	copy(c.dyn[:], b[0:4])
	copy(c.cfg0[:], b[4:8])
	copy(c.cfg1[:], b[8:12])
	// With AUTH0 = CFG0 and PROT set, the READ rolls over after its first
	// page and the "configuration" is pages 0 and 1. AUTH0 = CFG0+1 or
	// +2 leaves CFG0 in place and says so itself.
	c.protected = c.auth0() < g.pages() || rolledOver(b[4:12], uid)
	return c, nil
}

// access says who holds a card.
type access int

const (
	accessOpen    access = iota // no password in force
	accessOurs                  // this system's password opened it; authenticated now
	accessForeign               // not a card this system can open: see holder.why
)

// holder is what inspect found out.
type holder struct {
	access access
	// legacy: a layout 1 card (accessOurs): no marker, record from page 4.
	legacy bool
	key    cardKey // accessOurs: the version whose password the card took
	// packIsCurrent: the card answered the current version's PACK
	// (accessOurs).
	packIsCurrent bool
	// low is pages 2-5 as read without a password: static lock bytes,
	// then the marker (layout 2) or the first 8 bytes of a layout 1
	// record on an open card. On a layout 1 card bytes 8-15 are pages 0-1.
	low []byte
	// cfg is the configuration (accessOpen only).
	cfg config
	// why is the verdict for accessForeign: it wraps cardfmt.ErrForeign,
	// or ErrUnknownKeyVersion for this system's card under a version
	// the key set no longer holds, or ErrCorrupt for a re-key cut short.
	why error
}

func foreign(format string, args ...any) holder {
	return holder{access: accessForeign, why: fmt.Errorf("ultralight: "+format+": %w", append(args, cardfmt.ErrForeign)...)}
}

// inspect finds out whether the card is open, this system's or another
// system's, without spending a password attempt on a card that is not
// this system's: one READ of pages 2-5 answers most cards. A card whose
// marker names this site's key set gets one PWD_AUTH, with the version
// the marker names; encode gives a card whose marker records a re-key cut
// short a second one, with the version being replaced. A layout 1 card
// (no marker, protected from page 4) gets one, with the current version.
func inspect(ctx context.Context, t Tag, g geometry, uid []byte, ks *cardfmt.KeySet, encode bool) (holder, error) {
	cur, err := currentKey(ks, uid)
	if err != nil {
		return holder{}, err
	}
	low, err := t.ReadBinary(ctx, lockPage, readSize)
	if errors.Is(err, reader.ErrRefused) {
		// Protection starts at page 2 or 3: never this system's.
		if err := t.Reset(ctx); err != nil {
			return holder{}, err
		}
		return foreign("the card's pages from 2 or 3 on are read-protected by another system"), nil
	}
	if err != nil {
		return holder{}, err
	}
	if rolledOver(low[8:16], uid) {
		h, err := open(ctx, t, uid, ks, cur, []cardKey{cur})
		if err != nil || h.access != accessOurs {
			if h.access == accessForeign && h.why == nil {
				h = foreign("a card without marker, read-protected from page 4, refused the current key version's password")
			}
			return h, err
		}
		h.legacy, h.low = true, low
		return h, nil
	}
	if m, ok := parseMarker(low[8:16]); ok {
		if m.keyID != siteID(ks) {
			return foreign("the card's marker names another site's key set"), nil
		}
		k, ok, err := deriveKey(ks, m.keyVersion, uid)
		if err != nil {
			return holder{}, err
		}
		if !ok {
			return holder{access: accessForeign, why: fmt.Errorf("ultralight: %w: the card's marker names key version %d, the key file has %v",
				cardfmt.ErrUnknownKeyVersion, m.keyVersion, ks.Versions())}, nil
		}
		try := []cardKey{k}
		if m.prev != 0 {
			if !encode {
				// No record verifies in this state; a scan spends no
				// password on it.
				return holder{access: accessForeign, why: fmt.Errorf("ultralight: a re-key from key version %d was cut short; encode the card again: %w",
					m.prev, cardfmt.ErrCorrupt)}, nil
			}
			if p, ok, err := deriveKey(ks, m.prev, uid); err != nil {
				return holder{}, err
			} else if ok {
				try = append(try, p)
			}
		}
		h, err := open(ctx, t, uid, ks, cur, try)
		if err != nil {
			return holder{}, err
		}
		if h.access == accessForeign && h.why == nil {
			// A marker on a card without a password in force (one
			// copied there): the configuration tells.
			cfg, err := readConfig(ctx, t, g, uid)
			switch {
			case err == nil && !cfg.protected:
				return holder{access: accessOpen, low: low, cfg: cfg}, nil
			case errors.Is(err, reader.ErrRefused):
				if err := t.Reset(ctx); err != nil {
					return holder{}, err
				}
			case err != nil:
				return holder{}, err
			}
			return foreign("the card refused the password of key version %d, which its marker names", m.keyVersion), nil
		}
		h.low = low
		return h, nil
	}
	cfg, err := readConfig(ctx, t, g, uid)
	if errors.Is(err, reader.ErrRefused) {
		// Read protection starts between page 6 and CFG0.
		if err := t.Reset(ctx); err != nil {
			return holder{}, err
		}
		return foreign("the card's configuration is read-protected by another system"), nil
	}
	if err != nil {
		return holder{}, err
	}
	if cfg.protected {
		return foreign("a password this system does not hold guards the card (AUTH0 %d)", cfg.auth0()), nil
	}
	return holder{access: accessOpen, low: low, cfg: cfg}, nil
}

// open runs PWD_AUTH with each of try in turn and checks the PACK the
// card answers against the versions tried and the current one.
func open(ctx context.Context, t Tag, uid []byte, ks *cardfmt.KeySet, cur cardKey, try []cardKey) (holder, error) {
	k, pack, err := authenticate(ctx, t, try)
	if err != nil {
		return holder{}, err
	}
	if k == nil {
		return holder{access: accessForeign}, nil
	}
	if !knownPACK(pack, append([]cardKey{cur}, try...)) {
		return foreign("the card took this system's password but answered a PACK this system did not write"), nil
	}
	return holder{access: accessOurs, key: *k, packIsCurrent: bytes.Equal(pack, cur.pack[:])}, nil
}

// authenticate tries each key's PWD with PWD_AUTH and returns the key the
// card took with the PACK it answered, or nil. A refused PWD_AUTH halts
// the chip (PWD_AUTH: NAK, then HALT/IDLE), so the card is reset after
// each refusal. Any answer but a 2-byte PACK is a refusal: some readers
// pass a 4-bit NAK up as one data byte.
func authenticate(ctx context.Context, t Tag, keys []cardKey) (*cardKey, []byte, error) {
	for i := range keys {
		pack, err := t.Native(ctx, append([]byte{cmdPwdAuth}, keys[i].pwd[:]...))
		if err == nil && len(pack) != 2 {
			err = fmt.Errorf("ultralight: PWD_AUTH answered %d bytes: %w", len(pack), reader.ErrRefused)
		}
		if errors.Is(err, reader.ErrRefused) {
			if err := t.Reset(ctx); err != nil {
				return nil, nil, err
			}
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		return &keys[i], pack, nil
	}
	return nil, nil, nil
}

// knownPACK reports whether pack is one of the keys' PACKs. Re-keying
// writes PWD and PACK in two pages, so a card pulled away in between
// answers the new PWD with the old PACK: it is still this system's card,
// and the next encode rewrites the PACK.
func knownPACK(pack []byte, keys []cardKey) bool {
	if len(pack) != 2 {
		return false
	}
	ok := 0
	for _, k := range keys {
		ok |= subtle.ConstantTimeCompare(pack, k.pack[:])
	}
	return ok == 1
}

// readCounter reads one-way counter counterNo (READ_CNT; the value comes
// least significant byte first, MF0ULx1 READ_CNT).
func readCounter(ctx context.Context, t Tag) (uint32, error) {
	b, err := t.Native(ctx, []byte{cmdReadCnt, counterNo})
	if err != nil {
		return 0, fmt.Errorf("ultralight: read counter: %w", err)
	}
	if len(b) != 3 {
		return 0, fmt.Errorf("ultralight: read counter: %d bytes: %w", len(b), reader.ErrRefused)
	}
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16, nil
}

// Scan reads and verifies the record. A card without a valid record is a
// successful scan with a Reason; errors are transport failures.
func Scan(ctx context.Context, t Tag, info reader.Info, ks *cardfmt.KeySet) (cardfmt.Scan, error) {
	g, ok := geometries[info.Technology]
	if !ok {
		return cardfmt.Scan{}, fmt.Errorf("ultralight: %s: %w", info.Technology, cardfmt.ErrIncompatible)
	}
	h, err := inspect(ctx, t, g, info.UID, ks, false)
	if err != nil {
		return cardfmt.Scan{}, err
	}
	switch {
	case h.access == accessForeign:
		return cardfmt.Verdict(cardfmt.Record{}, h.why)
	case h.access == accessOpen:
		// Pages 4-5 came with the first READ. An open card holds no
		// record, or one an interrupted encode left before protecting
		// the card, or one copied there: that one verifies or fails on
		// its own merits.
		if _, ok := parseMarker(h.low[8:16]); ok {
			return cardfmt.Verdict(readBound(ctx, t, g, info.UID, ks, h.low[8:16]))
		}
		rec, err := readRecord(ctx, t, g, legacyHeaderPage, h.low[8:16])
		if err != nil {
			return cardfmt.Verdict(cardfmt.Record{}, err)
		}
		return cardfmt.Verdict(cardfmt.Open(rec, ks, info.UID))
	case h.legacy:
		rec, err := readRecord(ctx, t, g, legacyHeaderPage, nil)
		if err != nil {
			return cardfmt.Verdict(cardfmt.Record{}, err)
		}
		if _, ok := parseMarker(rec); ok {
			// A conversion to layout 2 cut short before AUTH0 moved.
			return cardfmt.Verdict(cardfmt.Record{}, fmt.Errorf("ultralight: an encode was cut short: %w", cardfmt.ErrNoRecord))
		}
		return cardfmt.Verdict(cardfmt.Open(rec, ks, info.UID))
	}
	return cardfmt.Verdict(readBound(ctx, t, g, info.UID, ks, h.low[8:16]))
}

// readBound reads the binding page and the record of a layout 2 card (the
// password given) and opens the record bound to the marker, the binding
// page and, on a counted chip, the counter as it stands now.
func readBound(ctx context.Context, t Tag, g geometry, uid []byte, ks *cardfmt.KeySet, mk []byte) (cardfmt.Record, error) {
	b, err := readRecord(ctx, t, g, bindPage, nil)
	if err != nil {
		return cardfmt.Record{}, err
	}
	bind, err := parseBinding(b[:pageSize])
	if err != nil {
		return cardfmt.Record{}, err
	}
	if bind.counted != g.counted() {
		return cardfmt.Record{}, fmt.Errorf("ultralight: the binding page does not match the chip's counters: %w", cardfmt.ErrCorrupt)
	}
	rec, err := cardfmt.OpenBound(b[pageSize:], ks, uid, append(bytes.Clone(mk[:2*pageSize]), b[:pageSize]...))
	if err != nil || !bind.counted {
		return rec, err
	}
	// The MAC says the record was sealed at this counter value; the chip
	// says where its counter stands. Only INCR_CNT moves it, and only
	// forward, so an older record written back no longer matches.
	n, err := readCounter(ctx, t)
	if err != nil {
		return cardfmt.Record{}, err
	}
	if n != bind.counter {
		return cardfmt.Record{}, fmt.Errorf("%w: the card's one-way counter has moved past the record: a newer encode superseded it", cardfmt.ErrBadMAC)
	}
	return rec, nil
}

// readRecord reads from page first on: the binding page when first is
// bindPage, then the header and as many pages as it announces. have is
// what was already read from first on, a whole number of pages.
func readRecord(ctx context.Context, t Tag, g geometry, first int, have []byte) ([]byte, error) {
	skip := 0
	if first == bindPage {
		skip = pageSize
	}
	hp := first + skip/pageSize // the header page
	capacity := (g.userEnd - hp + 1) * pageSize
	out := append([]byte(nil), have...)
	next := first + len(out)/pageSize
	if len(out) < skip+cardfmt.HeaderLen {
		b, err := t.ReadBinary(ctx, next, readSize)
		if err != nil {
			return nil, err
		}
		out = append(out, b...)
		next += readSize / pageSize
	}
	if hp == legacyHeaderPage {
		if _, ok := parseMarker(out); ok {
			return out, nil
		}
	}
	h, err := cardfmt.ParseHeader(out[skip:])
	if err != nil {
		return nil, err
	}
	if h.Length > capacity {
		return nil, fmt.Errorf("ultralight: record of %d bytes overruns the %d bytes of user memory: %w", h.Length, capacity, cardfmt.ErrCorrupt)
	}
	if rest := skip + h.Length - len(out); rest > 0 {
		// The header told the length: the rest in one FAST_READ, not
		// one READ per four pages.
		b, err := t.FastRead(ctx, next, next+(rest+pageSize-1)/pageSize-1)
		if err != nil {
			return nil, err
		}
		out = append(out, b...)
	}
	return out, nil
}

// Encode writes c onto the card under the key set's current version, reads
// it back and verifies it, and returns the record the card now holds
// (format version 2, FormatVersionBound). Errors after the first write
// wrap cardfmt.ErrInterrupted; the card stays re-encodable from any state
// an interruption leaves, and never holds a valid record other than the
// old one or the new one.
func Encode(ctx context.Context, t Tag, info reader.Info, ks *cardfmt.KeySet, c cardfmt.Credential) (cardfmt.Record, error) {
	g, ok := geometries[info.Technology]
	if !ok {
		return cardfmt.Record{}, fmt.Errorf("ultralight: %s: %w", info.Technology, cardfmt.ErrIncompatible)
	}
	if err := c.Validate(); err != nil {
		return cardfmt.Record{}, fmt.Errorf("%w: %w", cardfmt.ErrInvalidCredential, err)
	}
	if n := cardfmt.SealedLen(c, len(info.UID)); n > g.capacity() {
		return cardfmt.Record{}, fmt.Errorf("ultralight: record needs %d bytes, %s holds %d: %w", n, info.Technology, g.capacity(), cardfmt.ErrIncompatible)
	}
	cur, err := currentKey(ks, info.UID)
	if err != nil {
		return cardfmt.Record{}, err
	}
	h, err := inspect(ctx, t, g, info.UID, ks, true)
	if err != nil {
		return cardfmt.Record{}, err
	}
	cfg := h.cfg
	switch h.access {
	case accessForeign:
		if errors.Is(h.why, cardfmt.ErrForeign) {
			return cardfmt.Record{}, h.why
		}
		return cardfmt.Record{}, fmt.Errorf("%w: %w", cardfmt.ErrForeign, h.why)
	case accessOurs:
		if cfg, err = readConfig(ctx, t, g, info.UID); err != nil {
			return cardfmt.Record{}, err
		}
	}
	// The counter value the record is sealed with: one above where it
	// stands, since this encode moves it (INCR_CNT) before the header.
	bind := binding{counted: g.counted()}
	if bind.counted {
		n, err := readCounter(ctx, t)
		if err != nil {
			return cardfmt.Record{}, err
		}
		if n >= maxCounter {
			return cardfmt.Record{}, fmt.Errorf("ultralight: the card's one-way counter is used up: %w", cardfmt.ErrIncompatible)
		}
		bind.counter = n + 1
	}
	mk := marker{keyVersion: cur.version, keyID: siteID(ks)}
	record, err := cardfmt.SealBound(c, ks, info.UID, append(mk.bytes(), bind.bytes()...))
	if err != nil {
		return cardfmt.Record{}, err
	}

	// padded is the marker, the binding page and the record in whole
	// pages from page 4; the tail of the last page is 0.
	padded := make([]byte, (boundLen+len(record)+pageSize-1)/pageSize*pageSize)
	copy(padded, mk.bytes())
	copy(padded[2*pageSize:], bind.bytes())
	copy(padded[boundLen:], record)
	last := markerPage + len(padded)/pageSize - 1
	if err := checkLocks(g, h.low, cfg.dyn, last); err != nil {
		return cardfmt.Record{}, err
	}
	wantCfg0, wantCfg1 := protectedConfig(cfg)
	if (wantCfg0 != cfg.cfg0 || wantCfg1 != cfg.cfg1) && cfg.cfg1[0]&accessCFGLCK != 0 {
		return cardfmt.Record{}, fmt.Errorf("ultralight: the configuration pages are locked (CFGLCK), so the card cannot be protected: %w", cardfmt.ErrIncompatible)
	}
	if g.ntag && cfg.cfg0[0]&cfg0MirrorConf != 0 {
		if p := int(cfg.cfg0[cfg0MirrorPage]); p >= markerPage && p <= last {
			return cardfmt.Record{}, fmt.Errorf("ultralight: the NTAG UID/counter mirror is on at page %d, inside the record: %w", p, cardfmt.ErrIncompatible)
		}
	}

	w := &writer{t: t, known: map[int][]byte{}}
	if !h.legacy {
		// Pages 4-5 came with the first READ: the marker needs no write
		// when it names the current version already.
		w.known[markerPage], w.known[markerPage+1] = h.low[8:12], h.low[12:16]
	}
	if h.access == accessOurs && !h.legacy {
		// Pages 6-9 as they are: on a re-encode the binding page (on
		// NTAG), the header page and often the next two need no write.
		b, err := t.ReadBinary(ctx, bindPage, readSize)
		if err != nil {
			return cardfmt.Record{}, err
		}
		for i := range readSize / pageSize {
			w.known[bindPage+i] = b[i*pageSize : (i+1)*pageSize]
		}
	}

	// 1. PWD and PACK of the current version, unless the card answers
	// them already. On an open card they are still unguarded. A re-key
	// first records the version it replaces in the marker, so that a
	// card pulled away before the marker names the new version is still
	// opened by the one or the other.
	rekey := h.access == accessOurs && (h.key.version != cur.version || !h.packIsCurrent)
	if rekey && !h.legacy && h.key.version != cur.version {
		pending := marker{keyVersion: cur.version, prev: h.key.version, keyID: mk.keyID}
		if err := w.write(ctx, markerPage, pending.bytes()[:pageSize]); err != nil {
			return cardfmt.Record{}, err
		}
	}
	if h.access == accessOpen || rekey {
		pack := []byte{cur.pack[0], cur.pack[1], 0, 0}
		if err := w.write(ctx, g.pwdPage(), cur.pwd[:]); err != nil {
			return cardfmt.Record{}, err
		}
		if err := w.write(ctx, g.packPage(), pack); err != nil {
			return cardfmt.Record{}, err
		}
	}
	// 2. An open card authenticates with the password just written, so
	// that writing and reading go on once AUTH0 protects page 6; the
	// PACK it answers proves PWD and PACK were stored.
	if h.access == accessOpen {
		k, pack, err := authenticate(ctx, t, []cardKey{cur})
		if err != nil {
			return cardfmt.Record{}, w.fail(err)
		}
		if k == nil || !bytes.Equal(pack, cur.pack[:]) {
			return cardfmt.Record{}, w.fail(errors.New("ultralight: the card refused the password just written, or answered another PACK"))
		}
	}
	// 3. The marker, the binding page and the body: with the old header
	// (or none) in page 7 they fail the MAC, so the card reads as no
	// valid record. Page 5 (the key id) goes before page 4 (the magic),
	// so a card pulled away in between never shows a marker naming
	// another site.
	order := []int{markerPage + 1, markerPage, bindPage}
	for p := headerPage + 1; p <= last; p++ {
		order = append(order, p)
	}
	for _, p := range order {
		off := (p - markerPage) * pageSize
		if err := w.write(ctx, p, padded[off:off+pageSize]); err != nil {
			return cardfmt.Record{}, err
		}
	}
	// 4. The counter moves past every record sealed before this one.
	if bind.counted {
		w.written = true
		if _, err := t.Native(ctx, []byte{cmdIncrCnt, counterNo, 1, 0, 0, 0}); err != nil {
			return cardfmt.Record{}, w.fail(fmt.Errorf("ultralight: increment counter: %w", err))
		}
	}
	// 5. ACCESS then AUTH0: PROT and AUTHLIM are set before AUTH0 turns
	// protection on, so it comes on in one write.
	cfgWritten := wantCfg1 != cfg.cfg1 || wantCfg0 != cfg.cfg0
	if wantCfg1 != cfg.cfg1 {
		if err := w.write(ctx, g.cfg1(), wantCfg1[:]); err != nil {
			return cardfmt.Record{}, err
		}
	}
	if wantCfg0 != cfg.cfg0 {
		if err := w.write(ctx, g.cfg0, wantCfg0[:]); err != nil {
			return cardfmt.Record{}, err
		}
	}
	// 6. The header last: only now can the record verify.
	off := (headerPage - markerPage) * pageSize
	if err := w.write(ctx, headerPage, padded[off:off+pageSize]); err != nil {
		return cardfmt.Record{}, err
	}
	if err := w.verify(ctx, g, padded, ks, info.UID, cfgWritten, wantCfg0, wantCfg1); err != nil {
		return cardfmt.Record{}, err
	}
	return cardfmt.SealedRecord(c, record), nil
}

// protectedConfig returns CFG0 and CFG1 with this layout's protection and
// every other bit as found: AUTH0 = 6; PROT on; CFGLCK off; AUTHLIM =
// authLim. MIRROR, modulation, NFC counter and RFU bits are kept.
func protectedConfig(c config) (cfg0, cfg1 [4]byte) {
	cfg0, cfg1 = c.cfg0, c.cfg1
	cfg0[3] = auth0
	cfg1[0] = cfg1[0]&^(accessPROT|accessCFGLCK|accessAUTHLIM) | accessPROT | authLim
	return cfg0, cfg1
}

// checkLocks refuses a card whose lock bits make a page the layout needs
// read-only: lock bits are one-time programmable, so such a card can never
// hold this record. Static lock bytes (page 2 bytes 2-3) cover pages 3-15;
// each dynamic lock bit dynGran pages from page 16 (NTAG213/215/216
// §8.5.2, §8.5.3; the MF0ULx1 lock bytes work alike).
func checkLocks(g geometry, low []byte, dyn [4]byte, last int) error {
	static := int(low[2]) | int(low[3])<<8
	word := int(dyn[0]) | int(dyn[1])<<8
	for p := markerPage; p <= last; p++ {
		var locked bool
		if p < 16 {
			locked = static>>p&1 != 0
		} else if g.dynGran > 0 {
			locked = word>>((p-16)/g.dynGran)&1 != 0
		}
		if locked {
			return fmt.Errorf("ultralight: page %d, which the record needs, is locked: %w", p, cardfmt.ErrIncompatible)
		}
	}
	return nil
}

// writer tracks whether the card has been written, which decides between
// a plain failure and an interrupted encode.
type writer struct {
	t       Tag
	known   map[int][]byte
	written bool
}

func (w *writer) fail(err error) error {
	if w.written {
		return fmt.Errorf("%w: %w", cardfmt.ErrInterrupted, err)
	}
	return err
}

func (w *writer) write(ctx context.Context, page int, data []byte) error {
	if k, ok := w.known[page]; ok && bytes.Equal(k, data) {
		return nil
	}
	// A write that never answers may still have reached the card.
	w.written = true
	delete(w.known, page)
	if err := w.t.UpdateBinary(ctx, page, data); err != nil {
		return w.fail(err)
	}
	return nil
}

// verify reads back the marker, the binding page and the record, and the
// configuration if it was written, and checks that the record opens. PWD
// and PACK read as zeros (NTAG213/215/216 §8.8.1); PWD_AUTH checked them
// on an open card. The counter took INCR_CNT with an ACK, which the chip
// gives only once the value is stored (MF0ULx1: counter increments are
// tearing-protected).
func (w *writer) verify(ctx context.Context, g geometry, padded []byte, ks *cardfmt.KeySet, uid []byte, cfgWritten bool, cfg0, cfg1 [4]byte) error {
	cardfmt.TraceVerifying(ctx)
	got, err := w.t.FastRead(ctx, markerPage, markerPage+len(padded)/pageSize-1)
	if err != nil {
		return w.fail(fmt.Errorf("ultralight: verify: %w", err))
	}
	if !bytes.Equal(got, padded) {
		return w.fail(errors.New("ultralight: the record reads back differently"))
	}
	if cfgWritten {
		b, err := w.t.FastRead(ctx, g.cfg0, g.cfg1())
		if err != nil {
			return w.fail(fmt.Errorf("ultralight: verify configuration: %w", err))
		}
		if !bytes.Equal(b[0:4], cfg0[:]) || !bytes.Equal(b[4:8], cfg1[:]) {
			return w.fail(errors.New("ultralight: the configuration reads back differently"))
		}
	}
	if _, err := cardfmt.OpenBound(got[boundLen:], ks, uid, got[:boundLen]); err != nil {
		return w.fail(fmt.Errorf("ultralight: the record read back does not verify: %w", err))
	}
	return nil
}
