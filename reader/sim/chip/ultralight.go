package chip

import (
	"fmt"
	"sync"
)

// UltralightModel selects a MIFARE Ultralight EV1 or NTAG21x variant.
type UltralightModel int

// Supported models.
const (
	MF0UL11 UltralightModel = iota
	MF0UL21
	NTAG213
	NTAG215
	NTAG216
)

// ulSpec is a model's memory map (MF0ULx1 §8.5, NTAG213/215/216 §8.5).
type ulSpec struct {
	kind    string
	pages   int // total pages, 0..pages-1
	userEnd int // last user page
	dynLock int // dynamic lock page, 0 if none
	cfg0    int // CFG0; CFG1, PWD, PACK follow
	ntag    bool
	version [8]byte
	// Dynamic lock bits: bit i of bytes 0-1 locks dynGran pages from page
	// 16 on; bit j of byte 2 (block-lock) freezes the lock bits covering
	// blGran pages.
	dynGran, dynBits int
	blGran, blBits   int
	// Factory content of pages 3.. (CC and, on NTAG, an empty NDEF).
	fresh [][4]byte
}

var ulSpecs = map[UltralightModel]*ulSpec{
	MF0UL11: {kind: KindMF0UL11, pages: 0x14, userEnd: 0x0F, cfg0: 0x10,
		version: [8]byte{0x00, 0x04, 0x03, 0x01, 0x01, 0x00, 0x0B, 0x03}},
	MF0UL21: {kind: KindMF0UL21, pages: 0x29, userEnd: 0x23, dynLock: 0x24, cfg0: 0x25,
		version: [8]byte{0x00, 0x04, 0x03, 0x01, 0x01, 0x00, 0x0E, 0x03},
		dynGran: 2, dynBits: 10, blGran: 4, blBits: 5},
	NTAG213: {kind: KindNTAG213, pages: 0x2D, userEnd: 0x27, dynLock: 0x28, cfg0: 0x29, ntag: true,
		version: [8]byte{0x00, 0x04, 0x04, 0x02, 0x01, 0x00, 0x0F, 0x03},
		dynGran: 2, dynBits: 12, blGran: 8, blBits: 3,
		fresh: [][4]byte{{0xE1, 0x10, 0x12, 0x00}, {0x01, 0x03, 0xA0, 0x0C}, {0x34, 0x03, 0x00, 0xFE}}},
	NTAG215: {kind: KindNTAG215, pages: 0x87, userEnd: 0x81, dynLock: 0x82, cfg0: 0x83, ntag: true,
		version: [8]byte{0x00, 0x04, 0x04, 0x02, 0x01, 0x00, 0x11, 0x03},
		dynGran: 16, dynBits: 8, blGran: 32, blBits: 4,
		fresh: [][4]byte{{0xE1, 0x10, 0x3E, 0x00}, {0x03, 0x00, 0xFE, 0x00}}},
	NTAG216: {kind: KindNTAG216, pages: 0xE7, userEnd: 0xE1, dynLock: 0xE2, cfg0: 0xE3, ntag: true,
		version: [8]byte{0x00, 0x04, 0x04, 0x02, 0x01, 0x00, 0x13, 0x03},
		dynGran: 16, dynBits: 14, blGran: 32, blBits: 7,
		fresh: [][4]byte{{0xE1, 0x10, 0x6D, 0x00}, {0x03, 0x00, 0xFE, 0x00}}},
}

// String returns the model name, e.g. "NTAG213".
func (m UltralightModel) String() string {
	switch m {
	case MF0UL11:
		return "MF0UL11"
	case MF0UL21:
		return "MF0UL21"
	case NTAG213:
		return "NTAG213"
	case NTAG215:
		return "NTAG215"
	case NTAG216:
		return "NTAG216"
	}
	return fmt.Sprintf("UltralightModel(%d)", int(m))
}

func modelByKind(kind string) (UltralightModel, bool) {
	for m, s := range ulSpecs {
		if s.kind == kind {
			return m, true
		}
	}
	return 0, false
}

// Configuration bits (CFG1 byte 0, ACCESS).
const (
	accessPROT       = 0x80
	accessCFGLCK     = 0x40
	accessNFCCntEn   = 0x10 // NTAG only
	accessNFCCntProt = 0x08 // NTAG only
	accessAUTHLIM    = 0x07
)

