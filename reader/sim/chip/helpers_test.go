package chip

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
)

// hx parses hex with optional spaces.
func hx(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

func hexOf(b []byte) string { return strings.ToUpper(hex.EncodeToString(b)) }

// tx sends an APDU given in hex and returns the response.
func tx(t *testing.T, c Card, apdu string) []byte {
	t.Helper()
	return txb(t, c, hx(apdu))
}

func txb(t *testing.T, c Card, apdu []byte) []byte {
	t.Helper()
	r, err := c.Transmit(apdu)
	if err != nil {
		t.Fatalf("Transmit(% X): %v", apdu, err)
	}
	if len(r) < 2 {
		t.Fatalf("Transmit(% X): response %X has no status word", apdu, r)
	}
	return r
}

func sw(r []byte) string { return fmt.Sprintf("%02X%02X", r[len(r)-2], r[len(r)-1]) }

// wantSW sends apdu and checks the status word.
func wantSW(t *testing.T, c Card, apdu, want string) []byte {
	t.Helper()
	r := tx(t, c, apdu)
	if got := sw(r); got != strings.ReplaceAll(want, " ", "") {
		t.Fatalf("%s: SW %s, want %s (response %X)", apdu, got, want, r)
	}
	return r[:len(r)-2]
}

var (
	keyFF   = [6]byte{0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}
	testKA  = [6]byte{0xA0, 0xA1, 0xA2, 0xA3, 0xA4, 0xA5}
	testKB  = [6]byte{0xB0, 0xB1, 0xB2, 0xB3, 0xB4, 0xB5}
	otherKA = [6]byte{0x11, 0x22, 0x33, 0x44, 0x55, 0x66}
)

func loadKey(t *testing.T, c Card, slot byte, key [6]byte) {
	t.Helper()
	r := txb(t, c, append([]byte{0xFF, 0x82, 0x00, slot, 0x06}, key[:]...))
	if sw(r) != "9000" {
		t.Fatalf("LOAD KEYS: %X", r)
	}
}

// authSW runs GENERAL AUTHENTICATE and returns the status word.
func authSW(t *testing.T, c Card, block int, useKeyB bool, slot byte) string {
	t.Helper()
	kt := byte(0x60)
	if useKeyB {
		kt = 0x61
	}
	return sw(txb(t, c, []byte{0xFF, 0x86, 0x00, 0x00, 0x05, 0x01, byte(block >> 8), byte(block), kt, slot}))
}

// authWith loads key into slot 0 and authenticates.
func authWith(t *testing.T, c Card, block int, useKeyB bool, key [6]byte) string {
	t.Helper()
	loadKey(t, c, 0, key)
	return authSW(t, c, block, useKeyB, 0)
}

func readBlock(t *testing.T, c Card, block int) []byte {
	t.Helper()
	return txb(t, c, []byte{0xFF, 0xB0, byte(block >> 8), byte(block), 0x10})
}

func writeBlock(t *testing.T, c Card, block int, data []byte) []byte {
	t.Helper()
	return txb(t, c, append([]byte{0xFF, 0xD6, byte(block >> 8), byte(block), byte(len(data))}, data...))
}

// direct sends a native frame through the ACR122U escape.
func direct(t *testing.T, c Card, frame []byte) ([]byte, bool) {
	t.Helper()
	apdu := append([]byte{0xFF, 0x00, 0x00, 0x00, byte(2 + len(frame)), 0xD4, 0x42}, frame...)
	r := txb(t, c, apdu)
	if sw(r) != "9000" || len(r) < 5 || r[0] != 0xD5 || r[1] != 0x43 {
		t.Fatalf("direct transmit % X: malformed response %X", frame, r)
	}
	if r[2] != 0x00 {
		if len(r) != 5 {
			t.Fatalf("direct transmit % X: error response %X carries data", frame, r)
		}
		return nil, false
	}
	return r[3 : len(r)-2], true
}

// session sends a native frame with TRANSPARENT EXCHANGE (a session must
// be open).
func session(t *testing.T, c Card, frame []byte) ([]byte, bool) {
	t.Helper()
	apdu := append([]byte{0xFF, 0xC2, 0x00, 0x01, byte(2 + len(frame)), 0x95, byte(len(frame))}, frame...)
	r := txb(t, c, apdu)
	if sw(r) != "9000" {
		t.Fatalf("transparent exchange % X: SW %X", frame, r)
	}
	body := r[:len(r)-2]
	if bytes.Equal(body, hx("C0 03 01 64 01")) {
		return nil, false
	}
	prefix := hx("C0 03 00 90 00 92 01 00 96 02 00 00 97")
	if !bytes.HasPrefix(body, prefix) || len(body) < len(prefix)+1 {
		t.Fatalf("transparent exchange % X: malformed response %X", frame, r)
	}
	n := int(body[len(prefix)])
	reply := body[len(prefix)+1:]
	if n != len(reply) {
		t.Fatalf("transparent exchange % X: 97 length %d, %d bytes follow", frame, n, len(reply))
	}
	return reply, true
}

func startSession(t *testing.T, c Card) {
	t.Helper()
	if r := tx(t, c, "FF C2 00 00 02 81 00"); !bytes.Equal(r, hx("C0 03 00 90 00 90 00")) {
		t.Fatalf("start session: %X", r)
	}
}

// ack is the wrapped reply to a 4-bit ACK.
var ack = []byte{ackFrame}
