package ev1

import (
	"bytes"
	"crypto/des"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

func eqHex(t testing.TB, what string, got []byte, want string) {
	t.Helper()
	if w := unhex(t, want); !bytes.Equal(got, w) {
		t.Errorf("%s = %X, want %X", what, got, w)
	}
}

func key16(t testing.TB, aes bool, s string) Key {
	t.Helper()
	k := Key{AES: aes}
	copy(k.Data[:], unhex(t, s))
	return k
}

// The message of NIST's CMAC examples (SP 800-38B, the TDEA and AES
// example files), cut to 0, 16, 20 and 32 bytes.
const nistMsg = "6BC1BEE22E409F96E93D7E117393172A" + "AE2D8A571E03AC9C9EB76FAC45AF8E51"

// NIST SP 800-38B examples (TDES_CMAC.pdf), two-key TDEA
// 0123456789ABCDEF 23456789ABCDEF01, and RFC 4493 §4 for AES: the CMAC
// of ISO/AES sessions with the IV zero.
func TestCMACNIST(t *testing.T) {
	tdea := key16(t, false, "0123456789ABCDEF23456789ABCDEF01").Block()
	aes := key16(t, true, "2B7E151628AED2A6ABF7158809CF4F3C").Block()
	for _, tc := range []struct {
		name string
		b    interface{ BlockSize() int }
		n    int
		mac  string
	}{
		{"2TDEA len 0", tdea, 0, "79CE52A7F786A960"},
		{"2TDEA len 16", tdea, 16, "CC18A0B79AF2413B"},
		{"2TDEA len 20", tdea, 20, "C06D377ECD101969"},
		{"2TDEA len 32", tdea, 32, "9CD33580F9B64DFB"},
		{"AES len 0", aes, 0, "BB1D6929E95937287FA37D129B756746"},
		{"AES len 16", aes, 16, "070A16B46B4D4144F79BDD9DD04A287C"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tdea
			if tc.b == aes {
				b = aes
			}
			got := CMAC(b, make([]byte, b.BlockSize()), unhex(t, nistMsg)[:tc.n])
			eqHex(t, "CMAC", got, tc.mac)
		})
	}
}

// libfreefare test/test_mifare_desfire_des.c: DES with key 0101…01, the
// factory all-zero key with its parity bits set (a DES weak key, so
// enciphering and deciphering agree), in receive and send mode.
func TestLegacyDESlibfreefare(t *testing.T) {
	zero := Key{} // the factory 2K3DES key: both halves zero
	b := zero.Block()
	eqHex(t, "receive (decipher)", mustCBCDecrypt(b, unhex(t, "D659E17043A84068")), "730DDFADA4D20789")
	eqHex(t, "send (decipher)", SendLegacy(b, unhex(t, "730DDFADA4D20789")), "D659E17043A84068")
	// The same key with its parity bits set is the vector's key.
	p, err := des.NewCipher(unhex(t, "0101010101010101"))
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 8)
	p.Decrypt(got, unhex(t, "D659E17043A84068"))
	eqHex(t, "DES 0101…01", got, "730DDFADA4D20789")
}

func mustCBCDecrypt(b interface {
	BlockSize() int
	Decrypt(dst, src []byte)
}, c []byte) []byte {
	out := make([]byte, len(c))
	b.Decrypt(out, c)
	return out
}

// Proxmark3 client/src/mifare/desfiretest.c (TestCRC16, TestCRC32): a
// GetCardUID answer's plain text, UID 04440F32763180 followed by its
// CRC16 (legacy) or its CRC32 over UID || status 00 (ISO/AES).
func TestCRCsProxmark(t *testing.T) {
	uid := unhex(t, "04440F32763180")
	c16 := CRC16(uid)
	eqHex(t, "CRC16", c16[:], "2798")
	c32 := CRC32(append(uid, 0x00))
	eqHex(t, "CRC32", c32[:], "99CE1AD4")
	// The CRC catalogue's check values: CRC-16/ISO-IEC-14443-3-A BF05,
	// CRC-32/JAMCRC 340BC6D9.
	c16 = CRC16([]byte("123456789"))
	eqHex(t, "CRC_A check", c16[:], "05BF")
	c32 = CRC32([]byte("123456789"))
	eqHex(t, "JAMCRC check", c32[:], "D9C60B34")
}

