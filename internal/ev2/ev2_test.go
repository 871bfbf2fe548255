package ev2

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/encoder-bridge/encoder-bridge/internal/aescmac"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

func b16(t testing.TB, s string) [16]byte {
	t.Helper()
	var k [16]byte
	if b := unhex(t, s); len(b) != 16 {
		t.Fatalf("%q is %d bytes, want 16", s, len(b))
	} else {
		copy(k[:], b)
	}
	return k
}

func b4(t testing.TB, s string) [4]byte {
	t.Helper()
	var k [4]byte
	if b := unhex(t, s); len(b) != 4 {
		t.Fatalf("%q is %d bytes, want 4", s, len(b))
	} else {
		copy(k[:], b)
	}
	return k
}

func eqHex(t testing.TB, what string, got []byte, want string) {
	t.Helper()
	if w := unhex(t, want); !bytes.Equal(got, w) {
		t.Errorf("%s = %X, want %X", what, got, w)
	}
}

// RFC 4493 §4: the four AES-CMAC examples.
func TestCMACRFC4493(t *testing.T) {
	const key = "2b7e151628aed2a6abf7158809cf4f3c"
	const m64 = "6bc1bee22e409f96e93d7e117393172a" + "ae2d8a571e03ac9c9eb76fac45af8e51" +
		"30c81c46a35ce411e5fbc1191a0a52ef" + "f69f2445df4f9b17ad2b417be66c3710"
	for _, tc := range []struct{ name, msg, mac string }{
		{"example 1: len 0", "", "bb1d6929e95937287fa37d129b756746"},
		{"example 2: len 16", m64[:32], "070a16b46b4d4144f79bdd9dd04a287c"},
		{"example 3: len 40", m64[:80], "dfa66747de9ae63030ca32611497c827"},
		{"example 4: len 64", m64, "51f0bebf7e3b9d92fc49741779363cfe"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := CMAC(b16(t, key), unhex(t, tc.msg))
			eqHex(t, "CMAC", got[:], tc.mac)
		})
	}
}

// NXP AN10922 §2.2.1: the CMAC subkeys of the example master key.
func TestCMACSubkeysAN10922(t *testing.T) {
	k1, k2 := aescmac.FromBlock(newBlock(b16(t, "00112233445566778899AABBCCDDEEFF"))).Subkeys()
	eqHex(t, "K1", k1[:], "FBC9F75C9413C041DFEE452D3F0706D1")
	eqHex(t, "K2", k2[:], "F793EEB928278083BFDC8A5A7E0E0D25")
}

// CRC-32/JAMCRC: the check value of the CRC catalogue ("123456789" gives
// 340BC6D9), sent least significant byte first.
func TestCRC32CheckValue(t *testing.T) {
	got := CRC32([]byte("123456789"))
	eqHex(t, "CRC32", got[:], "D9C60B34")
}

