// Package ultralight lays the credential record (cardfmt) onto MIFARE
// Ultralight EV1 and NTAG213/215/216 cards: the record in the user pages
// from page 4, read and write protected from page 4 on by a 32-bit
// password and 16-bit PACK diversified per card, with a limit on wrong
// password attempts. docs/card-format.md gives the page map and the exact
// command sequences.
//
// It talks to the card through the small Tag interface; it must not import
// bridge or reader/pcsc.
package ultralight

import (
	"bytes"
	"context"
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
	pageSize  = 4
	readSize  = 16 // READ returns four pages
	firstPage = 4  // header page; the record runs on from here
	bodyPage  = firstPage + 1
)

// chipMap is where a chip keeps its user memory and configuration
// (NXP MF0ULX1 §8.5, NTAG213/215/216 §8.5).
type chipMap struct {
	lastUser int // last user page
	dynLock  int // dynamic lock page, 0 if none
	cfg0     int // CFG0 (AUTH0 in byte 3); CFG1, PWD, PACK follow
	ntag     bool
}

var chips = map[reader.Technology]chipMap{
	reader.TechUL11:    {lastUser: 0x0F, cfg0: 0x10},
	reader.TechUL21:    {lastUser: 0x23, dynLock: 0x24, cfg0: 0x25},
	reader.TechNTAG213: {lastUser: 0x27, dynLock: 0x28, cfg0: 0x29, ntag: true},
	reader.TechNTAG215: {lastUser: 0x81, dynLock: 0x82, cfg0: 0x83, ntag: true},
	reader.TechNTAG216: {lastUser: 0xE1, dynLock: 0xE2, cfg0: 0xE3, ntag: true},
}

func (m chipMap) cfg1() int { return m.cfg0 + 1 }
func (m chipMap) pwd() int  { return m.cfg0 + 2 }
func (m chipMap) pack() int { return m.cfg0 + 3 }

// Supports reports whether t is a chip this layout handles.
func Supports(t reader.Technology) bool { _, ok := chips[t]; return ok }

// Capacity is how many record bytes t holds.
func Capacity(t reader.Technology) int {
	m, ok := chips[t]
	if !ok {
		return 0
	}
	return (m.lastUser - firstPage + 1) * pageSize
}

// ACCESS byte (CFG1 byte 0) bits.
const (
	accessPROT   = 0x80 // password protects reads too, not only writes
	accessCFGLCK = 0x40 // configuration pages locked for good
	accessLimit  = 0x07 // AUTHLIM
)

// authLimit caps wrong PWD_AUTH attempts before the chip disables its
// password for good: 2^5 = 32 on NTAG21x, 5 on Ultralight EV1 (which
// counts AUTHLIM itself). Either defeats a search of the 32-bit password.
// A scan spends at most maxTries-1 of them on this system's own cards, and
// any success resets the chip's counter.
const authLimit = 5

// maxTries bounds how many key versions a scan tries, so this system never
// uses up an Ultralight EV1's attempt limit on its own card.
const maxTries = 4

// cardKey is one key version's password and PACK for one card.
type cardKey struct {
	version uint8
	pwd     []byte
	pack    []byte
}

func cardKeys(ks *cardfmt.KeySet, uid []byte) ([]cardKey, error) {
	var out []cardKey
	for _, k := range ks.TryOrder() {
		if len(out) == maxTries {
			break
		}
		full, err := k.CardKey(cardfmt.PurposeUltralightPWD, uid)
		if err != nil {
			return nil, err
		}
		out = append(out, cardKey{version: k.Version, pwd: full[:4], pack: full[4:6]})
	}
	if len(out) == 0 {
		return nil, errors.New("ultralight: key set has no keys")
	}
	return out, nil
}

// state is what authenticating told about the card.
type state struct {
	key          *cardKey // the version whose password the card took; nil: none did
	packMismatch bool     // it took the password but answered another PACK
}

// authenticate tries each version's password, newest first. A chip halts
// after a refused password, so it is reset before the next try.
func authenticate(ctx context.Context, t Tag, keys []cardKey) (state, error) {
	for i := range keys {
		k := &keys[i]
		pack, err := t.Native(ctx, append([]byte{0x1B}, k.pwd...))
		if errors.Is(err, reader.ErrRefused) {
			if err := t.Reset(ctx); err != nil {
				return state{}, err
			}
			continue
		}
		if err != nil {
			return state{}, err
		}
		return state{key: k, packMismatch: !bytes.Equal(pack, k.pack)}, nil
	}
	return state{}, nil
}

