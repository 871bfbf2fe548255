package chip

import (
	"bytes"
	"fmt"
	"testing"
)

var testUID7 = hx("04A1B2C3D4E5F6")

// Page maps from the datasheets, written out independently of ultralight.go.
var ulMaps = []struct {
	model                        UltralightModel
	kind                         string
	last, userEnd, dynLock, cfg0 int
	version                      string
	cc                           string
}{
	{MF0UL11, KindMF0UL11, 0x13, 0x0F, 0, 0x10, "0004030101000B03", "00000000"},
	{MF0UL21, KindMF0UL21, 0x28, 0x23, 0x24, 0x25, "0004030101000E03", "00000000"},
	{NTAG213, KindNTAG213, 0x2C, 0x27, 0x28, 0x29, "0004040201000F03", "E1101200"},
	{NTAG215, KindNTAG215, 0x86, 0x81, 0x82, 0x83, "0004040201001103", "E1103E00"},
	{NTAG216, KindNTAG216, 0xE6, 0xE1, 0xE2, 0xE3, "0004040201001303", "E1106D00"},
}

func TestUltralightFreshState(t *testing.T) {
	for _, m := range ulMaps {
		t.Run(m.kind, func(t *testing.T) {
			u := NewUltralight(m.model, testUID7)
			if u.Pages() != m.last+1 || u.ConfigPage() != m.cfg0 || u.Kind() != m.kind || u.Model() != m.model {
				t.Fatalf("pages %d cfg0 %#x kind %s", u.Pages(), u.ConfigPage(), u.Kind())
			}
			if !bytes.Equal(u.UID(), testUID7) {
				t.Fatalf("UID %X", u.UID())
			}
			wantPages := map[int]string{
				0: "04A1B2" + fmt.Sprintf("%02X", 0x88^0x04^0xA1^0xB2),
				1: "C3D4E5F6",
				2: fmt.Sprintf("%02X480000", 0xC3^0xD4^0xE5^0xF6),
				3: m.cc,
			}
			ntag := m.cc != "00000000"
			if ntag {
				wantPages[m.cfg0] = "040000FF"
			} else {
				wantPages[m.cfg0] = "000000FF"
			}
			wantPages[m.cfg0+1] = "00050000"
			wantPages[m.cfg0+2] = "FFFFFFFF"
			wantPages[m.cfg0+3] = "00000000"
			for p, want := range wantPages {
				if got := hexOf(u.Page(p)); got != want {
					t.Errorf("page %#x = %s, want %s", p, got, want)
				}
			}
			v, ok := direct(t, u, []byte{0x60})
			if !ok || hexOf(v) != m.version {
				t.Fatalf("GET_VERSION %X", v)
			}
			// The last page is readable (with roll-over), the next is not.
			if _, ok := direct(t, u, []byte{0x30, byte(m.last)}); !ok {
				t.Fatal("READ of last page NAKed")
			}
			if _, ok := direct(t, u, []byte{0x30, byte(m.last + 1)}); ok {
				t.Fatal("READ past the last page answered")
			}
			u.Reset()
			// PWD reads as zeros.
			r, _ := direct(t, u, []byte{0x30, byte(m.cfg0)})
			if !bytes.Equal(r[8:16], make([]byte, 8)) || !bytes.Equal(r[0:4], u.Page(m.cfg0)) {
				t.Fatalf("config read %X", r)
			}
			// User memory ends where the map says: the page after it is
			// not ordinary user memory (lock bytes or CFG0).
			if m.dynLock != 0 {
				if hexOf(u.Page(m.dynLock)[:3]) != "000000" {
					t.Fatalf("dynamic lock page %X", u.Page(m.dynLock))
				}
			}
		})
	}
}

