package chip

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"slices"

	"github.com/encoder-bridge/encoder-bridge/internal/ev1"
	"github.com/encoder-bridge/encoder-bridge/internal/ev2"
)

// wrapped handles an ISO/IEC 7816-4 wrapped native command: 90 INS 00 00
// [Lc data] 00, answered with data and 91 <status>.
func (d *DESFire) wrapped(raw []byte) []byte {
	a, ok := parseAPDU(raw)
	if !ok {
		return resp(nil, swWrongLength)
	}
	if a.p1 != 0 || a.p2 != 0 {
		return resp(nil, swWrongP1P2)
	}
	if a.le > 0 {
		return resp(nil, swWrongLength)
	}
	if a.ins == stAdditional && d.out != nil {
		return d.nextFrame()
	}
	d.out, d.split = nil, nil
	if len(a.data) > maxCmdFrame {
		d.chain = nil
		d.endSession()
		return resp(nil, []byte{0x91, stLengthError})
	}
	ins, data := a.ins, a.data
	switch {
	case ins == stAdditional && d.chain != nil:
		d.chain.data = append(d.chain.data, data...)
		ins, data = d.chain.ins, d.chain.data
	case ins == 0x8D:
		d.chain = &dfChain{ins: ins, data: slices.Clone(data), want: d.writeLen(data)}
	default:
		// Any other command ends an unfinished chain.
		d.chain = nil
	}
	if c := d.chain; c != nil {
		if len(c.data) < c.want && len(data) > 0 {
			return resp(nil, []byte{0x91, stAdditional})
		}
		d.chain = nil
	}
	data, st := d.command(ins, data)
	if st != stOK {
		d.split = nil
		return resp(data, []byte{0x91, st})
	}
	d.out = data
	return d.nextFrame()
}

// nextFrame sends up to maxFrame bytes of the pending answer.
func (d *DESFire) nextFrame() []byte {
	n := maxFrame
	if len(d.split) > 0 {
		n, d.split = d.split[0], d.split[1:]
	}
	if len(d.out) <= n {
		out := d.out
		d.out = nil
		return resp(out, []byte{0x91, stOK})
	}
	chunk := d.out[:n]
	d.out = d.out[n:]
	return resp(chunk, []byte{0x91, stAdditional})
}

// command runs one native command. Outside an authentication, data is
// plain; inside one, each handler opens and seals it as its
// communication mode says, and any error ends the session.
func (d *DESFire) command(ins byte, data []byte) ([]byte, byte) {
	pend, pend1 := d.pending, d.ev1Pend
	d.pending, d.ev1Pend = nil, nil
	switch ins {
	case 0x71, 0x77:
		return d.authStart(ins == 0x71, data)
	case byte(ev1.Legacy), byte(ev1.ISO), byte(ev1.AES):
		return d.ev1Start(ev1.Scheme(ins), data)
	case stAdditional:
		switch {
		case pend != nil:
			return d.authFinish(pend, data)
		case pend1 != nil:
			return d.ev1Finish(pend1, data)
		}
		d.endSession()
		return nil, stIllegalCommand
	case 0x5A:
		return d.selectApp(data)
	}
	h, ok := dfCommands[ins]
	if !ok {
		d.endSession()
		return nil, stIllegalCommand
	}
	out, st := h(d, &smCtx{d: d, ins: ins}, data)
	if st != stOK {
		d.endSession()
		return nil, st
	}
	return out, st
}

// smCtx carries one command through secure messaging.
type smCtx struct {
	d   *DESFire
	ins byte
	// plain: the command ran without MAC (no session, or free access);
	// its answer is plain too.
	plain bool
	full  bool
	// ev1: the command ran in an EV1 session.
	ev1 bool
}

