package cardfmt

import (
	"bytes"
	"errors"
	"testing"
)

func TestSealOpenBound(t *testing.T) {
	ks := testKeySet(t)
	c := testCredential()
	bound := []byte("EU\x01\x00\x01\x02\x03\x04\x01\x00\x00\x07")
	rec, err := SealBound(c, ks, uid7, bound)
	if err != nil {
		t.Fatal(err)
	}
	plain := mustSeal(t, c, ks, uid7)
	// Same fields, byte for byte; only the format version and the MAC differ.
	if len(rec) != len(plain) || rec[offFormat] != FormatVersionBound ||
		!bytes.Equal(rec[offKeyVersion:len(rec)-MACLen], plain[offKeyVersion:len(plain)-MACLen]) {
		t.Fatalf("bound record differs from format 1 beyond byte 2 and the MAC")
	}
	got, err := OpenBound(rec, ks, uid7, bound)
	if err != nil {
		t.Fatal(err)
	}
	if got.FormatVersion != FormatVersionBound || got.CardNumber != c.CardNumber {
		t.Fatalf("opened %+v", got)
	}
	other := bytes.Clone(bound)
	other[len(other)-1]++ // the counter moved on
	for _, tc := range []struct {
		name  string
		b     []byte
		bound []byte
		open  func([]byte, []byte) error
		want  error
	}{
		{"other bound bytes", rec, other, nil, ErrBadMAC},
		{"bound bytes cut short", rec, bound[:len(bound)-1], nil, ErrBadMAC},
		{"format 2 without bound bytes", rec, nil, func(b, _ []byte) error { _, err := Open(b, ks, uid7); return err }, ErrUnsupportedFormat},
		{"format 1 with bound bytes", plain, bound, nil, ErrUnsupportedFormat},
		{"format 2 relabelled 1", withByte(rec, offFormat, FormatVersion), nil, func(b, _ []byte) error { _, err := Open(b, ks, uid7); return err }, ErrBadMAC},
		{"format 1 relabelled 2", withByte(plain, offFormat, FormatVersionBound), bound, nil, ErrBadMAC},
		{"copied to another card", rec, bound, func(b, bd []byte) error { _, err := OpenBound(b, ks, uid4, bd); return err }, ErrUIDMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			open := tc.open
			if open == nil {
				open = func(b, bd []byte) error { _, err := OpenBound(b, ks, uid7, bd); return err }
			}
			if err := open(tc.b, tc.bound); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	for _, n := range []int{0, MaxBoundLen + 1} {
		if _, err := SealBound(c, ks, uid7, make([]byte, n)); err == nil {
			t.Errorf("SealBound with %d bound bytes: no error", n)
		}
		if _, err := OpenBound(rec, ks, uid7, make([]byte, n)); err == nil || errors.Is(err, ErrBadMAC) {
			t.Errorf("OpenBound with %d bound bytes: %v", n, err)
		}
	}
}
