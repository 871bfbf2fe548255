// Package ultralight lays the credential record (cardfmt) onto MIFARE
// Ultralight EV1 (MF0UL11, MF0UL21) and NTAG213/215/216 cards: the record
// packed into the user pages from page 4, everything from page 4 on read
// and write protected by a 32-bit password (PWD) and 16-bit acknowledge
// (PACK) diversified per card and per key version, with a limit on wrong
// password attempts. The configuration lock (CFGLCK) is never set, so a
// card stays re-encodable. docs/card-format.md gives the page map and the
// exact APDU sequences.
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
	Reset(ctx context.Context) error
}

var _ Tag = (*reader.Tag)(nil)

const (
	pageSize   = 4
	readSize   = 16 // READ answers four pages
	lockPage   = 2  // static lock bytes in bytes 2-3
	headerPage = 4  // first user page: the record starts here
	cmdPwdAuth = 0x1B
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
// (128; early NTAG21x datasheets read it as AUTHLIM, 7). Past the limit
// PWD_AUTH fails for good, even with the right password. A guess of the
// 32-bit password then succeeds with probability at most 128/2^32. Any
// successful PWD_AUTH resets the chip's count, so this system's cards only
// lose attempts to key versions tried before the right one.
const authLim = 7

// maxTries caps the key versions tried on one card in one operation well
// below the smallest limit authLim gives (7 on EV1). Wrong attempts add up
// across operations until one succeeds, so a card that no version in reach
// opens (another system's, or one keyed under a retired version) loses at
// most 4 attempts per scan, never its password in one go. Cards keyed
// under the 4 newest versions open.
const maxTries = 4

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

// deriveKeys returns the PWD and PACK of every key version, in
// cardfmt.KeySet.TryOrder (current first, then newest first), at most
// maxTries of them. PWD is bytes 0-3 and PACK bytes 4-5 of the card key.
func deriveKeys(ks *cardfmt.KeySet, uid []byte) ([]cardKey, error) {
	if ks == nil {
		return nil, errors.New("ultralight: nil key set")
	}
	var out []cardKey
	for _, k := range ks.TryOrder() {
		if len(out) == maxTries {
			break
		}
		full, err := k.CardKey(cardfmt.PurposeUltralightPWD, uid)
		if err != nil {
			return nil, err
		}
		ck := cardKey{version: k.Version}
		copy(ck.pwd[:], full[0:4])
		copy(ck.pack[:], full[4:6])
		clear(full[:])
		out = append(out, ck)
	}
	if len(out) == 0 {
		return nil, errors.New("ultralight: key set has no keys")
	}
	return out, nil
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
// pages 2, 3, 0, 1 says that protection starts at page 4.
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
	accessOurs                  // a key version's password opened it; authenticated now
	accessForeign               // another system's password guards it
)

// holder is what inspect found out.
type holder struct {
	access access
	key    cardKey // accessOurs: the version whose password the card took
	// packIsCurrent: the card answered the current version's PACK
	// (accessOurs).
	packIsCurrent bool
	// low is pages 2-5 (static lock bytes, then the first 8 record bytes)
	// and cfg the configuration, both read without a password
	// (accessOpen only).
	low    []byte
	cfg    config
	detail string // accessForeign: why, for operators
}

// inspect finds out whether the card is open, this system's or another
// system's. The current version's password goes first: a card this system
// issued under it costs one PWD_AUTH and no chip reset. Older versions
// are tried only on a card whose pages turn out to be protected.
func inspect(ctx context.Context, t Tag, g geometry, uid []byte, keys []cardKey) (holder, error) {
	if h, ok, err := tryKeys(ctx, t, g, uid, keys, keys[:1]); ok || err != nil {
		return h, err
	}
	low, err := t.ReadBinary(ctx, lockPage, readSize)
	rolled := err == nil && rolledOver(low[8:16], uid)
	switch {
	case err == nil && !rolled:
		cfg, err := readConfig(ctx, t, g, uid)
		if err == nil {
			if cfg.protected {
				return holder{access: accessForeign, detail: "a password this system does not hold guards the card's configuration"}, nil
			}
			return holder{access: accessOpen, low: low, cfg: cfg}, nil
		}
		if !errors.Is(err, reader.ErrRefused) {
			return holder{}, err
		}
		// Read protection starts between page 6 and CFG0; the refusal
		// halted the chip.
		if err := t.Reset(ctx); err != nil {
			return holder{}, err
		}
	case err == nil:
		// Protection starts at page 4, as this system sets it.
	case errors.Is(err, reader.ErrRefused):
		// Protection starts at page 2 or 3.
		if err := t.Reset(ctx); err != nil {
			return holder{}, err
		}
	default:
		return holder{}, err
	}
	if h, ok, err := tryKeys(ctx, t, g, uid, keys, keys[1:]); ok || err != nil {
		return h, err
	}
	if rolled {
		// Pages 4-5 of an open card may hold the bytes of pages 0-1;
		// the configuration tells.
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
	}
	return holder{access: accessForeign, detail: "no key version's password opens the card"}, nil
}

// tryKeys runs PWD_AUTH with each of try and reports whether that settled
// who holds the card; keys are all the versions, for the PACK check.
func tryKeys(ctx context.Context, t Tag, g geometry, uid []byte, keys, try []cardKey) (holder, bool, error) {
	k, pack, err := authenticate(ctx, t, try)
	if err != nil || k == nil {
		return holder{}, false, err
	}
	if knownPACK(pack, keys) {
		return holder{access: accessOurs, key: *k, packIsCurrent: bytes.Equal(pack, keys[0].pack[:])}, true, nil
	}
	// The card took this system's password with a PACK no key version
	// gives. With no password in force that is a blank card pulled away
	// between the PWD and PACK writes: open. Otherwise it is not a card
	// this system keyed: a clone or an emulator.
	cfg, err := readConfig(ctx, t, g, uid)
	if err != nil {
		return holder{}, false, err
	}
	if cfg.auth0() < g.pages() {
		return holder{access: accessForeign, detail: "the card took this system's password but answered a PACK this system did not write"}, true, nil
	}
	low, err := t.ReadBinary(ctx, lockPage, readSize)
	if err != nil {
		return holder{}, false, err
	}
	// Leave the chip as on any open card: active, not authenticated, so
	// that the encode's own PWD_AUTH comes from the state the datasheets
	// accept it in.
	if err := t.Reset(ctx); err != nil {
		return holder{}, false, err
	}
	cfg.protected = false
	return holder{access: accessOpen, low: low, cfg: cfg}, true, nil
}

// authenticate tries each key's PWD with PWD_AUTH and returns the key the
// card took with the PACK it answered, or nil. A refused PWD_AUTH halts
// the chip (PWD_AUTH: NAK, then HALT/IDLE), so the card is reset after
// each refusal.
func authenticate(ctx context.Context, t Tag, keys []cardKey) (*cardKey, []byte, error) {
	for i := range keys {
		pack, err := t.Native(ctx, append([]byte{cmdPwdAuth}, keys[i].pwd[:]...))
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

// Scan reads and verifies the record. A card without a valid record is a
// successful scan with a Reason; errors are transport failures.
func Scan(ctx context.Context, t Tag, info reader.Info, ks *cardfmt.KeySet) (cardfmt.Scan, error) {
	g, ok := geometries[info.Technology]
	if !ok {
		return cardfmt.Scan{}, fmt.Errorf("ultralight: %s: %w", info.Technology, cardfmt.ErrIncompatible)
	}
	keys, err := deriveKeys(ks, info.UID)
	if err != nil {
		return cardfmt.Scan{}, err
	}
	h, err := inspect(ctx, t, g, info.UID, keys)
	if err != nil {
		return cardfmt.Scan{}, err
	}
	var rec []byte
	switch h.access {
	case accessForeign:
		return cardfmt.Verdict(cardfmt.Record{}, fmt.Errorf("ultralight: %s: %w", h.detail, cardfmt.ErrForeign))
	case accessOpen:
		// Pages 4-5 came with the first READ. An open card holds no
		// record, or one an interrupted encode left before protecting
		// the card: that one verifies or fails on its own merits.
		rec, err = readRecord(ctx, t, g, h.low[8:16])
	default:
		rec, err = readRecord(ctx, t, g, nil)
	}
	if err != nil {
		return cardfmt.Verdict(cardfmt.Record{}, err)
	}
	return cardfmt.Verdict(cardfmt.Open(rec, ks, info.UID))
}

// readRecord reads the header and as many pages as it announces. have is
// what was already read from page 4 on, a whole number of pages.
func readRecord(ctx context.Context, t Tag, g geometry, have []byte) ([]byte, error) {
	out := append([]byte(nil), have...)
	next := headerPage + len(out)/pageSize
	if len(out) < cardfmt.HeaderLen {
		b, err := t.ReadBinary(ctx, next, readSize)
		if err != nil {
			return nil, err
		}
		out = append(out, b...)
		next += readSize / pageSize
	}
	h, err := cardfmt.ParseHeader(out)
	if err != nil {
		return nil, err
	}
	if h.Length > g.capacity() {
		return nil, fmt.Errorf("ultralight: record of %d bytes overruns the %d bytes of user memory: %w", h.Length, g.capacity(), cardfmt.ErrCorrupt)
	}
	for len(out) < h.Length {
		b, err := t.ReadBinary(ctx, next, readSize)
		if err != nil {
			return nil, err
		}
		out = append(out, b...)
		next += readSize / pageSize
	}
	return out, nil
}

// Encode writes c onto the card under the key set's current version, reads
// it back and verifies it. Errors after the first write wrap
// cardfmt.ErrInterrupted; the card stays re-encodable from any state an
// interruption leaves, and never holds a valid record other than the old
// one or the new one.
func Encode(ctx context.Context, t Tag, info reader.Info, ks *cardfmt.KeySet, c cardfmt.Credential) error {
	g, ok := geometries[info.Technology]
	if !ok {
		return fmt.Errorf("ultralight: %s: %w", info.Technology, cardfmt.ErrIncompatible)
	}
	record, err := cardfmt.Seal(c, ks, info.UID)
	if err != nil {
		return err
	}
	if len(record) > g.capacity() {
		return fmt.Errorf("ultralight: record needs %d bytes, %s holds %d: %w", len(record), info.Technology, g.capacity(), cardfmt.ErrIncompatible)
	}
	keys, err := deriveKeys(ks, info.UID)
	if err != nil {
		return err
	}
	cur := keys[0]
	if ck := ks.Current(); ck == nil || ck.Version != cur.version {
		return errors.New("ultralight: key set has no current version")
	}
	h, err := inspect(ctx, t, g, info.UID, keys)
	if err != nil {
		return err
	}
	cfg := h.cfg
	switch h.access {
	case accessForeign:
		return fmt.Errorf("ultralight: %s: %w", h.detail, cardfmt.ErrForeign)
	case accessOurs:
		// Authenticated now: pages 2-5 and the configuration read as
		// they are.
		if h.low, err = t.ReadBinary(ctx, lockPage, readSize); err != nil {
			return err
		}
		if cfg, err = readConfig(ctx, t, g, info.UID); err != nil {
			return err
		}
	}

	// padded is the record in whole pages; the tail of the last page is 0.
	padded := make([]byte, (len(record)+pageSize-1)/pageSize*pageSize)
	copy(padded, record)
	last := headerPage + len(padded)/pageSize - 1
	if err := checkLocks(g, h.low, cfg.dyn, last); err != nil {
		return err
	}
	wantCfg0, wantCfg1 := protectedConfig(cfg)
	if (wantCfg0 != cfg.cfg0 || wantCfg1 != cfg.cfg1) && cfg.cfg1[0]&accessCFGLCK != 0 {
		return fmt.Errorf("ultralight: the configuration pages are locked (CFGLCK), so the card cannot be protected: %w", cardfmt.ErrIncompatible)
	}
	if g.ntag && cfg.cfg0[0]&cfg0MirrorConf != 0 {
		if p := int(cfg.cfg0[cfg0MirrorPage]); p >= headerPage && p <= last {
			return fmt.Errorf("ultralight: the NTAG UID/counter mirror is on at page %d, inside the record: %w", p, cardfmt.ErrIncompatible)
		}
	}

	// Pages 4-5 came with the READ of the lock bytes: the header pages
	// need no write when they hold the new header already (same length,
	// function and key version), which a re-encode often finds.
	w := &writer{t: t, known: map[int][]byte{headerPage: h.low[8:12], headerPage + 1: h.low[12:16]}}

	// 1. PWD and PACK of the current version, unless the card answers
	// them already. On an open card they are still unguarded.
	if h.access == accessOpen || h.key.version != cur.version || !h.packIsCurrent {
		pack := []byte{cur.pack[0], cur.pack[1], 0, 0}
		if err := w.write(ctx, g.pwdPage(), cur.pwd[:]); err != nil {
			return err
		}
		if err := w.write(ctx, g.packPage(), pack); err != nil {
			return err
		}
	}
	// 2. An open card authenticates with the password just written, so
	// that writing and reading go on once AUTH0 protects page 4; the
	// PACK it answers proves PWD and PACK were stored.
	if h.access == accessOpen {
		k, pack, err := authenticate(ctx, t, keys[:1])
		if err != nil {
			return w.fail(err)
		}
		if k == nil || !bytes.Equal(pack, cur.pack[:]) {
			return w.fail(errors.New("ultralight: the card refused the password just written, or answered another PACK"))
		}
	}
	// 3. The body, pages 5 onwards: with the old header (or none) in page
	// 4 it fails the MAC, so the card reads as no valid record.
	for p := headerPage + 1; p <= last; p++ {
		off := (p - headerPage) * pageSize
		if err := w.write(ctx, p, padded[off:off+pageSize]); err != nil {
			return err
		}
	}
	// 4. ACCESS then AUTH0: PROT and AUTHLIM are set before AUTH0 turns
	// protection on, so it comes on in one write.
	cfgWritten := wantCfg1 != cfg.cfg1 || wantCfg0 != cfg.cfg0
	if wantCfg1 != cfg.cfg1 {
		if err := w.write(ctx, g.cfg1(), wantCfg1[:]); err != nil {
			return err
		}
	}
	if wantCfg0 != cfg.cfg0 {
		if err := w.write(ctx, g.cfg0, wantCfg0[:]); err != nil {
			return err
		}
	}
	// 5. The header last: only now can the record verify.
	if err := w.write(ctx, headerPage, padded[:pageSize]); err != nil {
		return err
	}
	return w.verify(ctx, g, padded, ks, info.UID, cfgWritten, wantCfg0, wantCfg1)
}

// protectedConfig returns CFG0 and CFG1 with this layout's protection and
// every other bit as found: AUTH0 = 4; PROT on; CFGLCK off; AUTHLIM =
// authLim. MIRROR, modulation, NFC counter and RFU bits are kept.
func protectedConfig(c config) (cfg0, cfg1 [4]byte) {
	cfg0, cfg1 = c.cfg0, c.cfg1
	cfg0[3] = headerPage
	cfg1[0] = cfg1[0]&^(accessPROT|accessCFGLCK|accessAUTHLIM) | accessPROT | authLim
	return cfg0, cfg1
}

// checkLocks refuses a card whose lock bits make a record page read-only:
// lock bits are one-time programmable, so such a card can never hold this
// record. Static lock bytes (page 2 bytes 2-3) cover pages 3-15; each
// dynamic lock bit dynGran pages from page 16 (NTAG213/215/216 §8.5.2,
// §8.5.3; the MF0ULx1 lock bytes work alike).
func checkLocks(g geometry, low []byte, dyn [4]byte, last int) error {
	static := int(low[2]) | int(low[3])<<8
	word := int(dyn[0]) | int(dyn[1])<<8
	for p := headerPage; p <= last; p++ {
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
	if err := w.t.UpdateBinary(ctx, page, data); err != nil {
		return w.fail(err)
	}
	return nil
}

// verify reads back the record pages, and the configuration if it was
// written, and checks that the record opens. PWD and PACK read as zeros
// (NTAG213/215/216 §8.8.1); PWD_AUTH checked them on an open card.
func (w *writer) verify(ctx context.Context, g geometry, padded []byte, ks *cardfmt.KeySet, uid []byte, cfgWritten bool, cfg0, cfg1 [4]byte) error {
	cardfmt.TraceVerifying(ctx)
	var got []byte
	for p := headerPage; len(got) < len(padded); p += readSize / pageSize {
		b, err := w.t.ReadBinary(ctx, p, readSize)
		if err != nil {
			return w.fail(fmt.Errorf("ultralight: verify: %w", err))
		}
		got = append(got, b...)
	}
	if !bytes.Equal(got[:len(padded)], padded) {
		return w.fail(errors.New("ultralight: the record reads back differently"))
	}
	if cfgWritten {
		b, err := w.t.ReadBinary(ctx, g.cfg0, readSize)
		if err != nil {
			return w.fail(fmt.Errorf("ultralight: verify configuration: %w", err))
		}
		if !bytes.Equal(b[0:4], cfg0[:]) || !bytes.Equal(b[4:8], cfg1[:]) {
			return w.fail(errors.New("ultralight: the configuration reads back differently"))
		}
	}
	if _, err := cardfmt.Open(got, ks, uid); err != nil {
		return w.fail(fmt.Errorf("ultralight: the record read back does not verify: %w", err))
	}
	return nil
}
