package chip

// The reader side: PC/SC Part 3 storage-card pseudo-APDUs (CLA FF), the
// ACR122U direct-transmit escape and the Part 3 transparent session. Chip
// semantics live behind the backend interface.

// Status words returned by the front end.
var (
	swOK               = []byte{0x90, 0x00}
	swFailed           = []byte{0x63, 0x00} // operation failed: auth failed, card NAK, card halted
	swSecurity         = []byte{0x69, 0x82} // no authentication for this block
	swIncompatible     = []byte{0x69, 0x81}
	swNotAllowed       = []byte{0x69, 0x86} // e.g. no transparent session, unloaded key slot
	swNotSupported     = []byte{0x6A, 0x81}
	swOutOfRange       = []byte{0x6A, 0x82}
	swWrongLength      = []byte{0x67, 0x00}
	swWrongP1P2        = []byte{0x6B, 0x00}
	swUnknownINS       = []byte{0x6D, 0x00}
	swClassUnsupported = []byte{0x6E, 0x00}
)

// ackFrame is how a 4-bit ACK appears in a wrapped native reply.
const ackFrame = 0x0A

// numKeySlots is the number of volatile key slots LOAD KEYS accepts.
const numKeySlots = 0x20

// backend is what a chip model offers the reader front end. All methods
// run with the card's mutex held.
type backend interface {
	uidBytes() []byte
	// authenticate runs a MIFARE Classic authentication.
	authenticate(block int, useKeyB bool, key [6]byte) []byte
	readBinary(p1, p2 byte, le int) []byte
	updateBinary(p1, p2 byte, data []byte) []byte
	// native sends a raw ISO 14443-3 frame (no CRC) to the chip. ok is
	// false when the chip NAKs or stays silent.
	native(frame []byte) (reply []byte, ok bool)
}

// reader is the reader firmware state that travels with the card model:
// key slots and the transparent session flag.
type reader struct {
	keys    [numKeySlots][6]byte
	loaded  [numKeySlots]bool
	session bool
}

// apdu is a parsed short command APDU.
type apdu struct {
	cla, ins, p1, p2 byte
	data             []byte
	le               int // -1 when absent; 0x00 is kept as 0
}

// parseAPDU splits a short APDU (ISO/IEC 7816-3 cases 1-4). Extended
// length is not used by these readers.
func parseAPDU(b []byte) (apdu, bool) {
	if len(b) < 4 {
		return apdu{}, false
	}
	a := apdu{cla: b[0], ins: b[1], p1: b[2], p2: b[3], le: -1}
	switch rest := b[4:]; {
	case len(rest) == 0:
	case len(rest) == 1:
		a.le = int(rest[0])
	default:
		lc := int(rest[0])
		if lc == 0 {
			return apdu{}, false
		}
		switch len(rest) {
		case 1 + lc:
			a.data = rest[1:]
		case 2 + lc:
			a.data = rest[1 : 1+lc]
			a.le = int(rest[1+lc])
		default:
			return apdu{}, false
		}
	}
	return a, true
}

func resp(data []byte, sw []byte) []byte {
	out := make([]byte, 0, len(data)+2)
	out = append(out, data...)
	return append(out, sw...)
}

func (r *reader) transmit(b backend, raw []byte) []byte {
	// The obsolete ACR122U/Omnikey AUTHENTICATE FF 88 00 <block> <KT> <KK>
	// is six bytes with no Lc, so it cannot go through parseAPDU.
	if len(raw) >= 2 && raw[0] == 0xFF && raw[1] == 0x88 {
		return r.authObsolete(b, raw)
	}
	a, ok := parseAPDU(raw)
	if !ok {
		return resp(nil, swWrongLength)
	}
	if a.cla != 0xFF {
		return resp(nil, swClassUnsupported)
	}
	switch a.ins {
	case 0xCA:
		return getData(b, a)
	case 0x82:
		return r.loadKeys(a)
	case 0x86:
		return r.generalAuthenticate(b, a)
	case 0xB0:
		if a.le < 0 || len(a.data) > 0 {
			return resp(nil, swWrongLength)
		}
		return b.readBinary(a.p1, a.p2, a.le)
	case 0xD6:
		if len(a.data) == 0 {
			return resp(nil, swWrongLength)
		}
		return b.updateBinary(a.p1, a.p2, a.data)
	case 0xD7, 0xB1:
		// Value-block operations (increment, decrement, restore) are
		// outside what the bridge uses.
		return resp(nil, swNotSupported)
	case 0x00:
		return directTransmit(b, a)
	case 0xC2:
		return r.envelope(b, a)
	}
	return resp(nil, swUnknownINS)
}