// Ultralight is a MIFARE Ultralight EV1 or NTAG21x tag behind a PC/SC
// reader.
type Ultralight struct {
	mu    sync.Mutex
	model UltralightModel
	spec  *ulSpec
	mem   [][4]byte
	rd    reader

	// Non-volatile chip state outside the page map.
	counters   [3]uint32 // EV1: three one-way counters; NTAG: [0] is the NFC counter
	authFails  int       // negative PWD_AUTH count (AUTHLIM)
	pwdBlocked bool      // AUTHLIM reached: PWD_AUTH disabled for good
	cfgLocked  bool      // CFGLCK in force (latched at activation)

	// Session state, cleared by Reset.
	authed       bool
	halted       bool
	readSinceAct bool // NFC counter already incremented this activation
	compatPage   int  // COMPATIBILITY_WRITE part 1 seen for this page, -1 if none
}

// NewUltralight returns a fresh tag of model m. uid must be 7 bytes; nil
// draws a random UID starting with the NXP code 04.
func NewUltralight(m UltralightModel, uid []byte) *Ultralight {
	spec, ok := ulSpecs[m]
	if !ok {
		panic(fmt.Sprintf("chip: unknown UltralightModel %d", m))
	}
	if uid == nil {
		uid = randomUID(7)
	}
	if len(uid) != 7 {
		panic(fmt.Sprintf("chip: %s UID must be 7 bytes, got %d", spec.kind, len(uid)))
	}
	u := &Ultralight{model: m, spec: spec, mem: make([][4]byte, spec.pages), compatPage: -1}
	// Pages 0-2: UID with its check bytes (§8.5.1); BCC0 includes the
	// cascade tag 88h.
	u.mem[0] = [4]byte{uid[0], uid[1], uid[2], 0x88 ^ uid[0] ^ uid[1] ^ uid[2]}
	u.mem[1] = [4]byte{uid[3], uid[4], uid[5], uid[6]}
	u.mem[2] = [4]byte{uid[3] ^ uid[4] ^ uid[5] ^ uid[6], 0x48, 0x00, 0x00}
	for i, p := range spec.fresh {
		u.mem[3+i] = p
	}
	if spec.dynLock != 0 && spec.ntag {
		u.mem[spec.dynLock] = [4]byte{0x00, 0x00, 0x00, 0xBD}
	}
	if spec.ntag {
		u.mem[spec.cfg0] = [4]byte{0x04, 0x00, 0x00, 0xFF} // STRG_MOD_EN, AUTH0 FFh
	} else {
		u.mem[spec.cfg0] = [4]byte{0x00, 0x00, 0x00, 0xFF}
	}
	u.mem[spec.cfg0+1] = [4]byte{0x00, 0x05, 0x00, 0x00}
	u.mem[spec.cfg0+2] = [4]byte{0xFF, 0xFF, 0xFF, 0xFF}
	return u
}

func (u *Ultralight) pwdPage() int  { return u.spec.cfg0 + 2 }
func (u *Ultralight) packPage() int { return u.spec.cfg0 + 3 }
func (u *Ultralight) auth0() int    { return int(u.mem[u.spec.cfg0][3]) }
func (u *Ultralight) access() byte  { return u.mem[u.spec.cfg0+1][0] }

// authLimit is the number of negative PWD_AUTH attempts allowed, 0 for no
// limit. MF0ULx1 §8.6.2 counts up to AUTHLIM; NTAG213/215/216 §8.8.2 up
// to 2^AUTHLIM.
func (u *Ultralight) authLimit() int {
	l := int(u.access() & accessAUTHLIM)
	if l == 0 || !u.spec.ntag {
		return l
	}
	return 1 << l
}

// ATR implements Card.
func (u *Ultralight) ATR() []byte { return storageATR(atrNameUltralight) }

// UID implements Card; it is taken from pages 0 and 1.
func (u *Ultralight) UID() []byte {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.uidBytes()
}

func (u *Ultralight) uidBytes() []byte {
	return []byte{u.mem[0][0], u.mem[0][1], u.mem[0][2], u.mem[1][0], u.mem[1][1], u.mem[1][2], u.mem[1][3]}
}

// Kind returns the kind string New accepts for this tag.
func (u *Ultralight) Kind() string { return u.spec.kind }

// Model returns the tag's model.
func (u *Ultralight) Model() UltralightModel { return u.model }

// Transmit implements Card.
func (u *Ultralight) Transmit(apdu []byte) ([]byte, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.rd.transmit(u, apdu), nil
}

// Reset implements Card: a new activation. Authentication and HALT are
// cleared and CFGLCK, if set, takes effect (NTAG21x §8.5.7 remark: the
// configuration lock is activated after a power cycle).
func (u *Ultralight) Reset() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.activate()
	u.rd.session = false
}

