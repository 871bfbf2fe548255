package ev1

import (
	"crypto/cipher"
	"crypto/subtle"
)

// MACLen is the CMAC length ISO/AES sessions send: the first 8 bytes.
const MACLen = 8

// Session is one side's state of an EV1 session: the session key and,
// for ISO/AES, the running IV that every command and answer advances.
type Session struct {
	Scheme Scheme
	key    Key
	b      cipher.Block
	iv     []byte
}

// NewSession starts a session with the IV zero.
func NewSession(s Scheme, key Key) *Session {
	return &Session{Scheme: s, key: key, b: key.Block(), iv: make([]byte, key.BlockSize())}
}

// Command advances the IV over a command sent plain: the CMAC of the
// command byte and its data. Legacy sessions keep no IV. It returns the
// 8-byte CMAC a MACed command carries (nil in legacy sessions).
func (s *Session) Command(cmd byte, data []byte) []byte {
	if s.Scheme == Legacy {
		return nil
	}
	s.iv = CMAC(s.b, s.iv, append([]byte{cmd}, data...))
	return append([]byte(nil), s.iv[:MACLen]...)
}

// SealPlain is the card's answer in plain or MAC mode: ISO/AES sessions
// append the first 8 bytes of the CMAC over the data and the status
// byte, and advance the IV; legacy sessions send the data as it is.
func (s *Session) SealPlain(status byte, data []byte) []byte {
	if s.Scheme == Legacy {
		return data
	}
	s.iv = CMAC(s.b, s.iv, append(append([]byte(nil), data...), status))
	return append(append([]byte(nil), data...), s.iv[:MACLen]...)
}

// OpenPlain checks and strips the CMAC of an answer in plain or MAC mode.
func (s *Session) OpenPlain(status byte, resp []byte) ([]byte, error) {
	if s.Scheme == Legacy {
		return resp, nil
	}
	if len(resp) < MACLen {
		return nil, ErrLength
	}
	data := resp[:len(resp)-MACLen]
	mac := CMAC(s.b, s.iv, append(append([]byte(nil), data...), status))
	if subtle.ConstantTimeCompare(mac[:MACLen], resp[len(data):]) != 1 {
		return nil, ErrIntegrity
	}
	s.iv = mac
	return data, nil
}

// SealFull is the card's enciphered answer: data || CRC || zero padding,
// enciphered in CBC. Legacy: CRC16 over the data, the IV zero. ISO/AES:
// CRC32 over the data and the status byte, from the running IV, which
// then becomes the last cryptogram block.
func (s *Session) SealFull(status byte, data []byte) []byte {
	n := s.key.BlockSize()
	plain := append([]byte(nil), data...)
	iv := s.iv
	if s.Scheme == Legacy {
		crc := CRC16(data)
		plain = append(plain, crc[:]...)
		iv = make([]byte, n)
	} else {
		crc := CRC32(append(append([]byte(nil), data...), status))
		plain = append(plain, crc[:]...)
	}
	for len(plain)%n != 0 {
		plain = append(plain, 0)
	}
	out, next := cbcEncrypt(s.b, iv, plain)
	if s.Scheme != Legacy {
		s.iv = append([]byte(nil), next...)
	}
	return out
}

// OpenFull deciphers an enciphered answer of want data bytes and checks
// its CRC and zero padding.
func (s *Session) OpenFull(status byte, resp []byte, want int) ([]byte, error) {
	n := s.key.BlockSize()
	crcLen := 4
	if s.Scheme == Legacy {
		crcLen = 2
	}
	if len(resp)%n != 0 || len(resp) != (want+crcLen+n-1)/n*n {
		return nil, ErrLength
	}
	iv := s.iv
	if s.Scheme == Legacy {
		iv = make([]byte, n)
	}
	plain, next := cbcDecrypt(s.b, iv, resp)
	data := plain[:want]
	var crc []byte
	if s.Scheme == Legacy {
		c := CRC16(data)
		crc = c[:]
	} else {
		c := CRC32(append(append([]byte(nil), data...), status))
		crc = c[:]
	}
	ok := subtle.ConstantTimeCompare(plain[want:want+crcLen], crc)
	for _, p := range plain[want+crcLen:] {
		ok &= subtle.ConstantTimeByteEq(p, 0)
	}
	if ok != 1 {
		return nil, ErrIntegrity
	}
	if s.Scheme != Legacy {
		s.iv = next
	}
	return data, nil
}
