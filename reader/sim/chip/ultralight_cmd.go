package chip

// Native Ultralight EV1 / NTAG21x commands (MF0ULx1 and NTAG213/215/216
// section 10). Frames are given without CRC; a nil reply with ok false is a
// NAK or no answer, after which the tag stays halted until Reset.

// Native command codes.
const (
	cmdGetVersion   = 0x60
	cmdRead         = 0x30
	cmdFastRead     = 0x3A
	cmdWrite        = 0xA2
	cmdCompatWrite  = 0xA0
	cmdReadCnt      = 0x39
	cmdIncrCnt      = 0xA5
	cmdPwdAuth      = 0x1B
	cmdReadSig      = 0x3C
	cmdCheckTearing = 0x3E
	cmdHalt         = 0x50
)

const maxCounter = 0xFFFFFF

func (u *Ultralight) native(f []byte) ([]byte, bool) {
	if u.halted || len(f) == 0 {
		return u.nak()
	}
	if p := u.compatPage; p >= 0 {
		// COMPATIBILITY_WRITE part 2: 16 data bytes, only the first four
		// are written (§10.5).
		u.compatPage = -1
		if len(f) != 16 {
			return u.nak()
		}
		return u.write(p, f[:4])
	}
	switch {
	case f[0] == cmdGetVersion && len(f) == 1:
		v := u.spec.version
		return v[:], true
	case f[0] == cmdRead && len(f) == 2:
		return u.read(int(f[1]))
	case f[0] == cmdFastRead && len(f) == 3:
		return u.fastRead(int(f[1]), int(f[2]))
	case f[0] == cmdWrite && len(f) == 6:
		return u.write(int(f[1]), f[2:6])
	case f[0] == cmdCompatWrite && len(f) == 18:
		return u.write(int(f[1]), f[2:6])
	case f[0] == cmdCompatWrite && len(f) == 2:
		if int(f[1]) >= u.spec.pages {
			return u.nak()
		}
		u.compatPage = int(f[1])
		return []byte{ackFrame}, true
	case f[0] == cmdReadCnt && len(f) == 2:
		return u.readCnt(int(f[1]))
	case f[0] == cmdIncrCnt && len(f) == 6:
		return u.incrCnt(int(f[1]), f[2:5])
	case f[0] == cmdPwdAuth && len(f) == 5:
		return u.pwdAuth(f[1:5])
	case f[0] == cmdReadSig && len(f) == 2 && f[1] == 0x00:
		// The originality signature is NXP's ECC signature of the UID;
		// the model has no NXP key, so it is all zeros.
		return make([]byte, 32), true
	case f[0] == cmdCheckTearing && len(f) == 2 && !u.spec.ntag && f[1] <= 2:
		return []byte{0xBD}, true // valid flag: no tearing event
	}
	// HALT (50 00) is never answered; anything else is NAKed.
	return u.nak()
}

// readLimit is the first page a READ may not reach: AUTH0 while read
// protection is active and the tag is not authenticated.
func (u *Ultralight) readLimit() int {
	if !u.authed && u.access()&accessPROT != 0 && u.auth0() < u.spec.pages {
		return u.auth0()
	}
	return u.spec.pages
}

func (u *Ultralight) readPage(p int) [4]byte {
	if p == u.pwdPage() || p == u.packPage() {
		return [4]byte{} // PWD and PACK always read as 00h (§8.8.1)
	}
	return u.mem[p]
}

// read returns four pages. It rolls over to page 0 at the end of memory,
// and, while read protection is active, just before AUTH0 (READ, §10.2):
// a start page at or past AUTH0 is NAKed.
func (u *Ultralight) read(p int) ([]byte, bool) {
	limit := u.readLimit()
	if p >= u.spec.pages || p >= limit {
		return u.nak()
	}
	out := make([]byte, 0, 16)
	for i := 0; i < 4; i++ {
		pg := u.readPage((p + i) % limit)
		out = append(out, pg[:]...)
	}
	u.countRead()
	return out, true
}

// fastRead returns pages s..e; an invalid range or one reaching into the
// read-protected area is NAKed (FAST_READ, §10.3), with no roll-over.
func (u *Ultralight) fastRead(s, e int) ([]byte, bool) {
	if s > e || e >= u.readLimit() {
		return u.nak()
	}
	out := make([]byte, 0, (e-s+1)*4)
	for p := s; p <= e; p++ {
		pg := u.readPage(p)
		out = append(out, pg[:]...)
	}
	u.countRead()
	return out, true
}

// countRead increments the NTAG NFC counter on the first READ or
// FAST_READ after activation when NFC_CNT_EN is set (NTAG21x "NFC
// counter function").
func (u *Ultralight) countRead() {
	if !u.spec.ntag || u.readSinceAct {
		return
	}
	u.readSinceAct = true
	if u.access()&accessNFCCntEn != 0 && u.counters[0] < maxCounter {
		u.counters[0]++
	}
}

