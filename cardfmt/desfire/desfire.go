// Package desfire lays the credential record (cardfmt, format version 1)
// onto MIFARE DESFire EV2 and EV3 cards: one application (AID F51E80)
// with four AES-128 keys diversified per card with AN10922 (key 0
// application master, key 1 read for locks, key 2 write for encoders,
// key 3 site-wide to read a random-UID card's real UID) and one backup
// data file (file 1) read and written in CommMode.Full with EV2 secure
// messaging. A write lands in a transaction the card commits at once or
// not at all, so a card pulled away holds the old record or the new one.
// The PICC master key and other applications are never touched and the
// card is never formatted. docs/card-format.md gives the layout byte by
// byte and the APDU sequences.
//
// It talks to the card through the small Tag interface; it must not import
// bridge or reader/pcsc.
package desfire

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/encoder-bridge/encoder-bridge/cardfmt"
	"github.com/encoder-bridge/encoder-bridge/internal/ev2"
	"github.com/encoder-bridge/encoder-bridge/reader"
)

// Tag is what the layout needs from a card connection; *reader.Tag
// implements it.
type Tag interface {
	Wrapped(ctx context.Context, ins byte, data []byte) ([]byte, byte, error)
}

var _ Tag = (*reader.Tag)(nil)

// AID is the application identifier, 0xF51E80, as sent (least
// significant byte first): NXP AN10787's form for a DESFire application
// of a MIFARE Classic MAD application, F || MAD AID || a free nibble, with
// the MAD AID 0x51E8 (function cluster 0x51, access control and
// security) the Classic layout's directory claims, and nibble 0.
var AID = current.aid

// appID names one application of the layout: its AID and its ISO/IEC
// 7816-4 file identifier and DF name prefix (the site's key id follows).
// Both ISO names must be unique on a card, so the two generations differ.
type appID struct {
	aid [3]byte
	fid [2]byte
	tag []byte
}

var (
	// current is the application encodes write.
	current = appID{aid: [3]byte{0x80, 0x1E, 0xF5}, fid: [2]byte{0xE8, 0x51}, tag: []byte{0xF0, 'E', 'B', 0x02}}
	// legacy is the first generation's private AID 0x5EB001, outside
	// the MAD scheme: still read, and moved to current by an encode.
	legacy = appID{aid: [3]byte{0x01, 0xB0, 0x5E}, fid: [2]byte{0x01, 0xEB}, tag: []byte{0xF0, 'E', 'B', 0x01}}
)

// The application and its file (docs/card-format.md).
const (
	keyMaster = 0 // application master key: creates files, changes keys
	keyRead   = 1 // read key: the locks'
	keyWrite  = 2 // write key: the encoders'; also reads, to verify
	keyUID    = 3 // site-wide: only authenticates, to read the real UID
	numKeys   = 4

	// appKeySettings (KeySett1): keys changed with the master key (bits
	// 7-4 = 0), configuration changeable, file creation with the master
	// key only, free application directory listing, master key
	// changeable.
	appKeySettings = 0x0B
	// appKeyType (KeySett2 bits 7-6): AES; bit 5: the application and its
	// files have ISO/IEC 7816-4 file identifiers and a DF name.
	appKeyType = 0x80
	appISO     = 0x20

	fileNo = 0x01
	// fileSize holds the longest record (cardfmt.MaxRecordLen) in whole
	// 32-byte blocks, the card's allocation unit.
	fileSize = (cardfmt.MaxRecordLen + 31) / 32 * 32
	// fileOption: CommMode.Full.
	fileOption = 0x03
	// Access rights as sent: (RW << 4 | Change), (Read << 4 | Write).
	fileAccessRWChange  = keyWrite<<4 | keyMaster
	fileAccessReadWrite = keyRead<<4 | keyWrite
	fileTypeBackup      = 0x01

	// firstRead is the first ReadData's length: its encrypted answer
	// (48 bytes and the 8-byte MACt) fits one 59-byte frame and holds the
	// record header.
	firstRead = 47
	// maxWrite bounds one WriteData to 238 bytes of data (7 header bytes,
	// 224 encrypted, an 8-byte MACt), within one short APDU's Lc.
	maxWrite = 223
)

// String is the AID as datasheets write it, most significant byte first.
func (a appID) String() string { return fmt.Sprintf("%02X%02X%02X", a.aid[2], a.aid[1], a.aid[0]) }

