package chip

import (
	"bytes"
	"crypto/rand"
	"slices"
	"testing"

	"github.com/encoder-bridge/encoder-bridge/internal/ev2"
)

// pcd drives a DESFire card as a reader would, through wrapped APDUs.
type pcd struct {
	t      *testing.T
	c      Card
	s      *ev2.Session
	last   []byte   // the last APDU sent
	frames [][]byte // the frames of the last command sent with cmd
}

func wrap(ins byte, data []byte) []byte {
	a := []byte{0x90, ins, 0x00, 0x00}
	if len(data) > 0 {
		a = append(a, byte(len(data)))
		a = append(a, data...)
	}
	return append(a, 0x00)
}

// raw sends one frame and returns its data and status (SW2).
func (p *pcd) raw(ins byte, data []byte) ([]byte, byte) {
	p.t.Helper()
	p.last = wrap(ins, data)
	r := txb(p.t, p.c, p.last)
	if r[len(r)-2] != 0x91 {
		p.t.Fatalf("%X: SW %X", p.last, r[len(r)-2:])
	}
	return r[:len(r)-2], r[len(r)-1]
}

// cmd sends a command, in several frames when its data is longer than
// one, and collects an answer sent in several frames.
func (p *pcd) cmd(ins byte, data []byte) ([]byte, byte) {
	p.t.Helper()
	p.frames = nil
	first := data[:min(len(data), maxCmdFrame)]
	out, st := p.raw(ins, first)
	p.frames = append(p.frames, p.last)
	for rest := data[len(first):]; len(rest) > 0 && st == stAdditional && len(out) == 0; {
		chunk := rest[:min(len(rest), maxCmdFrame)]
		rest = rest[len(chunk):]
		out, st = p.raw(stAdditional, chunk)
		p.frames = append(p.frames, p.last)
	}
	for st == stAdditional {
		var more []byte
		more, st = p.raw(stAdditional, nil)
		out = append(out, more...)
	}
	return out, st
}

// sm sends a command in the session's mode, checks and strips the
// answer's secure messaging and advances the counter. Without a session
// it is cmd. An error ends the session, as on the card.
func (p *pcd) sm(ins byte, hdr, data []byte, fullCmd, fullResp bool) ([]byte, byte) {
	p.t.Helper()
	if p.s == nil {
		return p.cmd(ins, append(slices.Clone(hdr), data...))
	}
	out, st := p.cmd(ins, p.s.SealCommand(ins, hdr, data, fullCmd))
	if st != stOK {
		p.s = nil
		return out, st
	}
	plain, err := p.s.OpenResponse(st, out, fullResp)
	if err != nil {
		p.t.Fatalf("INS %02X: answer: %v", ins, err)
	}
	if err := p.s.Advance(); err != nil {
		p.t.Fatal(err)
	}
	return plain, st
}

func (p *pcd) must(want byte) func([]byte, byte) []byte {
	return func(out []byte, st byte) []byte {
		p.t.Helper()
		if st != want {
			p.t.Fatalf("status %02X, want %02X", st, want)
		}
		return out
	}
}

// auth runs AuthenticateEV2First (or NonFirst) and returns the status.
func (p *pcd) auth(first bool, keyNo byte, key [16]byte) byte {
	p.t.Helper()
	ins := byte(0x71)
	data := []byte{keyNo, 0x00}
	if !first {
		ins, data = 0x77, []byte{keyNo}
	}
	encB, st := p.raw(ins, data)
	if st != stAdditional {
		p.s = nil
		return st
	}
	var rndA [16]byte
	_, _ = rand.Read(rndA[:])
	part2, rndB, err := ev2.ReaderPart2(key, encB, rndA)
	if err != nil {
		p.t.Fatal(err)
	}
	out, st := p.raw(stAdditional, part2)
	if st != stOK {
		p.s = nil
		return st
	}
	if first {
		p.s, err = ev2.ReaderFirst(key, rndA, rndB, out)
	} else {
		err = ev2.ReaderNonFirst(p.s, key, rndA, rndB, out)
	}
	if err != nil {
		p.t.Fatalf("card's answer: %v", err)
	}
	return st
}

