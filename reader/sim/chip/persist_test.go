package chip

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func roundTrip(t *testing.T, c Card) Card {
	t.Helper()
	data, err := Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := Unmarshal(data)
	if err != nil {
		t.Fatalf("Unmarshal: %v\n%s", err, data)
	}
	data2, err := Marshal(c2)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data, data2) {
		t.Fatalf("round trip differs:\n%s\n%s", data, data2)
	}
	return c2
}

func TestMarshalRoundTripClassic(t *testing.T) {
	for _, c := range []*Classic{NewClassic1K(hx("01020304")), NewClassic4K(hx("04112233445566"))} {
		c.SetTrailer(5, otherKA, testKB, AccessConditions{4, 4, 4, 3}, 0x12)
		c.SetBlock(21, bytes.Repeat([]byte{0x77}, 16))
		c.SetBlock(c.TrailerBlock(c.Sectors()-1), hx("FFFFFFFFFFFF 000000 69 FFFFFFFFFFFF")) // bricked
		c2 := roundTrip(t, WithFaults(c, Faults{})).(*Classic)
		if c2.Kind() != c.Kind() || !bytes.Equal(c2.UID(), c.UID()) {
			t.Fatal("kind/UID")
		}
		for b := 0; b < c.Blocks(); b++ {
			if !bytes.Equal(c.Block(b), c2.Block(b)) {
				t.Fatalf("block %d", b)
			}
		}
		if !c2.Bricked(c.Sectors()-1) || c2.Bricked(0) {
			t.Fatal("bricked state")
		}
		if got := authWith(t, c2, 20, false, otherKA); got != "9000" {
			t.Fatalf("restored keys: %s", got)
		}
	}
}

func TestMarshalRoundTripUltralight(t *testing.T) {
	for m := range ulSpecs {
		u := NewUltralight(m, testUID7)
		u.SetPage(4, hx("CAFEBABE"))
		protect(u, 0x04, accessCFGLCK|1, "11223344", "5566")
		u.Reset() // CFGLCK in force
		direct(t, u, hx("1B 00000000"))
		u.Reset()
		if u.spec.ntag {
			u.SetCounter(2, 0x123456)
		} else {
			u.SetCounter(1, 42)
		}
		u2 := roundTrip(t, u).(*Ultralight)
		for p := 0; p < u.Pages(); p++ {
			if !bytes.Equal(u.Page(p), u2.Page(p)) {
				t.Fatalf("%v page %d", m, p)
			}
		}
		if u2.AuthFailures() != u.AuthFailures() || u2.PasswordBlocked() != u.PasswordBlocked() || !u2.cfgLocked {
			t.Fatalf("%v: AUTHLIM/CFGLCK state lost", m)
		}
		if m == MF0UL11 && !u2.PasswordBlocked() {
			t.Fatal("MF0UL11 with AUTHLIM 1 must be blocked after one failure")
		}
	}
}

func TestUnmarshalRejects(t *testing.T) {
	good, _ := Marshal(NewUltralight(NTAG213, testUID7))
	goodC, _ := Marshal(NewClassic1K(hx("01020304")))
	edit := func(src []byte, f func(s *state)) string {
		var s state
		if err := json.Unmarshal(src, &s); err != nil {
			t.Fatal(err)
		}
		f(&s)
		b, _ := json.Marshal(s)
		return string(b)
	}
	for name, data := range map[string]string{
		"not json":         "{",
		"version":          edit(good, func(s *state) { s.Version = 2 }),
		"kind":             edit(good, func(s *state) { s.Kind = "ntag424" }),
		"short uid":        edit(good, func(s *state) { s.UID = s.UID[:4] }),
		"uid mismatch":     edit(good, func(s *state) { s.UID = hx("04000000000000") }),
		"page count":       edit(good, func(s *state) { s.Pages = s.Pages[:10] }),
		"page size":        edit(good, func(s *state) { s.Pages[7] = hx("00") }),
		"counters":         edit(good, func(s *state) { s.Counters = []uint32{1, 2, 3} }),
		"counter overflow": edit(good, func(s *state) { s.Counters = []uint32{1 << 24} }),
		"classic fields":   edit(good, func(s *state) { s.Blocks = s.Pages }),
		"block count":      edit(goodC, func(s *state) { s.Blocks = s.Blocks[:63] }),
		"block size":       edit(goodC, func(s *state) { s.Blocks[5] = hx("00") }),
		"bricked mismatch": edit(goodC, func(s *state) { s.Bricked = []int{3} }),
		"block 0 uid":      edit(goodC, func(s *state) { s.UID = hx("01020305") }),
		"ul fields":        edit(goodC, func(s *state) { s.Counters = []uint32{1} }),
		"bad hex":          strings.Replace(string(good), `"uid": "04`, `"uid": "zz`, 1),
	} {
		if _, err := Unmarshal([]byte(data)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := Marshal(nil); err == nil {
		t.Error("Marshal(nil) succeeded")
	}
}
