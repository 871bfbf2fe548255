// Package cardfmt defines the credential record written on hotel key cards,
// its authentication (AES-CMAC under per-card keys diversified per NXP
// AN10922) and the site key file. It is pure bytes: it must not import
// reader, bridge or any transport.
//
// # Record
//
// A record (format version 1) is a big-endian byte string of 60 to 597
// bytes (MinRecordLen, MaxRecordLen): an 8-byte header (magic "EB",
// format version, key version, length, card function, flags), the
// credential fields, and a 16-byte AES-CMAC over everything before it, the
// UID's length and the UID. Format version 2 (SealBound, OpenBound) is the
// same with the MAC also covering layout bytes kept beside the record. Seal
// builds one, Open checks and decodes one. docs/card-format.md describes
// every byte.
//
// # Keys
//
// A KeySet holds the site's secret 128-bit master keys, one pair per key
// version: a MAC master key, from which the per-card record MAC key is
// diversified, and a diversification master key, from which the per-card
// keys that layouts write into card memory (MIFARE Classic sector keys,
// Ultralight PWD and PACK) are diversified. Every diversification is NXP
// AN10922 AES-128 over the card's UID, a purpose byte and the key set's
// 8-byte id, so no card key can be computed from the UID alone and no key
// of one card opens another.
//
// Rotate adds a version and makes it current. RetireAt stops a version's
// records from verifying from a given moment (ErrRetiredKeyVersion) while
// its card keys stay usable for re-keying; Retire removes a version.
//
// Master keys never leave the package except through WriteKeySet: AESKey,
// SiteKey and KeySet print as "[redacted]" (or without their keys) with
// every fmt verb and in zap logs, and no error message contains key bytes.
//
// # Layouts
//
// The subpackages classic and ultralight place records on card memory.
// The layout-facing errors and scan verdicts (ErrForeign, Reason, Scan,
// Verdict) are declared in this package so that every layout reports the
// same outcomes.
package cardfmt
