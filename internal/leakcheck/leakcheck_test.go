package leakcheck

import (
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/encoder-bridge/encoder-bridge/reader/sim/chip"
)

func TestFind(t *testing.T) {
	key := []byte{0x3c, 0x91, 0x07, 0xfe, 0x55, 0x12}
	s := New()
	s.Text("the token", "ebt_secret")
	s.Bytes("a key", key)
	s.Bytes("a blank block", make([]byte, 16))
	s.Bytes("a default key", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	s.Bytes("a page", []byte{0xb2, 0x57, 0x29, 0xca})
	s.Public("0011aabbb25729ca")
	for _, c := range []struct {
		out  string
		want string // "" for no finding
	}{
		{`{"auth": "ebt_secret"}`, "the token"},
		{"key " + hex.EncodeToString(key), "a key"},
		{"key " + strings.ToUpper(hex.EncodeToString(key)), "a key"},
		{`"key": "` + base64.StdEncoding.EncodeToString(key) + `"`, "a key"},
		{"key=" + base64.RawURLEncoding.EncodeToString(key), "a key"},
		{"block 00000000000000000000000000000000 key FFFFFFFFFFFF", ""},
		{"nothing here", ""},
		{"key id 0011aabbb25729ca", ""},
		{"key id 0011aabbb25729ca page b25729ca", "a page"},
	} {
		got := s.Find("log", c.out)
		switch {
		case c.want == "" && len(got) != 0:
			t.Errorf("%q: found %v", c.out, got)
		case c.want != "" && (len(got) != 1 || !strings.Contains(got[0], "<"+c.want+">")):
			t.Errorf("%q: found %v, want %s", c.out, got, c.want)
		}
		for _, g := range got {
			if strings.Contains(g, "ebt_secret") || strings.Contains(strings.ToLower(g), hex.EncodeToString(key)) {
				t.Errorf("the finding prints the secret: %s", g)
			}
		}
	}
}

func TestTap(t *testing.T) {
	card, err := chip.New(chip.KindClassic1K, nil)
	if err != nil {
		t.Fatal(err)
	}
	tap := &Tap{Card: card}
	// LOAD KEY into slot 0, then GET DATA for the UID.
	loadKey := []byte{0xFF, 0x82, 0x00, 0x00, 0x06, 0x1a, 0x2b, 0x3c, 0x4d, 0x5e, 0x6f}
	if _, err := tap.Transmit(loadKey); err != nil {
		t.Fatal(err)
	}
	if _, err := tap.Transmit([]byte{0xFF, 0xCA, 0x00, 0x00, 0x00}); err != nil {
		t.Fatal(err)
	}
	s := New()
	if n := tap.AddTo(s); n != 2 {
		t.Fatalf("%d frames recorded, want the key and the UID", n)
	}
	if len(s.Find("log", "1A2B3C4D5E6F")) != 1 || len(s.Find("log", hex.EncodeToString(card.UID()))) != 1 {
		t.Fatal("the tap lost the key or the UID")
	}
}
