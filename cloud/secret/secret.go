// Package secret makes and checks the cloud's bearer secrets: API keys for
// the Seam-style HTTP API and bridge tokens for the websocket.
//
// A secret is PREFIX + ID + "_" + RANDOM. The ID is public: it names the
// stored record, so a lookup never compares secret material in a database
// index. Only the SHA-256 of the whole secret is stored, and it is compared
// in constant time. The plain secret is returned once, when it is made.
//
// It must not import any other cloud package.
package secret

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"errors"
	"strings"
)

// Kind is a family of secrets, told apart by prefix.
type Kind struct {
	Prefix string
}

var (
	// APIKey is a workspace API key. Seam's SDKs accept a key only if it
	// starts with "seam_" and not with seam_at, seam_cst or seam_pk (those
	// are other kinds of Seam tokens), so ours all start with "seam_key".
	APIKey = Kind{Prefix: "seam_key"}
	// BridgeToken authenticates one bridge on the websocket.
	BridgeToken = Kind{Prefix: "ebt_"}
)

// ErrMalformed means the string is not a secret of the expected kind.
var ErrMalformed = errors.New("secret: malformed")

var enc = base32.StdEncoding.WithPadding(base32.NoPadding)

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return strings.ToLower(enc.EncodeToString(b))
}

// New makes a secret of kind k: its public id, the plain secret (show it
// once) and the hash to store.
func (k Kind) New() (id, plain string, hash []byte) {
	id = randomString(10)                          // 16 characters, 80 bits
	plain = k.Prefix + id + "_" + randomString(32) // 256 bits of secret
	return id, plain, Hash(plain)
}

// Parse returns the public id of a secret of kind k.
func (k Kind) Parse(s string) (id string, err error) {
	rest, ok := strings.CutPrefix(s, k.Prefix)
	if !ok {
		return "", ErrMalformed
	}
	id, random, ok := strings.Cut(rest, "_")
	if !ok || len(id) != 16 || len(random) < 16 || len(s) > 256 {
		return "", ErrMalformed
	}
	return id, nil
}

// Hash is what is stored for a secret.
func Hash(plain string) []byte {
	h := sha256.Sum256([]byte(plain))
	return h[:]
}

// Matches reports, in constant time, whether plain hashes to stored.
func Matches(plain string, stored []byte) bool {
	h := Hash(plain)
	return subtle.ConstantTimeCompare(h, stored) == 1
}

// Bearer extracts the token from an Authorization header value
// ("Bearer TOKEN", scheme case-insensitive).
func Bearer(header string) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}
