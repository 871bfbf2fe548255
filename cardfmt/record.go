package cardfmt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap/zapcore"
)

// Record format version 1. docs/card-format.md describes every byte.
const (
	// FormatVersion is the record format version this package writes and
	// reads.
	FormatVersion = 1
	// HeaderLen is the length of the header that ParseHeader reads: magic,
	// format version, key version, record length, function and flags.
	HeaderLen = 8
	// MACLen is the length of the MAC that ends every record.
	MACLen = 16
	// MinRecordLen is the length of the shortest record: a one-character
	// card number, no entrance, a 4-byte UID.
	MinRecordLen = fixedLen + 1 + 4
	// MaxRecordLen is the length of the longest record: a 20-character
	// card number, 32 entrances, a 10-byte UID.
	MaxRecordLen = fixedLen + MaxCardNumberLen + MaxEntrances*entranceLen + 10
)

// Offsets and lengths of the record's fields.
const (
	offMagic      = 0
	offFormat     = 2
	offKeyVersion = 3
	offLength     = 4
	offFunction   = 6
	offFlags      = 7
	offID         = 8
	offSequence   = 24
	offStartsAt   = 28
	offEndsAt     = 32
	offCardNumLen = 36
	offCardNumber = 37

	entranceLen = 16
	// fixedLen is the length of a record without its card number,
	// entrances and UID: 37 bytes up to the card number, the entrance
	// count, the UID length and the MAC.
	fixedLen = offCardNumber + 1 + 1 + MACLen
)

// magic is the first two bytes of every record: "EB".
var magic = [2]byte{0x45, 0x42}

// Header is the part of a record that can be read before the record is
// authenticated. Nothing in it is trusted until Open has verified the MAC.
type Header struct {
	FormatVersion uint8
	KeyVersion    uint8
	// Length is the record's length in bytes, MAC included: how much a
	// layout must read for Open.
	Length int
}

// ParseHeader reads the header at the start of b, which must hold at least
// HeaderLen bytes. Bytes that do not start with the magic "EB" (a blank,
// all-zero card or another system's data) give ErrNoRecord. A header with
// the magic but a format version other than 1 or 2 (FormatVersionBound)
// gives ErrUnsupportedFormat; one
// with key version 0, a length outside MinRecordLen..MaxRecordLen or
// non-zero flags gives ErrCorrupt. Only the magic and the format version
// are examined when b is shorter than HeaderLen, which gives ErrCorrupt
// if they match.
func ParseHeader(b []byte) (Header, error) {
	for i := 0; i < len(magic) && i < len(b); i++ {
		if b[i] != magic[i] {
			return Header{}, fmt.Errorf("%w: no record magic", ErrNoRecord)
		}
	}
	if len(b) > offFormat && b[offFormat] != FormatVersion && b[offFormat] != FormatVersionBound {
		if b[offFormat] == 0 {
			return Header{}, fmt.Errorf("%w: format version 0", ErrCorrupt)
		}
		return Header{}, fmt.Errorf("%w: format version %d (this software reads versions %d and %d)",
			ErrUnsupportedFormat, b[offFormat], FormatVersion, FormatVersionBound)
	}
	if len(b) < HeaderLen {
		return Header{}, fmt.Errorf("%w: truncated: header is %d bytes, have %d", ErrCorrupt, HeaderLen, len(b))
	}
	h := Header{
		FormatVersion: b[offFormat],
		KeyVersion:    b[offKeyVersion],
		Length:        int(binary.BigEndian.Uint16(b[offLength:])),
	}
	switch {
	case h.KeyVersion == 0:
		return Header{}, fmt.Errorf("%w: key version 0", ErrCorrupt)
	case h.Length < MinRecordLen || h.Length > MaxRecordLen:
		return Header{}, fmt.Errorf("%w: record length %d outside %d to %d", ErrCorrupt, h.Length, MinRecordLen, MaxRecordLen)
	case b[offFlags] != 0:
		return Header{}, fmt.Errorf("%w: reserved flags 0x%02x are not zero", ErrCorrupt, b[offFlags])
	}
	return h, nil
}