func TestUltralightRollOver(t *testing.T) {
	u := NewUltralight(NTAG213, testUID7)
	u.SetPage(0x2A, hx("00050000"))
	r, ok := direct(t, u, []byte{0x30, 0x2A})
	if !ok {
		t.Fatal("NAK")
	}
	want := append(append(append([]byte{}, u.Page(0x2A)...), make([]byte, 8)...), u.Page(0)...)
	if !bytes.Equal(r, want) {
		t.Fatalf("roll-over READ %X, want %X", r, want)
	}
	// FAST_READ does not roll over.
	if _, ok := direct(t, u, []byte{0x3A, 0x2A, 0x2D}); ok {
		t.Fatal("FAST_READ past the end answered")
	}
	u.Reset()
	if _, ok := direct(t, u, []byte{0x3A, 0x05, 0x04}); ok {
		t.Fatal("FAST_READ with start > end answered")
	}
	u.Reset()
	r, ok = direct(t, u, []byte{0x3A, 0x00, 0x2C})
	if !ok || len(r) != 0x2D*4 {
		t.Fatalf("full FAST_READ: %v %d bytes", ok, len(r))
	}
	// The APDU path returns the first Le bytes of the chip READ.
	if r := wantSW(t, u, "FF B0 00 2C 10", "9000"); !bytes.Equal(r[12:16], u.Page(2)) {
		t.Fatalf("READ BINARY roll-over %X", r)
	}
	if r := wantSW(t, u, "FF B0 00 04 04", "9000"); !bytes.Equal(r, u.Page(4)) {
		t.Fatalf("READ BINARY Le=4 %X", r)
	}
	wantSW(t, u, "FF B0 00 04 08", "6700")
	wantSW(t, u, "FF B0 00 04 00", "6700")
	wantSW(t, u, "FF B0 01 04 10", "6A82")
}

func TestUltralightWriteAPDU(t *testing.T) {
	u := NewUltralight(NTAG215, testUID7)
	wantSW(t, u, "FF D6 00 10 04 DEADBEEF", "9000")
	if hexOf(u.Page(0x10)) != "DEADBEEF" {
		t.Fatalf("page 16 %X", u.Page(0x10))
	}
	wantSW(t, u, "FF D6 00 10 10 00000000000000000000000000000000", "6700")
	wantSW(t, u, "FF D6 00 10 03 000000", "6700")
	// UID pages are read-only; the NAK halts the tag.
	wantSW(t, u, "FF D6 00 00 04 00000000", "6300")
	wantSW(t, u, "FF B0 00 04 10", "6300")
	u.Reset()
	wantSW(t, u, "FF D6 00 87 04 00000000", "6300") // past the end
}

func TestUltralightCompatibilityWrite(t *testing.T) {
	u := NewUltralight(MF0UL21, testUID7)
	frame := append([]byte{0xA0, 0x05}, hx("0102030405060708090A0B0C0D0E0F10")...)
	if r, ok := direct(t, u, frame); !ok || !bytes.Equal(r, ack) {
		t.Fatalf("one-frame COMPATIBILITY_WRITE: %X %v", r, ok)
	}
	if hexOf(u.Page(5)) != "01020304" || hexOf(u.Page(6)) != "00000000" {
		t.Fatal("compatibility write must write only the first four bytes")
	}
	startSession(t, u)
	if r, ok := session(t, u, []byte{0xA0, 0x06}); !ok || !bytes.Equal(r, ack) {
		t.Fatalf("part 1: %X %v", r, ok)
	}
	if r, ok := session(t, u, hx("AABBCCDD000000000000000000000000")); !ok || !bytes.Equal(r, ack) {
		t.Fatalf("part 2: %X %v", r, ok)
	}
	if hexOf(u.Page(6)) != "AABBCCDD" {
		t.Fatalf("page 6 %X", u.Page(6))
	}
}