// fileFID is file 1's ISO/IEC 7816-4 file identifier, sent least
// significant byte first.
var fileFID = [2]byte{0x02, 0xEB}

// dfName is the application's DF name: a proprietary (ISO/IEC 7816-5
// category F) identifier followed by the site's key id, so a card tells
// which site created its application.
func (a appID) dfName(ks *cardfmt.KeySet) []byte {
	id := ks.ID()
	return append(bytes.Clone(a.tag), id[:]...)
}

// randomUID reports an anticollision UID a random-ID card made up
// (ISO/IEC 14443-3: a single-size UID starting with 08).
func randomUID(uid []byte) bool { return len(uid) == 4 && uid[0] == 0x08 }

// siteWideInput stands for the UID in key 3's diversification input: key
// 3 must be derivable before the card's UID is known.
var siteWideInput = make([]byte, 7)

// cardKeys are a card's four application keys under one site key version.
type cardKeys struct {
	version uint8
	k       [numKeys][16]byte
}

func keysFor(sk *cardfmt.SiteKey, uid []byte) (cardKeys, error) {
	ck := cardKeys{version: sk.Version}
	var err error
	for i, p := range []byte{cardfmt.PurposeDESFireMaster, cardfmt.PurposeDESFireRead, cardfmt.PurposeDESFireWrite} {
		if ck.k[i], err = sk.CardKey(p, uid); err != nil {
			return cardKeys{}, err
		}
	}
	if ck.k[keyUID], err = sk.CardKey(cardfmt.PurposeDESFireUID, siteWideInput); err != nil {
		return cardKeys{}, err
	}
	return ck, nil
}

func siteUIDKey(sk *cardfmt.SiteKey) ([16]byte, error) {
	return sk.CardKey(cardfmt.PurposeDESFireUID, siteWideInput)
}

// keyOf returns key k of version v: version 0 is the all-zero key a new
// application starts with.
func keyOf(ks *cardfmt.KeySet, k int, v uint8, uid []byte) ([16]byte, error) {
	if v == 0 {
		return [16]byte{}, nil
	}
	sk, ok := ks.Version(v)
	if !ok {
		return [16]byte{}, fmt.Errorf("%w: the application's key %d is of key version %d, not in the key file",
			cardfmt.ErrForeign, k, v)
	}
	if k == keyUID {
		return siteUIDKey(sk)
	}
	ck, err := keysFor(sk, uid)
	return ck.k[k], err
}

func selectApp(ctx context.Context, c *conn, a appID) (found bool, err error) {
	c.s = nil
	_, err = c.plain(ctx, "SelectApplication", insSelectApplication, a.aid[:])
	switch status(err) {
	case stOK:
		return err == nil, err
	case stAppNotFound:
		return false, nil
	}
	return false, err
}

func keyVersion(ctx context.Context, c *conn, k byte) (uint8, error) {
	v, err := c.cmd(ctx, "GetKeyVersion", insGetKeyVersion, []byte{k}, nil, false, false)
	if err != nil {
		return 0, err
	}
	if len(v) != 1 {
		return 0, fmt.Errorf("desfire: GetKeyVersion: %d bytes: %w", len(v), reader.ErrRefused)
	}
	return v[0], nil
}

// unknownVersion explains a key version the key file does not have: this
// site's application (its DF name names the site) keyed under a version
// the key file lacks, or another system's. It leaves the PICC selected.
func unknownVersion(ctx context.Context, c *conn, ks *cardfmt.KeySet, v uint8) error {
	ours, err := createdHere(ctx, c, ks)
	switch {
	case err != nil:
		return err
	case ours:
		return fmt.Errorf("%w: the application is keyed under key version %d, the key file has %v",
			cardfmt.ErrUnknownKeyVersion, v, ks.Versions())
	}
	return fmt.Errorf("%w: the application is keyed under key version %d of another system", cardfmt.ErrForeign, v)
}