// readRecord reads the header page and as many pages as it says.
func readRecord(ctx context.Context, t Tag, m chipMap) ([]byte, error) {
	out, err := t.ReadBinary(ctx, firstPage, readSize)
	if err != nil {
		return nil, err
	}
	h, err := cardfmt.ParseHeader(out)
	if err != nil {
		return nil, err
	}
	if h.Length > (m.lastUser-firstPage+1)*pageSize {
		return nil, fmt.Errorf("ultralight: record of %d bytes overruns the user memory: %w", h.Length, cardfmt.ErrCorrupt)
	}
	for page := firstPage + readSize/pageSize; len(out) < h.Length; page += readSize / pageSize {
		b, err := t.ReadBinary(ctx, page, readSize)
		if err != nil {
			return nil, err
		}
		out = append(out, b...)
	}
	return out, nil
}

// Scan reads and verifies the record. A card without a valid record is a
// successful scan with a Reason; errors are transport failures.
func Scan(ctx context.Context, t Tag, info reader.Info, ks *cardfmt.KeySet) (cardfmt.Scan, error) {
	m, ok := chips[info.Technology]
	if !ok {
		return cardfmt.Scan{}, fmt.Errorf("ultralight: %s: %w", info.Technology, cardfmt.ErrIncompatible)
	}
	keys, err := cardKeys(ks, info.UID)
	if err != nil {
		return cardfmt.Scan{}, err
	}
	st, err := authenticate(ctx, t, keys)
	if err != nil {
		return cardfmt.Scan{}, err
	}
	rec, err := readRecord(ctx, t, m)
	switch {
	case errors.Is(err, reader.ErrRefused) && st.key == nil:
		// Protected, and by no password of this system's.
		return cardfmt.Verdict(cardfmt.Record{}, fmt.Errorf("ultralight: pages protected by another system's password: %w", cardfmt.ErrForeign))
	case err != nil && cardfmt.ReasonFor(err) == cardfmt.ReasonNone:
		return cardfmt.Scan{}, err
	case err != nil:
		return cardfmt.Verdict(cardfmt.Record{}, err)
	}
	scan, err := cardfmt.Verdict(cardfmt.Open(rec, ks, info.UID))
	if err != nil || !scan.Valid() {
		return scan, err
	}
	if st.key == nil || st.packMismatch {
		// A lock checks the PACK before it reads: a card that does not
		// answer this card's PACK, or is not protected at all, fails there.
		return cardfmt.Scan{Reason: cardfmt.ReasonCorrupt, Detail: "record verifies but the card's password protection is incomplete (interrupted encode or a copy)"}, nil
	}
	return scan, nil
}

// Encode writes c onto the card under the key set's current version, reads
// it back and verifies it. Errors after the first write wrap
// cardfmt.ErrInterrupted; the card stays re-encodable from any state an
// interruption leaves.
func Encode(ctx context.Context, t Tag, info reader.Info, ks *cardfmt.KeySet, c cardfmt.Credential) error {
	m, ok := chips[info.Technology]
	if !ok {
		return fmt.Errorf("ultralight: %s: %w", info.Technology, cardfmt.ErrIncompatible)
	}
	record, err := cardfmt.Seal(c, ks, info.UID)
	if err != nil {
		return err
	}
	if capacity := Capacity(info.Technology); len(record) > capacity {
		return fmt.Errorf("ultralight: record needs %d bytes, %s holds %d: %w", len(record), info.Technology, capacity, cardfmt.ErrIncompatible)
	}
	keys, err := cardKeys(ks, info.UID)
	if err != nil {
		return err
	}
	cur := keys[0] // TryOrder puts the current version first
	st, err := authenticate(ctx, t, keys)
	if err != nil {
		return err
	}
	cfg, err := t.ReadBinary(ctx, m.cfg0, readSize)
	if errors.Is(err, reader.ErrRefused) {
		return fmt.Errorf("ultralight: configuration protected by another system's password: %w", cardfmt.ErrForeign)
	}
	if err != nil {
		return err
	}
	if st.key == nil {
		if err := checkWritable(ctx, t, m); err != nil {
			return err
		}
	}
	cfg0, cfg1 := cfg[0:4], cfg[4:8]
	if cfg1[0]&accessCFGLCK != 0 {
		return fmt.Errorf("ultralight: configuration pages are locked: %w", cardfmt.ErrIncompatible)
	}
	if st.key == nil && cfg0[3] <= byte(m.pack()) {
		// Writes are protected (AUTH0 within the memory) by a password
		// none of this system's versions matches.
		return fmt.Errorf("ultralight: pages write-protected by another system's password: %w", cardfmt.ErrForeign)
	}

	w := &writer{t: t}
	rekey := st.key == nil || st.key.version != cur.version || st.packMismatch
	if rekey {
		if err := w.write(ctx, m.pwd(), cur.pwd); err != nil {
			return err
		}
		if err := w.write(ctx, m.pack(), append(append([]byte{}, cur.pack...), 0, 0)); err != nil {
			return err
		}
		if st.key == nil {
			// Authenticate now, so writing goes on once protection is on.
			pack, err := t.Native(ctx, append([]byte{0x1B}, cur.pwd...))
			if err != nil {
				return w.fail(fmt.Errorf("ultralight: the new password was refused: %w", err))
			}
			if !bytes.Equal(pack, cur.pack) {
				return w.fail(errors.New("ultralight: the card answers another PACK than was written"))
			}
		}
	}
	padded := make([]byte, (len(record)+pageSize-1)/pageSize*pageSize)
	copy(padded, record)
	for p := 1; p*pageSize < len(padded); p++ {
		if err := w.write(ctx, firstPage+p, padded[p*pageSize:(p+1)*pageSize]); err != nil {
			return err
		}
	}
	wantCfg1 := append([]byte{cfg1[0]&^(accessCFGLCK|accessLimit) | accessPROT | authLimit}, cfg1[1:]...)
	wantCfg0 := append(append([]byte{}, cfg0[:3]...), firstPage)
	cfgWritten := !bytes.Equal(cfg1, wantCfg1) || !bytes.Equal(cfg0, wantCfg0)
	if cfgWritten {
		if err := w.write(ctx, m.cfg1(), wantCfg1); err != nil {
			return err
		}
		if err := w.write(ctx, m.cfg0, wantCfg0); err != nil {
			return err
		}
	}
	// The header last: until it is written the old header (or none) and
	// the new body fail the MAC together.
	if err := w.write(ctx, firstPage, padded[:pageSize]); err != nil {
		return err
	}
	return w.verify(ctx, m, record, padded, ks, info.UID, cfgWritten, wantCfg0, wantCfg1)
}