func TestUltralightStaticLockBits(t *testing.T) {
	u := NewUltralight(MF0UL11, testUID7)
	w := func(page int, data string) bool {
		_, ok := direct(t, u, append([]byte{0xA2, byte(page)}, hx(data)...))
		if !ok {
			u.Reset()
		}
		return ok
	}
	// Page 2: bytes 0-1 ignored, lock bytes ORed.
	if !w(2, "FFFF1000") || hexOf(u.Page(2)[2:]) != "1000" || u.Page(2)[0] == 0xFF {
		t.Fatalf("page 2 %X", u.Page(2))
	}
	if !w(2, "00000000") || hexOf(u.Page(2)[2:]) != "1000" {
		t.Fatal("lock bits are OTP")
	}
	if w(4, "11111111") {
		t.Fatal("page 4 locked by L4 but writable")
	}
	if !w(5, "11111111") {
		t.Fatal("page 5 not locked")
	}
	// CC/OTP page: OR semantics until L-CC.
	w(3, "F0000000")
	w(3, "0F000001")
	if hexOf(u.Page(3)) != "FF000001" {
		t.Fatalf("OTP page %X", u.Page(3))
	}
	// BL9-4 freezes L4..L9; BL15-10 freezes L10..L15.
	w(2, "00000200")
	w(2, "00002002") // L5 frozen, L9 frozen
	if hexOf(u.Page(2)[2:]) != "1200" {
		t.Fatalf("frozen lock bits changed: %X", u.Page(2))
	}
	w(2, "00000004") // L10 still settable (only BL9-4 is set)
	if u.Page(2)[3] != 0x04 || !w(11, "00000000") || w(10, "00000000") {
		t.Fatalf("L10 handling %X", u.Page(2))
	}
	w(2, "000008FF") // L-CC and the rest of lock byte 1
	if w(3, "00000000") || w(15, "00000000") {
		t.Fatal("L-CC / L15 did not lock")
	}
	// Lock bits act on the config pages not at all.
	if !w(0x10, "000000FF") {
		t.Fatal("CFG0 locked by static lock bits")
	}
}

func TestUltralightDynamicLockBits(t *testing.T) {
	for _, tc := range []struct {
		model  UltralightModel
		dyn    int
		bytes  string // value written to the dynamic lock page
		locked []int
		free   []int
	}{
		{NTAG213, 0x28, "03000000", []int{16, 17, 18, 19}, []int{15, 20, 0x27}},
		{NTAG213, 0x28, "00080000", []int{38, 39}, []int{37}},
		{NTAG215, 0x82, "01000000", []int{16, 31}, []int{32, 0x81}},
		{NTAG215, 0x82, "80000000", []int{0x80, 0x81}, []int{0x7F}},
		{NTAG216, 0xE2, "00200000", []int{0xE0, 0xE1}, []int{0xDF}},
		{MF0UL21, 0x24, "01020000", []int{16, 17, 34, 35}, []int{18, 33}},
	} {
		t.Run(fmt.Sprintf("%v/%s", tc.model, tc.bytes), func(t *testing.T) {
			u := NewUltralight(tc.model, testUID7)
			if _, ok := direct(t, u, append([]byte{0xA2, byte(tc.dyn)}, hx(tc.bytes)...)); !ok {
				t.Fatal("lock write NAKed")
			}
			for _, p := range tc.locked {
				if _, ok := direct(t, u, []byte{0xA2, byte(p), 1, 2, 3, 4}); ok {
					t.Fatalf("page %#x writable", p)
				}
				u.Reset()
			}
			for _, p := range tc.free {
				if _, ok := direct(t, u, []byte{0xA2, byte(p), 1, 2, 3, 4}); !ok {
					t.Fatalf("page %#x locked", p)
				}
			}
		})
	}
	// Block-locking bits freeze page lock bits (NTAG213 BL16-23 = byte 2 bit 0).
	u := NewUltralight(NTAG213, testUID7)
	direct(t, u, hx("A2 28 000001 00"))
	direct(t, u, hx("A2 28 0F0000 00"))
	if hexOf(u.Page(0x28)) != "000001BD" {
		t.Fatalf("frozen dynamic lock bits set: %X", u.Page(0x28))
	}
	direct(t, u, hx("A2 28 100000 00"))
	if hexOf(u.Page(0x28)) != "100001BD" {
		t.Fatalf("unfrozen dynamic lock bit: %X", u.Page(0x28))
	}
}