// open checks and strips the secure messaging of a command's data field:
// the first hdrLen bytes are the plain header. full selects
// CommMode.Full for the rest when a session is open. free commands run
// plain even inside a session.
func (c *smCtx) open(data []byte, hdrLen int, full, free bool) (hdr, body []byte, st byte) {
	if e := c.d.ev1; e != nil && !free {
		// EV1 secure messaging: the model takes commands whose data
		// travels plain; the IV runs over each of them.
		if full {
			return nil, nil, stIllegalCommand
		}
		if len(data) < hdrLen {
			return nil, nil, stLengthError
		}
		c.ev1 = true
		e.Command(c.ins, data)
		return data[:hdrLen], data[hdrLen:], stOK
	}
	s := c.d.sess
	if s == nil || free {
		c.plain = true
		if len(data) < hdrLen {
			return nil, nil, stLengthError
		}
		return data[:hdrLen], data[hdrLen:], stOK
	}
	c.full = full
	hdr, body, err := s.OpenCommand(c.ins, data, hdrLen, full)
	switch {
	case errors.Is(err, ev2.ErrShort):
		return nil, nil, stLengthError
	case err != nil:
		// Wrong MAC, replayed counter, bad padding.
		return nil, nil, stIntegrityError
	}
	return hdr, body, stOK
}

// seal wraps an answer in the command's mode and advances the counter.
func (c *smCtx) seal(data []byte, fullResp bool) ([]byte, byte) {
	if e := c.d.ev1; e != nil && c.ev1 {
		if fullResp {
			return e.SealFull(stOK, data), stOK
		}
		return e.SealPlain(stOK, data), stOK
	}
	s := c.d.sess
	if s == nil {
		return data, stOK
	}
	var out []byte
	if c.plain {
		out = data
	} else {
		out = s.SealResponse(stOK, data, fullResp)
	}
	if err := s.Advance(); err != nil {
		return nil, stCommandAborted
	}
	return out, stOK
}

type dfHandler func(d *DESFire, c *smCtx, data []byte) ([]byte, byte)

var dfCommands map[byte]dfHandler

func init() {
	dfCommands = map[byte]dfHandler{
		0x60: (*DESFire).getVersion,
		0x51: (*DESFire).getCardUID,
		0x6A: (*DESFire).getApplicationIDs,
		0x6D: (*DESFire).getDFNames,
		0xCA: (*DESFire).createApplication,
		0xDA: (*DESFire).deleteApplication,
		0x45: (*DESFire).getKeySettings,
		0x64: (*DESFire).getKeyVersion,
		0xC4: (*DESFire).changeKey,
		0xCD: (*DESFire).createDataFile,
		0xCB: (*DESFire).createDataFile,
		0xF5: (*DESFire).getFileSettings,
		0x6F: (*DESFire).getFileIDs,
		0x5F: (*DESFire).changeFileSettings,
		0x8D: (*DESFire).writeData,
		0xAD: (*DESFire).readData,
		0xC7: (*DESFire).commitTransaction,
		0xA7: (*DESFire).abortTransactionCmd,
		0x6E: (*DESFire).freeMemory,
		0x5C: (*DESFire).setConfiguration,
	}
}

// level is the application selected, the PICC when nil.
func (d *DESFire) level() *dfApp {
	if d.sel == nil {
		return &d.picc
	}
	return d.sel
}

func (d *DESFire) authedWith(k byte) bool {
	return d.authed() && d.authKey == int(k)
}

func (d *DESFire) selectApp(data []byte) ([]byte, byte) {
	d.endSession()
	if len(data) != 3 {
		return nil, stLengthError
	}
	// Selecting ends the authentication and the open transaction.
	d.abortTransaction()
	aid := [3]byte(data)
	if aid == [3]byte{} {
		d.sel = nil
		return nil, stOK
	}
	a := d.app(aid)
	if a == nil {
		d.sel = nil
		return nil, stAppNotFound
	}
	d.sel = a
	return nil, stOK
}