// SessionKey takes the bytes the datasheets name from RndA and RndB.
func TestSessionKey(t *testing.T) {
	a := unhex(t, "A0A1A2A3A4A5A6A7A8A9AAABACADAEAF")
	b := unhex(t, "B0B1B2B3B4B5B6B7B8B9BABBBCBDBEBF")
	k := SessionKey(Key{AES: true}, a, b)
	eqHex(t, "AES", k.Data[:], "A0A1A2A3B0B1B2B3ACADAEAFBCBDBEBF")
	k = SessionKey(Key{}, a[:8], b[:8])
	eqHex(t, "single DES", k.Data[:], "A0A1A2A3B0B1B2B3A0A1A2A3B0B1B2B3")
	k = SessionKey(key16(t, false, "00112233445566778899AABBCCDDEEFF"), a[:8], b[:8])
	eqHex(t, "2K3DES", k.Data[:], "A0A1A2A3B0B1B2B3A4A5A6A7B4B5B6B7")
}

// Both sides of each scheme agree; a wrong key is ErrAuth on the card
// side, and GetCardUID's enciphered answer opens only in the session.
func TestAuthenticateBothSides(t *testing.T) {
	for _, tc := range []struct {
		name   string
		scheme Scheme
		key    Key
	}{
		{"legacy, factory key", Legacy, Key{}},
		{"ISO, factory key", ISO, Key{}},
		{"ISO, 2K3DES", ISO, key16(t, false, "00112233445566778899AABBCCDDEEFF")},
		{"AES, zero key", AES, Key{AES: true}},
		{"AES", AES, key16(t, true, "000102030405060708090A0B0C0D0E0F")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := tc.key.BlockSize()
			rndA, rndB := bytes.Repeat([]byte{0x5A}, n), bytes.Repeat([]byte{0xC3}, n)
			rndA[0], rndB[n-1] = 1, 2
			card, encB, err := CardStart(tc.scheme, tc.key, rndB)
			if err != nil {
				t.Fatal(err)
			}
			rd, token, err := ReaderStep(tc.scheme, tc.key, encB, rndA)
			if err != nil {
				t.Fatal(err)
			}
			cs, resp, err := card.Finish(token)
			if err != nil {
				t.Fatalf("card: %v", err)
			}
			rs, err := rd.Finish(resp)
			if err != nil {
				t.Fatalf("reader: %v", err)
			}
			if cs.key != rs.key {
				t.Fatal("session keys differ")
			}
			uid := unhex(t, "04440F32763180")
			rs.Command(0x51, nil)
			cs.Command(0x51, nil)
			got, err := rs.OpenFull(0x00, cs.SealFull(0x00, uid), len(uid))
			if err != nil || !bytes.Equal(got, uid) {
				t.Fatalf("GetCardUID: %X %v", got, err)
			}
			rs.Command(0x64, []byte{0})
			cs.Command(0x64, []byte{0})
			if got, err := rs.OpenPlain(0x00, cs.SealPlain(0x00, []byte{7})); err != nil || !bytes.Equal(got, []byte{7}) {
				t.Fatalf("GetKeyVersion: %X %v", got, err)
			}

			// Bit 0 of a DES key byte is parity: change bit 1.
			other := tc.key
			other.Data[15] ^= 2
			if tc.key.single() {
				other.Data[7] ^= 2
			}
			_, token, _ = ReaderStep(tc.scheme, other, encB, rndA)
			if _, _, err := card.Finish(token); !errors.Is(err, ErrAuth) {
				t.Fatalf("another key: %v, want ErrAuth", err)
			}
		})
	}
}

// A modified enciphered answer, or one MACed in another session, fails.
func TestIntegrity(t *testing.T) {
	s := NewSession(AES, Key{AES: true, Data: [16]byte{1}})
	r := NewSession(AES, Key{AES: true, Data: [16]byte{1}})
	enc := s.SealFull(0, []byte("0123456"))
	enc[3] ^= 1
	if _, err := r.OpenFull(0, enc, 7); !errors.Is(err, ErrIntegrity) {
		t.Fatalf("modified: %v", err)
	}
	s2 := NewSession(AES, Key{AES: true, Data: [16]byte{2}})
	if _, err := NewSession(AES, Key{AES: true, Data: [16]byte{1}}).OpenPlain(0, s2.SealPlain(0, []byte{1})); !errors.Is(err, ErrIntegrity) {
		t.Fatalf("another session: %v", err)
	}
	l := NewSession(Legacy, Key{})
	enc = l.SealFull(0, []byte("0123456"))
	enc[0] ^= 1
	if _, err := NewSession(Legacy, Key{}).OpenFull(0, enc, 7); !errors.Is(err, ErrIntegrity) {
		t.Fatalf("legacy modified: %v", err)
	}
}
