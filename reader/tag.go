package reader

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
)

// Errors a card itself answers with, as opposed to transport failures.
var (
	// ErrAuthFailed: the card refused the key or password. Contactless
	// chips halt after this; Tag.Reset wakes them.
	ErrAuthFailed = errors.New("card refused authentication")
	// ErrRefused: the card or reader answered a command with an error
	// status (access denied, locked page, NAK).
	ErrRefused = errors.New("card refused the command")
	// ErrUnsupported: the reader does not support the command.
	ErrUnsupported = errors.New("reader does not support the command")
)

// KeyType selects MIFARE Classic key A or key B.
type KeyType byte

const (
	KeyA KeyType = 0x60
	KeyB KeyType = 0x61
)

func (k KeyType) String() string {
	if k == KeyB {
		return "B"
	}
	return "A"
}

// Tag speaks the PC/SC Part 3 storage-card commands (GET DATA, LOAD KEYS,
// GENERAL AUTHENTICATE, READ/UPDATE BINARY) and native frames to a
// contactless card. It is not safe for concurrent use; one job owns a card.
type Tag struct {
	card    Card
	native  nativeMode
	session bool
	uid     []byte
}

type nativeMode int

const (
	// nativePart3 is the PC/SC Part 3 transparent session (Omnikey,
	// ACR1252U, ACR1552 and most current readers).
	nativePart3 nativeMode = iota
	// nativeACR122 is the PN53x InCommunicateThru pass-through the ACR122U
	// offers instead: its firmware predates transparent sessions.
	nativeACR122
)

// NewTag wraps an open card connection.
func NewTag(c Card) *Tag {
	t := &Tag{card: c}
	if strings.Contains(strings.ToUpper(c.Reader()), "ACR122") {
		t.native = nativeACR122
	}
	return t
}

// Card is the underlying connection.
func (t *Tag) Card() Card { return t.card }

// UID reads the card's anticollision identifier (GET DATA) once and caches
// it; Reset checks it again.
func (t *Tag) UID(ctx context.Context) ([]byte, error) {
	if t.uid != nil {
		return t.uid, nil
	}
	data, err := t.command(ctx, "get uid", []byte{0xFF, 0xCA, 0x00, 0x00, 0x00})
	if err != nil {
		return nil, err
	}
	if n := len(data); n != 4 && n != 7 && n != 10 {
		return nil, fmt.Errorf("reader: get uid: %d-byte UID: %w", n, ErrRefused)
	}
	t.uid = data
	return data, nil
}

// LoadKey puts a 6-byte MIFARE Classic key into the reader's volatile key
// slot.
func (t *Tag) LoadKey(ctx context.Context, slot byte, key []byte) error {
	if len(key) != 6 {
		return fmt.Errorf("reader: load key: key must be 6 bytes, got %d", len(key))
	}
	apdu := append([]byte{0xFF, 0x82, 0x00, slot, 0x06}, key...)
	_, err := t.command(ctx, "load key", apdu)
	return err
}

// Authenticate authenticates the sector holding block with the key in slot.
func (t *Tag) Authenticate(ctx context.Context, block int, kt KeyType, slot byte) error {
	apdu := []byte{0xFF, 0x86, 0x00, 0x00, 0x05, 0x01, byte(block >> 8), byte(block), byte(kt), slot}
	_, err := t.command(ctx, "authenticate", apdu)
	if errors.Is(err, ErrRefused) {
		return fmt.Errorf("reader: authenticate block %d with key %s: %w", block, kt, ErrAuthFailed)
	}
	return err
}

// ReadBinary reads n bytes at block (Classic) or page (Ultralight).
func (t *Tag) ReadBinary(ctx context.Context, block, n int) ([]byte, error) {
	data, err := t.command(ctx, "read", []byte{0xFF, 0xB0, byte(block >> 8), byte(block), byte(n)})
	if err != nil {
		return nil, fmt.Errorf("reader: read block %d: %w", block, err)
	}
	if len(data) != n {
		return nil, fmt.Errorf("reader: read block %d: got %d bytes, want %d: %w", block, len(data), n, ErrRefused)
	}
	return data, nil
}