func (d *DESFire) authStart(first bool, data []byte) ([]byte, byte) {
	if !first && d.sess == nil {
		return nil, stPermission
	}
	if len(data) < 1 || (first && len(data) > 8) || (!first && len(data) != 1) {
		d.endSession()
		return nil, stLengthError
	}
	lv := d.level()
	keyNo := int(data[0] & 0x0F)
	if keyNo >= len(lv.keys) {
		d.endSession()
		return nil, stNoSuchKey
	}
	if lv.keyType != keyTypeAES {
		// The factory PICC key is 2K3DES: only the legacy
		// authentications, which this model leaves out, accept it.
		d.endSession()
		return nil, stAuthError
	}
	p := &dfPend{first: first, keyNo: keyNo, key: lv.keys[keyNo]}
	_, _ = rand.Read(p.rndB[:])
	if first {
		d.endSession()
	}
	enc, _ := ev2.EncryptCBC(p.key, [16]byte{}, p.rndB[:])
	d.pending = p
	return enc, stAdditional
}

func (d *DESFire) authFinish(p *dfPend, data []byte) ([]byte, byte) {
	if len(data) != 32 {
		d.endSession()
		return nil, stLengthError
	}
	rndA, err := ev2.CardPart2(p.key, p.rndB, data)
	if err != nil {
		d.endSession()
		return nil, stAuthError
	}
	enc, mac := ev2.SessionKeys(p.key, rndA, p.rndB)
	d.authKey = p.keyNo
	if p.first {
		var ti [4]byte
		_, _ = rand.Read(ti[:])
		d.sess = ev2.NewSession(enc, mac, ti)
		return ev2.CardFirst(p.key, ti, rndA), stOK
	}
	d.sess.Rekey(enc, mac)
	return ev2.CardNonFirst(p.key, rndA), stOK
}

// ev1Pend is an EV1 authentication between its two frames.
type ev1Pend struct {
	keyNo int
	card  *ev1.Card
}

// ev1Start is the first frame of the legacy Authenticate (0x0A, DES and
// 2K3DES keys, the factory PICC master key among them), AuthenticateISO
// (0x1A, the same keys) or AuthenticateAES (0xAA, AES keys). A key of
// the other kind is refused (91 AE).
func (d *DESFire) ev1Start(s ev1.Scheme, data []byte) ([]byte, byte) {
	d.endSession()
	if len(data) != 1 {
		return nil, stLengthError
	}
	lv := d.level()
	keyNo := int(data[0] & 0x0F)
	if keyNo >= len(lv.keys) {
		return nil, stNoSuchKey
	}
	if (s == ev1.AES) != (lv.keyType == keyTypeAES) {
		return nil, stAuthError
	}
	key := ev1.Key{AES: lv.keyType == keyTypeAES, Data: lv.keys[keyNo]}
	rndB := make([]byte, key.BlockSize())
	_, _ = rand.Read(rndB)
	card, enc, err := ev1.CardStart(s, key, rndB)
	if err != nil {
		return nil, stLengthError
	}
	d.ev1Pend = &ev1Pend{keyNo: keyNo, card: card}
	return enc, stAdditional
}

// ev1Finish checks the reader's token; a wrong key answers 91 AE and
// leaves no session.
func (d *DESFire) ev1Finish(p *ev1Pend, data []byte) ([]byte, byte) {
	sess, out, err := p.card.Finish(data)
	switch {
	case errors.Is(err, ev1.ErrLength):
		return nil, stLengthError
	case err != nil:
		return nil, stAuthError
	}
	d.ev1, d.authKey = sess, p.keyNo
	return out, stOK
}

func (d *DESFire) getVersion(c *smCtx, data []byte) ([]byte, byte) {
	if _, _, st := c.open(data, 0, false, false); st != stOK {
		return nil, st
	}
	major := byte(0x12)
	if d.opts.Generation == DESFireEV3 {
		major = 0x33
	}
	sz := desfireSizeCode[d.opts.Size]
	v := []byte{0x04, 0x01, 0x01, major, 0x00, sz, 0x05, 0x04, 0x01, 0x01, major, 0x00, sz, 0x05}
	uid := d.uid[:]
	if d.opts.RandomUID {
		// A random-UID card keeps its UID out of GetVersion too.
		uid = make([]byte, 7)
	}
	v = append(v, uid...)
	v = append(v, 0xBA, 0x54, 0x4C, 0x81, 0x50, 0x26, 0x24) // batch, week 26, year 2024
	// The chip answers in three frames: hardware, software, production.
	d.split = []int{7, 7}
	return c.seal(v, false)
}

