package chip

import (
	"fmt"
	"sync"
)

// Classic is a MIFARE Classic 1K (MF1S50yyX) or 4K (MF1S70yyX) card behind
// a PC/SC reader. Memory is modelled byte for byte; authentication checks
// the keys in the sector trailer but crypto1 itself is not simulated.
type Classic struct {
	mu     sync.Mutex
	is4K   bool
	uidLen int
	mem    [][16]byte
	rd     reader

	authSector int // -1: not authenticated
	authKeyB   bool
	halted     bool
}

// Manufacturer data filling the rest of block 0 (arbitrary but fixed).
var classicMfrData = [8]byte{0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69}

// NewClassic1K returns a fresh MIFARE Classic 1K card. uid must be 4 or 7
// bytes; nil draws a random 4-byte UID.
func NewClassic1K(uid []byte) *Classic { return newClassic(false, uid) }

// NewClassic4K returns a fresh MIFARE Classic 4K card. uid must be 4 or 7
// bytes; nil draws a random 4-byte UID.
func NewClassic4K(uid []byte) *Classic { return newClassic(true, uid) }

func newClassic(is4K bool, uid []byte) *Classic {
	if uid == nil {
		uid = randomUID(4)
	}
	if len(uid) != 4 && len(uid) != 7 {
		panic(fmt.Sprintf("chip: MIFARE Classic UID must be 4 or 7 bytes, got %d", len(uid)))
	}
	n := 64
	if is4K {
		n = 256
	}
	c := &Classic{is4K: is4K, uidLen: len(uid), mem: make([][16]byte, n), authSector: -1}
	c.mem[0] = classicBlock0(is4K, uid)
	fresh := freshTrailer()
	for s := 0; s < c.sectors(); s++ {
		c.mem[trailerBlock(s)] = fresh
	}
	return c
}

// classicBlock0 lays out the manufacturer block (MF1S50yyX §8.6.1): for a
// 4-byte UID: UID, BCC, SAK, ATQA, manufacturer data; for a 7-byte UID:
// UID, SAK, ATQA, manufacturer data.
func classicBlock0(is4K bool, uid []byte) [16]byte {
	sak, atqa := byte(0x08), byte(0x04)
	if is4K {
		sak, atqa = 0x18, 0x02
	}
	var b [16]byte
	n := copy(b[:], uid)
	if len(uid) == 4 {
		b[4] = uid[0] ^ uid[1] ^ uid[2] ^ uid[3]
		n = 5
	} else {
		atqa |= 0x40 // double-size UID
	}
	b[n], b[n+1], b[n+2] = sak, atqa, 0x00
	copy(b[n+3:], classicMfrData[:])
	return b
}

func freshTrailer() [16]byte {
	var t [16]byte
	for i := 0; i < 6; i++ {
		t[i], t[10+i] = 0xFF, 0xFF
	}
	acc := TransportAccess.Bytes()
	copy(t[6:9], acc[:])
	t[9] = 0x69
	return t
}

// Layout helpers. Sectors 0..31 have 4 blocks, 32..39 (4K only) 16.

func (c *Classic) sectors() int {
	if c.is4K {
		return 40
	}
	return 16
}

func sectorOf(block int) int {
	if block < 128 {
		return block / 4
	}
	return 32 + (block-128)/16
}

func firstBlock(sector int) int {
	if sector < 32 {
		return sector * 4
	}
	return 128 + (sector-32)*16
}

func blocksIn(sector int) int {
	if sector < 32 {
		return 4
	}
	return 16
}

func trailerBlock(sector int) int { return firstBlock(sector) + blocksIn(sector) - 1 }

// accessGroup maps a block to its access-condition group (3 = trailer).
// Large sectors group data blocks in fives (MF1S70yyX §8.7.1).
func accessGroup(block int) int {
	s := sectorOf(block)
	off := block - firstBlock(s)
	if s < 32 {
		return off
	}
	if off == 15 {
		return 3
	}
	return off / 5
}

// ATR implements Card.
func (c *Classic) ATR() []byte {
	if c.is4K {
		return storageATR(atrNameClassic4K)
	}
	return storageATR(atrNameClassic1K)
}

// UID implements Card; it is taken from block 0.
func (c *Classic) UID() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.uidBytes()
}