// NXP AN12196 rev 2.0 §5.6 Table 14: AuthenticateEV2First with key 0x00
// on NTAG 424 DNA, every step of both sides.
func TestAuthenticateEV2FirstAN12196Table14(t *testing.T) {
	key := b16(t, "00000000000000000000000000000000")
	rndA := b16(t, "13C5DB8A5930439FC3DEF9A4C675360F")
	rndB := b16(t, "B9E2FC789B64BF237CCCAA20EC7E6E48")
	encRndB := unhex(t, "A04C124213C186F22399D33AC2A30215") // step 7
	part2Want := "35C3E05A752E0144BAC0DE51C1F22C56B34408A23D8AEA266CAB947EA8E0118D"
	resp := unhex(t, "3FA64DB5446D1F34CD6EA311167F5E4985B89690C04A05F17FA7AB2F08120663")

	// The card's first answer is E(K0, RndB) with a zero IV.
	got, err := EncryptCBC(key, zeroIV, rndB[:])
	if err != nil {
		t.Fatal(err)
	}
	eqHex(t, "E(K0, RndB)", got, hex.EncodeToString(encRndB))

	rot := RotateLeft(rndB)
	eqHex(t, "RndB'", rot[:], "E2FC789B64BF237CCCAA20EC7E6E48B9") // step 11

	part2, gotB, err := ReaderPart2(key, encRndB, rndA) // step 13
	if err != nil {
		t.Fatal(err)
	}
	if gotB != rndB {
		t.Errorf("RndB = %X, want %X", gotB, rndB)
	}
	eqHex(t, "E(K0, RndA || RndB')", part2, part2Want)

	cardA, err := CardPart2(key, rndB, part2)
	if err != nil || cardA != rndA {
		t.Fatalf("CardPart2 = %X, %v; want %X", cardA, err, rndA)
	}
	eqHex(t, "E(K0, TI || RndA' || PDcap2 || PCDcap2)", CardFirst(key, b4(t, "9D00C4DF"), rndA), hex.EncodeToString(resp))

	sv1 := sessionVector(labelSV1, rndA, rndB)
	eqHex(t, "SV1", sv1[:], "A55A0001008013C56268A548D8FBBF237CCCAA20EC7E6E48C3DEF9A4C675360F")
	s, err := ReaderFirst(key, rndA, rndB, resp)
	if err != nil {
		t.Fatal(err)
	}
	eqHex(t, "TI", s.TI[:], "9D00C4DF")
	eqHex(t, "SesAuthENCKey", s.enc[:], "1309C877509E5A215007FF0ED19CA564")
	eqHex(t, "SesAuthMACKey", s.mac[:], "4C6626F5E72EA694202139295C7A7FC7")
	if s.Ctr != 0 {
		t.Errorf("CmdCtr = %d, want 0", s.Ctr)
	}
}

// NXP AN12343 rev 1.0 §5.3 (pages 33-34): session keys of an
// AuthenticateEV2First with the all-zero AES key on DESFire EV2.
func TestSessionKeysAN12343(t *testing.T) {
	enc, mac := SessionKeys(
		b16(t, "00000000000000000000000000000000"),
		b16(t, "B04D0787C93EE0CC8CACC8E86F16C6FE"),
		b16(t, "FA659AD0DCA738DD65DC7DC38612AD81"))
	eqHex(t, "SesAuthENCKey", enc[:], "63DC07286289A7A6C0334CA31C314A04")
	eqHex(t, "SesAuthMACKey", mac[:], "774F26743ECE6AF5033B6AE8522946F6")
}

// A wrong key on either side is an authentication error, never a session.
func TestAuthenticateWrongKey(t *testing.T) {
	key := b16(t, "00000000000000000000000000000000")
	other := b16(t, "00000000000000000000000000000001")
	rndA := b16(t, "13C5DB8A5930439FC3DEF9A4C675360F")
	rndB := b16(t, "B9E2FC789B64BF237CCCAA20EC7E6E48")
	encRndB, _ := EncryptCBC(key, zeroIV, rndB[:])

	part2, _, err := ReaderPart2(other, encRndB, rndA)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := CardPart2(key, rndB, part2); !errors.Is(err, ErrAuth) {
		t.Errorf("card with another key: err = %v, want ErrAuth", err)
	}
	resp := CardFirst(other, [4]byte{1, 2, 3, 4}, rndA)
	if _, err := ReaderFirst(key, rndA, rndB, resp); !errors.Is(err, ErrAuth) {
		t.Errorf("reader, card answered under another key: err = %v, want ErrAuth", err)
	}
	s := NewSession(key, key, [4]byte{})
	if err := ReaderNonFirst(s, key, rndA, rndB, CardNonFirst(other, rndA)); !errors.Is(err, ErrAuth) {
		t.Errorf("NonFirst under another key: err = %v, want ErrAuth", err)
	}
	if _, _, err := ReaderPart2(key, encRndB[:8], rndA); !errors.Is(err, ErrLength) {
		t.Errorf("short E(RndB): err = %v, want ErrLength", err)
	}
}

