package chip

import (
	"crypto/rand"
	"fmt"
	"slices"
	"sync"

	"github.com/encoder-bridge/encoder-bridge/internal/ev1"
	"github.com/encoder-bridge/encoder-bridge/internal/ev2"
)

// DESFire generations and capacities (MF3D(H)x2, MF3D(H)x3).
const (
	DESFireEV2 = 2
	DESFireEV3 = 3
)

// DESFireOptions describe a DESFire card as shipped or as a distributor
// prepared it.
type DESFireOptions struct {
	// Generation is DESFireEV2 or DESFireEV3.
	Generation int
	// Size is the user memory in bytes: 2048, 4096 or 8192.
	Size int
	// RandomUID makes anticollision answer a fresh random 4-byte UID at
	// every activation (SetConfiguration option 00, bit 1, already set).
	RandomUID bool
	// AESPICCKey: the PICC master key is the all-zero AES key instead of
	// the factory all-zero 2K3DES key.
	AESPICCKey bool
}

// Native status codes (SW2 after 91) with the datasheet's names.
const (
	stOK             = 0x00
	stNoChanges      = 0x0C
	stOutOfEEPROM    = 0x0E
	stIllegalCommand = 0x1C
	stIntegrityError = 0x1E
	stNoSuchKey      = 0x40
	stLengthError    = 0x7E
	stPermission     = 0x9D
	stParameterError = 0x9E
	stAppNotFound    = 0xA0
	stAuthError      = 0xAE
	stAdditional     = 0xAF
	stBoundaryError  = 0xBE
	stCommandAborted = 0xCA
	stDuplicateError = 0xDE
	stFileNotFound   = 0xF0
)

// Key settings and file constants.
const (
	keyTypeDES = 0x00 // 2K3DES in DES mode: the factory PICC master key
	keyTypeAES = 0x80 // KeySett2 bits 7-6 = 10b

	fileStd    = 0x00
	fileBackup = 0x01

	commPlain = 0x00
	commMAC   = 0x01
	commFull  = 0x03

	accessFree  = 0x0E
	accessNever = 0x0F

	maxKeys  = 14
	maxFiles = 32
	maxApps  = 28
	// maxFrame is the longest data a DESFire frame carries; longer
	// answers continue with 91 AF (MF3D(H)x3 §10.3: the PICC sends at most
	// 59 bytes of data per frame).
	maxFrame = 59
	// maxCmdFrame is the most command data one frame carries; a longer
	// WriteData continues in 90 AF frames, each answered 91 AF until the
	// card has the length its header announces. Readers keep to 54 bytes
	// (a 64-byte frame with the ISO/IEC 7816-4 wrapping and ISO-DEP
	// overhead); the model refuses more (91 7E), the strict reading.
	maxCmdFrame = 54
)

type dfFile struct {
	typ    byte
	comm   byte
	access [2]byte // as sent: (RW<<4 | Change), (Read<<4 | Write)
	data   []byte  // committed content
	staged []byte  // backup file: the write in the open transaction, nil if none
}

func (f *dfFile) read() byte   { return f.access[1] >> 4 }
func (f *dfFile) write() byte  { return f.access[1] & 0x0F }
func (f *dfFile) rw() byte     { return f.access[0] >> 4 }
func (f *dfFile) change() byte { return f.access[0] & 0x0F }

type dfApp struct {
	aid      [3]byte
	settings byte // KeySett1
	keyType  byte
	keys     [][16]byte
	versions []byte
	isoFID   []byte
	dfName   []byte
	files    map[byte]*dfFile
}

// DESFire is a MIFARE DESFire EV2 or EV3 card with EV2 secure messaging,
// reached through ISO/IEC 7816-4 wrapped native commands (CLA 90).
type DESFire struct {
	mu   sync.Mutex
	opts DESFireOptions
	uid  [7]byte
	picc dfApp // AID 000000: the PICC master key and settings
	apps []*dfApp
	rd   reader

	// Session state, cleared by Reset.
	randomUID []byte // this activation's random anticollision UID
	sel       *dfApp // nil: the PICC level
	sess      *ev2.Session
	ev1       *ev1.Session // a session of AuthenticateAES, AuthenticateISO or the legacy Authenticate
	authKey   int          // key number of sess or ev1
	pending   *dfPend      // a command waiting for its next frame
	ev1Pend   *ev1Pend     // an EV1 authentication waiting for its second frame
	worn      []wornByte
	out       []byte   // rest of an answer sent in frames
	split     []int    // sizes of its next frames, maxFrame after
	chain     *dfChain // a WriteData arriving in several frames
}

// wornByte is an EEPROM cell that no longer takes a write.
type wornByte struct {
	aid    [3]byte
	fileNo byte
	off    int
}

// dfChain is a command whose data arrives in several frames.
type dfChain struct {
	ins  byte
	data []byte
	want int
}

// dfPend is the state of an authentication between its two frames.
type dfPend struct {
	first bool
	keyNo int
	key   [16]byte
	rndB  [16]byte
}

