package chip

import (
	"bytes"
	"testing"
)

func TestATR(t *testing.T) {
	// Values as reported by ACR122U / Omnikey readers for these cards.
	want := map[string]string{
		KindClassic1K: "3B8F8001804F0CA000000306030001000000006A",
		KindClassic4K: "3B8F8001804F0CA0000003060300020000000069",
		KindMF0UL11:   "3B8F8001804F0CA0000003060300030000000068",
		KindMF0UL21:   "3B8F8001804F0CA0000003060300030000000068",
		KindNTAG213:   "3B8F8001804F0CA0000003060300030000000068",
		KindNTAG215:   "3B8F8001804F0CA0000003060300030000000068",
		KindNTAG216:   "3B8F8001804F0CA0000003060300030000000068",
		// ISO 14443-4 A without historical bytes.
		KindDESFireEV2: "3B8180018080",
		KindDESFireEV3: "3B8180018080",
	}
	for _, k := range Kinds() {
		c, err := New(k, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := hexOf(c.ATR()); got != want[k] {
			t.Errorf("%s ATR %s, want %s", k, got, want[k])
		}
	}
}

func TestNewAndKinds(t *testing.T) {
	if len(Kinds()) != 9 {
		t.Fatalf("Kinds() = %v", Kinds())
	}
	for _, k := range Kinds() {
		c, err := New(k, nil)
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		uid := c.UID()
		switch c.(type) {
		case *Classic:
			if len(uid) != 4 {
				t.Errorf("%s random UID %X", k, uid)
			}
			if _, err := New(k, hx("04112233445566")); err != nil {
				t.Errorf("%s with 7-byte UID: %v", k, err)
			}
		case *Ultralight, *DESFire:
			if len(uid) != 7 || uid[0] != 0x04 {
				t.Errorf("%s random UID %X", k, uid)
			}
		default:
			t.Fatalf("%s: %T", k, c)
		}
		if _, err := New(k, hx("0102")); err == nil {
			t.Errorf("%s accepted a 2-byte UID", k)
		}
		if c.(interface{ Kind() string }).Kind() != k {
			t.Errorf("%s: Kind() mismatch", k)
		}
	}
	if _, err := New(KindNTAG213, hx("01020304")); err == nil {
		t.Error("NTAG accepted a 4-byte UID")
	}
	if _, err := New("mifare_desfire", nil); err == nil {
		t.Error("unknown kind accepted")
	}
	a, _ := New(KindClassic1K, nil)
	b, _ := New(KindClassic1K, nil)
	if bytes.Equal(a.UID(), b.UID()) {
		t.Error("two random UIDs are equal")
	}
}

func TestGetDataAndUnknownCommands(t *testing.T) {
	for _, k := range Kinds() {
		c, _ := New(k, nil)
		if uid := wantSW(t, c, "FF CA 00 00 00", "9000"); !bytes.Equal(uid, c.UID()) {
			t.Fatalf("%s: GET DATA %X", k, uid)
		}
		wantSW(t, c, "FF CA 00 00", "9000")
		wantSW(t, c, "FF CA 01 00 00", "6A81")
		wantSW(t, c, "FF CA 02 00 00", "6B00")
		wantSW(t, c, "FF 12 00 00 00", "6D00")
		wantSW(t, c, "00 A4 04 00 02 3F00", "6E00")
		wantSW(t, c, "FF CA", "6700")
		wantSW(t, c, "FF CA 00 00 05 01", "6700")       // Lc larger than data
		wantSW(t, c, "FF 00 00 00 02 D4 4A", "6A81")    // other PN532 commands
		wantSW(t, c, "FF 00 00 01 02 D4 42", "6B00")    // direct transmit P1P2
		wantSW(t, c, "FF C2 00 05 02 81 00", "6A81")    // unknown envelope P2
		wantSW(t, c, "FF C2 00 01 03 95 01 60", "6986") // exchange outside a session
	}
}

func TestBothNativeWrappings(t *testing.T) {
	u := NewUltralight(NTAG213, testUID7)
	// (a) ACR122U direct transmit, exact bytes.
	if r := tx(t, u, "FF 00 00 00 03 D4 42 60"); !bytes.Equal(r, hx("D5 43 00 0004040201000F03 9000")) {
		t.Fatalf("direct GET_VERSION: %X", r)
	}
	if r := tx(t, u, "FF 00 00 00 08 D4 42 A2 04 01020304"); !bytes.Equal(r, hx("D5 43 00 0A 9000")) {
		t.Fatalf("direct WRITE ack: %X", r)
	}
	if r := tx(t, u, "FF 00 00 00 04 D4 40 01 60"); !bytes.Equal(r, hx("D5 41 00 0004040201000F03 9000")) {
		t.Fatalf("InDataExchange GET_VERSION: %X", r)
	}
	if r := tx(t, u, "FF 00 00 00 04 D4 42 30 FF"); !bytes.Equal(r, hx("D5 43 01 9000")) {
		t.Fatalf("direct NAK: %X", r)
	}
	u.Reset()
	// (b) PC/SC Part 3 transparent session, exact bytes.
	wantSW(t, u, "FF C2 00 01 03 95 01 60", "6986")
	if r := tx(t, u, "FF C2 00 00 02 81 00"); !bytes.Equal(r, hx("C0 03 00 90 00 90 00")) {
		t.Fatalf("start session: %X", r)
	}
	if r := tx(t, u, "FF C2 00 01 03 95 01 60"); !bytes.Equal(r, hx("C0 03 00 90 00 92 01 00 96 02 00 00 97 08 0004040201000F03 9000")) {
		t.Fatalf("exchange GET_VERSION: %X", r)
	}
	if r := tx(t, u, "FF C2 00 01 08 95 06 A2 05 01020304"); !bytes.Equal(r, hx("C0 03 00 90 00 92 01 00 96 02 00 00 97 01 0A 9000")) {
		t.Fatalf("exchange WRITE ack: %X", r)
	}
	// Flags and timer data objects are accepted alongside the frame.
	if r := tx(t, u, "FF C2 00 01 0F 90 02 00 00 5F 46 04 40 42 0F 00 95 02 30 04"); sw(r) != "9000" || len(r) != 13+1+16+2 {
		t.Fatalf("exchange with extra DOs: %X", r)
	}
	if r := tx(t, u, "FF C2 00 01 04 95 02 30 FF"); !bytes.Equal(r, hx("C0 03 01 64 01 90 00")) {
		t.Fatalf("exchange NAK: %X", r)
	}
	if r := tx(t, u, "FF C2 00 00 02 82 00"); !bytes.Equal(r, hx("C0 03 00 90 00 90 00")) {
		t.Fatalf("end session: %X", r)
	}
	wantSW(t, u, "FF C2 00 01 03 95 01 60", "6986")
	// Reset ends a session.
	startSession(t, u)
	u.Reset()
	wantSW(t, u, "FF C2 00 01 03 95 01 60", "6986")
	// Unknown data objects.
	if r := tx(t, u, "FF C2 00 00 02 A5 00"); !bytes.Equal(r, hx("C0 03 01 6A 81 90 00")) {
		t.Fatalf("unknown DO: %X", r)
	}
	wantSW(t, u, "FF C2 00 00 02 81 05", "6700") // truncated TLV
}

func TestParseTLVs(t *testing.T) {
	dos, ok := parseTLVs(hx("81 00 5F46 04 01020304 95 81 02 AABB"))
	if !ok || len(dos) != 3 || dos[1].tag != 0x5F46 || !bytes.Equal(dos[2].value, hx("AABB")) {
		t.Fatalf("%v %v", dos, ok)
	}
	for _, bad := range []string{"81", "5F", "95 05 00", "95 83 000000", "95 81"} {
		if _, ok := parseTLVs(hx(bad)); ok {
			t.Errorf("%s parsed", bad)
		}
	}
	if got := berTLV(0x97, make([]byte, 200)); !bytes.Equal(got[:3], hx("97 81 C8")) {
		t.Errorf("berTLV %X", got[:3])
	}
}