// AuthenticateEV2NonFirst keeps TI and the counter and changes the keys.
func TestAuthenticateEV2NonFirst(t *testing.T) {
	key := b16(t, "000102030405060708090A0B0C0D0E0F")
	rndA := b16(t, "13C5DB8A5930439FC3DEF9A4C675360F")
	rndB := b16(t, "B9E2FC789B64BF237CCCAA20EC7E6E48")
	s := NewSession([16]byte{1}, [16]byte{2}, [4]byte{9, 8, 7, 6})
	s.Ctr = 5
	if err := ReaderNonFirst(s, key, rndA, rndB, CardNonFirst(key, rndA)); err != nil {
		t.Fatal(err)
	}
	enc, mac := SessionKeys(key, rndA, rndB)
	if s.enc != enc || s.mac != mac || s.Ctr != 5 || s.TI != [4]byte{9, 8, 7, 6} {
		t.Errorf("after NonFirst: keys changed %v/%v, Ctr %d, TI %X", s.enc == enc, s.mac == mac, s.Ctr, s.TI)
	}
}

// NXP AN12196 rev 2.0 Table 19: ChangeFileSettings of file 02 in
// CommMode.Full, CmdCtr 1, in the session of Table 14.
func TestChangeFileSettingsAN12196Table19(t *testing.T) {
	s := NewSession(b16(t, "1309C877509E5A215007FF0ED19CA564"), b16(t, "4C6626F5E72EA694202139295C7A7FC7"), b4(t, "9D00C4DF"))
	s.Ctr = 1
	iv := s.CommandIV()
	eqHex(t, "IV", iv[:], "3E27082AB2ACC1EF55C57547934E9962")
	data := unhex(t, "4000E0C1F121200000430000430000")
	field := s.SealCommand(0x5F, []byte{0x02}, data, true)
	eqHex(t, "data field", field, "02"+"61B6D97903566E84C3AE5274467E89EA"+"D799B7C1A0EF7A04")

	hdr, plain, err := s.OpenCommand(0x5F, field, 1, true)
	if err != nil || !bytes.Equal(hdr, []byte{2}) || !bytes.Equal(plain, data) {
		t.Errorf("OpenCommand = %X, %X, %v", hdr, plain, err)
	}
}

// NXP AN12196 rev 2.0 Table 26 (ChangeKey of the session's own key, key 0,
// CmdCtr 3) and Table 25 (another key, key 2, CmdCtr 2), and NXP AN12343
// rev 1.0 Table 40 (key 0, CmdCtr 0, on DESFire EV2).
func TestChangeKeyVectors(t *testing.T) {
	for _, tc := range []struct {
		name      string
		ti        string
		ctr       uint16
		enc, mac  string
		keyNo     byte
		newKey    string
		version   byte
		other     bool
		wantIV    string // "" when the document gives none
		wantField string
	}{
		{
			name: "AN12196 Table 26", ti: "7614281A", ctr: 3,
			enc: "4CF3CB41A22583A61E89B158D252FC53", mac: "5529860B2FC5FB6154B7F28361D30BF9",
			keyNo: 0, newKey: "5004BF991F408672B1EF00F08F9E8647", version: 1,
			wantIV:    "01602D579423B2797BE8B478B0B4D27B",
			wantField: "00" + "C0EB4DEEFEDDF0B513A03A95A75491818580503190D4D05053FF75668A01D6FD" + "A6610234BDED6432",
		},
		{
			name: "AN12196 Table 25", ti: "7614281A", ctr: 2,
			enc: "4CF3CB41A22583A61E89B158D252FC53", mac: "5529860B2FC5FB6154B7F28361D30BF9",
			keyNo: 2, newKey: "F3847D627727ED3BC9C4CC050489B966", version: 1, other: true,
			wantField: "02" + "2CF362B7BF4311FF3BE1DAA295E8C68DE09050560D19B9E16C2393AE9CD1FAC7" + "5D0CE20BCD1D06E6",
		},
		{
			name: "AN12343 Table 40", ti: "94297F4D", ctr: 0,
			enc: "E156C8522F7C8DC82B0C99BA847DE723", mac: "45D50C1570000D2F173DF949288E3CAD",
			keyNo: 0, newKey: "01234567890123456789012345678901", version: 0,
			wantIV:    "BF4A2FB89311ED58E9DCBE56FC17794C",
			wantField: "00" + "BF5400DC97A1FBD65BE870716D6F11F8161BB4CA472856DB94AB94B2EC1A13E6" + "27CE07CF56C11091",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewSession(b16(t, tc.enc), b16(t, tc.mac), b4(t, tc.ti))
			s.Ctr = tc.ctr
			if tc.wantIV != "" {
				iv := s.CommandIV()
				eqHex(t, "IV", iv[:], tc.wantIV)
			}
			var old *[16]byte
			if tc.other {
				old = new([16]byte) // the factory key
			}
			data := ChangeKeyData(b16(t, tc.newKey), tc.version, old)
			field := s.SealCommand(0xC4, []byte{tc.keyNo}, data, true)
			eqHex(t, "ChangeKey data field", field, tc.wantField)
		})
	}
}