// createdHere reads the DF names at the PICC level (one application per
// frame) and reports whether the application's names this site. A PICC
// that does not list them tells nothing: false.
func createdHere(ctx context.Context, c *conn, ks *cardfmt.KeySet) (bool, error) {
	c.s = nil
	if _, err := c.plain(ctx, "SelectApplication", insSelectApplication, []byte{0, 0, 0}); err != nil {
		return false, err
	}
	var want [][]byte
	for _, a := range []appID{current, legacy} {
		want = append(want, append(append(bytes.Clone(a.aid[:]), a.fid[:]...), a.dfName(ks)...))
	}
	ours := false
	ins := byte(insGetDFNames)
	for {
		out, st, err := c.t.Wrapped(ctx, ins, nil)
		if err != nil {
			return false, fmt.Errorf("desfire: GetDFNames: %w", err)
		}
		if st != stOK && st != stMoreFrames {
			return false, nil
		}
		ours = ours || bytes.Equal(out, want[0]) || bytes.Equal(out, want[1])
		if st == stOK {
			return ours, nil
		}
		ins = insMoreFrames
	}
}

// foreign turns an authentication refused into ErrForeign.
func foreign(err error) error {
	if status(err) == stAuthError {
		return fmt.Errorf("%w: the application refuses this site's keys: %w", cardfmt.ErrForeign, err)
	}
	return err
}

// readUID authenticates with key 3 of version v and reads the card's UID.
func readUID(ctx context.Context, c *conn, ks *cardfmt.KeySet, v uint8) ([]byte, error) {
	k3, err := keyOf(ks, keyUID, v, nil)
	if err != nil {
		return nil, err
	}
	if err := c.auth(ctx, true, keyUID, k3); err != nil {
		return nil, err
	}
	return cardUID(ctx, c)
}

// cardUID reads the real UID in the open session, encrypted, and reports
// it to the context's cardfmt.Trace.
func cardUID(ctx context.Context, c *conn) ([]byte, error) {
	uid, err := c.cmd(ctx, "GetCardUID", insGetCardUID, nil, nil, false, true)
	if err != nil {
		return nil, err
	}
	if len(uid) != 7 && len(uid) != 10 {
		return nil, fmt.Errorf("desfire: GetCardUID: %d-byte UID: %w", len(uid), reader.ErrRefused)
	}
	if err := cardfmt.TraceRealUID(ctx, uid); err != nil {
		return nil, err
	}
	return uid, nil
}

// readRecord reads the record from file 1 in the open session: the
// header first, then the rest its length names.
func readRecord(ctx context.Context, c *conn) ([]byte, error) {
	head, err := c.cmd(ctx, "ReadData", insReadData, rwHeader(0, firstRead), nil, false, true)
	if err != nil {
		return nil, err
	}
	if len(head) != firstRead {
		return nil, fmt.Errorf("desfire: ReadData: %d bytes: %w", len(head), reader.ErrRefused)
	}
	h, err := cardfmt.ParseHeader(head)
	if err != nil {
		return nil, err
	}
	if h.Length <= firstRead {
		return head, nil
	}
	rest, err := c.cmd(ctx, "ReadData", insReadData, rwHeader(firstRead, h.Length-firstRead), nil, false, true)
	if err != nil {
		return nil, err
	}
	return append(head, rest...), nil
}

// rwHeader is ReadData's and WriteData's header: file, offset, length.
func rwHeader(off, n int) []byte {
	return []byte{fileNo, byte(off), byte(off >> 8), byte(off >> 16), byte(n), byte(n >> 8), byte(n >> 16)}
}

// Scan reads the record with the read key, as a lock does, and checks it.
// The current key version's keys are tried first; a card they do not open
// names its keys' versions. A card without the application is blank; an
// application that refuses the keys its key versions name is foreign.
func Scan(ctx context.Context, t Tag, info reader.Info, ks *cardfmt.KeySet) (cardfmt.Scan, error) {
	if info.Technology.Family() != reader.FamilyDESFire {
		return cardfmt.Scan{}, fmt.Errorf("desfire: %s: %w", info.Technology, cardfmt.ErrIncompatible)
	}
	cur := ks.Current()
	if cur == nil {
		return cardfmt.Scan{}, errors.New("desfire: empty key set")
	}
	c := &conn{t: t}
	found, err := selectApp(ctx, c, current)
	if err != nil {
		return cardfmt.Scan{}, err
	}
	var blank cardfmt.Scan
	if found {
		s, err := scanApp(ctx, c, info, ks)
		if err != nil || s.Reason != cardfmt.ReasonBlank {
			return s, err
		}
		// Created by a move that did not get to its record: the card's
		// record is still in the legacy application, if it has one.
		blank = s
	}
	old, err := selectApp(ctx, c, legacy)
	switch {
	case err != nil:
		return cardfmt.Scan{}, err
	case old:
		return scanApp(ctx, c, info, ks)
	case found:
		return blank, nil
	}
	return cardfmt.Verdict(cardfmt.Record{}, fmt.Errorf("%w: no application %s or %s", cardfmt.ErrNoRecord, current, legacy))
}

