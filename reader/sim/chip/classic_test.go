package chip

import (
	"bytes"
	"testing"
)

func TestClassicFreshLayout(t *testing.T) {
	for _, tc := range []struct {
		name   string
		card   *Classic
		blocks int
		block0 string
	}{
		{"1K/4-byte", NewClassic1K(hx("DEADBEEF")), 64, "DEADBEEF22 08 0400 6263646566676869"},
		{"4K/4-byte", NewClassic4K(hx("DEADBEEF")), 256, "DEADBEEF22 18 0200 6263646566676869"},
		{"1K/7-byte", NewClassic1K(hx("04112233445566")), 64, "04112233445566 08 4400 626364656667"},
		{"4K/7-byte", NewClassic4K(hx("04112233445566")), 256, "04112233445566 18 4200 626364656667"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.card
			if c.Blocks() != tc.blocks {
				t.Fatalf("blocks %d", c.Blocks())
			}
			if got := c.Block(0); !bytes.Equal(got, hx(tc.block0)) {
				t.Fatalf("block 0 %X, want %s", got, tc.block0)
			}
			trailer := hx("FFFFFFFFFFFF FF0780 69 FFFFFFFFFFFF")
			for s := 0; s < c.Sectors(); s++ {
				if got := c.Block(c.TrailerBlock(s)); !bytes.Equal(got, trailer) {
					t.Fatalf("sector %d trailer %X", s, got)
				}
				for b := c.FirstBlock(s); b < c.TrailerBlock(s); b++ {
					if b != 0 && !bytes.Equal(c.Block(b), make([]byte, 16)) {
						t.Fatalf("block %d not zero", b)
					}
				}
			}
		})
	}
}

func TestClassicReadWriteDefaultKey(t *testing.T) {
	c := NewClassic1K(hx("01020304"))
	if got := authWith(t, c, 4, false, keyFF); got != "9000" {
		t.Fatalf("auth: %s", got)
	}
	data := hx("00112233445566778899AABBCCDDEEFF")
	if r := writeBlock(t, c, 5, data); sw(r) != "9000" {
		t.Fatalf("write: %X", r)
	}
	if r := readBlock(t, c, 5); !bytes.Equal(r, append(data, 0x90, 0x00)) {
		t.Fatalf("read: %X", r)
	}
	// Le 00 means 16 as well.
	if r := tx(t, c, "FF B0 00 05 00"); !bytes.Equal(r, append(data, 0x90, 0x00)) {
		t.Fatalf("read Le=00: %X", r)
	}
	// Trailer: key A hidden, key B readable under the transport setting.
	if r := readBlock(t, c, 7); !bytes.Equal(r, hx("000000000000 FF078069 FFFFFFFFFFFF 9000")) {
		t.Fatalf("trailer read: %X", r)
	}
	// Block 0 is read-only whatever the access bits say.
	c.Reset()
	authWith(t, c, 0, false, keyFF)
	if r := readBlock(t, c, 0); sw(r) != "9000" || !bytes.Equal(r[:16], c.Block(0)) {
		t.Fatalf("block 0 read: %X", r)
	}
	before := c.Block(0)
	if r := writeBlock(t, c, 0, make([]byte, 16)); sw(r) != "6300" {
		t.Fatalf("block 0 write: %X", r)
	}
	if !bytes.Equal(c.Block(0), before) {
		t.Fatal("block 0 changed")
	}
}

func TestClassicObsoleteAuthenticate(t *testing.T) {
	c := NewClassic1K(nil)
	loadKey(t, c, 3, keyFF)
	wantSW(t, c, "FF 88 00 08 60 03", "9000")
	wantSW(t, c, "FF B0 00 09 10", "9000")
	wantSW(t, c, "FF 88 00 08 60", "6700")
	wantSW(t, c, "FF 88 01 08 60 03", "6B00")
}

func TestClassicLengthAndParameterChecks(t *testing.T) {
	c := NewClassic1K(nil)
	wantSW(t, c, "FF 82 00 00 05 FFFFFFFFFF", "6700")
	wantSW(t, c, "FF 82 10 00 06 FFFFFFFFFFFF", "6986")
	wantSW(t, c, "FF 82 00 20 06 FFFFFFFFFFFF", "6B00")
	wantSW(t, c, "FF 82 20 1F 06 FFFFFFFFFFFF", "9000")
	wantSW(t, c, "FF 86 00 00 05 01 00 04 60 05", "6986") // slot never loaded
	wantSW(t, c, "FF 86 00 00 05 01 00 04 62 1F", "6A81") // bad key type
	wantSW(t, c, "FF 86 00 00 04 01 00 04 60", "6700")
	wantSW(t, c, "FF 86 00 00 05 01 00 40 60 1F", "6A82") // block 64 on a 1K
	wantSW(t, c, "FF 86 00 00 05 01 00 04 60 1F", "9000")
	wantSW(t, c, "FF B0 00 04 0F", "6700")
	wantSW(t, c, "FF B0 00 04", "6700")
	wantSW(t, c, "FF B0 00 40 10", "6A82")
	wantSW(t, c, "FF D6 00 04 04 00000000", "6700")
	wantSW(t, c, "FF D7 00 04 05 0100000000", "6A81") // value operations
	wantSW(t, c, "FF B0 00 04 10", "9000")            // still authenticated
}