// UpdateBinary writes data at block (16 bytes, Classic) or page (4 bytes,
// Ultralight).
func (t *Tag) UpdateBinary(ctx context.Context, block int, data []byte) error {
	apdu := append([]byte{0xFF, 0xD6, byte(block >> 8), byte(block), byte(len(data))}, data...)
	if _, err := t.command(ctx, "write", apdu); err != nil {
		return fmt.Errorf("reader: write block %d: %w", block, err)
	}
	return nil
}

// Native sends an ISO 14443-3 frame (without CRC) to the card and returns
// its reply. A NAK or silence is ErrRefused; a 4-bit ACK is the byte 0x0A.
func (t *Tag) Native(ctx context.Context, frame []byte) ([]byte, error) {
	if len(frame) == 0 || len(frame) > 250 {
		return nil, fmt.Errorf("reader: native frame of %d bytes", len(frame))
	}
	if t.native == nativeACR122 {
		apdu := append([]byte{0xFF, 0x00, 0x00, 0x00, byte(len(frame) + 2), 0xD4, 0x42}, frame...)
		data, err := t.command(ctx, "native", apdu)
		if err != nil {
			return nil, err
		}
		if len(data) < 3 || data[0] != 0xD5 || data[1] != 0x43 {
			return nil, fmt.Errorf("reader: native: malformed pass-through reply: %w", ErrRefused)
		}
		if data[2] != 0x00 {
			return nil, fmt.Errorf("reader: native: card status %#02x: %w", data[2], ErrRefused)
		}
		return data[3:], nil
	}
	if !t.session {
		// Start a transparent session once per activation, not per frame.
		if _, err := t.command(ctx, "start session", []byte{0xFF, 0xC2, 0x00, 0x00, 0x02, 0x81, 0x00}); err != nil {
			return nil, err
		}
		t.session = true
	}
	apdu := append([]byte{0xFF, 0xC2, 0x00, 0x01, byte(len(frame) + 2), 0x95, byte(len(frame))}, frame...)
	data, err := t.command(ctx, "native", apdu)
	if err != nil {
		return nil, err
	}
	return parseTransparent(data)
}

// FastReadPages is the most pages FastRead asks for in one command: 128
// bytes of data, what an ACR1252U is known to answer in one FAST_READ
// (NXP community, "NTAG 216 FAST_READ sometimes returns more bytes than
// expected", 32 pages per command), well inside a short APDU's 256-byte
// response with the transparent-exchange wrapping.
const FastReadPages = 32

// FastRead reads pages first..last of an NTAG21x or Ultralight EV1 chip
// with its native FAST_READ (3A), in as few commands as FastReadPages
// allows. Unlike READ it never rolls over: a range reaching into
// read-protected pages is refused (and halts the chip). An answer of any
// other length than asked is ErrRefused: some readers have been seen to
// repeat bytes of a long reply.
func (t *Tag) FastRead(ctx context.Context, first, last int) ([]byte, error) {
	if first < 0 || last > 0xFF || first > last {
		return nil, fmt.Errorf("reader: fast read pages %d..%d: invalid range", first, last)
	}
	out := make([]byte, 0, (last-first+1)*4)
	for p := first; p <= last; p += FastReadPages {
		end := min(p+FastReadPages-1, last)
		b, err := t.Native(ctx, []byte{0x3A, byte(p), byte(end)})
		if err != nil {
			return nil, fmt.Errorf("reader: fast read pages %d..%d: %w", p, end, err)
		}
		if want := (end - p + 1) * 4; len(b) != want {
			return nil, fmt.Errorf("reader: fast read pages %d..%d: got %d bytes, want %d: %w", p, end, len(b), want, ErrRefused)
		}
		out = append(out, b...)
	}
	return out, nil
}

// parseTransparent extracts the card's reply (tag 0x97) from a Part 3
// transparent-exchange response, failing on a non-zero status (tag 0xC0).
// Lengths are BER-TLV: a reply of 128 bytes or more (a FAST_READ) comes
// with a length of 81 nn or 82 nn nn.
func parseTransparent(data []byte) ([]byte, error) {
	var reply []byte
	ok := false
	for len(data) >= 2 {
		tag, n, hdr := data[0], int(data[1]), 2
		switch {
		case n == 0x81 && len(data) >= 3:
			n, hdr = int(data[2]), 3
		case n == 0x82 && len(data) >= 4:
			n, hdr = int(data[2])<<8|int(data[3]), 4
		case n >= 0x80:
			return nil, fmt.Errorf("reader: native: malformed transparent-exchange reply: %w", ErrRefused)
		}
		if len(data) < hdr+n {
			break
		}
		v := data[hdr : hdr+n]
		switch tag {
		case 0xC0:
			if !bytes.Equal(v, []byte{0x00, 0x90, 0x00}) {
				return nil, fmt.Errorf("reader: native: exchange status % X: %w", v, ErrRefused)
			}
			ok = true
		case 0x97:
			reply = v
		}
		data = data[hdr+n:]
	}
	if !ok || reply == nil {
		return nil, fmt.Errorf("reader: native: malformed transparent-exchange reply: %w", ErrRefused)
	}
	return reply, nil
}