// NXP AN12343 rev 1.0 page 54: MACt of a WriteData (8D) and a ReadData
// (AD) in CommMode.MAC and of both responses, CmdCtr 0 then 1.
func TestMACModeAN12343(t *testing.T) {
	s := NewSession([16]byte{}, b16(t, "9366FA195EB566F5BD2BAD4020B83002"), b4(t, "E2D3AF69"))
	write := unhex(t, "00000000190000"+strings.Repeat("22", 25))
	hdr, data := write[:7], write[7:]
	m := s.CommandMAC(0x8D, hdr, data)
	eqHex(t, "WriteData MACt", m[:], "68F2C28C575A1628")
	m = s.ResponseMAC(0x00, nil)
	eqHex(t, "WriteData response MACt", m[:], "0820F68898C2A7F1")
	if err := s.Advance(); err != nil {
		t.Fatal(err)
	}
	m = s.CommandMAC(0xAD, unhex(t, "00000000300000"), nil)
	eqHex(t, "ReadData MACt", m[:], "0D9BE191D5960834")
	read := unhex(t, strings.Repeat("22", 25)+strings.Repeat("00", 23))
	m = s.ResponseMAC(0x00, read)
	eqHex(t, "ReadData response MACt", m[:], "A49A44222D926666")

	got, err := s.OpenResponse(0x00, append(read, m[:]...), false)
	if err != nil || !bytes.Equal(got, read) {
		t.Errorf("OpenResponse = %X, %v", got, err)
	}
}

// NXP AN12196 rev 2.0 Table 7: GetFileSettings of file 02 in CommMode.MAC
// (CmdCtr 0), command and response.
func TestGetFileSettingsAN12196Table7(t *testing.T) {
	s := NewSession([16]byte{}, b16(t, "8248134A386E86EB7FAF54A52E536CB6"), b4(t, "7A21085E"))
	field := s.SealCommand(0xF5, []byte{0x02}, nil, false)
	eqHex(t, "command data field", field, "02"+"6597A457C8CD442C")
	resp := unhex(t, "0040EEEE000100D1FE001F00004400004400002000006A0000"+"2A474282E7A47986")
	got, err := s.OpenResponse(0x00, resp, false)
	if err != nil {
		t.Fatal(err)
	}
	eqHex(t, "settings", got, "0040EEEE000100D1FE001F00004400004400002000006A0000")
}

// Truncation keeps S1, S3 … S15 (AN12196 Table 26, steps 15-16).
func TestTruncateAN12196(t *testing.T) {
	got := Truncate(b16(t, "B7A60161F202EC3489BD4BEDEF64BB32"))
	eqHex(t, "MACt", got[:], "A6610234BDED6432")
}

