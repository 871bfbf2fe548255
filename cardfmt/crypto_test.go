package cardfmt

import (
	"bytes"
	"encoding/hex"
	"testing"

	"github.com/encoder-bridge/encoder-bridge/internal/aescmac"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

func key16(t testing.TB, s string) [16]byte {
	t.Helper()
	var k [16]byte
	if b := unhex(t, s); len(b) != 16 {
		t.Fatalf("key %q is %d bytes", s, len(b))
	} else {
		copy(k[:], b)
	}
	return k
}

// RFC 4493, section 4 (Test Vectors): AES-128 key, subkeys and the four
// examples.
const rfc4493Key = "2b7e151628aed2a6abf7158809cf4f3c"

func TestCMACSubkeysRFC4493(t *testing.T) {
	k1, k2 := aescmac.New(key16(t, rfc4493Key)).Subkeys()
	if got, want := hex.EncodeToString(k1[:]), "fbeed618357133667c85e08f7236a8de"; got != want {
		t.Errorf("K1 = %s, want %s", got, want)
	}
	if got, want := hex.EncodeToString(k2[:]), "f7ddac306ae266ccf90bc11ee46d513b"; got != want {
		t.Errorf("K2 = %s, want %s", got, want)
	}
}

func TestCMACRFC4493(t *testing.T) {
	const m64 = "6bc1bee22e409f96e93d7e117393172a" + "ae2d8a571e03ac9c9eb76fac45af8e51" +
		"30c81c46a35ce411e5fbc1191a0a52ef" + "f69f2445df4f9b17ad2b417be66c3710"
	for _, tc := range []struct {
		name string
		msg  string
		mac  string
	}{
		{"example 1: len 0", "", "bb1d6929e95937287fa37d129b756746"},
		{"example 2: len 16", m64[:32], "070a16b46b4d4144f79bdd9dd04a287c"},
		{"example 3: len 40", m64[:80], "dfa66747de9ae63030ca32611497c827"},
		{"example 4: len 64", m64, "51f0bebf7e3b9d92fc49741779363cfe"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := CMAC(key16(t, rfc4493Key), unhex(t, tc.msg))
			if hex.EncodeToString(got[:]) != tc.mac {
				t.Fatalf("CMAC = %x, want %s", got, tc.mac)
			}
		})
	}
}

// AN10922 AES-128 diversification vectors, as libfreefare's test suite
// carries them (github.com/nfc-tools/libfreefare,
// test/test_mifare_key_deriver_an10922.c at commit
// c2b0cfa4b9fb0e4be88604f00b7a2405618d5abc):
//   - test_mifare_key_deriver_an10922_aes128: "from NXP's AN10922, section
//     2.2.1": UID 04782E21801D80, application id 3042F5, system
//     identifier "NXP Abu" (4E585020416275), 17 bytes in all, so the
//     second block is complete but for one byte of padding.
//   - test_mifare_key_deriver_an10922_aes128_short_m: "from AN10957,
//     pages 13-14": a 7-byte M, where AN10922 pads to two blocks and plain
//     CMAC would pad to one. The same file's issue_91 test gives the
//     plain-CMAC result, 721e2c01e81af85d815633969cea2607, which must not
//     come out.
func TestDiversifyAES128AN10922(t *testing.T) {
	for _, tc := range []struct {
		name, master, m, want string
	}{
		{"AN10922 2.2.1", "00112233445566778899aabbccddeeff", "04782e21801d80" + "3042f5" + "4e585020416275", "a8dd63a3b89d54b37ca802473fda9175"},
		{"AN10957 short M", "f3f9377698707b688eaf84abe39e3791", "04deadbeeffeed", "0bb408baff98b6ee9f2e1585777f6a51"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DiversifyAES128(key16(t, tc.master), unhex(t, tc.m))
			if err != nil {
				t.Fatal(err)
			}
			if hex.EncodeToString(got[:]) != tc.want {
				t.Fatalf("diversified key = %x, want %s", got, tc.want)
			}
		})
	}
	// The issue 91 variant is plain CMAC over 0x01 || M: check that the
	// padding rule really differs from it.
	plain := CMAC(key16(t, "f3f9377698707b688eaf84abe39e3791"), unhex(t, "0104deadbeeffeed"))
	if got := hex.EncodeToString(plain[:]); got != "721e2c01e81af85d815633969cea2607" {
		t.Fatalf("plain CMAC of 0x01||M = %s, want libfreefare's issue 91 value", got)
	}
}

// With a 31-byte M the input fills both blocks: AN10922 then is plain
// CMAC of 0x01 || M, K1 and no padding.
func TestDiversifyAES128FullBlocksIsCMAC(t *testing.T) {
	master := key16(t, "000102030405060708090a0b0c0d0e0f")
	m := bytes.Repeat([]byte{0xa5}, 31)
	got, err := DiversifyAES128(master, m)
	if err != nil {
		t.Fatal(err)
	}
	if want := CMAC(master, append([]byte{0x01}, m...)); got != want {
		t.Fatalf("31-byte M: %x, want CMAC %x", got, want)
	}
	// With a 14-byte M, D is 15 bytes: AN10922 pads it to two blocks,
	// CMAC to one, so the two differ.
	short := m[:14]
	got, _ = DiversifyAES128(master, short)
	if CMAC(master, append([]byte{0x01}, short...)) == got {
		t.Fatal("15-byte D must not be padded to one block")
	}
}

func TestDiversifyAES128InputLength(t *testing.T) {
	var master [16]byte
	for _, n := range []int{0, 32, 100} {
		if _, err := DiversifyAES128(master, make([]byte, n)); err == nil {
			t.Errorf("%d-byte input accepted", n)
		}
	}
	for _, n := range []int{1, 15, 16, 31} {
		if _, err := DiversifyAES128(master, make([]byte, n)); err != nil {
			t.Errorf("%d-byte input: %v", n, err)
		}
	}
}

func BenchmarkCMAC64(b *testing.B) {
	key := [16]byte{1}
	msg := make([]byte, 64)
	for b.Loop() {
		CMAC(key, msg)
	}
}

func BenchmarkDiversify(b *testing.B) {
	master := [16]byte{1}
	m := []byte{0x04, 0x78, 0x2e, 0x21, 0x80, 0x1d, 0x80, 'A', 1, 2, 3, 4, 5, 6, 7, 8}
	for b.Loop() {
		if _, err := DiversifyAES128(master, m); err != nil {
			b.Fatal(err)
		}
	}
}
