package cardfmt

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"time"
)

// FormatVersionBound is the record format version whose MAC also covers
// bytes the layout keeps on the card beside the record (the Ultralight
// layout's marker and one-way counter value): the same fields as
// FormatVersion, byte for byte, with the MAC input extended by those
// bytes. docs/card-format.md describes both.
const FormatVersionBound = 2

// MaxBoundLen limits the layout bytes a record can be bound to.
const MaxBoundLen = 64

// SealBound is Seal for a record bound to layout bytes: format version 2,
// MAC = AES-CMAC(K_mac, record[0:L-16] || len(UID) || UID || bound).
// bound must be 1 to MaxBoundLen bytes; a reader needs the same bytes to
// open the record (OpenBound).
func SealBound(c Credential, ks *KeySet, uid, bound []byte) ([]byte, error) {
	if err := checkBound(bound); err != nil {
		return nil, err
	}
	rec, err := Seal(c, ks, uid)
	if err != nil {
		return nil, err
	}
	sk, ok := ks.Version(rec[offKeyVersion])
	if !ok {
		return nil, errEmptyKeySet
	}
	rec[offFormat] = FormatVersionBound
	n := len(rec)
	mac := sk.recordMAC(rec[:n-MACLen], uid, bound)
	copy(rec[n-MACLen:], mac[:])
	return rec, nil
}

// OpenBound is Open for a format version 2 record read together with the
// layout bytes it is bound to. A record of format version 1 gives
// ErrUnsupportedFormat here, as a version 2 record does in Open: a layout
// knows which one its card holds.
func OpenBound(b []byte, ks *KeySet, uid, bound []byte) (Record, error) {
	if err := checkBound(bound); err != nil {
		return Record{}, err
	}
	return openRecord(b, ks, uid, bound)
}

func checkBound(bound []byte) error {
	if len(bound) == 0 || len(bound) > MaxBoundLen {
		return fmt.Errorf("cardfmt: bound layout bytes must be 1 to %d bytes, got %d", MaxBoundLen, len(bound))
	}
	return nil
}

// openRecord checks and decodes a record of the format bound says: 1
// when bound is nil, 2 otherwise.
func openRecord(b []byte, ks *KeySet, uid, bound []byte) (Record, error) {
	if ks == nil {
		return Record{}, errors.New("cardfmt: open: nil key set")
	}
	if err := checkUID(uid); err != nil {
		return Record{}, err
	}
	h, err := ParseHeader(b)
	if err != nil {
		return Record{}, err
	}
	want := uint8(FormatVersion)
	if bound != nil {
		want = FormatVersionBound
	}
	if h.FormatVersion != want {
		return Record{}, fmt.Errorf("%w: format version %d where this card's layout keeps version %d",
			ErrUnsupportedFormat, h.FormatVersion, want)
	}
	if len(b) < h.Length {
		return Record{}, fmt.Errorf("%w: truncated: record is %d bytes, have %d", ErrCorrupt, h.Length, len(b))
	}
	rec := b[:h.Length]
	sk, ok := ks.Version(h.KeyVersion)
	if !ok {
		return Record{}, fmt.Errorf("%w: record is sealed under key version %d, the key file has %s",
			ErrUnknownKeyVersion, h.KeyVersion, formatVersions(ks.Versions()))
	}
	if until := sk.VerifyUntil; !until.IsZero() && !ks.clock().Before(until) {
		return Record{}, fmt.Errorf("%w: record is sealed under key version %d, accepted until %s",
			ErrRetiredKeyVersion, h.KeyVersion, until.UTC().Format(time.RFC3339))
	}
	issuedTo, err := recordUID(rec)
	if err != nil {
		return Record{}, err
	}
	mac := sk.recordMAC(rec[:h.Length-MACLen], issuedTo, bound)
	if subtle.ConstantTimeCompare(mac[:], rec[h.Length-MACLen:]) != 1 {
		return Record{}, fmt.Errorf("%w: MAC does not verify under key version %d", ErrBadMAC, h.KeyVersion)
	}
	if subtle.ConstantTimeCompare(issuedTo, uid) != 1 {
		return Record{}, fmt.Errorf("%w: an authentic record copied from another card", ErrUIDMismatch)
	}
	c, err := decodeFields(rec)
	if err != nil {
		return Record{}, err
	}
	return Record{Credential: c, FormatVersion: h.FormatVersion, KeyVersion: h.KeyVersion}, nil
}