// Record is a credential read back from a card, with the versions it was
// sealed under.
type Record struct {
	Credential
	FormatVersion uint8
	KeyVersion    uint8
}

// SealedRecord is the Record that rec, sealed from c by Seal or SealBound,
// holds: what a layout's Encode returns once it has verified rec on the
// card, so that its caller need not read the key set again.
func SealedRecord(c Credential, rec []byte) Record {
	// rec was sealed here: its header parses.
	h, _ := ParseHeader(rec)
	return Record{Credential: c, FormatVersion: h.FormatVersion, KeyVersion: h.KeyVersion}
}

// MarshalLogObject logs the record as Credential.MarshalLogObject does,
// with its format and key versions.
func (r Record) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddUint8("format_version", r.FormatVersion)
	enc.AddUint8("key_version", r.KeyVersion)
	return r.Credential.MarshalLogObject(enc)
}

// SealedLen is the length of the record that Seal makes of c for a card
// with a uidLen-byte UID: 55 bytes, plus the card number, plus 16 bytes for
// each entrance, plus the UID.
func SealedLen(c Credential, uidLen int) int {
	return fixedLen + len(c.CardNumber) + len(c.Entrances)*entranceLen + uidLen
}

// Seal validates c and encodes it as a record for the card with the given
// UID, authenticated under ks's current key version. An invalid credential
// gives an error matching ErrInvalidCredential that wraps the *FieldError
// naming the field; a UID that is not 4, 7 or 10 bytes gives
// ErrInvalidUID. The result is deterministic: the same credential, key set
// and UID always give the same bytes.
func Seal(c Credential, ks *KeySet, uid []byte) ([]byte, error) {
	if ks == nil {
		return nil, errors.New("cardfmt: seal: nil key set")
	}
	if err := checkUID(uid); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidCredential, err)
	}
	sk := ks.Current()
	if sk == nil {
		return nil, errEmptyKeySet
	}
	n := SealedLen(c, len(uid))
	rec := make([]byte, n)
	copy(rec[offMagic:], magic[:])
	rec[offFormat] = FormatVersion
	rec[offKeyVersion] = sk.Version
	binary.BigEndian.PutUint16(rec[offLength:], uint16(n))
	rec[offFunction] = byte(c.Function)
	rec[offFlags] = 0
	copy(rec[offID:], c.ID[:])
	binary.BigEndian.PutUint32(rec[offSequence:], c.IssueSequence)
	binary.BigEndian.PutUint32(rec[offStartsAt:], uint32(c.StartsAt.Unix()))
	binary.BigEndian.PutUint32(rec[offEndsAt:], uint32(c.EndsAt.Unix()))
	rec[offCardNumLen] = byte(len(c.CardNumber))
	p := offCardNumber + copy(rec[offCardNumber:], c.CardNumber)
	rec[p] = byte(len(c.Entrances))
	p++
	for _, e := range c.Entrances {
		p += copy(rec[p:], e[:])
	}
	// The UID the record was issued to: the MAC binds it anyway, but a
	// copy onto another card then reads as what it is (ErrUIDMismatch)
	// rather than as a forgery.
	rec[p] = byte(len(uid))
	copy(rec[p+1:], uid)
	mac := sk.recordMAC(rec[:n-MACLen], uid, nil)
	copy(rec[n-MACLen:], mac[:])
	return rec, nil
}