func (p *pcd) selectApp(aid [3]byte) byte {
	p.t.Helper()
	p.s = nil
	_, st := p.cmd(0x5A, aid[:])
	return st
}

var (
	testAID   = [3]byte{0x45, 0x42, 0xF0}
	zeroKey   [16]byte
	testAESK1 = [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	testAESK2 = [16]byte{0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2A, 0x2B, 0x2C, 0x2D, 0x2E, 0x2F, 0x30}
)

func newDF(t *testing.T, o DESFireOptions) (*DESFire, *pcd) {
	t.Helper()
	if o.Generation == 0 {
		o.Generation = DESFireEV2
	}
	if o.Size == 0 {
		o.Size = 4096
	}
	d, err := NewDESFire(o, testUID7)
	if err != nil {
		t.Fatal(err)
	}
	return d, &pcd{t: t, c: d}
}

// setupApp creates the test application (3 AES keys, key settings 0x0B)
// with a backup file 1 of 64 bytes, read key 1, write key 2, full mode.
func setupApp(t *testing.T, p *pcd) {
	t.Helper()
	p.must(stOK)(p.cmd(0xCA, append(testAID[:], 0x0B, 0x83)))
	if st := p.selectApp(testAID); st != stOK {
		t.Fatalf("select: %02X", st)
	}
	if st := p.auth(true, 0, zeroKey); st != stOK {
		t.Fatalf("auth key 0: %02X", st)
	}
	p.must(stOK)(p.sm(0xCB, []byte{0x01, commFull, 0x00, 0x12, 64, 0, 0}, nil, false, false))
}

func TestDESFireGetVersion(t *testing.T) {
	for _, tc := range []struct {
		gen, size   int
		major, code byte
	}{
		{DESFireEV2, 2048, 0x12, 0x16}, {DESFireEV2, 4096, 0x12, 0x18}, {DESFireEV2, 8192, 0x12, 0x1A},
		{DESFireEV3, 2048, 0x33, 0x16}, {DESFireEV3, 4096, 0x33, 0x18}, {DESFireEV3, 8192, 0x33, 0x1A},
	} {
		d, p := newDF(t, DESFireOptions{Generation: tc.gen, Size: tc.size})
		// Three frames: 7, 7 and 14 bytes.
		hw, st := p.raw(0x60, nil)
		if st != stAdditional || len(hw) != 7 || hw[0] != 0x04 || hw[3] != tc.major || hw[5] != tc.code {
			t.Fatalf("EV%d %d: hardware frame %X %02X", tc.gen, tc.size, hw, st)
		}
		sw, st := p.raw(stAdditional, nil)
		if st != stAdditional || len(sw) != 7 || sw[3] != tc.major {
			t.Fatalf("software frame %X %02X", sw, st)
		}
		prod, st := p.raw(stAdditional, nil)
		if st != stOK || len(prod) != 14 || !bytes.Equal(prod[:7], d.RealUID()) {
			t.Fatalf("production frame %X %02X", prod, st)
		}
		if !bytes.Equal(d.ATR(), hx("3B8180018080")) {
			t.Errorf("ATR %X", d.ATR())
		}
	}
	if _, err := NewDESFire(DESFireOptions{Generation: 1, Size: 4096}, nil); err == nil {
		t.Error("EV1 accepted")
	}
	if _, err := NewDESFire(DESFireOptions{Generation: 2, Size: 1024}, nil); err == nil {
		t.Error("1 KB accepted")
	}
}

// Factory state: application creation and listing without
// authentication; the 2K3DES PICC key refuses EV2 authentication, an AES
// one (distributor-converted) accepts it.
func TestDESFireFactoryPICC(t *testing.T) {
	d, p := newDF(t, DESFireOptions{})
	if out := p.must(stOK)(p.cmd(0x6A, nil)); len(out) != 0 {
		t.Errorf("factory card lists %X", out)
	}
	ks := p.must(stOK)(p.cmd(0x45, nil))
	if !bytes.Equal(ks, []byte{0x0F, 0x01}) {
		t.Errorf("PICC key settings %X, want 0F 01", ks)
	}
	free := p.must(stOK)(p.cmd(0x6E, nil))
	if !bytes.Equal(free, []byte{0x00, 0x10, 0x00}) {
		t.Errorf("free memory %X", free)
	}
	if st := p.auth(true, 0, zeroKey); st != stAuthError {
		t.Errorf("EV2 auth with the DES PICC key: %02X, want AE", st)
	}
	setupApp(t, p)
	if got := d.Apps(); len(got) != 1 || got[0] != testAID {
		t.Errorf("apps %X", got)
	}
	p.selectApp([3]byte{})
	if out := p.must(stOK)(p.cmd(0x6A, nil)); !bytes.Equal(out, testAID[:]) {
		t.Errorf("AIDs %X", out)
	}
	if _, st := p.cmd(0xCA, append(testAID[:], 0x0B, 0x83)); st != stDuplicateError {
		t.Errorf("duplicate application: %02X", st)
	}
	// ISO names: GetDFNames answers one application per frame.
	p.must(stOK)(p.cmd(0xCA, []byte{1, 0, 0, 0x0B, 0xA1, 0x01, 0xE1, 'A'}))
	p.must(stOK)(p.cmd(0xCA, []byte{2, 0, 0, 0x0B, 0xA1, 0x02, 0xE1, 'B', 'B'}))
	if out, st := p.raw(0x6D, nil); st != stAdditional || !bytes.Equal(out, []byte{1, 0, 0, 0x01, 0xE1, 'A'}) {
		t.Fatalf("GetDFNames first frame %X %02X", out, st)
	}
	if out, st := p.raw(stAdditional, nil); st != stOK || !bytes.Equal(out, []byte{2, 0, 0, 0x02, 0xE1, 'B', 'B'}) {
		t.Fatalf("GetDFNames second frame %X %02X", out, st)
	}
	if _, st := p.cmd(0xCA, []byte{3, 0, 0, 0x0B, 0xA1, 0x03, 0xE1}); st != stOK {
		t.Fatalf("ISO FID without a DF name: %02X", st)
	}
	if _, st := p.cmd(0xCA, []byte{4, 0, 0, 0x0B, 0xA1, 0x04, 0xE1, 'A'}); st != stDuplicateError {
		t.Fatalf("repeated DF name: %02X", st)
	}
	if _, st := p.cmd(0xCA, []byte{5, 0, 0, 0x0B, 0xA1, 0x03, 0xE1}); st != stDuplicateError {
		t.Fatalf("repeated ISO FID: %02X", st)
	}
	if _, st := p.cmd(0xCA, []byte{1, 2, 3, 0x0B, 0x03}); st != stParameterError {
		t.Errorf("DES application: %02X, want 9E (only AES modelled)", st)
	}
	if st := p.selectApp([3]byte{9, 9, 9}); st != stAppNotFound {
		t.Errorf("unknown AID: %02X", st)
	}

	_, p2 := newDF(t, DESFireOptions{AESPICCKey: true})
	if st := p2.auth(true, 0, zeroKey); st != stOK {
		t.Fatalf("AES PICC key: %02X", st)
	}
	if out := p2.must(stOK)(p2.sm(0x6A, nil, nil, false, false)); len(out) != 0 {
		t.Errorf("AIDs in a session: %X", out)
	}
}

// ChangeKey: another key (XOR with the old one and a CRC), then the
// session's own key, which ends the session; a wrong key then gives an
// authentication error.
func TestDESFireChangeKey(t *testing.T) {
	d, p := newDF(t, DESFireOptions{})
	setupApp(t, p)

	data := ev2.ChangeKeyData(testAESK1, 0x05, &zeroKey)
	p.must(stOK)(p.sm(0xC4, []byte{1}, data, true, false))
	if k, v, _ := d.AppKey(testAID, 1); k != testAESK1 || v != 5 {
		t.Fatalf("key 1 = %X v%d", k, v)
	}
	// A CRC over the wrong new key is an integrity error.
	bad := ev2.ChangeKeyData(testAESK2, 0x05, &zeroKey)
	bad[17] ^= 1
	if _, st := p.sm(0xC4, []byte{2}, bad, true, false); st != stIntegrityError {
		t.Fatalf("bad CRC: %02X", st)
	}
	if d.Authenticated() {
		t.Fatal("session survived an error")
	}
	if k, _, _ := d.AppKey(testAID, 2); k != zeroKey {
		t.Fatal("key 2 changed by a refused ChangeKey")
	}

	if st := p.auth(true, 0, zeroKey); st != stOK {
		t.Fatal(st)
	}
	ver := p.must(stOK)(p.sm(0x64, []byte{1}, nil, false, false))
	if !bytes.Equal(ver, []byte{5}) {
		t.Errorf("GetKeyVersion(1) = %X", ver)
	}
	// Key 0 with key 0: the answer is plain 91 00 and the session ends.
	field := p.s.SealCommand(0xC4, []byte{0}, ev2.ChangeKeyData(testAESK2, 0x07, nil), true)
	if out, st := p.raw(0xC4, field); st != stOK || len(out) != 0 {
		t.Fatalf("ChangeKey 0: %X %02X", out, st)
	}
	if d.Authenticated() {
		t.Fatal("session survived the change of its key")
	}
	if st := p.auth(true, 0, zeroKey); st != stAuthError {
		t.Fatalf("old key 0: %02X, want AE", st)
	}
	if st := p.auth(true, 0, testAESK2); st != stOK {
		t.Fatalf("new key 0: %02X", st)
	}
	if st := p.auth(true, 5, zeroKey); st != stNoSuchKey {
		t.Fatalf("key 5 of 3: %02X", st)
	}
}

func TestDESFireBackupFileTransaction(t *testing.T) {
	d, p := newDF(t, DESFireOptions{})
	setupApp(t, p)
	fs := p.must(stOK)(p.sm(0xF5, []byte{1}, nil, false, false))
	if !bytes.Equal(fs, []byte{fileBackup, commFull, 0x00, 0x12, 64, 0, 0}) {
		t.Fatalf("file settings %X", fs)
	}
	if ids := p.must(stOK)(p.sm(0x6F, nil, nil, false, false)); !bytes.Equal(ids, []byte{1}) {
		t.Fatalf("file IDs %X", ids)
	}
	// Write with key 2, then read with key 1 through NonFirst.
	if st := p.auth(true, 2, zeroKey); st != stOK {
		t.Fatal(st)
	}
	rec := bytes.Repeat([]byte{0xA5}, 64)
	write := func(b []byte) {
		t.Helper()
		p.must(stOK)(p.sm(0x8D, []byte{1, 0, 0, 0, byte(len(b)), 0, 0}, b, true, false))
	}
	read := func() []byte {
		t.Helper()
		return p.must(stOK)(p.sm(0xAD, []byte{1, 0, 0, 0, 0, 0, 0}, nil, false, true))
	}
	write(rec)
	if st := p.auth(false, 1, zeroKey); st != stOK {
		t.Fatal(st)
	}
	if got := read(); !bytes.Equal(got, make([]byte, 64)) {
		t.Fatalf("uncommitted write visible: %X", got)
	}
	// Leaving the field discards it.
	d.Reset()
	p.selectApp(testAID)
	p.auth(true, 2, zeroKey)
	p.must(stOK)(p.sm(0xC7, nil, nil, false, false))
	if got := d.FileData(testAID, 1); !bytes.Equal(got, make([]byte, 64)) {
		t.Fatalf("write survived a reset: %X", got)
	}
	// Written and committed, it is there.
	write(rec)
	p.must(stOK)(p.sm(0xC7, nil, nil, false, false))
	p.auth(false, 1, zeroKey)
	if got := read(); !bytes.Equal(got, rec) {
		t.Fatalf("committed write: %X", got)
	}
	// AbortTransaction and SelectApplication drop a write.
	p.auth(false, 2, zeroKey)
	write(make([]byte, 64))
	p.must(stOK)(p.sm(0xA7, nil, nil, false, false))
	write(make([]byte, 64))
	p.selectApp(testAID)
	p.auth(true, 2, zeroKey)
	p.must(stOK)(p.sm(0xC7, nil, nil, false, false))
	if got := d.FileData(testAID, 1); !bytes.Equal(got, rec) {
		t.Fatalf("aborted write applied: %X", got)
	}
	// Past the end of the file.
	if _, st := p.sm(0x8D, []byte{1, 60, 0, 0, 8, 0, 0}, make([]byte, 8), true, false); st != stBoundaryError {
		t.Fatalf("write past the end: %02X", st)
	}
}

// The read key cannot write; no key cannot read; the session ends on
// each refusal.
func TestDESFireFileAccess(t *testing.T) {
	_, p := newDF(t, DESFireOptions{})
	setupApp(t, p)
	p.selectApp(testAID)
	if _, st := p.cmd(0xAD, []byte{1, 0, 0, 0, 0, 0, 0}); st != stAuthError {
		t.Fatalf("read without authentication: %02X", st)
	}
	p.auth(true, 1, zeroKey)
	if _, st := p.sm(0x8D, []byte{1, 0, 0, 0, 1, 0, 0}, []byte{1}, true, false); st != stAuthError {
		t.Fatalf("write with the read key: %02X", st)
	}
	if _, st := p.cmd(0x51, nil); st != stAuthError {
		t.Fatalf("GetCardUID after the session ended: %02X", st)
	}
}

// A replayed or modified command fails the MAC check, ends the session
// and changes nothing.
func TestDESFireReplayAndTamper(t *testing.T) {
	d, p := newDF(t, DESFireOptions{})
	setupApp(t, p)
	p.auth(true, 2, zeroKey)
	rec := bytes.Repeat([]byte{0x11}, 64)
	p.must(stOK)(p.sm(0x8D, []byte{1, 0, 0, 0, 64, 0, 0}, rec, true, false))
	replay := slices.Clone(p.frames)
	if len(replay) != 2 {
		t.Fatalf("WriteData of 64 bytes in %d frames, want 2", len(replay))
	}
	p.must(stOK)(p.sm(0xC7, nil, nil, false, false))

	if r := txb(t, d, replay[0]); sw(r) != "91AF" {
		t.Fatalf("replayed WriteData, first frame: %X", r)
	}
	if r := txb(t, d, replay[1]); sw(r) != "911E" {
		t.Fatalf("replayed WriteData: %X", r)
	}
	if d.Authenticated() {
		t.Fatal("session survived a replay")
	}
	p.auth(true, 2, zeroKey)
	field := p.s.SealCommand(0x8D, []byte{1, 0, 0, 0, 64, 0, 0}, make([]byte, 64), true)
	field[10] ^= 0x80
	if _, st := p.cmd(0x8D, field); st != stIntegrityError {
		t.Fatalf("modified WriteData: %02X", st)
	}
	p.selectApp(testAID)
	p.auth(true, 2, zeroKey)
	p.must(stOK)(p.sm(0xC7, nil, nil, false, false))
	if got := d.FileData(testAID, 1); !bytes.Equal(got, rec) {
		t.Fatalf("file %X after refused writes", got)
	}
}

// A random-UID card answers a new 08xxxxxx UID at each activation, hides
// its UID in GetVersion and gives the real one through GetCardUID after
// an authentication, encrypted.
func TestDESFireRandomUID(t *testing.T) {
	d, p := newDF(t, DESFireOptions{RandomUID: true})
	first := wantSW(t, d, "FF CA 00 00 00", "9000")
	if len(first) != 4 || first[0] != 0x08 || !bytes.Equal(first, d.UID()) {
		t.Fatalf("anticollision UID %X", first)
	}
	d.Reset()
	if second := wantSW(t, d, "FF CA 00 00 00", "9000"); bytes.Equal(first, second) {
		t.Fatalf("same random UID after a reset: %X", second)
	}
	v := p.must(stOK)(p.cmd(0x60, nil))
	if !bytes.Equal(v[14:21], make([]byte, 7)) {
		t.Fatalf("GetVersion shows UID %X", v[14:21])
	}
	if _, st := p.cmd(0x51, nil); st != stAuthError {
		t.Fatalf("GetCardUID without authentication: %02X", st)
	}
	setupApp(t, p)
	uid := p.must(stOK)(p.sm(0x51, nil, nil, false, true))
	if !bytes.Equal(uid, testUID7) {
		t.Fatalf("GetCardUID = %X, want %X", uid, testUID7)
	}

	// A fixed-UID card answers its UID in both places.
	d2, _ := newDF(t, DESFireOptions{})
	if got := wantSW(t, d2, "FF CA 00 00 00", "9000"); !bytes.Equal(got, testUID7) {
		t.Fatalf("fixed UID %X", got)
	}
}

// SetConfiguration option 00 bit 1 turns random UID on for good, from
// the next activation; it needs the PICC master key.
func TestDESFireSetConfigurationRandomUID(t *testing.T) {
	d, p := newDF(t, DESFireOptions{AESPICCKey: true})
	if _, st := p.cmd(0x5C, []byte{0x00, 0x02}); st != stPermission {
		t.Fatalf("without the PICC key: %02X", st)
	}
	p.auth(true, 0, zeroKey)
	p.must(stOK)(p.sm(0x5C, []byte{0x00}, []byte{0x02}, true, false))
	d.Reset()
	if uid := d.UID(); len(uid) != 4 || uid[0] != 0x08 {
		t.Fatalf("UID after SetConfiguration %X", uid)
	}
}

// Commands longer than a frame are refused unless chained; an
// unfinished chain is ended by any other command.
func TestDESFireCommandChaining(t *testing.T) {
	d, p := newDF(t, DESFireOptions{})
	p.must(stOK)(p.cmd(0xCA, append(testAID[:], 0x0F, 0x83)))
	p.selectApp(testAID)
	p.must(stOK)(p.cmd(0xCD, []byte{0x02, commPlain, 0xEE, 0xEE, 100, 0, 0}))
	long := append([]byte{2, 0, 0, 0, 100, 0, 0}, bytes.Repeat([]byte{7}, 100)...)
	if _, st := p.raw(0x8D, long); st != stLengthError {
		t.Fatalf("107 bytes in one frame: %02X", st)
	}
	if out, st := p.raw(0x8D, long[:maxCmdFrame]); st != stAdditional || len(out) != 0 {
		t.Fatalf("first frame: %X %02X", out, st)
	}
	p.must(stOK)(p.cmd(0x6E, nil)) // ends the chain
	if got := d.FileData(testAID, 2); !bytes.Equal(got, make([]byte, 100)) {
		t.Fatalf("an unfinished chain wrote %X", got)
	}
	p.must(stOK)(p.cmd(0x8D, long))
	if len(p.frames) != 2 {
		t.Fatalf("%d frames", len(p.frames))
	}
	if got := d.FileData(testAID, 2); !bytes.Equal(got, long[7:]) {
		t.Fatalf("chained write %X", got)
	}
}

// Answers longer than a frame continue with 91 AF.
func TestDESFireFrames(t *testing.T) {
	_, p := newDF(t, DESFireOptions{})
	p.must(stOK)(p.cmd(0xCA, append(testAID[:], 0x0F, 0x83)))
	p.selectApp(testAID)
	p.must(stOK)(p.cmd(0xCD, []byte{0x02, commPlain, 0xEE, 0xEE, 100, 0, 0}))
	data := make([]byte, 100)
	for i := range data {
		data[i] = byte(i)
	}
	p.must(stOK)(p.cmd(0x8D, append([]byte{2, 0, 0, 0, 100, 0, 0}, data...)))
	out, st := p.raw(0xAD, []byte{2, 0, 0, 0, 0, 0, 0})
	if st != stAdditional || len(out) != maxFrame {
		t.Fatalf("first frame %d bytes, %02X", len(out), st)
	}
	rest, st := p.raw(stAdditional, nil)
	if st != stOK || !bytes.Equal(append(out, rest...), data) {
		t.Fatalf("frames %X %X %02X", out, rest, st)
	}
	// A standard file's write is visible at once.
	if _, st := p.raw(stAdditional, nil); st != stIllegalCommand {
		t.Fatalf("AF with nothing pending: %02X", st)
	}
}

func TestDESFireFileErrors(t *testing.T) {
	_, p := newDF(t, DESFireOptions{Size: 2048})
	p.must(stOK)(p.cmd(0xCA, append(testAID[:], 0x0F, 0x83)))
	p.selectApp(testAID)
	for _, tc := range []struct {
		name string
		ins  byte
		data []byte
		want byte
	}{
		{"file number 32", 0xCD, []byte{32, 0, 0xEE, 0xEE, 32, 0, 0}, stParameterError},
		{"size 0", 0xCD, []byte{1, 0, 0xEE, 0xEE, 0, 0, 0}, stParameterError},
		{"short", 0xCD, []byte{1, 0, 0xEE}, stLengthError},
		{"too big for 2 KB", 0xCB, []byte{1, 0, 0xEE, 0xEE, 0x00, 0x06, 0}, stOutOfEEPROM},
		{"created", 0xCB, []byte{1, 0, 0xEE, 0xEE, 32, 0, 0}, stOK},
		{"duplicate", 0xCD, []byte{1, 0, 0xEE, 0xEE, 32, 0, 0}, stDuplicateError},
		{"no such file", 0xF5, []byte{7}, stFileNotFound},
		{"unknown command", 0x99, nil, stIllegalCommand},
	} {
		if _, st := p.cmd(tc.ins, tc.data); st != tc.want {
			t.Errorf("%s: %02X, want %02X", tc.name, st, tc.want)
		}
	}
	// ChangeFileSettings with free change access runs plain.
	p.must(stOK)(p.cmd(0x5F, []byte{1, commFull, 0x00, 0x12}))
	fs := p.must(stOK)(p.cmd(0xF5, []byte{1}))
	if !bytes.Equal(fs, []byte{fileBackup, commFull, 0x00, 0x12, 32, 0, 0}) {
		t.Errorf("file settings %X", fs)
	}
	if _, st := p.cmd(0x5F, []byte{1, commPlain, 0xEE, 0xEE}); st != stAuthError {
		t.Errorf("change with key 0 required, not authenticated: %02X", st)
	}
}

// Keys, files and committed data survive Marshal; an open transaction
// does not, as it does not survive leaving the field.
func TestDESFireMarshalRoundTrip(t *testing.T) {
	d, p := newDF(t, DESFireOptions{Generation: DESFireEV3, Size: 8192, RandomUID: true})
	setupApp(t, p)
	p.must(stOK)(p.sm(0xC4, []byte{1}, ev2.ChangeKeyData(testAESK1, 3, &zeroKey), true, false))
	p.auth(true, 2, zeroKey)
	rec := bytes.Repeat([]byte{0x5A}, 64)
	p.must(stOK)(p.sm(0x8D, []byte{1, 0, 0, 0, 64, 0, 0}, rec, true, false))
	p.must(stOK)(p.sm(0xC7, nil, nil, false, false))
	p.must(stOK)(p.sm(0x8D, []byte{1, 0, 0, 0, 64, 0, 0}, make([]byte, 64), true, false)) // open

	d2 := roundTrip(t, WithFaults(d, Faults{})).(*DESFire)
	if d2.Kind() != KindDESFireEV3 || d2.Options() != d.Options() || !bytes.Equal(d2.RealUID(), testUID7) {
		t.Fatalf("restored %s %+v", d2.Kind(), d2.Options())
	}
	if got := d2.FileData(testAID, 1); !bytes.Equal(got, rec) {
		t.Fatalf("restored file %X", got)
	}
	p2 := &pcd{t: t, c: d2}
	p2.selectApp(testAID)
	if st := p2.auth(true, 1, testAESK1); st != stOK {
		t.Fatalf("restored key 1: %02X", st)
	}
	for _, bad := range []string{
		`{"version":1,"kind":"mifare_desfire_ev2","uid":"04112233445566"}`,
		`{"version":1,"kind":"mifare_desfire_ev2","uid":"04112233445566","desfire":{"size":4096,"picc":{"key_settings":15,"key_type":0,"keys":["00"],"key_versions":"00"}}}`,
		`{"version":1,"kind":"mifare_desfire_ev2","uid":"0411","desfire":{"size":4096,"picc":{"key_settings":15,"key_type":0,"keys":["00000000000000000000000000000000"],"key_versions":"00"}}}`,
		`{"version":1,"kind":"mifare_desfire_ev2","uid":"04112233445566","desfire":{"size":4096,"picc":{"key_settings":15,"key_type":0,"keys":["00000000000000000000000000000000"],"key_versions":"00"},"apps":[{"aid":"000000","key_settings":15,"key_type":128,"keys":["00000000000000000000000000000000"],"key_versions":"00"}]}}`,
	} {
		if _, err := Unmarshal([]byte(bad)); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}