// scanApp reads the selected application's record.
func scanApp(ctx context.Context, c *conn, info reader.Info, ks *cardfmt.KeySet) (cardfmt.Scan, error) {
	cur := ks.Current()
	rec, uid, err := readWith(ctx, c, ks, cur.Version, cur.Version, info.UID)
	if status(err) == stAuthError {
		rec, uid, err = readOlder(ctx, c, ks, info.UID)
	}
	if err != nil {
		return cardfmt.Verdict(cardfmt.Record{}, err)
	}
	return cardfmt.Verdict(cardfmt.Open(rec, ks, uid))
}

// readWith opens a session on the read key of version v1 (after key 3 of
// version v3 and GetCardUID on a random-UID card) and reads the record.
func readWith(ctx context.Context, c *conn, ks *cardfmt.KeySet, v3, v1 uint8, uid []byte) (rec, realUID []byte, err error) {
	first := true
	if randomUID(uid) {
		if uid, err = readUID(ctx, c, ks, v3); err != nil {
			return nil, nil, err
		}
		first = false
	}
	kr, err := keyOf(ks, keyRead, v1, uid)
	if err != nil {
		return nil, nil, err
	}
	if err := c.auth(ctx, first, keyRead, kr); err != nil {
		return nil, nil, err
	}
	rec, err = readRecord(ctx, c)
	return rec, uid, err
}

// readOlder reads a card the current keys did not open: it asks the
// versions of the read key (and key 3) and reads with those.
func readOlder(ctx context.Context, c *conn, ks *cardfmt.KeySet, uid []byte) (rec, realUID []byte, err error) {
	v1, err := keyVersion(ctx, c, keyRead)
	if err != nil {
		return nil, nil, err
	}
	if v1 == 0 {
		// An issue interrupted before the keys were changed.
		return nil, nil, fmt.Errorf("%w: the application still has its default keys", cardfmt.ErrNoRecord)
	}
	v3 := v1
	if randomUID(uid) {
		if v3, err = keyVersion(ctx, c, keyUID); err != nil {
			return nil, nil, err
		}
	}
	for _, v := range []uint8{v1, v3} {
		if _, ok := ks.Version(v); !ok && v != 0 {
			return nil, nil, unknownVersion(ctx, c, ks, v)
		}
	}
	if cur := ks.Current().Version; v1 == cur && v3 == cur {
		return nil, nil, fmt.Errorf("%w: the application refuses this site's current keys", cardfmt.ErrForeign)
	}
	rec, uid, err = readWith(ctx, c, ks, v3, v1, uid)
	return rec, uid, foreign(err)
}

// Encode writes the credential. A card without the application gets it
// (when the PICC lets anyone create one); a card of this site whose keys
// are not all current is re-keyed; the record goes into the backup file
// in one transaction. It returns the record the card now holds.
func Encode(ctx context.Context, t Tag, info reader.Info, ks *cardfmt.KeySet, cred cardfmt.Credential) (cardfmt.Record, error) {
	if info.Technology.Family() != reader.FamilyDESFire {
		return cardfmt.Record{}, fmt.Errorf("desfire: %s: %w", info.Technology, cardfmt.ErrIncompatible)
	}
	if err := cred.Validate(); err != nil {
		return cardfmt.Record{}, fmt.Errorf("%w: %w", cardfmt.ErrInvalidCredential, err)
	}
	cur := ks.Current()
	if cur == nil {
		return cardfmt.Record{}, errors.New("desfire: empty key set")
	}
	c := &conn{t: t}
	found, err := selectApp(ctx, c, current)
	if err != nil {
		return cardfmt.Record{}, err
	}
	if found {
		return encodeApp(ctx, c, info.UID, ks, cred, true)
	}
	old, err := selectApp(ctx, c, legacy)
	if err != nil {
		return cardfmt.Record{}, err
	}
	if old {
		free, err := freeMemory(ctx, c)
		if err != nil {
			return cardfmt.Record{}, err
		}
		if free < moveRoom {
			// No room for both: re-encoded where it is.
			return encodeApp(ctx, c, info.UID, ks, cred, false)
		}
		if _, err := c.plain(ctx, "SelectApplication", insSelectApplication, []byte{0, 0, 0}); err != nil {
			return cardfmt.Record{}, err
		}
	}
	if err := createApp(ctx, c, ks); err != nil {
		return cardfmt.Record{}, err
	}
	var versions [numKeys]uint8 // a new application's keys: all zero
	uid, err := rekey(ctx, c, ks, cur, versions, true, info.UID)
	if err != nil {
		return cardfmt.Record{}, err
	}
	r, err := writeRecord(ctx, c, ks, cred, uid)
	if err != nil || !old {
		return r, err
	}
	return r, deleteLegacy(ctx, c, ks, uid)
}

