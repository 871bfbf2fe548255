package chip

// MIFARE Classic access conditions, MF1S50yyX/MF1S70yyX §8.7.
//
// Each block group (three data groups and the sector trailer) has three
// bits C1 C2 C3, stored with inverted copies in trailer bytes 6..8
// (§8.7.1):
//
//	byte 6: ^C2(3..0) << 4 | ^C1(3..0)
//	byte 7:  C1(3..0) << 4 | ^C3(3..0)
//	byte 8:  C3(3..0) << 4 |  C2(3..0)
//
// A condition is written here as the 3-bit value C1<<2 | C2<<1 | C3, so
// "C1C2C3 = 100" is 4.

// keyMask says which keys satisfy an access condition.
type keyMask uint8

const (
	never keyMask = 0
	keyA  keyMask = 1
	keyB  keyMask = 2
	keyAB keyMask = keyA | keyB
)

// dataPerm is one row of the data block table (§8.7.3, Table 8).
type dataPerm struct {
	read, write, increment, decrement keyMask
}

// dataTable is indexed by C1<<2 | C2<<1 | C3.
var dataTable = [8]dataPerm{
	0: {keyAB, keyAB, keyAB, keyAB}, // 000 transport configuration
	1: {keyAB, never, never, keyAB}, // 001 value block, decrement only
	2: {keyAB, never, never, never}, // 010 read only
	3: {keyB, keyB, never, never},   // 011
	4: {keyAB, keyB, never, never},  // 100
	5: {keyB, never, never, never},  // 101
	6: {keyAB, keyB, keyB, keyAB},   // 110 value block
	7: {never, never, never, never}, // 111
}

// trailerPerm is one row of the sector trailer table (§8.7.2, Table 7).
// Key A is never readable, so it has no read column.
type trailerPerm struct {
	writeKeyA           keyMask
	readAccess          keyMask
	writeAccess         keyMask
	readKeyB, writeKeyB keyMask
}

var trailerTable = [8]trailerPerm{
	0: {keyA, keyA, never, keyA, keyA},     // 000 key B readable
	1: {keyA, keyA, keyA, keyA, keyA},      // 001 transport configuration, key B readable
	2: {never, keyA, never, keyA, never},   // 010 key B readable
	3: {keyB, keyAB, keyB, never, keyB},    // 011
	4: {keyB, keyAB, never, never, keyB},   // 100
	5: {never, keyAB, keyB, never, never},  // 101
	6: {never, keyAB, never, never, never}, // 110
	7: {never, keyAB, never, never, never}, // 111
}

// keyBReadable reports whether trailer condition t lets key B be read. The
// datasheet (Table 7 note) then forbids key B for authentication: the chip
// accepts the authentication but denies every access made under it.
func keyBReadable(t uint8) bool { return trailerTable[t&7].readKeyB != never }

// AccessConditions holds C1C2C3 (as C1<<2|C2<<1|C3) for data groups 0..2
// and the sector trailer (index 3). In 4K sectors 32..39 group 0 covers
// blocks 0-4, group 1 blocks 5-9 and group 2 blocks 10-14.
type AccessConditions [4]uint8

// TransportAccess is the factory setting FF 07 80: data 000, trailer 001.
var TransportAccess = AccessConditions{0, 0, 0, 1}

// Bytes encodes the conditions as trailer bytes 6..8.
func (a AccessConditions) Bytes() [3]byte {
	var c1, c2, c3 byte
	for i := 0; i < 4; i++ {
		v := a[i] & 7
		c1 |= (v >> 2 & 1) << i
		c2 |= (v >> 1 & 1) << i
		c3 |= (v & 1) << i
	}
	return [3]byte{
		(^c2&0xF)<<4 | ^c1&0xF,
		c1<<4 | ^c3&0xF,
		c3<<4 | c2,
	}
}

// DecodeAccess parses trailer bytes 6..8. ok is false when an inverted copy
// does not match, which the chip treats as a blocked sector (§8.7.1).
func DecodeAccess(b6, b7, b8 byte) (a AccessConditions, ok bool) {
	c1, nc1 := b7>>4, b6&0xF
	c2, nc2 := b8&0xF, b6>>4
	c3, nc3 := b8>>4, b7&0xF
	if c1^nc1 != 0xF || c2^nc2 != 0xF || c3^nc3 != 0xF {
		return a, false
	}
	for i := 0; i < 4; i++ {
		a[i] = (c1>>i&1)<<2 | (c2>>i&1)<<1 | c3>>i&1
	}
	return a, true
}

// allows reports whether the key used for authentication satisfies m.
// Key B never satisfies anything while the trailer makes it readable.
func allows(m keyMask, usedKeyB bool, trailerCond uint8) bool {
	if usedKeyB {
		return m&keyB != 0 && !keyBReadable(trailerCond)
	}
	return m&keyA != 0
}