// getData: P1 00 = UID, P1 01 = ATS historical bytes (none: these are not
// ISO 14443-4 cards). The reader knows the UID from anticollision, so this
// works even when the chip is halted.
func getData(b backend, a apdu) []byte {
	if a.p2 != 0 || len(a.data) > 0 {
		return resp(nil, swWrongP1P2)
	}
	switch a.p1 {
	case 0x00:
		uid := b.uidBytes()
		if a.le > 0 && a.le < len(uid) {
			return resp(nil, []byte{0x6C, byte(len(uid))})
		}
		return resp(uid, swOK)
	case 0x01:
		return resp(nil, swNotSupported)
	}
	return resp(nil, swWrongP1P2)
}

func (r *reader) loadKeys(a apdu) []byte {
	if a.p1 != 0x00 && a.p1 != 0x20 {
		return resp(nil, swNotAllowed)
	}
	if len(a.data) != 6 {
		return resp(nil, swWrongLength)
	}
	if int(a.p2) >= numKeySlots {
		return resp(nil, swWrongP1P2)
	}
	copy(r.keys[a.p2][:], a.data)
	r.loaded[a.p2] = true
	return resp(nil, swOK)
}

func (r *reader) generalAuthenticate(b backend, a apdu) []byte {
	if a.p1 != 0 || a.p2 != 0 {
		return resp(nil, swWrongP1P2)
	}
	if len(a.data) != 5 {
		return resp(nil, swWrongLength)
	}
	if a.data[0] != 0x01 {
		return resp(nil, swNotSupported)
	}
	block := int(a.data[1])<<8 | int(a.data[2])
	return r.auth(b, block, a.data[3], a.data[4])
}

func (r *reader) authObsolete(b backend, raw []byte) []byte {
	if len(raw) != 6 {
		return resp(nil, swWrongLength)
	}
	if raw[2] != 0 {
		return resp(nil, swWrongP1P2)
	}
	return r.auth(b, int(raw[3]), raw[4], raw[5])
}

func (r *reader) auth(b backend, block int, kt, kk byte) []byte {
	var useKeyB bool
	switch kt {
	case 0x60:
	case 0x61:
		useKeyB = true
	default:
		return resp(nil, swNotSupported)
	}
	if int(kk) >= numKeySlots || !r.loaded[kk] {
		return resp(nil, swNotAllowed)
	}
	return b.authenticate(block, useKeyB, r.keys[kk])
}

// directTransmit handles the ACR122U escape FF 00 00 00 Lc <PN532 command>.
// D4 42 (InCommunicateThru) and D4 40 01 (InDataExchange, target 1) carry
// a raw frame to the card.
func directTransmit(b backend, a apdu) []byte {
	if a.p1 != 0 || a.p2 != 0 {
		return resp(nil, swWrongP1P2)
	}
	d := a.data
	switch {
	case len(d) >= 2 && d[0] == 0xD4 && d[1] == 0x42:
		return pn532Reply(0x43, b, d[2:])
	case len(d) >= 3 && d[0] == 0xD4 && d[1] == 0x40 && d[2] == 0x01:
		return pn532Reply(0x41, b, d[3:])
	case len(d) == 0:
		return resp(nil, swWrongLength)
	}
	return resp(nil, swNotSupported)
}

func pn532Reply(code byte, b backend, frame []byte) []byte {
	if len(frame) == 0 {
		return resp([]byte{0xD5, code, 0x01}, swOK)
	}
	reply, ok := b.native(frame)
	if !ok {
		// PN532 status 01: timeout, the card did not answer (a NAK is
		// reported the same way by the ACR122U).
		return resp([]byte{0xD5, code, 0x01}, swOK)
	}
	out := append([]byte{0xD5, code, 0x00}, reply...)
	return resp(out, swOK)
}

// envelope handles the PC/SC Part 3 transparent session: MANAGE SESSION
// (P2 00) and TRANSPARENT EXCHANGE (P2 01).
func (r *reader) envelope(b backend, a apdu) []byte {
	if a.p1 != 0 {
		return resp(nil, swWrongP1P2)
	}
	switch a.p2 {
	case 0x00:
		return r.manageSession(a.data)
	case 0x01:
		return r.transparentExchange(b, a.data)
	}
	return resp(nil, swNotSupported)
}

