package ev2

import (
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/encoder-bridge/encoder-bridge/internal/aescmac"
)

// Errors of a secure-messaging exchange.
var (
	// ErrMAC reports a MACt that does not match: a modified or replayed
	// message, or one from another session.
	ErrMAC = errors.New("ev2: MAC mismatch")
	// ErrCounter reports a command counter at its last value: the session
	// must end and a new AuthenticateEV2First start another.
	ErrCounter = errors.New("ev2: command counter exhausted")
	// ErrShort reports a message too short to carry its MACt.
	ErrShort = errors.New("ev2: message shorter than its MAC")
)

// MACLen is the length of a truncated CMAC (MACt).
const MACLen = 8

// Labels that start the session vectors and the IV inputs (AN12343 §5.3,
// AN12196 §4.4).
var (
	labelSV1     = [2]byte{0xA5, 0x5A} // SesAuthENCKey
	labelSV2     = [2]byte{0x5A, 0xA5} // SesAuthMACKey
	labelIVCmd   = [2]byte{0xA5, 0x5A}
	labelIVReply = [2]byte{0x5A, 0xA5}
)

// sessionVector is SV1 or SV2 of AN12343 §5.3 (RndA[15] is the first byte
// sent, so "RndA[15..14]" are bytes 0 and 1):
//
//	label || 00 01 00 80 || RndA[15..14] || (RndA[13..8] XOR RndB[15..10])
//	      || RndB[9..0] || RndA[7..0]
func sessionVector(label [2]byte, rndA, rndB [16]byte) [32]byte {
	var sv [32]byte
	copy(sv[0:2], label[:])
	copy(sv[2:6], []byte{0x00, 0x01, 0x00, 0x80})
	copy(sv[6:8], rndA[0:2])
	for i := range 6 {
		sv[8+i] = rndA[2+i] ^ rndB[i]
	}
	copy(sv[14:24], rndB[6:16])
	copy(sv[24:32], rndA[8:16])
	return sv
}

// SessionKeys derives SesAuthENCKey = CMAC(key, SV1) and SesAuthMACKey =
// CMAC(key, SV2) from the authentication key and both random numbers.
func SessionKeys(key, rndA, rndB [16]byte) (enc, mac [16]byte) {
	c := aescmac.FromBlock(newBlock(key))
	sv1 := sessionVector(labelSV1, rndA, rndB)
	sv2 := sessionVector(labelSV2, rndA, rndB)
	return c.Sum(sv1[:]), c.Sum(sv2[:])
}

// Truncate keeps the odd-indexed bytes of a CMAC, S1 S3 … S15: the
// datasheets number bytes from 1 and call them the even-numbered ones.
func Truncate(mac [16]byte) [MACLen]byte {
	var t [MACLen]byte
	for i := range t {
		t[i] = mac[2*i+1]
	}
	return t
}

// Session is the state of EV2 secure messaging after AuthenticateEV2First:
// the session keys, the transaction identifier TI the card chose and the
// command counter CmdCtr. The reader and the card each hold one and
// advance it after every command exchanged in the session.
type Session struct {
	TI  [4]byte
	Ctr uint16 // CmdCtr of the next command

	enc, mac [16]byte
	macer    *aescmac.Key
}

// NewSession starts secure messaging with the session keys of a first
// authentication; the counter starts at 0.
func NewSession(enc, mac [16]byte, ti [4]byte) *Session {
	return &Session{TI: ti, enc: enc, mac: mac, macer: aescmac.FromBlock(newBlock(mac))}
}

// Rekey installs the session keys of an AuthenticateEV2NonFirst, which
// keeps TI and the counter.
func (s *Session) Rekey(enc, mac [16]byte) {
	s.enc, s.mac, s.macer = enc, mac, aescmac.FromBlock(newBlock(mac))
}

// Format keeps the session keys out of logs and errors.
func (s *Session) Format(f fmt.State, _ rune) {
	_, _ = io.WriteString(f, "ev2.Session{redacted}")
}

// Advance moves the counter past the command just exchanged.
func (s *Session) Advance() error {
	if s.Ctr == 0xFFFF {
		return ErrCounter
	}
	s.Ctr++
	return nil
}