// DESFireMoreFrames is the status (91 AF) of a DESFire answer that
// continues in another frame, and the command code that asks for it.
const DESFireMoreFrames = 0xAF

// Wrapped sends a DESFire native command wrapped in ISO/IEC 7816-4
// (90 INS 00 00 [Lc data] 00) and returns the answer's data and its
// native status, the byte after 91. Any other status word is an error.
func (t *Tag) Wrapped(ctx context.Context, ins byte, data []byte) ([]byte, byte, error) {
	if len(data) > 255 {
		return nil, 0, fmt.Errorf("reader: DESFire command of %d bytes", len(data))
	}
	apdu := []byte{0x90, ins, 0x00, 0x00}
	if len(data) > 0 {
		apdu = append(apdu, byte(len(data)))
		apdu = append(apdu, data...)
	}
	apdu = append(apdu, 0x00)
	resp, err := t.card.Transmit(ctx, apdu)
	if err != nil {
		return nil, 0, fmt.Errorf("reader: DESFire %02X: %w", ins, err)
	}
	if len(resp) < 2 {
		return nil, 0, fmt.Errorf("reader: DESFire %02X: %w", ins, ErrCardRemoved)
	}
	sw1, sw2 := resp[len(resp)-2], resp[len(resp)-1]
	switch {
	case sw1 == 0x91:
		return resp[:len(resp)-2], sw2, nil
	case sw1 == 0x6A && sw2 == 0x81, sw1 == 0x6D, sw1 == 0x6E:
		return nil, 0, fmt.Errorf("reader: DESFire %02X: status %02X%02X: %w", ins, sw1, sw2, ErrUnsupported)
	}
	return nil, 0, fmt.Errorf("reader: DESFire %02X: status %02X%02X: %w", ins, sw1, sw2, ErrRefused)
}

// Reset re-activates the card, which clears its authentication state and
// any transparent session. The reader runs anticollision again and may
// select another card in the field, so once the UID has been read, Reset
// reads it again (one GET DATA) and fails with ErrCardChanged if another
// card answers; the caller must then stop before sending that card
// anything.
func (t *Tag) Reset(ctx context.Context) error {
	t.session = false
	known := t.uid
	t.uid = nil
	if err := t.card.Reset(ctx); err != nil {
		return err
	}
	if known == nil {
		return nil
	}
	uid, err := t.UID(ctx)
	if err != nil {
		return err
	}
	if !bytes.Equal(uid, known) {
		return fmt.Errorf("reader: reset: %w", ErrCardChanged)
	}
	return nil
}

// command transmits apdu and returns the response data on 90 00. Other
// status words become ErrRefused or ErrUnsupported; the APDU itself never
// enters the error because it may carry a key.
func (t *Tag) command(ctx context.Context, op string, apdu []byte) ([]byte, error) {
	resp, err := t.card.Transmit(ctx, apdu)
	if err != nil {
		return nil, fmt.Errorf("reader: %s: %w", op, err)
	}
	if len(resp) < 2 {
		return nil, fmt.Errorf("reader: %s: %w", op, ErrCardRemoved)
	}
	sw1, sw2 := resp[len(resp)-2], resp[len(resp)-1]
	switch {
	case sw1 == 0x90 && sw2 == 0x00:
		return resp[:len(resp)-2], nil
	case sw1 == 0x6A && sw2 == 0x81, sw1 == 0x6D, sw1 == 0x6E:
		return nil, fmt.Errorf("reader: %s: status %02X%02X: %w", op, sw1, sw2, ErrUnsupported)
	default:
		return nil, fmt.Errorf("reader: %s: status %02X%02X: %w", op, sw1, sw2, ErrRefused)
	}
}