func (d *DESFire) getCardUID(c *smCtx, data []byte) ([]byte, byte) {
	if !d.authed() {
		return nil, stAuthError
	}
	if _, _, st := c.open(data, 0, false, false); st != stOK {
		return nil, st
	}
	return c.seal(d.uid[:], true)
}

func (d *DESFire) getApplicationIDs(c *smCtx, data []byte) ([]byte, byte) {
	if d.sel != nil {
		return nil, stPermission
	}
	if d.picc.settings&0x02 == 0 && !d.authedWith(0) {
		return nil, stAuthError
	}
	if _, _, st := c.open(data, 0, false, false); st != stOK {
		return nil, st
	}
	var out []byte
	for _, a := range d.apps {
		out = append(out, a.aid[:]...)
	}
	return c.seal(out, false)
}

// getDFNames lists AID, ISO FID and DF name of every application that
// has them, one application per frame.
func (d *DESFire) getDFNames(c *smCtx, data []byte) ([]byte, byte) {
	if d.sel != nil {
		return nil, stPermission
	}
	if d.picc.settings&0x02 == 0 && !d.authedWith(0) {
		return nil, stAuthError
	}
	if _, _, st := c.open(data, 0, false, false); st != stOK {
		return nil, st
	}
	var out []byte
	var split []int
	for _, a := range d.apps {
		if a.isoFID == nil {
			continue
		}
		n := len(out)
		out = append(out, a.aid[:]...)
		out = append(out, a.isoFID...)
		out = append(out, a.dfName...)
		split = append(split, len(out)-n)
	}
	if len(split) > 0 {
		d.split = split[:len(split)-1]
	}
	return c.seal(out, false)
}

func (d *DESFire) createApplication(c *smCtx, data []byte) ([]byte, byte) {
	if d.sel != nil {
		return nil, stPermission
	}
	if d.picc.settings&0x04 == 0 && !d.authedWith(0) {
		return nil, stAuthError
	}
	hdr, _, st := c.open(data, c.wholeHeader(data), false, false)
	if st != stOK {
		return nil, st
	}
	if len(hdr) < 5 {
		return nil, stLengthError
	}
	aid, ks1, ks2 := [3]byte(hdr[:3]), hdr[3], hdr[4]
	rest := hdr[5:]
	a := &dfApp{aid: aid, settings: ks1, keyType: ks2 & 0xC0, files: map[byte]*dfFile{}}
	if ks2&0x20 != 0 {
		if len(rest) < 2 {
			return nil, stLengthError
		}
		a.isoFID, rest = slices.Clone(rest[:2]), rest[2:]
	}
	if len(rest) > 16 {
		return nil, stLengthError
	}
	if len(rest) > 0 {
		a.dfName = slices.Clone(rest)
	}
	n := int(ks2 & 0x0F)
	switch {
	case aid == [3]byte{}, n < 1, n > maxKeys:
		return nil, stParameterError
	case a.keyType != keyTypeAES:
		// Only AES applications are modelled.
		return nil, stParameterError
	case d.app(aid) != nil, d.isoNameTaken(a):
		return nil, stDuplicateError
	case len(d.apps) >= maxApps:
		return nil, stOutOfEEPROM
	}
	a.keys = make([][16]byte, n)
	a.versions = make([]byte, n)
	d.apps = append(d.apps, a)
	return c.seal(nil, false)
}

// deleteApplication removes an application and frees its memory. It
// needs the PICC master key's session at the PICC level, or the
// application master key's session with that application selected.
func (d *DESFire) deleteApplication(c *smCtx, data []byte) ([]byte, byte) {
	hdr, _, st := c.open(data, c.wholeHeader(data), false, false)
	if st != stOK {
		return nil, st
	}
	if len(hdr) != 3 {
		return nil, stLengthError
	}
	aid := [3]byte(hdr)
	a := d.app(aid)
	switch {
	case aid == [3]byte{}:
		return nil, stParameterError
	case d.sel == nil && !d.authedWith(0):
		return nil, stAuthError
	case d.sel != nil && (d.sel.aid != aid || !d.authedWith(0)):
		return nil, stPermission
	case a == nil:
		return nil, stAppNotFound
	}
	out, st := c.seal(nil, false)
	d.apps = slices.DeleteFunc(d.apps, func(x *dfApp) bool { return x == a })
	if d.sel == a {
		// The application is gone, and with it the session.
		d.sel = nil
		d.endSession()
	}
	return out, st
}