// NewDESFire returns a card in factory state: no application, PICC key
// settings 0x0F (application creation and listing without
// authentication), the all-zero PICC master key. uid must be 7 bytes; nil
// draws a random one starting with the NXP code 04.
func NewDESFire(opts DESFireOptions, uid []byte) (*DESFire, error) {
	if opts.Generation != DESFireEV2 && opts.Generation != DESFireEV3 {
		return nil, fmt.Errorf("chip: DESFire generation %d, want 2 or 3", opts.Generation)
	}
	if _, ok := desfireSizeCode[opts.Size]; !ok {
		return nil, fmt.Errorf("chip: DESFire size %d, want 2048, 4096 or 8192", opts.Size)
	}
	if uid == nil {
		uid = randomUID(7)
	}
	if len(uid) != 7 {
		return nil, fmt.Errorf("chip: DESFire needs a 7-byte UID, got %d bytes", len(uid))
	}
	d := &DESFire{opts: opts}
	copy(d.uid[:], uid)
	d.picc = dfApp{settings: 0x0F, keyType: keyTypeDES, keys: make([][16]byte, 1), versions: make([]byte, 1)}
	if opts.AESPICCKey {
		d.picc.keyType = keyTypeAES
	}
	d.activate()
	return d, nil
}

// GetVersion storage size codes: 2^n bytes, the low bit clear when exact.
var desfireSizeCode = map[int]byte{2048: 0x16, 4096: 0x18, 8192: 0x1A}

// ATR implements Card: what PC/SC readers report for an ISO 14443-4 A
// card without historical bytes, as DESFire EV1, EV2 and EV3 answer.
func (d *DESFire) ATR() []byte { return []byte{0x3B, 0x81, 0x80, 0x01, 0x80, 0x80} }

// UID implements Card: the anticollision UID, random on random-UID cards.
func (d *DESFire) UID() []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.uidBytes()
}

func (d *DESFire) uidBytes() []byte {
	if d.opts.RandomUID {
		return slices.Clone(d.randomUID)
	}
	return slices.Clone(d.uid[:])
}

// RealUID is the 7-byte UID GetCardUID returns.
func (d *DESFire) RealUID() []byte { return slices.Clone(d.uid[:]) }

// Kind returns the kind string New accepts for this card.
func (d *DESFire) Kind() string {
	if d.opts.Generation == DESFireEV3 {
		return KindDESFireEV3
	}
	return KindDESFireEV2
}

// Options returns what the card was made with.
func (d *DESFire) Options() DESFireOptions { return d.opts }

// Transmit implements Card: CLA 90 goes to the chip, CLA FF to the reader.
func (d *DESFire) Transmit(apdu []byte) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(apdu) > 0 && apdu[0] == 0x90 {
		return d.wrapped(apdu), nil
	}
	return d.rd.transmit(d, apdu), nil
}

// Reset implements Card: leaving the field ends the authentication and
// discards an uncommitted transaction.
func (d *DESFire) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.activate()
	d.rd.session = false
}

func (d *DESFire) activate() {
	d.abortTransaction()
	d.sel, d.pending, d.out, d.chain = nil, nil, nil, nil
	d.endSession()
	if d.opts.RandomUID {
		// ISO/IEC 14443-3: a random single-size UID starts with 08.
		d.randomUID = make([]byte, 4)
		_, _ = rand.Read(d.randomUID)
		d.randomUID[0] = 0x08
	}
}

// abortTransaction drops every staged backup-file write of the card.
func (d *DESFire) abortTransaction() {
	for _, a := range d.apps {
		for _, f := range a.files {
			f.staged = nil
		}
	}
}

// The storage-card commands of the reader front end are not DESFire's.
func (d *DESFire) authenticate(int, bool, [6]byte) []byte { return resp(nil, swFailed) }
func (d *DESFire) readBinary(byte, byte, int) []byte      { return resp(nil, swNotSupported) }
func (d *DESFire) updateBinary(byte, byte, []byte) []byte { return resp(nil, swNotSupported) }
func (d *DESFire) native([]byte) ([]byte, bool)           { return nil, false }

// Fixture access.

// Apps returns the AIDs of the applications on the card.
func (d *DESFire) Apps() [][3]byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out [][3]byte
	for _, a := range d.apps {
		out = append(out, a.aid)
	}
	return out
}

// FileData returns the committed content of a file, nil if there is none.
func (d *DESFire) FileData(aid [3]byte, fileNo byte) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	a := d.app(aid)
	if a == nil || a.files[fileNo] == nil {
		return nil
	}
	return slices.Clone(a.files[fileNo].data)
}

// AppKey returns key keyNo of an application and its version.
func (d *DESFire) AppKey(aid [3]byte, keyNo int) (key [16]byte, version byte, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	a := d.app(aid)
	if a == nil || keyNo >= len(a.keys) {
		return key, 0, false
	}
	return a.keys[keyNo], a.versions[keyNo], true
}

// WearByte makes byte off of a file keep its value through every later
// commit, as a worn EEPROM cell would, while the card still acknowledges
// the writes: the fault a read-back after the commit finds.
func (d *DESFire) WearByte(aid [3]byte, fileNo byte, off int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.worn = append(d.worn, wornByte{aid, fileNo, off})
}

// Authenticated reports whether an EV2 or EV1 session is open.
func (d *DESFire) Authenticated() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.authed()
}

func (d *DESFire) authed() bool { return d.sess != nil || d.ev1 != nil }

// endSession ends the authentication, EV2 or EV1, and one half done.
func (d *DESFire) endSession() { d.sess, d.ev1, d.ev1Pend = nil, nil, nil }

func (d *DESFire) app(aid [3]byte) *dfApp {
	for _, a := range d.apps {
		if a.aid == aid {
			return a
		}
	}
	return nil
}

func (d *DESFire) used() int {
	n := 0
	for _, a := range d.apps {
		for _, f := range a.files {
			sz := (len(f.data) + 31) / 32 * 32
			if f.typ == fileBackup {
				sz *= 2
			}
			n += sz
		}
	}
	return n
}
