package cardfmt

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
)

// seq returns n bytes start, start+1, …
func seq(start byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = start + byte(i)
	}
	return b
}

// Test key material: key id 0102030405060708, version 1 MAC master key
// 101112…1f, diversification master key 202122…2f; a rotation reads
// 303132…4f.
var (
	testKeyID   = [8]byte{1, 2, 3, 4, 5, 6, 7, 8}
	testMACKey1 = [16]byte(seq(0x10, 16))
	testDivKey1 = [16]byte(seq(0x20, 16))
	testMACKey2 = [16]byte(seq(0x30, 16))
	testDivKey2 = [16]byte(seq(0x40, 16))
)

func testKeySet(t testing.TB) *KeySet {
	t.Helper()
	r := bytes.NewReader(slices.Concat(testKeyID[:], testMACKey1[:], testDivKey1[:]))
	ks, err := GenerateKeySet(r)
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

func rotateTestKeySet(t testing.TB, ks *KeySet) *SiteKey {
	t.Helper()
	sk, err := ks.Rotate(bytes.NewReader(slices.Concat(testMACKey2[:], testDivKey2[:])))
	if err != nil {
		t.Fatal(err)
	}
	return sk
}

var (
	uid4  = []byte{0xde, 0xad, 0xbe, 0xef}
	uid7  = []byte{0x04, 0x78, 0x2e, 0x21, 0x80, 0x1d, 0x80}
	uid10 = []byte{0x04, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99}
)

func mustUUID(s string) uuid.UUID { return uuid.MustParse(s) }

// entrances returns n distinct, non-nil entrance ids.
func entrances(n int) []uuid.UUID {
	es := make([]uuid.UUID, n)
	for i := range es {
		es[i] = uuid.NewSHA1(uuid.NameSpaceURL, []byte{byte(i), 'e'})
	}
	return es
}

func testCredential() Credential {
	return Credential{
		ID:            mustUUID("6f1c2a9e-3b4d-4e5f-8a6b-7c8d9e0f1a2b"),
		CardNumber:    "G-000123",
		Function:      FunctionGuest,
		StartsAt:      time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC),
		EndsAt:        time.Date(2026, 11, 26, 11, 0, 0, 0, time.UTC),
		Entrances:     []uuid.UUID{mustUUID("0a1b2c3d-4e5f-4a6b-9c7d-8e9fa0b1c2d3")},
		IssueSequence: 7,
	}
}

func sameCredential(a, b Credential) bool {
	return a.ID == b.ID && a.CardNumber == b.CardNumber && a.Function == b.Function &&
		a.StartsAt.Equal(b.StartsAt) && a.EndsAt.Equal(b.EndsAt) &&
		slices.Equal(a.Entrances, b.Entrances) && a.IssueSequence == b.IssueSequence
}

func mustSeal(t testing.TB, c Credential, ks *KeySet, uid []byte) []byte {
	t.Helper()
	rec, err := Seal(c, ks, uid)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// reMAC replaces the MAC of rec with a valid one for uid under the key
// set's version named in the record, so that tests can reach the checks
// made after the MAC.
func reMAC(t testing.TB, rec []byte, ks *KeySet, uid []byte) []byte {
	t.Helper()
	sk, ok := ks.Version(rec[offKeyVersion])
	if !ok {
		t.Fatalf("no key version %d", rec[offKeyVersion])
	}
	out := slices.Clone(rec)
	mac := sk.recordMAC(out[:len(out)-MACLen], uid, nil)
	copy(out[len(out)-MACLen:], mac[:])
	return out
}