// protect configures AUTH0, ACCESS, PWD and PACK through the fixtures.
func protect(u *Ultralight, auth0 byte, access byte, pwd string, pack string) {
	cfg := u.ConfigPage()
	p := u.Page(cfg)
	p[3] = auth0
	u.SetPage(cfg, p)
	a := u.Page(cfg + 1)
	a[0] = access
	u.SetPage(cfg+1, a)
	var pw [4]byte
	var pk [2]byte
	copy(pw[:], hx(pwd))
	copy(pk[:], hx(pack))
	u.SetPassword(pw, pk)
}

func TestUltralightWriteProtection(t *testing.T) {
	for _, m := range []UltralightModel{MF0UL11, NTAG213} {
		t.Run(fmt.Sprint(m), func(t *testing.T) {
			u := NewUltralight(m, testUID7)
			protect(u, 0x08, 0x00, "12345678", "ABCD")
			// PROT=0: reads open, writes from AUTH0 need the password.
			if _, ok := direct(t, u, []byte{0x30, 0x08}); !ok {
				t.Fatal("read of write-protected page NAKed")
			}
			if _, ok := direct(t, u, []byte{0xA2, 0x07, 1, 2, 3, 4}); !ok {
				t.Fatal("page below AUTH0 not writable")
			}
			if _, ok := direct(t, u, []byte{0xA2, 0x08, 1, 2, 3, 4}); ok {
				t.Fatal("protected page written without PWD_AUTH")
			}
			if !u.Halted() {
				t.Fatal("NAK must halt the tag")
			}
			if _, ok := direct(t, u, []byte{0x60}); ok {
				t.Fatal("halted tag answered GET_VERSION")
			}
			u.Reset()
			if r, ok := direct(t, u, hx("1B 12345678")); !ok || hexOf(r) != "ABCD" {
				t.Fatalf("PWD_AUTH %X %v", r, ok)
			}
			if _, ok := direct(t, u, []byte{0xA2, 0x08, 1, 2, 3, 4}); !ok {
				t.Fatal("write after PWD_AUTH NAKed")
			}
			// Authentication lasts until the next activation.
			u.Reset()
			if _, ok := direct(t, u, []byte{0xA2, 0x09, 1, 2, 3, 4}); ok {
				t.Fatal("authentication survived Reset")
			}
		})
	}
}

func TestUltralightReadProtection(t *testing.T) {
	u := NewUltralight(NTAG213, testUID7)
	for p := 4; p < 0x10; p++ {
		u.SetPage(p, []byte{byte(p), byte(p), byte(p), byte(p)})
	}
	protect(u, 0x10, accessPROT, "12345678", "ABCD")
	if _, ok := direct(t, u, []byte{0x30, 0x10}); ok {
		t.Fatal("read-protected page read")
	}
	u.Reset()
	// A READ below AUTH0 rolls over to page 0 just before AUTH0.
	r, ok := direct(t, u, []byte{0x30, 0x0E})
	want := bytes.Join([][]byte{u.Page(0x0E), u.Page(0x0F), u.Page(0), u.Page(1)}, nil)
	if !ok || !bytes.Equal(r, want) {
		t.Fatalf("READ 0E under PROT: %X, want %X", r, want)
	}
	if _, ok := direct(t, u, []byte{0x3A, 0x0E, 0x10}); ok {
		t.Fatal("FAST_READ into the protected area answered")
	}
	u.Reset()
	if r := wantSW(t, u, "FF B0 00 0F 04", "9000"); !bytes.Equal(r, u.Page(0x0F)) {
		t.Fatalf("last open page %X", r)
	}
	wantSW(t, u, "FF B0 00 10 04", "6300")
	u.Reset()
	direct(t, u, hx("1B 12345678"))
	want = bytes.Join([][]byte{u.Page(0x0E), u.Page(0x0F), u.Page(0x10), u.Page(0x11)}, nil)
	if r, ok := direct(t, u, []byte{0x30, 0x0E}); !ok || !bytes.Equal(r, want) {
		t.Fatalf("READ 0E after PWD_AUTH: %X, want %X", r, want)
	}
	if r, ok := direct(t, u, []byte{0x3A, 0x0E, 0x11}); !ok || len(r) != 16 {
		t.Fatalf("FAST_READ after auth: %X %v", r, ok)
	}
	// Config pages protected too when AUTH0 is at or below them.
	u.Reset()
	protect(u, 0x29, accessPROT, "12345678", "ABCD")
	if _, ok := direct(t, u, []byte{0x30, 0x29}); ok {
		t.Fatal("protected config read")
	}
}