var (
	c0OK          = []byte{0xC0, 0x03, 0x00, 0x90, 0x00}
	c0Unsupported = []byte{0xC0, 0x03, 0x01, 0x6A, 0x81}
	c0NoAnswer    = []byte{0xC0, 0x03, 0x01, 0x64, 0x01}
)

type tlv struct {
	tag   uint16
	value []byte
}

// parseTLVs reads BER-TLV data objects with one- or two-byte tags and
// one- to three-byte lengths.
func parseTLVs(b []byte) ([]tlv, bool) {
	var out []tlv
	for len(b) > 0 {
		tag := uint16(b[0])
		b = b[1:]
		if tag&0x1F == 0x1F {
			if len(b) == 0 {
				return nil, false
			}
			tag = tag<<8 | uint16(b[0])
			b = b[1:]
		}
		if len(b) == 0 {
			return nil, false
		}
		n := int(b[0])
		b = b[1:]
		switch n {
		case 0x81:
			if len(b) < 1 {
				return nil, false
			}
			n, b = int(b[0]), b[1:]
		case 0x82:
			if len(b) < 2 {
				return nil, false
			}
			n, b = int(b[0])<<8|int(b[1]), b[2:]
		default:
			if n > 0x7F {
				return nil, false
			}
		}
		if len(b) < n {
			return nil, false
		}
		out = append(out, tlv{tag, b[:n]})
		b = b[n:]
	}
	return out, true
}

func (r *reader) manageSession(data []byte) []byte {
	dos, ok := parseTLVs(data)
	if !ok {
		return resp(nil, swWrongLength)
	}
	for _, do := range dos {
		switch do.tag {
		case 0x80: // version
		case 0x81:
			r.session = true
		case 0x82:
			r.session = false
		case 0x5F46: // timer: the model answers instantly
		default:
			return resp(c0Unsupported, swOK)
		}
	}
	return resp(c0OK, swOK)
}

func (r *reader) transparentExchange(b backend, data []byte) []byte {
	if !r.session {
		return resp(nil, swNotAllowed)
	}
	dos, ok := parseTLVs(data)
	if !ok {
		return resp(nil, swWrongLength)
	}
	var out []byte
	for _, do := range dos {
		switch do.tag {
		case 0x90, 0x91, 0x92, 0x93, 0x5F46:
			// CRC/parity flags, bit framing and timer are accepted; the
			// model exchanges whole frames with CRC handled by the reader.
		case 0x95:
			reply, ok := b.native(do.value)
			if !ok {
				return resp(append(out, c0NoAnswer...), swOK)
			}
			out = append(out, c0OK...)
			out = append(out, 0x92, 0x01, 0x00, 0x96, 0x02, 0x00, 0x00)
			out = append(out, berTLV(0x97, reply)...)
		default:
			return resp(append(out, c0Unsupported...), swOK)
		}
	}
	if len(out) == 0 {
		out = append(out, c0OK...)
	}
	return resp(out, swOK)
}

func berTLV(tag byte, v []byte) []byte {
	out := []byte{tag}
	switch n := len(v); {
	case n < 0x80:
		out = append(out, byte(n))
	case n < 0x100:
		out = append(out, 0x81, byte(n))
	default:
		out = append(out, 0x82, byte(n>>8), byte(n))
	}
	return append(out, v...)
}

// Card names in the PC/SC Part 3 ATR (Part 3 Supplement, "NN" bytes).
const (
	atrNameClassic1K  = 0x0001
	atrNameClassic4K  = 0x0002
	atrNameUltralight = 0x0003
)

// storageATR builds the ATR a PC/SC Part 3 reader reports for a storage
// card: RID A0 00 00 03 06, standard 03 (ISO 14443 A part 3), card name.
func storageATR(name uint16) []byte {
	atr := []byte{0x3B, 0x8F, 0x80, 0x01, 0x80, 0x4F, 0x0C,
		0xA0, 0x00, 0x00, 0x03, 0x06, 0x03, byte(name >> 8), byte(name),
		0x00, 0x00, 0x00, 0x00}
	var tck byte
	for _, v := range atr[1:] {
		tck ^= v
	}
	return append(atr, tck)
}