// iv is E(SesAuthENCKey, label || TI || ctr || 00…00), ctr little-endian.
func (s *Session) iv(label [2]byte, ctr uint16) [16]byte {
	var in [16]byte
	copy(in[0:2], label[:])
	copy(in[2:6], s.TI[:])
	binary.LittleEndian.PutUint16(in[6:8], ctr)
	var out [16]byte
	newBlock(s.enc).Encrypt(out[:], in[:])
	return out
}

// CommandIV is the IV of the command data in CommMode.Full.
func (s *Session) CommandIV() [16]byte { return s.iv(labelIVCmd, s.Ctr) }

// ResponseIV is the IV of the response data in CommMode.Full: it uses
// the counter the exchange ends with, CmdCtr+1.
func (s *Session) ResponseIV() [16]byte { return s.iv(labelIVReply, s.Ctr+1) }

// CommandMAC is MACt over Cmd || CmdCtr || TI || header || data, data
// being the plain data in CommMode.MAC and the cryptogram in
// CommMode.Full.
func (s *Session) CommandMAC(cmd byte, header, data []byte) [MACLen]byte {
	return s.macOf(cmd, s.Ctr, header, data)
}

// ResponseMAC is MACt over RC || CmdCtr+1 || TI || data.
func (s *Session) ResponseMAC(rc byte, data []byte) [MACLen]byte {
	return s.macOf(rc, s.Ctr+1, nil, data)
}

func (s *Session) macOf(code byte, ctr uint16, header, data []byte) [MACLen]byte {
	in := make([]byte, 0, 7+len(header)+len(data))
	in = append(in, code, byte(ctr), byte(ctr>>8))
	in = append(in, s.TI[:]...)
	in = append(in, header...)
	in = append(in, data...)
	return Truncate(s.macer.Sum(in))
}

// SealCommand builds the data field of a command after its code: header
// in plain, then data (encrypted when full), then MACt.
func (s *Session) SealCommand(cmd byte, header, data []byte, full bool) []byte {
	body := data
	if full && len(data) > 0 {
		body, _ = EncryptCBC(s.enc, s.CommandIV(), Pad(data)) // padded: whole blocks
	}
	mac := s.CommandMAC(cmd, header, body)
	out := make([]byte, 0, len(header)+len(body)+MACLen)
	out = append(out, header...)
	out = append(out, body...)
	return append(out, mac[:]...)
}

// OpenCommand is the card's side of SealCommand: it checks the MACt of a
// command's data field whose header is hdrLen bytes and returns the
// header and the plain data.
func (s *Session) OpenCommand(cmd byte, field []byte, hdrLen int, full bool) (header, data []byte, err error) {
	if len(field) < hdrLen+MACLen {
		return nil, nil, ErrShort
	}
	header = field[:hdrLen]
	body := field[hdrLen : len(field)-MACLen]
	want := s.CommandMAC(cmd, header, body)
	if subtle.ConstantTimeCompare(want[:], field[len(field)-MACLen:]) != 1 {
		return nil, nil, ErrMAC
	}
	if !full || len(body) == 0 {
		return header, body, nil
	}
	plain, err := DecryptCBC(s.enc, s.CommandIV(), body)
	if err != nil {
		return nil, nil, err
	}
	data, err = Unpad(plain)
	return header, data, err
}

// SealResponse builds a response's data: data (encrypted when full), then
// MACt over the return code.
func (s *Session) SealResponse(rc byte, data []byte, full bool) []byte {
	body := data
	if full && len(data) > 0 {
		body, _ = EncryptCBC(s.enc, s.ResponseIV(), Pad(data))
	}
	mac := s.ResponseMAC(rc, body)
	out := make([]byte, 0, len(body)+MACLen)
	out = append(out, body...)
	return append(out, mac[:]...)
}

// OpenResponse is the reader's side of SealResponse.
func (s *Session) OpenResponse(rc byte, resp []byte, full bool) ([]byte, error) {
	if len(resp) < MACLen {
		return nil, ErrShort
	}
	body := resp[:len(resp)-MACLen]
	want := s.ResponseMAC(rc, body)
	if subtle.ConstantTimeCompare(want[:], resp[len(resp)-MACLen:]) != 1 {
		return nil, ErrMAC
	}
	if !full || len(body) == 0 {
		return body, nil
	}
	plain, err := DecryptCBC(s.enc, s.ResponseIV(), body)
	if err != nil {
		return nil, err
	}
	return Unpad(plain)
}
