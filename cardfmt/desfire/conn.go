package desfire

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/encoder-bridge/encoder-bridge/internal/ev2"
	"github.com/encoder-bridge/encoder-bridge/reader"
)

// Native commands (MF3D(H)x2/x3 datasheets, command set).
const (
	insGetVersion        = 0x60
	insSelectApplication = 0x5A
	insCreateApplication = 0xCA
	insAuthEV2First      = 0x71
	insAuthEV2NonFirst   = 0x77
	insGetKeyVersion     = 0x64
	insChangeKey         = 0xC4
	insGetCardUID        = 0x51
	insCreateBackupFile  = 0xCB
	insGetFileIDs        = 0x6F
	insGetDFNames        = 0x6D
	insGetFileSettings   = 0xF5
	insWriteData         = 0x8D
	insReadData          = 0xAD
	insCommit            = 0xC7
	insFreeMemory        = 0x6E
	insDeleteApplication = 0xDA
	insMoreFrames        = reader.DESFireMoreFrames
)

// Native status codes (the byte after 91) this layout tells apart.
const (
	stOK           = 0x00
	stOutOfEEPROM  = 0x0E
	stPermission   = 0x9D
	stAppNotFound  = 0xA0
	stAuthError    = 0xAE
	stCountError   = 0xCE
	stDuplicate    = 0xDE
	stMoreFrames   = 0xAF
	stIntegrity    = 0x1E
	stFileNotFound = 0xF0
)

// statusError is a card's answer other than 91 00. It unwraps to
// reader.ErrAuthFailed for 91 AE and to reader.ErrRefused otherwise.
type statusError struct {
	op string
	st byte
}

func (e *statusError) Error() string {
	return fmt.Sprintf("desfire: %s: card answered 91 %02X", e.op, e.st)
}

func (e *statusError) Unwrap() error {
	if e.st == stAuthError {
		return reader.ErrAuthFailed
	}
	return reader.ErrRefused
}

// status returns the card status an error carries, stOK if none.
func status(err error) byte {
	var se *statusError
	if errors.As(err, &se) {
		return se.st
	}
	return stOK
}

// errCardAuth reports a card whose answer to an authentication did not
// prove it holds the key: a card emulating DESFire, or a broken one.
var errCardAuth = errors.New("desfire: the card's authentication answer does not verify")

// conn is one activation's exchange with the card: wrapped native
// commands and, once authenticated, EV2 secure messaging.
type conn struct {
	t Tag
	s *ev2.Session
}

// maxCmdFrame is the most command data sent in one frame: a longer
// command continues in 90 AF frames (a 64-byte frame less the ISO/IEC
// 7816-4 wrapping and the ISO-DEP overhead).
const maxCmdFrame = 54

// exchange sends a command, in several frames when it is longer than
// one, and collects an answer sent in several frames.
func (c *conn) exchange(ctx context.Context, op string, ins byte, data []byte) ([]byte, byte, error) {
	first := data[:min(len(data), maxCmdFrame)]
	out, st, err := c.t.Wrapped(ctx, ins, first)
	if err != nil {
		return nil, 0, fmt.Errorf("desfire: %s: %w", op, err)
	}
	for rest := data[len(first):]; len(rest) > 0; {
		if st != stMoreFrames || len(out) != 0 {
			// The card answered before it had the whole command.
			return out, st, nil
		}
		chunk := rest[:min(len(rest), maxCmdFrame)]
		rest = rest[len(chunk):]
		if out, st, err = c.t.Wrapped(ctx, insMoreFrames, chunk); err != nil {
			return nil, 0, fmt.Errorf("desfire: %s: %w", op, err)
		}
	}
	for st == stMoreFrames && ins != insAuthEV2First && ins != insAuthEV2NonFirst {
		var more []byte
		if more, st, err = c.t.Wrapped(ctx, insMoreFrames, nil); err != nil {
			return nil, 0, fmt.Errorf("desfire: %s: %w", op, err)
		}
		out = append(out, more...)
	}
	return out, st, nil
}

// plain sends a command outside a session.
func (c *conn) plain(ctx context.Context, op string, ins byte, data []byte) ([]byte, error) {
	out, st, err := c.exchange(ctx, op, ins, data)
	if err != nil {
		return nil, err
	}
	if st != stOK {
		return nil, &statusError{op, st}
	}
	return out, nil
}

// cmd sends a command in the session's secure messaging (plain when
// there is no session) and checks the answer's MAC. Any error ends the
// session, as it does on the card.
func (c *conn) cmd(ctx context.Context, op string, ins byte, hdr, data []byte, fullCmd, fullResp bool) ([]byte, error) {
	if c.s == nil {
		return c.plain(ctx, op, ins, append(append([]byte(nil), hdr...), data...))
	}
	s := c.s
	c.s = nil
	out, st, err := c.exchange(ctx, op, ins, s.SealCommand(ins, hdr, data, fullCmd))
	if err != nil {
		return nil, err
	}
	if st != stOK {
		return nil, &statusError{op, st}
	}
	plain, err := s.OpenResponse(st, out, fullResp)
	if err != nil {
		return nil, fmt.Errorf("desfire: %s: answer: %w: %w", op, err, reader.ErrRefused)
	}
	if err := s.Advance(); err != nil {
		return nil, fmt.Errorf("desfire: %s: %w", op, err)
	}
	c.s = s
	return plain, nil
}

// auth runs AuthenticateEV2First, or NonFirst inside the open session.
// A key the card does not hold gives a statusError of 91 AE.
func (c *conn) auth(ctx context.Context, first bool, keyNo byte, key [16]byte) error {
	op, ins, data := "AuthenticateEV2First", byte(insAuthEV2First), []byte{keyNo, 0x00}
	if !first {
		op, ins, data = "AuthenticateEV2NonFirst", insAuthEV2NonFirst, []byte{keyNo}
	}
	prev := c.s
	c.s = nil
	encB, st, err := c.exchange(ctx, op, ins, data)
	if err != nil {
		return err
	}
	if st != stMoreFrames {
		return &statusError{op, st}
	}
	var rndA [16]byte
	if _, err := rand.Read(rndA[:]); err != nil {
		return fmt.Errorf("desfire: %s: %w", op, err)
	}
	part2, rndB, err := ev2.ReaderPart2(key, encB, rndA)
	if err != nil {
		return fmt.Errorf("desfire: %s: %w: %w", op, errCardAuth, reader.ErrRefused)
	}
	out, st, err := c.exchange(ctx, op, insMoreFrames, part2)
	if err != nil {
		return err
	}
	if st != stOK {
		return &statusError{op, st}
	}
	if first {
		c.s, err = ev2.ReaderFirst(key, rndA, rndB, out)
	} else if prev != nil {
		err = ev2.ReaderNonFirst(prev, key, rndA, rndB, out)
		c.s = prev
	} else {
		err = errors.New("NonFirst without a session")
	}
	if err != nil {
		c.s = nil
		return fmt.Errorf("desfire: %s: %w: %w", op, errCardAuth, reader.ErrRefused)
	}
	return nil
}