// isoNameTaken reports an ISO FID or DF name another application has.
func (d *DESFire) isoNameTaken(a *dfApp) bool {
	for _, o := range d.apps {
		if a.isoFID != nil && slices.Equal(o.isoFID, a.isoFID) || a.dfName != nil && slices.Equal(o.dfName, a.dfName) {
			return true
		}
	}
	return false
}

// wholeHeader is the header length of a command whose whole data is
// header: all of it but the MACt a session adds.
func (c *smCtx) wholeHeader(data []byte) int {
	if c.d.sess == nil {
		return len(data)
	}
	return max(len(data)-ev2.MACLen, 0)
}

func (d *DESFire) getKeySettings(c *smCtx, data []byte) ([]byte, byte) {
	if _, _, st := c.open(data, 0, false, false); st != stOK {
		return nil, st
	}
	lv := d.level()
	return c.seal([]byte{lv.settings, lv.keyType | byte(len(lv.keys))}, false)
}

func (d *DESFire) getKeyVersion(c *smCtx, data []byte) ([]byte, byte) {
	hdr, _, st := c.open(data, c.wholeHeader(data), false, false)
	if st != stOK {
		return nil, st
	}
	if len(hdr) != 1 {
		return nil, stLengthError
	}
	lv := d.level()
	k := int(hdr[0] & 0x0F)
	if k >= len(lv.keys) {
		return nil, stNoSuchKey
	}
	return c.seal([]byte{lv.versions[k]}, false)
}

func (d *DESFire) changeKey(c *smCtx, data []byte) ([]byte, byte) {
	if d.sel == nil {
		// Changing the PICC master key is outside what this model offers.
		return nil, stIllegalCommand
	}
	if !d.authed() {
		return nil, stAuthError
	}
	hdr, body, st := c.open(data, 1, true, false)
	if st != stOK {
		return nil, st
	}
	a := d.sel
	k := int(hdr[0] & 0x0F)
	if k >= len(a.keys) {
		return nil, stNoSuchKey
	}
	ck := a.settings >> 4
	switch {
	case k == 0 && a.settings&0x01 == 0:
		return nil, stPermission
	case k == 0 || ck == 0x00:
		if d.authKey != 0 {
			return nil, stPermission
		}
	case ck == accessNever:
		return nil, stPermission
	case ck == accessFree:
		if d.authKey != k {
			return nil, stPermission
		}
	default:
		if d.authKey != int(ck) {
			return nil, stPermission
		}
	}
	if k == d.authKey {
		if len(body) != 17 {
			return nil, stLengthError
		}
		a.keys[k], a.versions[k] = [16]byte(body[:16]), body[16]
		// The session's key is gone: the answer is plain and the
		// authentication ends.
		d.endSession()
		return nil, stOK
	}
	if len(body) != 21 {
		return nil, stLengthError
	}
	nk := [16]byte(body[:16])
	for i := range nk {
		nk[i] ^= a.keys[k][i]
	}
	if crc := ev2.CRC32(nk[:]); !slices.Equal(crc[:], body[17:21]) {
		return nil, stIntegrityError
	}
	a.keys[k], a.versions[k] = nk, body[16]
	return c.seal(nil, false)
}