// checkWritable refuses a card whose record pages are locked: lock bits are
// one-time programmable, so such a card can never hold a record.
func checkWritable(ctx context.Context, t Tag, m chipMap) error {
	head, err := t.ReadBinary(ctx, 0, readSize)
	if err != nil {
		return err
	}
	// Page 2 bytes 2-3: static lock bits L4..L7 (byte 2 bits 4-7) and
	// L8..L15 (byte 3) cover pages 4..15 (MF0ULX1 §8.5.2).
	if head[10]&0xF0 != 0 || head[11] != 0 {
		return fmt.Errorf("ultralight: user pages are locked (static lock bits): %w", cardfmt.ErrIncompatible)
	}
	if m.dynLock == 0 {
		return nil
	}
	dyn, err := t.ReadBinary(ctx, m.dynLock, pageSize)
	if err != nil {
		return err
	}
	if dyn[0]|dyn[1]|dyn[2] != 0 {
		return fmt.Errorf("ultralight: user pages are locked (dynamic lock bits): %w", cardfmt.ErrIncompatible)
	}
	return nil
}

// writer tracks whether the card has been written, which decides between
// a plain failure and an interrupted encode.
type writer struct {
	t       Tag
	written bool
}

func (w *writer) fail(err error) error {
	if w.written {
		return fmt.Errorf("%w: %w", cardfmt.ErrInterrupted, err)
	}
	return err
}

func (w *writer) write(ctx context.Context, page int, data []byte) error {
	w.written = true
	if err := w.t.UpdateBinary(ctx, page, data); err != nil {
		return w.fail(err)
	}
	return nil
}

// verify reads back the record pages (and the configuration, if it was
// written) and checks the record opens.
func (w *writer) verify(ctx context.Context, m chipMap, record, padded []byte, ks *cardfmt.KeySet, uid []byte, cfgWritten bool, cfg0, cfg1 []byte) error {
	var got []byte
	for page := firstPage; len(got) < len(padded); page += readSize / pageSize {
		b, err := w.t.ReadBinary(ctx, page, readSize)
		if err != nil {
			return w.fail(fmt.Errorf("ultralight: verify: %w", err))
		}
		got = append(got, b...)
	}
	if !bytes.Equal(got[:len(padded)], padded) {
		return w.fail(errors.New("ultralight: the record reads back differently"))
	}
	if cfgWritten {
		b, err := w.t.ReadBinary(ctx, m.cfg0, readSize)
		if err != nil {
			return w.fail(fmt.Errorf("ultralight: verify configuration: %w", err))
		}
		if !bytes.Equal(b[0:4], cfg0) || !bytes.Equal(b[4:8], cfg1) {
			return w.fail(errors.New("ultralight: the configuration reads back differently"))
		}
	}
	if _, err := cardfmt.Open(got, ks, uid); err != nil {
		return w.fail(fmt.Errorf("ultralight: read-back record does not verify: %w", err))
	}
	return nil
}
