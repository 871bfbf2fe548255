// Package cardfmttest holds what the layout tests share: deterministic key
// sets and credentials, so a test can build the same keys twice and pin
// what a card holds.
package cardfmttest

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/encoder-bridge/encoder-bridge/cardfmt"
)

// detRand is a deterministic byte stream: SHA-256 of the seed and a
// counter.
type detRand struct {
	seed string
	n    uint64
	buf  []byte
}

func (r *detRand) Read(p []byte) (int, error) {
	for i := range p {
		if len(r.buf) == 0 {
			var c [8]byte
			binary.BigEndian.PutUint64(c[:], r.n)
			r.n++
			h := sha256.Sum256(append([]byte(r.seed), c[:]...))
			r.buf = h[:]
		}
		p[i], r.buf = r.buf[0], r.buf[1:]
	}
	return len(p), nil
}

// KeySet builds the key set named seed with versions 1..versions, the
// highest current. The same arguments give the same keys.
func KeySet(t testing.TB, seed string, versions int) *cardfmt.KeySet {
	t.Helper()
	var r io.Reader = &detRand{seed: seed}
	ks, err := cardfmt.GenerateKeySet(r)
	if err != nil {
		t.Fatal(err)
	}
	for v := 2; v <= versions; v++ {
		if _, err := ks.Rotate(r); err != nil {
			t.Fatal(err)
		}
	}
	return ks
}

// Credential is a guest credential with the given card number and number
// of entrances; the same arguments give the same credential.
func Credential(number string, entrances int) cardfmt.Credential {
	c := cardfmt.Credential{
		ID:            uuid.NewSHA1(uuid.NameSpaceOID, []byte(number)),
		CardNumber:    number,
		Function:      cardfmt.FunctionGuest,
		StartsAt:      time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC),
		EndsAt:        time.Date(2026, 11, 26, 11, 0, 0, 0, time.UTC),
		IssueSequence: 7,
	}
	for i := range entrances {
		c.Entrances = append(c.Entrances, uuid.NewSHA1(uuid.NameSpaceURL, fmt.Appendf(nil, "%s/%d", number, i)))
	}
	return c
}