func (d *DESFire) createDataFile(c *smCtx, data []byte) ([]byte, byte) {
	a := d.sel
	if a == nil {
		return nil, stPermission
	}
	if a.settings&0x04 == 0 && !d.authedWith(0) {
		return nil, stAuthError
	}
	hdr, _, st := c.open(data, c.wholeHeader(data), false, false)
	if st != stOK {
		return nil, st
	}
	want := 7
	if a.isoFID != nil {
		want = 9
	}
	if len(hdr) != want {
		return nil, stLengthError
	}
	no := hdr[0]
	p := hdr[want-6:]
	size := int(p[3]) | int(p[4])<<8 | int(p[5])<<16
	comm := p[0] & 0x03
	switch {
	case no >= maxFiles, size == 0, comm == 0x02:
		return nil, stParameterError
	case a.files[no] != nil:
		return nil, stDuplicateError
	}
	f := &dfFile{typ: fileStd, comm: comm, access: [2]byte{p[1], p[2]}, data: make([]byte, size)}
	if c.ins == 0xCB {
		f.typ = fileBackup
	}
	need := (size + 31) / 32 * 32
	if f.typ == fileBackup {
		need *= 2
	}
	if d.used()+need > d.opts.Size {
		return nil, stOutOfEEPROM
	}
	a.files[no] = f
	return c.seal(nil, false)
}

func (d *DESFire) file(no byte) (*dfFile, byte) {
	if d.sel == nil {
		return nil, stPermission
	}
	f := d.sel.files[no&0x1F]
	if f == nil || no >= maxFiles {
		return nil, stFileNotFound
	}
	return f, stOK
}

func (d *DESFire) getFileSettings(c *smCtx, data []byte) ([]byte, byte) {
	hdr, _, st := c.open(data, c.wholeHeader(data), false, false)
	if st != stOK {
		return nil, st
	}
	if len(hdr) != 1 {
		return nil, stLengthError
	}
	f, st := d.file(hdr[0])
	if st != stOK {
		return nil, st
	}
	n := len(f.data)
	return c.seal([]byte{f.typ, f.comm, f.access[0], f.access[1], byte(n), byte(n >> 8), byte(n >> 16)}, false)
}

func (d *DESFire) getFileIDs(c *smCtx, data []byte) ([]byte, byte) {
	if d.sel == nil {
		return nil, stPermission
	}
	if _, _, st := c.open(data, 0, false, false); st != stOK {
		return nil, st
	}
	return c.seal(slices.Sorted(mapKeys(d.sel.files)), false)
}

func (d *DESFire) changeFileSettings(c *smCtx, data []byte) ([]byte, byte) {
	if len(data) < 1 {
		return nil, stLengthError
	}
	f, st := d.file(data[0])
	if st != stOK {
		return nil, st
	}
	ch := f.change()
	switch {
	case ch == accessNever:
		return nil, stPermission
	case ch != accessFree && !d.authedWith(ch):
		return nil, stAuthError
	}
	_, body, st := c.open(data, 1, true, ch == accessFree)
	if st != stOK {
		return nil, st
	}
	if len(body) != 3 || body[0]&0x03 == 0x02 {
		return nil, stParameterError
	}
	f.comm, f.access = body[0]&0x03, [2]byte{body[1], body[2]}
	return c.seal(nil, false)
}

// dataAccess decides how a ReadData or WriteData reaches f: free, or
// with the session key in the file's communication mode.
func (d *DESFire) dataAccess(f *dfFile, keys ...byte) (free bool, st byte) {
	for _, k := range keys {
		if k == accessFree {
			return true, stOK
		}
	}
	for _, k := range keys {
		if k != accessNever && d.authedWith(k) {
			return false, stOK
		}
	}
	return false, stAuthError
}

// writeLen is the data length of a WriteData whose first frame is
// first: header, the data in the file's mode, and the MACt. 0 when the
// header does not tell (the command then fails on its own).
func (d *DESFire) writeLen(first []byte) int {
	if len(first) < 7 || d.sel == nil {
		return 0
	}
	f := d.sel.files[first[0]&0x1F]
	if f == nil {
		return 0
	}
	_, _, n := offLen(first[:7])
	free, st := d.dataAccess(f, f.write(), f.rw())
	switch {
	case st != stOK:
		return 0
	case d.sess == nil || free || f.comm == commPlain:
		return 7 + n
	case f.comm == commMAC:
		return 7 + n + ev2.MACLen
	}
	return 7 + (n/16+1)*16 + ev2.MACLen
}