// A replayed command (old counter), a modified byte or a response of
// another exchange fails the MAC check; the reader's and the card's
// sessions agree while both advance.
func TestSecureMessagingRefusesReplayAndTamper(t *testing.T) {
	enc, mac := b16(t, "1309C877509E5A215007FF0ED19CA564"), b16(t, "4C6626F5E72EA694202139295C7A7FC7")
	pcd := NewSession(enc, mac, b4(t, "9D00C4DF"))
	picc := NewSession(enc, mac, b4(t, "9D00C4DF"))

	data := []byte("a credential record of 32 bytes!")
	field := pcd.SealCommand(0x3D, []byte{1, 0, 0, 0, 32, 0, 0}, data, true)
	_, got, err := picc.OpenCommand(0x3D, field, 7, true)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("OpenCommand = %X, %v", got, err)
	}
	resp := picc.SealResponse(0x00, nil, true)
	if _, err := pcd.OpenResponse(0x00, resp, true); err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(picc.Advance(), pcd.Advance()); err != nil {
		t.Fatal(err)
	}

	if _, _, err := picc.OpenCommand(0x3D, field, 7, true); !errors.Is(err, ErrMAC) {
		t.Errorf("replayed command: err = %v, want ErrMAC", err)
	}
	if _, err := pcd.OpenResponse(0x00, resp, true); !errors.Is(err, ErrMAC) {
		t.Errorf("replayed response: err = %v, want ErrMAC", err)
	}
	field = pcd.SealCommand(0x3D, []byte{1, 0, 0, 0, 32, 0, 0}, data, true)
	for i := range field {
		bad := bytes.Clone(field)
		bad[i] ^= 0x01
		if _, _, err := picc.OpenCommand(0x3D, bad, 7, true); !errors.Is(err, ErrMAC) {
			t.Fatalf("byte %d flipped: err = %v, want ErrMAC", i, err)
		}
	}
	if _, _, err := picc.OpenCommand(0x3B, field, 7, true); !errors.Is(err, ErrMAC) {
		t.Errorf("other command code: err = %v, want ErrMAC", err)
	}

	// Read in full mode: data of every length round-trips.
	for n := range 40 {
		plain := bytes.Repeat([]byte{byte(n)}, n)
		r := picc.SealResponse(0x00, plain, true)
		got, err := pcd.OpenResponse(0x00, r, true)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("len %d: OpenResponse = %X, %v", n, got, err)
		}
	}
}

func TestPadding(t *testing.T) {
	for _, tc := range []struct{ in, out string }{
		{"", "80000000000000000000000000000000"},
		{"01", "01800000000000000000000000000000"},
		{"0102030405060708090A0B0C0D0E0F", "0102030405060708090A0B0C0D0E0F80"},
		{"0102030405060708090A0B0C0D0E0F10", "0102030405060708090A0B0C0D0E0F10" + "80000000000000000000000000000000"},
	} {
		p := Pad(unhex(t, tc.in))
		eqHex(t, "Pad("+tc.in+")", p, tc.out)
		u, err := Unpad(p)
		if err != nil || !bytes.Equal(u, unhex(t, tc.in)) {
			t.Errorf("Unpad(%s) = %X, %v", tc.out, u, err)
		}
	}
	for _, bad := range []string{"", "00000000000000000000000000000000", "0102030405060708090A0B0C0D0E0F01", "0180"} {
		if _, err := Unpad(unhex(t, bad)); err == nil {
			t.Errorf("Unpad(%s) accepted", bad)
		}
	}
}

func TestCounterExhausted(t *testing.T) {
	s := NewSession([16]byte{}, [16]byte{}, [4]byte{})
	s.Ctr = 0xFFFE
	if err := s.Advance(); err != nil {
		t.Fatal(err)
	}
	if err := s.Advance(); !errors.Is(err, ErrCounter) {
		t.Errorf("Advance at FFFF: err = %v, want ErrCounter", err)
	}
}

func TestSessionRedacted(t *testing.T) {
	s := NewSession(b16(t, "1309C877509E5A215007FF0ED19CA564"), [16]byte{}, [4]byte{})
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%+v", s), fmt.Sprintf("%#v", s), fmt.Sprintf("%x", s)} {
		if out != "ev2.Session{redacted}" {
			t.Errorf("session formats as %q", out)
		}
	}
}
