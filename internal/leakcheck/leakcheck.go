// Package leakcheck finds secrets in a process's output, for tests: the
// bridge token, API keys, site keys, card UIDs and every byte that crossed
// a card, in each spelling a log line could give them (text, hex in
// either case, base64 of either alphabet). Tap wraps a simulated card to
// collect those bytes.
//
// Tests use it; production code must not import it.
package leakcheck

import (
	"encoding/base64"
	"encoding/hex"
	"strings"
	"sync"

	"github.com/encoder-bridge/encoder-bridge/reader/sim/chip"
)

// Set maps each spelling of a secret to what it is. The zero value is not
// usable; make one with New.
type Set struct {
	m      map[string]string
	public []string
}

// New returns an empty Set.
func New() *Set { return &Set{m: map[string]string{}} }

// Public names text that may appear although it holds secret-looking
// bytes: the site key's ID is written in clear on every card, so a page
// of the card that carries it matches within it.
func (s *Set) Public(v string) {
	if v != "" {
		s.public = append(s.public, v)
	}
}

// Text adds a secret that appears as text, such as a token.
func (s *Set) Text(what, v string) {
	if v != "" {
		s.add(v, what)
	}
}

// Bytes adds b in upper and lower hex and in standard and URL base64,
// padded or not. Values shorter than 4 bytes or with fewer than 3
// distinct bytes (a default key FFFFFFFFFFFF, a zero block, a status
// word) are left out: they are public and would match by chance.
func (s *Set) Bytes(what string, b []byte) {
	if len(b) < 4 || distinct(b) < 3 {
		return
	}
	h := hex.EncodeToString(b)
	s.add(h, what)
	s.add(strings.ToUpper(h), what)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
		s.add(strings.TrimRight(enc.EncodeToString(b), "="), what)
	}
}

// add keeps the first name given to a spelling: the UID the test names
// also crosses the card, as "card data".
func (s *Set) add(v, what string) {
	if _, ok := s.m[v]; !ok {
		s.m[v] = what
	}
}

// Len is the number of spellings s looks for.
func (s *Set) Len() int { return len(s.m) }

func distinct(b []byte) int {
	var seen [256]bool
	n := 0
	for _, x := range b {
		if !seen[x] {
			seen[x] = true
			n++
		}
	}
	return n
}

// Find returns a line for each secret in out, naming where (name) and
// what, after taking out the public text; the line shows the secret's surroundings with the secret itself
// replaced, so a failing test does not print it either.
func (s *Set) Find(name, out string) []string {
	for _, p := range s.public {
		out = strings.ReplaceAll(out, p, "<public>")
	}
	var found []string
	for v, what := range s.m {
		if i := strings.Index(out, v); i >= 0 {
			lo, hi := max(0, i-120), min(len(out), i+len(v)+40)
			found = append(found, name+" shows "+what+" in: "+strings.ReplaceAll(out[lo:hi], v, "<"+what+">"))
		}
	}
	return found
}

// Tap is a card that records every byte crossing its interface: the
// command data sent to it (record blocks, sector trailers with diversified
// keys, PWDs, authentication cryptograms) and the data it answers.
type Tap struct {
	chip.Card
	mu     sync.Mutex
	frames [][]byte
}

// Transmit passes apdu to the card and records both directions.
func (c *Tap) Transmit(apdu []byte) ([]byte, error) {
	resp, err := c.Card.Transmit(apdu)
	c.mu.Lock()
	defer c.mu.Unlock()
	// A command APDU's header is CLA INS P1 P2 Lc; its data follows.
	if len(apdu) > 5 {
		c.frames = append(c.frames, append([]byte(nil), apdu[5:]...))
	}
	// The last two bytes of an answer are its status word.
	if len(resp) > 2 {
		c.frames = append(c.frames, append([]byte(nil), resp[:len(resp)-2]...))
	}
	return resp, err
}

// AddTo adds every recorded frame to s, as "card data", and returns how
// many frames there were.
func (c *Tap) AddTo(s *Set) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range c.frames {
		s.Bytes("card data", f)
	}
	return len(c.frames)
}