func offLen(hdr []byte) (no byte, off, n int) {
	return hdr[0], int(hdr[1]) | int(hdr[2])<<8 | int(hdr[3])<<16, int(hdr[4]) | int(hdr[5])<<8 | int(hdr[6])<<16
}

func (d *DESFire) writeData(c *smCtx, data []byte) ([]byte, byte) {
	if len(data) < 7 {
		return nil, stLengthError
	}
	f, st := d.file(data[0])
	if st != stOK {
		return nil, st
	}
	free, st := d.dataAccess(f, f.write(), f.rw())
	if st != stOK {
		return nil, st
	}
	if d.ev1 != nil && !free && f.comm == commMAC {
		// A MACed write in an EV1 session is not modelled.
		return nil, stIllegalCommand
	}
	hdr, body, st := c.open(data, 7, f.comm == commFull, free || f.comm == commPlain)
	if st != stOK {
		return nil, st
	}
	_, off, n := offLen(hdr)
	if n != len(body) {
		return nil, stLengthError
	}
	if off+n > len(f.data) {
		return nil, stBoundaryError
	}
	dst := f.data
	if f.typ == fileBackup {
		if f.staged == nil {
			f.staged = slices.Clone(f.data)
		}
		dst = f.staged
	}
	copy(dst[off:], body)
	return c.seal(nil, false)
}

func (d *DESFire) readData(c *smCtx, data []byte) ([]byte, byte) {
	if len(data) < 7 {
		return nil, stLengthError
	}
	f, st := d.file(data[0])
	if st != stOK {
		return nil, st
	}
	free, st := d.dataAccess(f, f.read(), f.rw())
	if st != stOK {
		return nil, st
	}
	hdr, _, st := c.open(data, 7, false, free || f.comm == commPlain)
	if st != stOK {
		return nil, st
	}
	_, off, n := offLen(hdr)
	if n == 0 {
		n = len(f.data) - off
	}
	if off >= len(f.data) || off+n > len(f.data) {
		return nil, stBoundaryError
	}
	// A backup file reads its committed content until CommitTransaction.
	return c.seal(slices.Clone(f.data[off:off+n]), f.comm == commFull)
}

func (d *DESFire) commitTransaction(c *smCtx, data []byte) ([]byte, byte) {
	if d.sel == nil {
		return nil, stPermission
	}
	hdr, _, st := c.open(data, c.wholeHeader(data), false, false)
	if st != stOK {
		return nil, st
	}
	if len(hdr) > 1 || len(hdr) == 1 && hdr[0] != 0 {
		return nil, stParameterError
	}
	for no, f := range d.sel.files {
		if f.staged == nil {
			continue
		}
		for _, w := range d.worn {
			if w.aid == d.sel.aid && w.fileNo == no && w.off < len(f.data) {
				f.staged[w.off] = f.data[w.off]
			}
		}
		f.data, f.staged = f.staged, nil
	}
	return c.seal(nil, false)
}

func (d *DESFire) abortTransactionCmd(c *smCtx, data []byte) ([]byte, byte) {
	if d.sel == nil {
		return nil, stPermission
	}
	if _, _, st := c.open(data, 0, false, false); st != stOK {
		return nil, st
	}
	d.abortTransaction()
	return c.seal(nil, false)
}

func (d *DESFire) freeMemory(c *smCtx, data []byte) ([]byte, byte) {
	if _, _, st := c.open(data, 0, false, false); st != stOK {
		return nil, st
	}
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], uint32(d.opts.Size-d.used()))
	return c.seal(b[:3], false)
}

func (d *DESFire) setConfiguration(c *smCtx, data []byte) ([]byte, byte) {
	if d.sel != nil || !d.authedWith(0) {
		return nil, stPermission
	}
	hdr, body, st := c.open(data, 1, true, false)
	if st != stOK {
		return nil, st
	}
	if hdr[0] != 0x00 || len(body) != 1 {
		return nil, stParameterError
	}
	if body[0]&0x02 != 0 {
		// Irreversible; anticollision changes at the next activation.
		d.opts.RandomUID = true
	}
	return c.seal(nil, false)
}