// Open authenticates and decodes the record at the start of b, read from
// the card with the given UID. b may run past the record (a layout reads
// whole blocks): bytes after the record's length are ignored.
//
// It first reads the header (ErrNoRecord, ErrUnsupportedFormat,
// ErrCorrupt as ParseHeader), then checks that b holds the whole record
// (ErrCorrupt), finds the key version in ks (ErrUnknownKeyVersion),
// checks that the version is still accepted (ErrRetiredKeyVersion) and
// verifies the MAC in constant time (ErrBadMAC). Only then does it decode
// the fields, which must fill the record exactly and satisfy
// Credential.Validate (ErrCorrupt otherwise). A UID that is not 4, 7 or
// 10 bytes gives ErrInvalidUID, which is not a verdict on the card.
func Open(b []byte, ks *KeySet, uid []byte) (Record, error) {
	return openRecord(b, ks, uid, nil)
}

// recordUID finds the UID a record names, before it is authenticated: the
// bounds are checked here, the bytes by the MAC.
func recordUID(rec []byte) ([]byte, error) {
	end := len(rec) - MACLen
	n := int(rec[offCardNumLen])
	if offCardNumber+n >= end {
		return nil, fmt.Errorf("%w: card number runs past the record", ErrCorrupt)
	}
	p := offCardNumber + n + 1 + int(rec[offCardNumber+n])*entranceLen
	if p >= end {
		return nil, fmt.Errorf("%w: entrances run past the record", ErrCorrupt)
	}
	u := int(rec[p])
	if checkUID(make([]byte, u)) != nil || p+1+u != end {
		return nil, fmt.Errorf("%w: UID field of %d bytes does not end at the MAC", ErrCorrupt, u)
	}
	return rec[p+1 : end], nil
}

// decodeFields decodes an authenticated record of a length ParseHeader
// accepted.
func decodeFields(rec []byte) (Credential, error) {
	corrupt := func(format string, args ...any) (Credential, error) {
		return Credential{}, fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
	}
	n := int(rec[offCardNumLen])
	if n < 1 || n > MaxCardNumberLen {
		return corrupt("card number length %d outside 1 to %d", n, MaxCardNumberLen)
	}
	// The header's length was only range-checked: the card number and the
	// entrance count must still end before the MAC.
	if offCardNumber+n+1 > len(rec)-MACLen {
		return corrupt("card number runs past the record")
	}
	m := int(rec[offCardNumber+n])
	if m > MaxEntrances {
		return corrupt("entrance count %d above %d", m, MaxEntrances)
	}
	if want := fixedLen + n + m*entranceLen + int(rec[offCardNumber+n+1+m*entranceLen]); want != len(rec) {
		return corrupt("record length %d does not match its fields (%d bytes)", len(rec), want)
	}
	c := Credential{
		Function:      Function(rec[offFunction]),
		IssueSequence: binary.BigEndian.Uint32(rec[offSequence:]),
		StartsAt:      time.Unix(int64(binary.BigEndian.Uint32(rec[offStartsAt:])), 0).UTC(),
		EndsAt:        time.Unix(int64(binary.BigEndian.Uint32(rec[offEndsAt:])), 0).UTC(),
		CardNumber:    string(rec[offCardNumber : offCardNumber+n]),
		Entrances:     make([]uuid.UUID, m),
	}
	copy(c.ID[:], rec[offID:])
	p := offCardNumber + n + 1
	for i := range c.Entrances {
		copy(c.Entrances[i][:], rec[p:])
		p += entranceLen
	}
	if err := c.Validate(); err != nil {
		return corrupt("%v", err)
	}
	return c, nil
}

// checkUID accepts ISO/IEC 14443-3 single, double and triple size UIDs.
func checkUID(uid []byte) error {
	switch len(uid) {
	case 4, 7, 10:
		return nil
	}
	return fmt.Errorf("%w, got %d", ErrInvalidUID, len(uid))
}

func formatVersions(vs []uint8) string {
	switch len(vs) {
	case 0:
		return "no key versions"
	case 1:
		return fmt.Sprintf("version %d", vs[0])
	}
	return fmt.Sprintf("versions %v", vs)
}