// moveRoom is the free memory a move needs: the backup file's two
// copies and room for the application's keys and directory entry.
const moveRoom = 2*fileSize + 256

func freeMemory(ctx context.Context, c *conn) (int, error) {
	b, err := c.plain(ctx, "FreeMemory", insFreeMemory, nil)
	if err != nil {
		return 0, err
	}
	if len(b) != 3 {
		return 0, fmt.Errorf("desfire: FreeMemory: %d bytes: %w", len(b), reader.ErrRefused)
	}
	return int(b[0]) | int(b[1])<<8 | int(b[2])<<16, nil
}

// deleteLegacy removes the legacy application after its record moved:
// key 0 of the version it names opens the session DeleteApplication
// needs, and proves the application this site's. One on default keys,
// or that refuses this site's key 0, stays.
func deleteLegacy(ctx context.Context, c *conn, ks *cardfmt.KeySet, uid []byte) error {
	err := func() error {
		found, err := selectApp(ctx, c, legacy)
		if err != nil || !found {
			return err
		}
		v0, err := keyVersion(ctx, c, keyMaster)
		if err != nil || v0 == 0 {
			// Default keys prove nothing: another system's application
			// not yet keyed, or a first-generation issue interrupted
			// before it held a record. Either stays.
			return err
		}
		k0, err := keyOf(ks, keyMaster, v0, uid)
		if errors.Is(err, cardfmt.ErrForeign) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := c.auth(ctx, true, keyMaster, k0); err != nil {
			if status(err) == stAuthError {
				return nil // another system's application under that AID
			}
			return err
		}
		_, err = c.cmd(ctx, "DeleteApplication", insDeleteApplication, legacy.aid[:], nil, false, false)
		c.s = nil
		return err
	}()
	if err != nil {
		// The new record is written and read back: the card is valid.
		// The legacy application stays beside it; scans and this
		// system's locks read the current one first.
		return interrupted(fmt.Errorf("desfire: the record moved; deleting application %s: %w", legacy, err))
	}
	return nil
}

// encodeApp writes the credential into the selected application, which
// exists: re-keyed first when its keys are not all current.
//
// A current application still on its default keys was created by an
// issue or a move that did not finish: with finishMove, the legacy
// application is deleted after the record is written, as the move would
// have.
func encodeApp(ctx context.Context, c *conn, uid []byte, ks *cardfmt.KeySet, cred cardfmt.Credential, finishMove bool) (cardfmt.Record, error) {
	cur := ks.Current()
	// Key 0 is changed last, after every other key is current: key 0
	// current means the card is.
	v0, err := keyVersion(ctx, c, keyMaster)
	if err != nil {
		return cardfmt.Record{}, err
	}
	var real []byte
	if v0 == cur.Version {
		real, err = authWrite(ctx, c, ks, cur, uid)
		if err != nil {
			return cardfmt.Record{}, foreign(err)
		}
		return writeRecord(ctx, c, ks, cred, real)
	}
	versions := [numKeys]uint8{keyMaster: v0}
	for k := byte(1); k < numKeys; k++ {
		if versions[k], err = keyVersion(ctx, c, k); err != nil {
			return cardfmt.Record{}, err
		}
	}
	for _, v := range versions {
		if _, ok := ks.Version(v); v != 0 && !ok {
			err := unknownVersion(ctx, c, ks, v)
			if errors.Is(err, cardfmt.ErrUnknownKeyVersion) {
				err = fmt.Errorf("%w: %w", cardfmt.ErrForeign, err)
			}
			return cardfmt.Record{}, err
		}
	}
	if real, err = rekey(ctx, c, ks, cur, versions, false, uid); err != nil {
		return cardfmt.Record{}, err
	}
	r, err := writeRecord(ctx, c, ks, cred, real)
	if err != nil || !finishMove || v0 != 0 {
		return r, err
	}
	return r, deleteLegacy(ctx, c, ks, real)
}