func TestClassicFailedAuthHalts(t *testing.T) {
	c := NewClassic1K(nil)
	if got := authWith(t, c, 4, false, otherKA); got != "6300" {
		t.Fatalf("wrong key: %s", got)
	}
	if !c.Halted() {
		t.Fatal("not halted")
	}
	// Everything card-related fails until a re-activation, even the right key.
	if got := authWith(t, c, 4, false, keyFF); got != "6300" {
		t.Fatalf("auth while halted: %s", got)
	}
	wantSW(t, c, "FF B0 00 04 10", "6300")
	wantSW(t, c, "FF D6 00 04 10 00000000000000000000000000000000", "6300")
	// The reader still answers for itself.
	if uid := wantSW(t, c, "FF CA 00 00 00", "9000"); !bytes.Equal(uid, c.UID()) {
		t.Fatalf("GET DATA %X", uid)
	}
	loadKey(t, c, 1, keyFF)
	c.Reset()
	if got := authSW(t, c, 4, false, 0); got != "9000" {
		t.Fatalf("after reset (key slots kept): %s", got)
	}
}

func TestClassicAuthenticationIsPerSector(t *testing.T) {
	c := NewClassic1K(nil)
	// No authentication at all: the chip NAKs the READ and halts.
	wantSW(t, c, "FF B0 00 04 10", "6982")
	if !c.Halted() {
		t.Fatal("unauthenticated read must halt the chip")
	}
	c.Reset()
	authWith(t, c, 4, false, keyFF) // sector 1
	wantSW(t, c, "FF B0 00 07 10", "9000")
	wantSW(t, c, "FF B0 00 08 10", "6982") // sector 2
	if !c.Halted() {
		t.Fatal("read outside the authenticated sector must halt the chip")
	}
	wantSW(t, c, "FF B0 00 04 10", "6300")
	c.Reset()
	// Nested authentication to another sector is fine.
	authWith(t, c, 4, false, keyFF)
	if got := authSW(t, c, 9, true, 0); got != "9000" {
		t.Fatalf("nested auth: %s", got)
	}
	wantSW(t, c, "FF B0 00 08 10", "6300") // key B is readable in transport config: denied
	c.Reset()
	authWith(t, c, 4, false, keyFF)
	authSW(t, c, 9, false, 0)
	wantSW(t, c, "FF B0 00 08 10", "9000")
	r := writeBlock(t, c, 4, make([]byte, 16))
	if sw(r) != "6982" {
		t.Fatalf("write to previous sector: %X", r)
	}
}

func TestClassicKeyedByAnotherSystem(t *testing.T) {
	c := NewClassic1K(nil)
	c.SetTrailer(3, otherKA, testKB, AccessConditions{4, 4, 4, 3}, 0x69)
	if got := authWith(t, c, 12, false, keyFF); got != "6300" {
		t.Fatalf("default key on foreign sector: %s", got)
	}
	c.Reset()
	if got := authWith(t, c, 12, false, otherKA); got != "9000" {
		t.Fatalf("right key A: %s", got)
	}
	wantSW(t, c, "FF B0 00 0C 10", "9000")
	r := writeBlock(t, c, 12, make([]byte, 16))
	if sw(r) != "6300" {
		t.Fatalf("write with key A under 100: %X", r)
	}
	c.Reset()
	authWith(t, c, 12, true, testKB)
	if r := writeBlock(t, c, 12, bytes.Repeat([]byte{1}, 16)); sw(r) != "9000" {
		t.Fatalf("write with key B: %X", r)
	}
}

