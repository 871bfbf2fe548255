package aescmac

import (
	"encoding/hex"
	"testing"
)

func b16(t *testing.T, s string) [16]byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 16 {
		t.Fatalf("bad key %q", s)
	}
	return [16]byte(b)
}

func eqHex(t *testing.T, what string, got []byte, want string) {
	t.Helper()
	if g := hex.EncodeToString(got); g != want {
		t.Errorf("%s = %s, want %s", what, g, want)
	}
}

// RFC 4493 §4: the subkeys and the four examples.
func TestRFC4493(t *testing.T) {
	k := New(b16(t, "2b7e151628aed2a6abf7158809cf4f3c"))
	k1, k2 := k.Subkeys()
	eqHex(t, "K1", k1[:], "fbeed618357133667c85e08f7236a8de")
	eqHex(t, "K2", k2[:], "f7ddac306ae266ccf90bc11ee46d513b")
	const m64 = "6bc1bee22e409f96e93d7e117393172a" + "ae2d8a571e03ac9c9eb76fac45af8e51" +
		"30c81c46a35ce411e5fbc1191a0a52ef" + "f69f2445df4f9b17ad2b417be66c3710"
	for _, tc := range []struct{ msg, mac string }{
		{"", "bb1d6929e95937287fa37d129b756746"},
		{m64[:32], "070a16b46b4d4144f79bdd9dd04a287c"},
		{m64[:80], "dfa66747de9ae63030ca32611497c827"},
		{m64, "51f0bebf7e3b9d92fc49741779363cfe"},
	} {
		msg, _ := hex.DecodeString(tc.msg)
		got := k.Sum(msg)
		eqHex(t, "CMAC of "+tc.msg, got[:], tc.mac)
	}
}

// NXP AN10922 §2.2.1: the example's subkeys and diversified key (input
// 04782E21801D803042F54E585020416275, after the 0x01 prefix).
func TestAN10922(t *testing.T) {
	k := New(b16(t, "00112233445566778899aabbccddeeff"))
	k1, k2 := k.Subkeys()
	eqHex(t, "K1", k1[:], "fbc9f75c9413c041dfee452d3f0706d1")
	eqHex(t, "K2", k2[:], "f793eeb928278083bfdc8a5a7e0e0d25")
	m, _ := hex.DecodeString("04782e21801d803042f54e585020416275")
	got := k.Diversify(m)
	eqHex(t, "diversified key", got[:], "a8dd63a3b89d54b37ca802473fda9175")
}
