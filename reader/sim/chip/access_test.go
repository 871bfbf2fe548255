package chip

import (
	"bytes"
	"fmt"
	"testing"
)

func TestAccessBytesRoundTrip(t *testing.T) {
	if got := TransportAccess.Bytes(); got != [3]byte{0xFF, 0x07, 0x80} {
		t.Fatalf("transport access bytes % X, want FF 07 80", got)
	}
	for v := 0; v < 8*8*8*8; v++ {
		a := AccessConditions{uint8(v & 7), uint8(v >> 3 & 7), uint8(v >> 6 & 7), uint8(v >> 9 & 7)}
		b := a.Bytes()
		got, ok := DecodeAccess(b[0], b[1], b[2])
		if !ok || got != a {
			t.Fatalf("%v -> % X -> %v, %v", a, b, got, ok)
		}
		// Any single flipped bit breaks an inverted copy.
		for bit := 0; bit < 24; bit++ {
			bb := b
			bb[bit/8] ^= 1 << (bit % 8)
			if _, ok := DecodeAccess(bb[0], bb[1], bb[2]); ok {
				t.Fatalf("%v with bit %d flipped (% X) decoded as valid", a, bit, bb)
			}
		}
	}
}

func TestDecodeAccessKnownValues(t *testing.T) {
	// Values commonly found on issued cards, decoded by hand from §8.7.1.
	for _, tc := range []struct {
		b    [3]byte
		want AccessConditions
	}{
		{[3]byte{0xFF, 0x07, 0x80}, AccessConditions{0, 0, 0, 1}}, // transport
		{[3]byte{0x78, 0x77, 0x88}, AccessConditions{4, 4, 4, 3}}, // read A|B, write B
		{[3]byte{0x7F, 0x07, 0x88}, AccessConditions{0, 0, 0, 3}}, // data open, keys by B
		{[3]byte{0x08, 0x77, 0x8F}, AccessConditions{6, 6, 6, 3}}, // value blocks
	} {
		got, ok := DecodeAccess(tc.b[0], tc.b[1], tc.b[2])
		if !ok || got != tc.want {
			t.Errorf("% X: got %v %v, want %v", tc.b, got, ok, tc.want)
		}
		if b := tc.want.Bytes(); b != tc.b {
			t.Errorf("%v encodes as % X, want % X", tc.want, b, tc.b)
		}
	}
	if _, ok := DecodeAccess(0xFF, 0xFF, 0xFF); ok {
		t.Error("FF FF FF must be malformed")
	}
}

// cond renders a 3-bit condition as in the datasheet tables.
func cond(v uint8) string { return fmt.Sprintf("%d%d%d", v>>2&1, v>>1&1, v&1) }

// Datasheet MF1S50yyX Table 8, written out independently of access.go:
// who may read / write a data block.
var dataTableSpec = map[string][2]string{
	"000": {"AB", "AB"},
	"010": {"AB", ""},
	"100": {"AB", "B"},
	"110": {"AB", "B"},
	"001": {"AB", ""},
	"011": {"B", "B"},
	"101": {"B", ""},
	"111": {"", ""},
}

func has(s string, useKeyB bool) bool {
	if useKeyB {
		return bytes.ContainsRune([]byte(s), 'B')
	}
	return bytes.ContainsRune([]byte(s), 'A')
}

// TestDataBlockAccessTable exercises every data-block condition for both
// keys on a real APDU exchange, with trailer conditions where key B is and
// is not readable.
func TestDataBlockAccessTable(t *testing.T) {
	for c := uint8(0); c < 8; c++ {
		for _, tc := range []uint8{3, 4, 0, 1, 2} { // 011, 100: key B secret; 000, 001, 010: key B readable
			for _, useKeyB := range []bool{false, true} {
				name := fmt.Sprintf("data%s/trailer%s/key%s", cond(c), cond(tc), map[bool]string{false: "A", true: "B"}[useKeyB])
				t.Run(name, func(t *testing.T) {
					card := NewClassic1K(hx("01020304"))
					card.SetTrailer(1, testKA, testKB, AccessConditions{c, c, c, tc}, 0x69)
					card.SetBlock(5, bytes.Repeat([]byte{0x5A}, 16))
					key := testKA
					if useKeyB {
						key = testKB
					}
					spec := dataTableSpec[cond(c)]
					keyBUsable := !(tc == 0 || tc == 1 || tc == 2)
					wantRead := has(spec[0], useKeyB) && (!useKeyB || keyBUsable)
					wantWrite := has(spec[1], useKeyB) && (!useKeyB || keyBUsable)

					if got := authWith(t, card, 5, useKeyB, key); got != "9000" {
						t.Fatalf("auth: %s (authentication with key B succeeds even when unusable)", got)
					}
					r := readBlock(t, card, 5)
					if (sw(r) == "9000") != wantRead {
						t.Fatalf("read: %X, want allowed=%v", r, wantRead)
					}
					if wantRead && !bytes.Equal(r[:16], bytes.Repeat([]byte{0x5A}, 16)) {
						t.Fatalf("read data %X", r)
					}
					card.Reset()
					authWith(t, card, 5, useKeyB, key)
					w := writeBlock(t, card, 5, bytes.Repeat([]byte{0xC3}, 16))
					if (sw(w) == "9000") != wantWrite {
						t.Fatalf("write: %X, want allowed=%v", w, wantWrite)
					}
					want := byte(0x5A)
					if wantWrite {
						want = 0xC3
					}
					if got := card.Block(5); !bytes.Equal(got, bytes.Repeat([]byte{want}, 16)) {
						t.Fatalf("block after write %X", got)
					}
					if !wantWrite && !card.Halted() {
						t.Fatal("a refused write must leave the chip halted")
					}
				})
			}
		}
	}
}

