package chip

import (
	"bytes"
	"strings"
	"testing"
)

// splitAPDUs cuts fuzz input into APDUs, each prefixed by its length.
func splitAPDUs(b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 && len(out) < 64 {
		n := int(b[0])
		b = b[1:]
		if n > len(b) {
			n = len(b)
		}
		out = append(out, b[:n])
		b = b[n:]
	}
	return out
}

func seq(apdus ...string) []byte {
	var out []byte
	for _, a := range apdus {
		b := hx(a)
		out = append(out, byte(len(b)))
		out = append(out, b...)
	}
	return out
}

func fuzzCard(t *testing.T, c Card, data []byte, reset byte) {
	for i, a := range splitAPDUs(data) {
		if reset != 0 && i%int(reset) == 0 {
			c.Reset()
		}
		r, err := c.Transmit(a)
		if err != nil {
			t.Fatalf("Transmit(% X): %v", a, err)
		}
		if len(r) < 2 {
			t.Fatalf("Transmit(% X) = %X: no status word", a, r)
		}
	}
	// Whatever happened, the state must still persist.
	data2, err := Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Unmarshal(data2); err != nil {
		t.Fatalf("state after fuzzing does not reload: %v", err)
	}
}

func FuzzTransmitClassic(f *testing.F) {
	f.Add(byte(0), false, seq("FF 82 00 00 06 FFFFFFFFFFFF", "FF 86 00 00 05 01 00 04 60 00", "FF B0 00 04 10"))
	f.Add(byte(0), true, seq("FF 82 00 00 06 FFFFFFFFFFFF", "FF 88 00 80 60 00", "FF D6 00 83 10 FFFFFFFFFFFF FF0780 69 FFFFFFFFFFFF"))
	f.Add(byte(3), false, seq("FF 82 00 01 06 FFFFFFFFFFFF", "FF 86 00 00 05 01 00 07 61 01", "FF D6 00 07 10 000000000000 000000 00 000000000000"))
	f.Add(byte(0), false, seq("FF C2 00 00 02 81 00", "FF C2 00 01 03 95 01 60", "FF 00 00 00 03 D4 42 60"))
	f.Fuzz(func(t *testing.T, reset byte, is4K bool, data []byte) {
		c := NewClassic1K(hx("01020304"))
		if is4K {
			c = NewClassic4K(hx("04112233445566"))
		}
		fuzzCard(t, c, data, reset)
	})
}

func FuzzTransmitUltralight(f *testing.F) {
	f.Add(byte(0), byte(NTAG213), seq("FF B0 00 04 10", "FF D6 00 04 04 01020304", "FF 00 00 00 03 D4 42 60"))
	f.Add(byte(0), byte(MF0UL21), seq("FF C2 00 00 02 81 00", "FF C2 00 01 08 95 06 A2 24 FF FF FF 00", "FF C2 00 01 04 95 02 3A 00 28"))
	f.Add(byte(2), byte(NTAG216), seq("FF 00 00 00 08 D4 42 A2 E4 C7 00 00 00", "FF 00 00 00 07 D4 42 1B 00000000", "FF 00 00 00 04 D4 42 39 02"))
	f.Add(byte(0), byte(MF0UL11), seq("FF 00 00 00 04 D4 42 A0 05", "FF 00 00 00 12 D4 42 00112233445566778899AABBCCDDEEFF"))
	f.Fuzz(func(t *testing.T, reset byte, model byte, data []byte) {
		u := NewUltralight(UltralightModel(int(model)%len(ulSpecs)), testUID7)
		fuzzCard(t, u, data, reset)
	})
}

func FuzzUnmarshal(f *testing.F) {
	for _, k := range Kinds() {
		c, _ := New(k, nil)
		data, _ := Marshal(c)
		f.Add(data)
	}
	f.Add([]byte(`{"version":1,"kind":"ntag213","uid":"04"}`))
	f.Add([]byte(`{"version":1,"kind":"mifare_classic_1k","uid":"01020304","blocks":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Unmarshal(data)
		if err != nil {
			return
		}
		out, err := Marshal(c)
		if err != nil {
			t.Fatalf("Marshal after Unmarshal: %v", err)
		}
		c2, err := Unmarshal(out)
		if err != nil {
			t.Fatalf("re-Unmarshal: %v", err)
		}
		out2, _ := Marshal(c2)
		if !bytes.Equal(out, out2) {
			t.Fatalf("unstable round trip:\n%s\n%s", out, out2)
		}
		// A restored card must take commands without panicking.
		c2.Transmit(hx("FF B0 00 04 10"))
		c2.Transmit(hx("FF 00 00 00 03 D4 42 60"))
	})
}

func FuzzTransmitDESFire(f *testing.F) {
	f.Add(byte(0), false, seq("90 60 00 00 00", "90 AF 00 00 00", "90 AF 00 00 00"))
	f.Add(byte(0), true, seq("90 CA 00 00 05 4542F0 0B 83 00", "90 5A 00 00 03 4542F0 00", "90 71 00 00 02 00 00 00", "90 AF 00 00 20 "+strings.Repeat("00", 32)+" 00"))
	f.Add(byte(4), false, seq("90 CA 00 00 05 010203 0F 83 00", "90 5A 00 00 03 010203 00", "90 CB 00 00 07 01 00 EEEE 200000 00", "90 8D 00 00 09 01 000000 020000 AABB 00", "90 C7 00 00 00", "90 AD 00 00 07 01 000000 000000 00"))
	// EV1: the legacy Authenticate, AuthenticateAES, then GetCardUID and
	// DeleteApplication.
	f.Add(byte(0), false, seq("90 0A 00 00 01 00 00", "90 AF 00 00 10 "+strings.Repeat("00", 16)+" 00", "90 51 00 00 00"))
	f.Add(byte(0), true, seq("90 AA 00 00 01 00 00", "90 AF 00 00 20 "+strings.Repeat("11", 32)+" 00", "90 DA 00 00 03 010203 00"))
	f.Fuzz(func(t *testing.T, reset byte, random bool, data []byte) {
		d, err := NewDESFire(DESFireOptions{Generation: DESFireEV3, Size: 2048, RandomUID: random, AESPICCKey: random}, testUID7)
		if err != nil {
			t.Fatal(err)
		}
		fuzzCard(t, d, data, reset)
	})
}