func (c *Classic) uidBytes() []byte { return append([]byte(nil), c.mem[0][:c.uidLen]...) }

// Kind returns the kind string New accepts for this card.
func (c *Classic) Kind() string {
	if c.is4K {
		return KindClassic4K
	}
	return KindClassic1K
}

// Transmit implements Card.
func (c *Classic) Transmit(apdu []byte) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rd.transmit(c, apdu), nil
}

// Reset implements Card: the card is re-activated, losing authentication
// and leaving HALT. Reader key slots are kept.
func (c *Classic) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.authSector, c.authKeyB, c.halted = -1, false, false
	c.rd.session = false
}

// halt models the chip dropping to HALT after a NAK or failed
// authentication (MF1S50yyX state diagram: any error returns the PICC to
// IDLE/HALT). Only a re-activation (Reset) brings it back.
func (c *Classic) halt() {
	c.halted = true
	c.authSector, c.authKeyB = -1, false
}

// sectorAccess returns the decoded access conditions of a sector.
func (c *Classic) sectorAccess(sector int) (AccessConditions, bool) {
	t := c.mem[trailerBlock(sector)]
	return DecodeAccess(t[6], t[7], t[8])
}

func (c *Classic) authenticate(block int, useKeyB bool, key [6]byte) []byte {
	if c.halted {
		return resp(nil, swFailed)
	}
	if block < 0 || block >= len(c.mem) {
		return resp(nil, swOutOfRange)
	}
	s := sectorOf(block)
	t := c.mem[trailerBlock(s)]
	stored := t[0:6]
	if useKeyB {
		stored = t[10:16]
	}
	_, ok := c.sectorAccess(s)
	if !ok || string(stored) != string(key[:]) {
		// Malformed access bits block the sector for good (§8.7.1): no
		// key authenticates any more.
		c.halt()
		return resp(nil, swFailed)
	}
	c.authSector, c.authKeyB = s, useKeyB
	return resp(nil, swOK)
}

// checkAuth is the common part of READ and WRITE. A command outside the
// authenticated sector reaches the chip encrypted under the wrong sector's
// session; the chip NAKs it and halts, so a Reset and a new authentication
// are needed.
func (c *Classic) checkAuth(block int) (sw []byte, ok bool) {
	if c.halted {
		return swFailed, false
	}
	if block < 0 || block >= len(c.mem) {
		return swOutOfRange, false
	}
	if c.authSector != sectorOf(block) {
		c.halt()
		return swSecurity, false
	}
	return nil, true
}

func (c *Classic) readBinary(p1, p2 byte, le int) []byte {
	if le != 0x10 && le != 0x00 {
		return resp(nil, swWrongLength)
	}
	block := int(p1)<<8 | int(p2)
	if sw, ok := c.checkAuth(block); !ok {
		return resp(nil, sw)
	}
	data, ok := c.readBlock(block)
	if !ok {
		c.halt()
		return resp(nil, swFailed)
	}
	return resp(data, swOK)
}

// readBlock applies the access conditions to a READ of an authenticated
// block; ok false is a chip NAK.
func (c *Classic) readBlock(block int) ([]byte, bool) {
	s := sectorOf(block)
	acc, valid := c.sectorAccess(s)
	if !valid {
		return nil, false
	}
	tc := acc[3]
	g := accessGroup(block)
	if g != 3 {
		if !allows(dataTable[acc[g]].read, c.authKeyB, tc) {
			return nil, false
		}
		b := c.mem[block]
		return b[:], true
	}
	tp := trailerTable[tc]
	if !allows(tp.readAccess, c.authKeyB, tc) {
		return nil, false
	}
	t := c.mem[block]
	out := make([]byte, 16)
	copy(out[6:10], t[6:10]) // key A is never readable: bytes 0..5 read as 00
	if allows(tp.readKeyB, c.authKeyB, tc) {
		copy(out[10:16], t[10:16])
	}
	return out, true
}

func (c *Classic) updateBinary(p1, p2 byte, data []byte) []byte {
	if len(data) != 16 {
		return resp(nil, swWrongLength)
	}
	block := int(p1)<<8 | int(p2)
	if sw, ok := c.checkAuth(block); !ok {
		return resp(nil, sw)
	}
	if !c.writeBlock(block, data) {
		c.halt()
		return resp(nil, swFailed)
	}
	return resp(nil, swOK)
}

