package vpcd

import (
	"bytes"
	"sync"
	"time"
)

// testCard answers GET DATA (UID) with the UID and echoes any other APDU's
// bytes followed by 90 00. fail maps an APDU number (1-based) to the error
// Transmit returns for it.
type testCard struct {
	atr, uid []byte

	mu     sync.Mutex
	fail   map[int]error
	delay  time.Duration
	apdus  int
	resets int
	last   []byte
}

var classic1kATR = []byte{0x3B, 0x8F, 0x80, 0x01, 0x80, 0x4F, 0x0C, 0xA0, 0x00, 0x00, 0x03, 0x06, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x6A}

func newTestCard() *testCard {
	return &testCard{atr: classic1kATR, uid: []byte{0x04, 0xA1, 0xB2, 0xC3}, fail: map[int]error{}}
}

func (c *testCard) ATR() []byte { return bytes.Clone(c.atr) }
func (c *testCard) UID() []byte { return bytes.Clone(c.uid) }

func (c *testCard) Transmit(apdu []byte) ([]byte, error) {
	c.mu.Lock()
	c.apdus++
	c.last = bytes.Clone(apdu)
	err, d := c.fail[c.apdus], c.delay
	c.mu.Unlock()
	if d > 0 {
		time.Sleep(d)
	}
	if err != nil {
		return nil, err
	}
	if bytes.Equal(apdu, getUID) {
		return append(c.UID(), 0x90, 0x00), nil
	}
	return append(bytes.Clone(apdu), 0x90, 0x00), nil
}

func (c *testCard) Reset() {
	c.mu.Lock()
	c.resets++
	c.mu.Unlock()
}

func (c *testCard) failAt(n int, err error) {
	c.mu.Lock()
	c.fail[n] = err
	c.mu.Unlock()
}

func (c *testCard) counts() (apdus, resets int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.apdus, c.resets
}

// getUID is PC/SC Part 3 GET DATA for the UID.
var getUID = []byte{0xFF, 0xCA, 0x00, 0x00, 0x00}
