package ev2

import (
	"crypto/subtle"
	"errors"
)

// ErrAuth reports an authentication whose random number did not come back
// rotated as sent: the other side holds another key.
var ErrAuth = errors.New("ev2: authentication failed")

// ErrLength reports an authentication message of the wrong length.
var ErrLength = errors.New("ev2: authentication message of wrong length")

// RotateLeft is RndX': the random number rotated left by one byte.
func RotateLeft(b [16]byte) [16]byte {
	var out [16]byte
	copy(out[:], b[1:])
	out[15] = b[0]
	return out
}

var zeroIV [16]byte

// ReaderPart2 is the reader's second step of AuthenticateEV2First and
// NonFirst: it decrypts the
// card's E(Kx, RndB) and answers E(Kx, RndA || RndB').
func ReaderPart2(key [16]byte, encRndB []byte, rndA [16]byte) (part2 []byte, rndB [16]byte, err error) {
	if len(encRndB) != 16 {
		return nil, rndB, ErrLength
	}
	plain, _ := DecryptCBC(key, zeroIV, encRndB)
	copy(rndB[:], plain)
	rot := RotateLeft(rndB)
	part2, _ = EncryptCBC(key, zeroIV, append(rndA[:], rot[:]...))
	return part2, rndB, nil
}

// ReaderFirst checks the card's last answer to AuthenticateEV2First,
// E(Kx, TI || RndA' || PDcap2 || PCDcap2), and starts the session.
func ReaderFirst(key, rndA, rndB [16]byte, resp []byte) (*Session, error) {
	if len(resp) != 32 {
		return nil, ErrLength
	}
	plain, _ := DecryptCBC(key, zeroIV, resp)
	want := RotateLeft(rndA)
	if subtle.ConstantTimeCompare(plain[4:20], want[:]) != 1 {
		return nil, ErrAuth
	}
	var ti [4]byte
	copy(ti[:], plain[:4])
	enc, mac := SessionKeys(key, rndA, rndB)
	return NewSession(enc, mac, ti), nil
}

// ReaderNonFirst checks the card's last answer to
// AuthenticateEV2NonFirst, E(Kx, RndA'), and rekeys s.
func ReaderNonFirst(s *Session, key, rndA, rndB [16]byte, resp []byte) error {
	if len(resp) != 16 {
		return ErrLength
	}
	plain, _ := DecryptCBC(key, zeroIV, resp)
	want := RotateLeft(rndA)
	if subtle.ConstantTimeCompare(plain, want[:]) != 1 {
		return ErrAuth
	}
	s.Rekey(SessionKeys(key, rndA, rndB))
	return nil
}

// CardPart2 is the card's check of the reader's E(Kx, RndA || RndB'): it
// returns RndA when RndB' is the card's RndB rotated.
func CardPart2(key, rndB [16]byte, part2 []byte) (rndA [16]byte, err error) {
	if len(part2) != 32 {
		return rndA, ErrLength
	}
	plain, _ := DecryptCBC(key, zeroIV, part2)
	want := RotateLeft(rndB)
	if subtle.ConstantTimeCompare(plain[16:], want[:]) != 1 {
		return rndA, ErrAuth
	}
	copy(rndA[:], plain[:16])
	return rndA, nil
}

// CardFirst is the card's last answer to AuthenticateEV2First:
// E(Kx, TI || RndA' || PDcap2 || PCDcap2) with both capability fields
// zero, as for a reader that sent no PCDcap2.
func CardFirst(key [16]byte, ti [4]byte, rndA [16]byte) []byte {
	var plain [32]byte
	copy(plain[:4], ti[:])
	rot := RotateLeft(rndA)
	copy(plain[4:20], rot[:])
	out, _ := EncryptCBC(key, zeroIV, plain[:])
	return out
}

// CardNonFirst is the card's last answer to AuthenticateEV2NonFirst:
// E(Kx, RndA').
func CardNonFirst(key, rndA [16]byte) []byte {
	rot := RotateLeft(rndA)
	out, _ := EncryptCBC(key, zeroIV, rot[:])
	return out
}

// ChangeKeyData is the plain data of ChangeKey after KeyNo, sent in
// CommMode.Full. Changing the key the session was authenticated with
// (old == nil) sends NewKey || KeyVer; changing another key sends
// (NewKey XOR OldKey) || KeyVer || CRC32(NewKey), so the card can check
// the caller knew the old key.
func ChangeKeyData(newKey [16]byte, version byte, old *[16]byte) []byte {
	if old == nil {
		return append(newKey[:], version)
	}
	d := newKey
	xor(d[:], old[:])
	crc := CRC32(newKey[:])
	out := append(d[:], version)
	return append(out, crc[:]...)
}
