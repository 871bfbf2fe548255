package cardfmt

import "errors"

// Errors of Open and ParseHeader. Each is wrapped with details, so test
// them with errors.Is. ReasonFor maps them to scan verdicts.
var (
	// ErrNoRecord: the bytes do not start with a record of this system.
	// A blank card (all zeros) or a card written by another system reads
	// as ErrNoRecord.
	ErrNoRecord = errors.New("no record")
	// ErrCorrupt: a record of this system is present but malformed:
	// truncated, with impossible lengths, bad characters, bytes left over
	// in its fields, or ends_at not after starts_at.
	ErrCorrupt = errors.New("corrupt record")
	// ErrUnsupportedFormat: the record has a format version this software
	// does not read.
	ErrUnsupportedFormat = errors.New("unsupported record format")
	// ErrUnknownKeyVersion: the record was sealed under a site key version
	// that the key set does not hold.
	ErrUnknownKeyVersion = errors.New("unknown key version")
	// ErrRetiredKeyVersion: the record was sealed under a key version the
	// key set still holds but no longer accepts (SiteKey.VerifyUntil has
	// passed). Re-encoding the card re-keys it under the current version.
	ErrRetiredKeyVersion = errors.New("retired key version")
	// ErrBadMAC: the record's MAC does not verify for this card's UID. The
	// record was altered, forged, sealed for another card and copied, or
	// sealed under another key set with the same key version.
	ErrBadMAC = errors.New("record authentication failed")
)

// ErrInvalidCredential marks a credential that Validate rejects. Seal
// returns it wrapped together with the *FieldError naming the field.
var ErrInvalidCredential = errors.New("invalid credential")

// ErrInvalidUID: a UID that is not 4, 7 or 10 bytes (ISO/IEC 14443-3
// single, double or triple size). It is a caller error, not a verdict on
// the card.
var ErrInvalidUID = errors.New("UID must be 4, 7 or 10 bytes")

// Errors of the key file.
var (
	// ErrKeyFileInsecure: the key file's mode lets group or others read or
	// write it (mode&0o077 != 0). Not checked on Windows.
	ErrKeyFileInsecure = errors.New("key file is accessible by group or others")
	// ErrKeyFileInvalid: the key file is not a valid key file. The wrapping
	// error names the offending field.
	ErrKeyFileInvalid = errors.New("invalid key file")
)