// createApp creates the application on a card without it. The PICC's
// answer decides: a card whose PICC master key guards application
// creation is left as it was.
func createApp(ctx context.Context, c *conn, ks *cardfmt.KeySet) error {
	data := append(bytes.Clone(current.aid[:]), appKeySettings, appKeyType|appISO|numKeys)
	data = append(data, current.fid[:]...)
	data = append(data, current.dfName(ks)...)
	_, err := c.plain(ctx, "CreateApplication", insCreateApplication, data)
	switch status(err) {
	case stOK:
		if err != nil {
			return err
		}
	case stPermission, stAuthError:
		return fmt.Errorf("%w: the PICC refuses application creation without its master key: %w", cardfmt.ErrIncompatible, err)
	case stOutOfEEPROM, stCountError:
		return fmt.Errorf("%w: no room for another application: %w", cardfmt.ErrIncompatible, err)
	default:
		return err
	}
	found, err := selectApp(ctx, c, current)
	if err == nil && !found {
		err = fmt.Errorf("desfire: the application just created is not there: %w", reader.ErrRefused)
	}
	return err
}

// authWrite opens a session with the current write key, reading the
// real UID first on a random-UID card, and returns the real UID.
func authWrite(ctx context.Context, c *conn, ks *cardfmt.KeySet, cur *cardfmt.SiteKey, uid []byte) ([]byte, error) {
	first := true
	if randomUID(uid) {
		real, err := readUID(ctx, c, ks, cur.Version)
		if err != nil {
			return nil, err
		}
		uid, first = real, false
	}
	ck, err := keysFor(cur, uid)
	if err != nil {
		return nil, err
	}
	return uid, c.auth(ctx, first, keyWrite, ck.k[keyWrite])
}

// rekey brings an application whose keys are the defaults (a new one, or
// an issue interrupted before key 0 changed) or of an older key version
// to the current version: keys 3, 1 and 2 first, key 0 last, each only
// if not current yet, so an interruption at any point leaves a card the
// next encode finishes. It ends with a session on the write key and
// returns the card's real UID.
func rekey(ctx context.Context, c *conn, ks *cardfmt.KeySet, cur *cardfmt.SiteKey, versions [numKeys]uint8, created bool, uid []byte) ([]byte, error) {
	random := randomUID(uid)
	if random && versions[keyMaster] == 0 {
		// The default key 0 opens the session that reads the UID.
		if err := c.auth(ctx, true, keyMaster, [16]byte{}); err != nil {
			return nil, foreign(err)
		}
		var err error
		if uid, err = cardUID(ctx, c); err != nil {
			return nil, err
		}
	} else {
		if random {
			var err error
			if uid, err = readUID(ctx, c, ks, versions[keyUID]); err != nil {
				return nil, foreign(err)
			}
		}
		master, err := keyOf(ks, keyMaster, versions[keyMaster], uid)
		if err != nil {
			return nil, err
		}
		if err := c.auth(ctx, !random, keyMaster, master); err != nil {
			return nil, foreign(err)
		}
	}
	if err := ensureFile(ctx, c, created); err != nil {
		return nil, err
	}
	want, err := keysFor(cur, uid)
	if err != nil {
		return nil, err
	}
	for _, k := range []int{keyUID, keyRead, keyWrite} {
		if versions[k] == cur.Version {
			continue
		}
		old, err := keyOf(ks, k, versions[k], uid)
		if err != nil {
			return nil, err
		}
		data := ev2.ChangeKeyData(want.k[k], cur.Version, &old)
		if _, err := c.cmd(ctx, "ChangeKey", insChangeKey, []byte{byte(k)}, data, true, false); err != nil {
			return nil, err
		}
	}
	// Changing the session's own key ends the session: the card answers
	// 91 00 without a MAC.
	data := ev2.ChangeKeyData(want.k[keyMaster], cur.Version, nil)
	if _, st, err := c.exchange(ctx, "ChangeKey", insChangeKey, c.s.SealCommand(insChangeKey, []byte{keyMaster}, data, true)); err != nil {
		return nil, err
	} else if st != stOK {
		return nil, &statusError{"ChangeKey", st}
	}
	c.s = nil
	if err := c.auth(ctx, true, keyWrite, want.k[keyWrite]); err != nil {
		return nil, err
	}
	return uid, nil
}