func TestUltralightPasswordPagesHidden(t *testing.T) {
	u := NewUltralight(NTAG216, testUID7)
	if _, ok := direct(t, u, hx("A2 E5 01020304")); !ok {
		t.Fatal("PWD write NAKed")
	}
	direct(t, u, hx("A2 E6 BEEF0000"))
	r, _ := direct(t, u, []byte{0x30, 0xE3})
	if !bytes.Equal(r[8:], make([]byte, 8)) {
		t.Fatalf("PWD/PACK readable: %X", r)
	}
	if r, ok := direct(t, u, hx("1B 01020304")); !ok || hexOf(r) != "BEEF" {
		t.Fatalf("PWD_AUTH %X %v", r, ok)
	}
	if r, ok := direct(t, u, hx("1B FFFFFFFF")); ok {
		t.Fatalf("old password accepted: %X", r)
	}
}

func TestUltralightAuthLimit(t *testing.T) {
	for _, tc := range []struct {
		model   UltralightModel
		authlim byte
		allowed int // negative attempts before the password is blocked
	}{
		{MF0UL11, 1, 1},
		{MF0UL21, 3, 3},
		{MF0UL11, 7, 7},
		{NTAG213, 1, 2},
		{NTAG215, 2, 4},
		{NTAG216, 3, 8},
	} {
		t.Run(fmt.Sprintf("%v/AUTHLIM=%d", tc.model, tc.authlim), func(t *testing.T) {
			u := NewUltralight(tc.model, testUID7)
			protect(u, 0x04, tc.authlim, "12345678", "0102")
			// A success before the limit resets the counter.
			for i := 0; i < tc.allowed-1; i++ {
				direct(t, u, hx("1B 00000000"))
				u.Reset()
			}
			if _, ok := direct(t, u, hx("1B 12345678")); !ok || u.AuthFailures() != 0 {
				t.Fatalf("good password before limit: ok=%v failures=%d", ok, u.AuthFailures())
			}
			for i := 0; i < tc.allowed; i++ {
				u.Reset()
				if _, ok := direct(t, u, hx("1B 00000000")); ok {
					t.Fatal("wrong password accepted")
				}
			}
			if !u.PasswordBlocked() {
				t.Fatalf("not blocked after %d failures", tc.allowed)
			}
			u.Reset()
			if _, ok := direct(t, u, hx("1B 12345678")); ok {
				t.Fatal("PWD_AUTH works after AUTHLIM was reached")
			}
			u.Reset()
			if _, ok := direct(t, u, []byte{0xA2, 0x04, 1, 2, 3, 4}); ok {
				t.Fatal("protected page writable after block")
			}
		})
	}
	// AUTHLIM 0: no counting.
	u := NewUltralight(NTAG213, testUID7)
	for i := 0; i < 20; i++ {
		direct(t, u, hx("1B 00000000"))
		u.Reset()
	}
	if u.AuthFailures() != 0 || u.PasswordBlocked() {
		t.Fatal("failures counted with AUTHLIM 0")
	}
	if r, ok := direct(t, u, hx("1B FFFFFFFF")); !ok || hexOf(r) != "0000" {
		t.Fatalf("default password: %X %v", r, ok)
	}
}