func TestClassicBricking(t *testing.T) {
	c := NewClassic1K(nil)
	authWith(t, c, 4, false, keyFF)
	bad := hx("FFFFFFFFFFFF FF0781 69 FFFFFFFFFFFF") // inverted copies disagree
	if r := writeBlock(t, c, 7, bad); sw(r) != "9000" {
		t.Fatalf("trailer write: %X", r)
	}
	if !c.Bricked(1) {
		t.Fatal("sector not bricked")
	}
	// Within the session the sector is unusable too.
	wantSW(t, c, "FF B0 00 04 10", "6300")
	for _, useKeyB := range []bool{false, true} {
		c.Reset()
		if got := authWith(t, c, 5, useKeyB, keyFF); got != "6300" {
			t.Fatalf("auth to bricked sector (key B %v): %s", useKeyB, got)
		}
	}
	// Other sectors are unaffected.
	c.Reset()
	if got := authWith(t, c, 8, false, keyFF); got != "9000" {
		t.Fatalf("other sector: %s", got)
	}
	// The bricked state survives persistence.
	data, err := Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := Unmarshal(data)
	if err != nil {
		t.Fatal(err)
	}
	if !c2.(*Classic).Bricked(1) {
		t.Fatal("bricked sector lost by Marshal/Unmarshal")
	}
	if got := authWith(t, c2, 4, false, keyFF); got != "6300" {
		t.Fatalf("restored bricked sector auth: %s", got)
	}
}

func TestClassicTrailerWriteOnlyAllowedParts(t *testing.T) {
	// Condition 100: key B writes both keys, nobody writes access bits.
	c := NewClassic1K(nil)
	c.SetTrailer(1, testKA, testKB, AccessConditions{0, 0, 0, 4}, 0x69)
	authWith(t, c, 7, true, testKB)
	// Malformed access bits in the written data are ignored: no brick.
	nt := hx("111111111111 000000 00 222222222222")
	if r := writeBlock(t, c, 7, nt); sw(r) != "9000" {
		t.Fatalf("trailer write: %X", r)
	}
	want := hx("111111111111") // key A
	acc := AccessConditions{0, 0, 0, 4}.Bytes()
	want = append(want, acc[:]...)
	want = append(want, 0x69)
	want = append(want, hx("222222222222")...)
	if got := c.Block(7); !bytes.Equal(got, want) {
		t.Fatalf("trailer %X, want %X", got, want)
	}
	if c.Bricked(1) {
		t.Fatal("bricked although access bits were not writable")
	}
}

func TestClassic4KLargeSectors(t *testing.T) {
	c := NewClassic4K(nil)
	if c.Sectors() != 40 || c.FirstBlock(32) != 128 || c.TrailerBlock(32) != 143 || c.TrailerBlock(39) != 255 {
		t.Fatal("4K layout")
	}
	// Group 0 (blocks 0-4) read-only, group 1 (5-9) open, group 2 (10-14) closed.
	c.SetTrailer(33, testKA, testKB, AccessConditions{2, 0, 7, 3}, 0x69)
	base := c.FirstBlock(33) // 144
	if got := authWith(t, c, base+12, false, testKA); got != "9000" {
		t.Fatalf("auth via block in the middle of the sector: %s", got)
	}
	for off := 0; off < 15; off++ {
		b := base + off
		canRead := off < 10
		canWrite := off >= 5 && off < 10
		r := readBlock(t, c, b)
		if (sw(r) == "9000") != canRead {
			t.Fatalf("block %d (+%d) read %X", b, off, r)
		}
		c.Reset()
		authWith(t, c, base, false, testKA)
		w := writeBlock(t, c, b, bytes.Repeat([]byte{byte(off)}, 16))
		if (sw(w) == "9000") != canWrite {
			t.Fatalf("block %d (+%d) write %X", b, off, w)
		}
		c.Reset()
		authWith(t, c, base, false, testKA)
	}
	if r := readBlock(t, c, base+15); sw(r) != "9000" || !bytes.Equal(r[:6], make([]byte, 6)) {
		t.Fatalf("large sector trailer read %X", r)
	}
	wantSW(t, c, "FF B0 01 00 10", "6A82") // block 256
	c.Reset()
	if got := authWith(t, c, 255, false, keyFF); got != "9000" {
		t.Fatalf("auth sector 39: %s", got)
	}
	wantSW(t, c, "FF B0 00 F0 10", "9000")
	wantSW(t, c, "FF B0 00 EF 10", "6982") // block 239 is in sector 38
}

func TestClassicNativeFramesFail(t *testing.T) {
	c := NewClassic1K(nil)
	authWith(t, c, 4, false, keyFF)
	if _, ok := direct(t, c, []byte{0x30, 0x04}); ok {
		t.Fatal("native READ answered on Classic")
	}
	if !c.Halted() {
		t.Fatal("plain frame must halt an authenticated Classic")
	}
	c.Reset()
	startSession(t, c)
	if _, ok := session(t, c, []byte{0x60}); ok {
		t.Fatal("GET_VERSION answered on Classic")
	}
}