// Datasheet MF1S50yyX Table 7, written out independently: who may write
// key A, read / write the access bits, read / write key B.
var trailerTableSpec = map[string][5]string{
	"000": {"A", "A", "", "A", "A"},
	"010": {"", "A", "", "A", ""},
	"100": {"B", "AB", "", "", "B"},
	"110": {"", "AB", "", "", ""},
	"001": {"A", "A", "A", "A", "A"},
	"011": {"B", "AB", "B", "", "B"},
	"101": {"", "AB", "B", "", ""},
	"111": {"", "AB", "", "", ""},
}

func TestTrailerAccessTable(t *testing.T) {
	for tc := uint8(0); tc < 8; tc++ {
		for _, useKeyB := range []bool{false, true} {
			name := fmt.Sprintf("trailer%s/key%s", cond(tc), map[bool]string{false: "A", true: "B"}[useKeyB])
			t.Run(name, func(t *testing.T) {
				spec := trailerTableSpec[cond(tc)]
				keyBReadable := spec[3] != ""
				ok := func(s string) bool { return has(s, useKeyB) && !(useKeyB && keyBReadable) }
				key := testKA
				if useKeyB {
					key = testKB
				}
				acc := AccessConditions{0, 0, 0, tc}
				card := NewClassic1K(hx("01020304"))
				card.SetTrailer(2, testKA, testKB, acc, 0x42)
				orig := card.Block(11)

				if got := authWith(t, card, 11, useKeyB, key); got != "9000" {
					t.Fatalf("auth: %s", got)
				}
				r := readBlock(t, card, 11)
				if ok(spec[1]) {
					if sw(r) != "9000" {
						t.Fatalf("read trailer: %X", r)
					}
					want := make([]byte, 16)
					copy(want[6:10], orig[6:10])
					if ok(spec[3]) {
						copy(want[10:], orig[10:])
					}
					if !bytes.Equal(r[:16], want) {
						t.Fatalf("read trailer %X, want %X (key A always reads as 00)", r[:16], want)
					}
				} else if sw(r) != "6300" {
					t.Fatalf("read trailer: %X, want 6300", r)
				}

				// Write new keys, new access bits (data group 0 -> 100) and GPB.
				card.Reset()
				authWith(t, card, 11, useKeyB, key)
				newAcc := AccessConditions{4, 0, 0, tc}.Bytes()
				var nt [16]byte
				copy(nt[0:6], otherKA[:])
				copy(nt[6:9], newAcc[:])
				nt[9] = 0x99
				copy(nt[10:16], []byte{1, 2, 3, 4, 5, 6})
				w := writeBlock(t, card, 11, nt[:])
				anyPart := ok(spec[0]) || ok(spec[2]) || ok(spec[4])
				if (sw(w) == "9000") != anyPart {
					t.Fatalf("write trailer: %X, want allowed=%v", w, anyPart)
				}
				want := append([]byte(nil), orig...)
				if ok(spec[0]) {
					copy(want[0:6], nt[0:6])
				}
				if ok(spec[2]) {
					copy(want[6:10], nt[6:10])
				}
				if ok(spec[4]) {
					copy(want[10:16], nt[10:16])
				}
				if got := card.Block(11); !bytes.Equal(got, want) {
					t.Fatalf("trailer after write %X, want %X", got, want)
				}
			})
		}
	}
}