func TestUltralightCFGLCK(t *testing.T) {
	for _, m := range []UltralightModel{MF0UL21, NTAG215} {
		t.Run(fmt.Sprint(m), func(t *testing.T) {
			u := NewUltralight(m, testUID7)
			cfg := byte(u.ConfigPage())
			if _, ok := direct(t, u, []byte{0xA2, cfg + 1, accessCFGLCK, 0x05, 0, 0}); !ok {
				t.Fatal("ACCESS write NAKed")
			}
			// Not in force until the next activation.
			if _, ok := direct(t, u, []byte{0xA2, cfg, 0x00, 0, 0, 0xFF}); !ok {
				t.Fatal("CFG0 locked before re-activation")
			}
			u.Reset()
			for _, p := range []byte{cfg, cfg + 1} {
				if _, ok := direct(t, u, []byte{0xA2, p, 0, 0, 0, 0}); ok {
					t.Fatalf("config page %#x writable under CFGLCK", p)
				}
				u.Reset()
			}
			// PWD and PACK stay writable.
			if _, ok := direct(t, u, []byte{0xA2, cfg + 2, 1, 2, 3, 4}); !ok {
				t.Fatal("PWD locked by CFGLCK")
			}
			if _, ok := direct(t, u, []byte{0xA2, cfg + 3, 1, 2, 0, 0}); !ok {
				t.Fatal("PACK locked by CFGLCK")
			}
		})
	}
}

func TestUltralightCounters(t *testing.T) {
	n := NewUltralight(NTAG213, testUID7)
	if _, ok := direct(t, n, hx("39 02")); ok {
		t.Fatal("READ_CNT answered with the NFC counter disabled")
	}
	n.Reset()
	direct(t, n, []byte{0xA2, 0x2A, accessNFCCntEn, 0, 0, 0})
	n.Reset()
	direct(t, n, hx("30 04"))
	direct(t, n, hx("30 08"))
	if r, ok := direct(t, n, hx("39 02")); !ok || hexOf(r) != "010000" {
		t.Fatalf("NFC counter after one activation: %X %v", r, ok)
	}
	n.Reset()
	direct(t, n, hx("3A 04 05"))
	if n.Counter(2) != 2 {
		t.Fatalf("NFC counter %d", n.Counter(2))
	}
	if _, ok := direct(t, n, hx("39 00")); ok {
		t.Fatal("NTAG has only counter 2")
	}
	n.Reset()
	direct(t, n, []byte{0xA2, 0x2A, accessNFCCntEn | accessNFCCntProt, 0, 0, 0})
	if _, ok := direct(t, n, hx("39 02")); ok {
		t.Fatal("password-protected NFC counter read without PWD_AUTH")
	}
	n.Reset()
	direct(t, n, hx("1B FFFFFFFF"))
	if _, ok := direct(t, n, hx("39 02")); !ok {
		t.Fatal("NFC counter after PWD_AUTH")
	}

	e := NewUltralight(MF0UL11, testUID7)
	if r, ok := direct(t, e, hx("A5 01 050000 00")); !ok || !bytes.Equal(r, ack) {
		t.Fatalf("INCR_CNT %X %v", r, ok)
	}
	if r, ok := direct(t, e, hx("39 01")); !ok || hexOf(r) != "050000" {
		t.Fatalf("READ_CNT %X %v", r, ok)
	}
	e.SetCounter(0, 0xFFFFFE)
	if _, ok := direct(t, e, hx("A5 00 020000 00")); ok {
		t.Fatal("counter overflow accepted")
	}
	e.Reset()
	if r, ok := direct(t, e, hx("3E 00")); !ok || hexOf(r) != "BD" {
		t.Fatalf("CHECK_TEARING_EVENT %X", r)
	}
	if r, ok := direct(t, e, hx("3C 00")); !ok || len(r) != 32 {
		t.Fatalf("READ_SIG %X", r)
	}
}