// pageLocked reports whether lock bits make page p read-only. Lock bits
// act at once; that is the strict reading for code under test.
func (u *Ultralight) pageLocked(p int) bool {
	l0, l1 := u.mem[2][2], u.mem[2][3]
	switch {
	case p < 3:
		return true
	case p == 3:
		return l0&0x08 != 0 // L-CC / L-OTP
	case p < 8:
		return l0>>p&1 != 0
	case p < 16:
		return l1>>(p-8)&1 != 0
	case p <= u.spec.userEnd && u.spec.dynLock != 0:
		d := u.mem[u.spec.dynLock]
		word := int(d[0]) | int(d[1])<<8
		return word>>((p-16)/u.spec.dynGran)&1 != 0
	}
	return false
}

func (u *Ultralight) write(p int, d []byte) ([]byte, bool) {
	if p >= u.spec.pages {
		return u.nak()
	}
	if !u.authed && p >= u.auth0() {
		return u.nak() // write access needs PWD_AUTH whatever PROT says
	}
	switch {
	case p < 2:
		return u.nak() // UID pages are programmed at production
	case p == 2:
		u.writeStaticLock(d[2], d[3])
	case p == 3:
		if u.pageLocked(3) {
			return u.nak()
		}
		for i := range 4 {
			u.mem[3][i] |= d[i] // CC / OTP bits are one-time programmable
		}
	case p <= u.spec.userEnd:
		if u.pageLocked(p) {
			return u.nak()
		}
		copy(u.mem[p][:], d)
	case p == u.spec.dynLock && u.spec.dynLock != 0:
		u.writeDynLock(d)
	case p == u.spec.cfg0 || p == u.spec.cfg0+1:
		if u.cfgLocked {
			return u.nak()
		}
		copy(u.mem[p][:], d)
	default: // PWD, PACK: writable even under CFGLCK
		copy(u.mem[p][:], d)
	}
	return []byte{ackFrame}, true
}

// writeStaticLock ORs lock bytes 0 and 1 (static lock bytes, §8.5.2).
// Block-locking bits freeze groups of lock bits: BL-CC freezes L-CC,
// BL9-4 L4..L9 and BL15-10 L10..L15.
func (u *Ultralight) writeStaticLock(b0, b1 byte) {
	l0, l1 := u.mem[2][2], u.mem[2][3]
	m0, m1 := byte(0xFF), byte(0xFF)
	if l0&0x01 != 0 {
		m0 &^= 0x08
	}
	if l0&0x02 != 0 {
		m0 &^= 0xF0
		m1 &^= 0x03
	}
	if l0&0x04 != 0 {
		m1 &^= 0xFC
	}
	u.mem[2][2] = l0 | b0&m0
	u.mem[2][3] = l1 | b1&m1
}

// writeDynLock ORs the dynamic lock bytes (NTAG21x §8.5.3). Byte 2 holds the
// block-locking bits that freeze page lock bits; RFUI bits and byte 3 are
// left alone.
func (u *Ultralight) writeDynLock(d []byte) {
	s := u.spec
	cur := u.mem[s.dynLock]
	word := int(cur[0]) | int(cur[1])<<8
	bl := int(cur[2])
	add := (int(d[0]) | int(d[1])<<8) & (1<<s.dynBits - 1)
	for i := 0; i < s.dynBits; i++ {
		if bl>>(i*s.dynGran/s.blGran)&1 != 0 {
			add &^= 1 << i
		}
	}
	word |= add
	bl |= int(d[2]) & (1<<s.blBits - 1)
	u.mem[s.dynLock][0], u.mem[s.dynLock][1], u.mem[s.dynLock][2] = byte(word), byte(word>>8), byte(bl)
}

func (u *Ultralight) pwdAuth(pwd []byte) ([]byte, bool) {
	if u.pwdBlocked {
		return u.nak()
	}
	if string(pwd) != string(u.mem[u.pwdPage()][:]) {
		if lim := u.authLimit(); lim > 0 {
			u.authFails++
			if u.authFails >= lim {
				u.pwdBlocked = true
			}
		}
		return u.nak()
	}
	u.authFails = 0
	u.authed = true
	pack := u.mem[u.packPage()]
	return []byte{pack[0], pack[1]}, true
}

func (u *Ultralight) readCnt(n int) ([]byte, bool) {
	idx, ok := u.counterIndex(n)
	if !ok {
		return u.nak()
	}
	if u.spec.ntag {
		// NTAG21x §10.6: the NFC counter answers only when enabled, and
		// only after PWD_AUTH when NFC_CNT_PWD_PROT is set.
		acc := u.access()
		if acc&accessNFCCntEn == 0 || (acc&accessNFCCntProt != 0 && !u.authed) {
			return u.nak()
		}
	}
	v := u.counters[idx]
	return []byte{byte(v), byte(v >> 8), byte(v >> 16)}, true
}

func (u *Ultralight) incrCnt(n int, d []byte) ([]byte, bool) {
	if u.spec.ntag || n > 2 {
		return u.nak()
	}
	inc := uint32(d[0]) | uint32(d[1])<<8 | uint32(d[2])<<16
	if u.counters[n]+inc > maxCounter {
		return u.nak() // MF0ULx1 §10.7: overflow is refused
	}
	u.counters[n] += inc
	return []byte{ackFrame}, true
}