// ensureFile creates the backup file unless the application has it.
func ensureFile(ctx context.Context, c *conn, created bool) error {
	if !created {
		ids, err := c.cmd(ctx, "GetFileIDs", insGetFileIDs, nil, nil, false, false)
		if err != nil {
			return err
		}
		if bytes.IndexByte(ids, fileNo) >= 0 {
			return checkFile(ctx, c)
		}
	}
	hdr := []byte{fileNo, fileFID[0], fileFID[1], fileOption, fileAccessRWChange, fileAccessReadWrite,
		byte(fileSize & 0xFF), byte(fileSize >> 8), byte(fileSize >> 16)}
	_, err := c.cmd(ctx, "CreateBackupDataFile", insCreateBackupFile, hdr, nil, false, false)
	if status(err) == stOutOfEEPROM {
		return fmt.Errorf("%w: no room for the %d-byte backup file: %w", cardfmt.ErrIncompatible, fileSize, err)
	}
	return err
}

// checkFile refuses a file 1 that is not the layout's.
func checkFile(ctx context.Context, c *conn) error {
	fs, err := c.cmd(ctx, "GetFileSettings", insGetFileSettings, []byte{fileNo}, nil, false, false)
	if err != nil {
		return err
	}
	want := []byte{fileTypeBackup, fileOption, fileAccessRWChange, fileAccessReadWrite,
		byte(fileSize & 0xFF), byte(fileSize >> 8), byte(fileSize >> 16)}
	if !bytes.Equal(fs, want) {
		return fmt.Errorf("%w: file %d of the application has other settings", cardfmt.ErrIncompatible, fileNo)
	}
	return nil
}

// writeRecord writes the sealed record into the backup file and commits
// it, in the write key's session, then reads it back as a lock does: in
// the same session re-authenticated on the read key (NonFirst), in
// CommMode.Full. The card's MACed answers already prove it took the
// bytes; the read-back proves the read key the locks derive opens the
// file and that the committed file holds exactly the record.
func writeRecord(ctx context.Context, c *conn, ks *cardfmt.KeySet, cred cardfmt.Credential, uid []byte) (cardfmt.Record, error) {
	rec, err := cardfmt.Seal(cred, ks, uid)
	if err != nil {
		return cardfmt.Record{}, err
	}
	r, err := cardfmt.Open(rec, ks, uid)
	if err != nil {
		return cardfmt.Record{}, fmt.Errorf("desfire: the sealed record does not open: %w", err)
	}
	ck, err := keysFor(ks.Current(), uid)
	if err != nil {
		return cardfmt.Record{}, err
	}
	for off := 0; off < len(rec); off += maxWrite {
		chunk := rec[off:min(off+maxWrite, len(rec))]
		if _, err := c.cmd(ctx, "WriteData", insWriteData, rwHeader(off, len(chunk)), chunk, true, false); err != nil {
			return cardfmt.Record{}, interrupted(err)
		}
	}
	if _, err := c.cmd(ctx, "CommitTransaction", insCommit, nil, nil, false, false); err != nil {
		return cardfmt.Record{}, interrupted(err)
	}
	cardfmt.TraceVerifying(ctx)
	if err := c.auth(ctx, false, keyRead, ck.k[keyRead]); err != nil {
		return cardfmt.Record{}, interrupted(fmt.Errorf("desfire: read-back: %w", err))
	}
	got, err := c.cmd(ctx, "ReadData", insReadData, rwHeader(0, len(rec)), nil, false, true)
	if err != nil {
		return cardfmt.Record{}, interrupted(fmt.Errorf("desfire: read-back: %w", err))
	}
	if !bytes.Equal(got, rec) {
		return cardfmt.Record{}, interrupted(errReadBack)
	}
	return r, nil
}

// errReadBack reports a committed file that reads back other than the
// record written: a card whose memory did not keep it.
var errReadBack = errors.New("desfire: the record reads back differently")

// interrupted marks a failure after the write began: the card holds the
// old record or the new one and stays re-encodable.
func interrupted(err error) error {
	if errors.Is(err, cardfmt.ErrInterrupted) {
		return err
	}
	return fmt.Errorf("%w: %w", cardfmt.ErrInterrupted, err)
}