func TestUltralightNakHaltsBothPaths(t *testing.T) {
	u := NewUltralight(NTAG213, testUID7)
	startSession(t, u)
	if _, ok := session(t, u, []byte{0x30, 0xFF}); ok {
		t.Fatal("READ FF answered")
	}
	if _, ok := session(t, u, []byte{0x60}); ok {
		t.Fatal("GET_VERSION answered while halted")
	}
	if _, ok := direct(t, u, []byte{0x60}); ok {
		t.Fatal("direct GET_VERSION answered while halted")
	}
	wantSW(t, u, "FF B0 00 04 10", "6300")
	wantSW(t, u, "FF D6 00 04 04 00000000", "6300")
	u.Reset()
	if _, ok := direct(t, u, []byte{0x60}); !ok {
		t.Fatal("Reset did not re-activate")
	}
	// Unknown commands, wrong lengths and HALT all leave it silent.
	for _, f := range [][]byte{{0x99}, {0x30}, {0xA2, 0x04, 1}, {0x50, 0x00}} {
		u.Reset()
		if _, ok := direct(t, u, f); ok || !u.Halted() {
			t.Fatalf("% X: answered or not halted", f)
		}
	}
	// A MIFARE Classic authentication is not understood either.
	u.Reset()
	loadKey(t, u, 0, keyFF)
	if got := authSW(t, u, 4, false, 0); got != "6300" || !u.Halted() {
		t.Fatalf("Classic auth on NTAG: %s", got)
	}
}

// TestUltralightProtectedConfigPages pins the datasheets' READ rules with
// PROT = 1 for every model and every AUTH0 from page 4 to the PACK page:
// unauthenticated, a READ or FAST_READ of any page from AUTH0 on (the
// dynamic lock page and CFG0/CFG1 included) is NAKed, a READ below AUTH0
// rolls over to page 0 at AUTH0, READ BINARY answers 6300; after PWD_AUTH
// every page reads, PWD and PACK as zeros. Layout 2 (AUTH0 = 6) reads
// pages 2-5 in full without the password.
func TestUltralightProtectedConfigPages(t *testing.T) {
	for _, m := range ulMaps {
		t.Run(m.kind, func(t *testing.T) {
			for auth0 := 4; auth0 <= m.cfg0+3; auth0++ {
				u := NewUltralight(m.model, testUID7)
				for p := 4; p <= m.userEnd; p++ {
					u.SetPage(p, []byte{byte(p), 1, 2, 3})
				}
				protect(u, byte(auth0), accessPROT|0x07, "12345678", "ABCD")
				u.Reset()
				for p := auth0; p <= m.last; p++ {
					if r, ok := direct(t, u, []byte{0x30, byte(p)}); ok {
						t.Fatalf("AUTH0 %#x: READ %#x answered %X", auth0, p, r)
					}
					u.Reset()
					if r, ok := direct(t, u, []byte{0x3A, byte(p), byte(p)}); ok {
						t.Fatalf("AUTH0 %#x: FAST_READ %#x answered %X", auth0, p, r)
					}
					u.Reset()
					wantSW(t, u, fmt.Sprintf("FF B0 00 %02X 10", p), "6300")
					u.Reset()
				}
				// The last READ that starts below AUTH0 rolls over there.
				first := u.Page(auth0 - 1)
				if auth0-1 >= m.cfg0+2 {
					first = make([]byte, 4) // PWD reads as zeros
				}
				r, ok := direct(t, u, []byte{0x30, byte(auth0 - 1)})
				want := bytes.Join([][]byte{first, u.Page(0), u.Page(1), u.Page(2)}, nil)
				if !ok || !bytes.Equal(r, want) {
					t.Fatalf("AUTH0 %#x: READ %#x = %X, want %X", auth0, auth0-1, r, want)
				}
				if auth0 >= 6 {
					r, ok := direct(t, u, []byte{0x30, 0x02})
					want := bytes.Join([][]byte{u.Page(2), u.Page(3), u.Page(4), u.Page(5)}, nil)
					if !ok || !bytes.Equal(r, want) {
						t.Fatalf("AUTH0 %#x: READ 02 = %X, want %X", auth0, r, want)
					}
				}
				u.Reset()
				if _, ok := direct(t, u, hx("1B 12345678")); !ok {
					t.Fatal("PWD_AUTH refused")
				}
				r, ok = direct(t, u, []byte{0x30, byte(m.cfg0)})
				want = append(append(u.Page(m.cfg0), u.Page(m.cfg0+1)...), make([]byte, 8)...)
				if !ok || !bytes.Equal(r, want) {
					t.Fatalf("AUTH0 %#x: authenticated READ of CFG0 = %X, want %X", auth0, r, want)
				}
			}
		})
	}
}