func (u *Ultralight) activate() {
	u.authed, u.halted, u.readSinceAct, u.compatPage = false, false, false, -1
	if u.access()&accessCFGLCK != 0 {
		u.cfgLocked = true
	}
}

// nak models a NAK or a missing answer: the tag falls back to IDLE/HALT
// (the datasheets' state diagrams) and forgets its authentication.
func (u *Ultralight) nak() ([]byte, bool) {
	u.halted, u.authed, u.compatPage = true, false, -1
	return nil, false
}

func (u *Ultralight) authenticate(int, bool, [6]byte) []byte {
	// A MIFARE Classic authentication frame is not an Ultralight command.
	u.nak()
	return resp(nil, swFailed)
}

func (u *Ultralight) readBinary(p1, p2 byte, le int) []byte {
	if le != 0x04 && le != 0x10 {
		return resp(nil, swWrongLength)
	}
	if p1 != 0 {
		return resp(nil, swOutOfRange)
	}
	data, ok := u.native([]byte{0x30, p2})
	if !ok {
		return resp(nil, swFailed)
	}
	return resp(data[:le], swOK)
}

func (u *Ultralight) updateBinary(p1, p2 byte, data []byte) []byte {
	if len(data) != 4 {
		return resp(nil, swWrongLength)
	}
	if p1 != 0 {
		return resp(nil, swOutOfRange)
	}
	if _, ok := u.native(append([]byte{0xA2, p2}, data...)); !ok {
		return resp(nil, swFailed)
	}
	return resp(nil, swOK)
}

// Fixture access. These bypass locks and passwords.

// Pages returns the number of pages.
func (u *Ultralight) Pages() int { return u.spec.pages }

// ConfigPage returns the page number of CFG0; CFG1, PWD and PACK follow.
func (u *Ultralight) ConfigPage() int { return u.spec.cfg0 }

// Page returns a copy of page n as stored (PWD and PACK included).
func (u *Ultralight) Page(n int) []byte {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.checkPage(n)
	p := u.mem[n]
	return p[:]
}

// SetPage stores 4 bytes into page n. Setting CFGLCK this way takes effect
// at the next Reset, as on the chip.
func (u *Ultralight) SetPage(n int, b []byte) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.checkPage(n)
	if len(b) != 4 {
		panic(fmt.Sprintf("chip: SetPage needs 4 bytes, got %d", len(b)))
	}
	copy(u.mem[n][:], b)
}

// SetPassword stores PWD and PACK.
func (u *Ultralight) SetPassword(pwd [4]byte, pack [2]byte) {
	u.SetPage(u.pwdPage(), pwd[:])
	u.SetPage(u.packPage(), []byte{pack[0], pack[1], 0, 0})
}

// Counter returns one-way counter i (EV1: 0..2; NTAG: 2 is the NFC
// counter, as addressed by READ_CNT).
func (u *Ultralight) Counter(i int) uint32 {
	u.mu.Lock()
	defer u.mu.Unlock()
	idx, ok := u.counterIndex(i)
	if !ok {
		panic(fmt.Sprintf("chip: %s has no counter %d", u.spec.kind, i))
	}
	return u.counters[idx]
}

// SetCounter sets one-way counter i (see Counter); v is truncated to 24 bits.
func (u *Ultralight) SetCounter(i int, v uint32) {
	u.mu.Lock()
	defer u.mu.Unlock()
	idx, ok := u.counterIndex(i)
	if !ok {
		panic(fmt.Sprintf("chip: %s has no counter %d", u.spec.kind, i))
	}
	u.counters[idx] = v & 0xFFFFFF
}

func (u *Ultralight) counterIndex(i int) (int, bool) {
	if u.spec.ntag {
		return 0, i == 2
	}
	return i, i >= 0 && i < 3
}

// AuthFailures returns the negative PWD_AUTH count kept for AUTHLIM.
func (u *Ultralight) AuthFailures() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.authFails
}

// PasswordBlocked reports whether AUTHLIM was reached: every PWD_AUTH
// fails from then on.
func (u *Ultralight) PasswordBlocked() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.pwdBlocked
}

// Halted reports whether the tag is in HALT/IDLE after a NAK.
func (u *Ultralight) Halted() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.halted
}

func (u *Ultralight) checkPage(n int) {
	if n < 0 || n >= u.spec.pages {
		panic(fmt.Sprintf("chip: page %d out of range 0..%d", n, u.spec.pages-1))
	}
}