// writeBlock applies the access conditions to a WRITE; false is a NAK.
func (c *Classic) writeBlock(block int, data []byte) bool {
	if block == 0 {
		return false // manufacturer block, read-only (§8.6.1)
	}
	s := sectorOf(block)
	acc, valid := c.sectorAccess(s)
	if !valid {
		return false
	}
	tc := acc[3]
	g := accessGroup(block)
	if g != 3 {
		if !allows(dataTable[acc[g]].write, c.authKeyB, tc) {
			return false
		}
		copy(c.mem[block][:], data)
		return true
	}
	// A trailer write only changes the parts the conditions allow; the
	// rest of the written data is ignored (§8.7.2).
	tp := trailerTable[tc]
	t := c.mem[block]
	wrote := false
	if allows(tp.writeKeyA, c.authKeyB, tc) {
		copy(t[0:6], data[0:6])
		wrote = true
	}
	if allows(tp.writeAccess, c.authKeyB, tc) {
		copy(t[6:10], data[6:10]) // byte 9 (GPB) follows the access bits
		wrote = true
	}
	if allows(tp.writeKeyB, c.authKeyB, tc) {
		copy(t[10:16], data[10:16])
		wrote = true
	}
	if !wrote {
		return false
	}
	c.mem[block] = t
	return true
}

func (c *Classic) native([]byte) ([]byte, bool) {
	// Classic frames are crypto1-encrypted and handled by the reader's
	// MIFARE commands; a plain frame is a protocol error for the chip.
	c.halt()
	return nil, false
}

// Fixture access. These bypass access conditions and authentication so
// tests can build cards in any state.

// Blocks returns the number of blocks (64 or 256).
func (c *Classic) Blocks() int { return len(c.mem) }

// Sectors returns the number of sectors (16 or 40).
func (c *Classic) Sectors() int { return c.sectors() }

// TrailerBlock returns the sector trailer's block number.
func (c *Classic) TrailerBlock(sector int) int {
	c.checkSector(sector)
	return trailerBlock(sector)
}

// FirstBlock returns the first block of a sector.
func (c *Classic) FirstBlock(sector int) int {
	c.checkSector(sector)
	return firstBlock(sector)
}

// Block returns a copy of block n as stored (trailer keys included).
func (c *Classic) Block(n int) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.checkBlock(n)
	b := c.mem[n]
	return b[:]
}

// SetBlock stores 16 bytes into block n, including block 0 and trailers.
// A trailer with inconsistent access bits makes the sector bricked.
func (c *Classic) SetBlock(n int, b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.checkBlock(n)
	if len(b) != 16 {
		panic(fmt.Sprintf("chip: SetBlock needs 16 bytes, got %d", len(b)))
	}
	copy(c.mem[n][:], b)
}

// SetTrailer writes a sector trailer from its parts; gpb is byte 9.
func (c *Classic) SetTrailer(sector int, keyA, keyB [6]byte, acc AccessConditions, gpb byte) {
	c.checkSector(sector)
	var t [16]byte
	copy(t[0:6], keyA[:])
	ab := acc.Bytes()
	copy(t[6:9], ab[:])
	t[9] = gpb
	copy(t[10:16], keyB[:])
	c.SetBlock(trailerBlock(sector), t[:])
}

// Bricked reports whether the sector's access bits are malformed, which
// makes the chip refuse every authentication to it.
func (c *Classic) Bricked(sector int) bool {
	c.checkSector(sector)
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.sectorAccess(sector)
	return !ok
}

// Halted reports whether the chip is in HALT after an error.
func (c *Classic) Halted() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.halted
}

func (c *Classic) checkBlock(n int) {
	if n < 0 || n >= len(c.mem) {
		panic(fmt.Sprintf("chip: block %d out of range 0..%d", n, len(c.mem)-1))
	}
}

func (c *Classic) checkSector(s int) {
	if s < 0 || s >= c.sectors() {
		panic(fmt.Sprintf("chip: sector %d out of range 0..%d", s, c.sectors()-1))
	}
}
