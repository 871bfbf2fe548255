// Package ev1 is the cryptography of MIFARE DESFire EV1 secure messaging,
// which EV2 and EV3 cards keep for keys that are not used with
// AuthenticateEV2First: the legacy authentication (Authenticate, 0x0A)
// that the factory 2K3DES PICC master key answers, AuthenticateISO (0x1A)
// and AuthenticateAES (0xAA). It covers the three-pass authentications
// (which IV each pass uses and how the reader's legacy "send mode"
// deciphers), the session keys built from RndA and RndB, the CMAC over
// DES, 2K3DES and AES with the running IV of ISO/AES sessions, and the
// enciphered answers with their CRC16 (legacy) or CRC32 (ISO/AES).
// Both ends use it: the card model in reader/sim/chip and its tests.
//
// The tests pin each construction to a published example: NIST's CMAC
// examples for TDEA (SP 800-38B) and AES (RFC 4493), the DES vectors of
// libfreefare's test suite, and the CRC16 and CRC32 of a GetCardUID
// answer from the Proxmark3 client's DESFire tests.
//
// It is pure computation: it must not import bridge, cardfmt or reader.
package ev1
