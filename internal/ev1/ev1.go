package ev1

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"hash/crc32"
)

// Errors.
var (
	// ErrAuth: the random number did not come back rotated as sent; the
	// other side holds another key.
	ErrAuth = errors.New("ev1: authentication failed")
	// ErrLength: a message of the wrong length.
	ErrLength = errors.New("ev1: message of wrong length")
	// ErrIntegrity: an enciphered answer whose CRC or padding does not
	// check, or a CMAC that does not match.
	ErrIntegrity = errors.New("ev1: integrity error")
)

// Scheme is the authentication command that opened a session.
type Scheme byte

const (
	Legacy Scheme = 0x0A // Authenticate: DES/2K3DES, D40 secure messaging
	ISO    Scheme = 0x1A // AuthenticateISO: DES/2K3DES/3K3DES, CMAC
	AES    Scheme = 0xAA // AuthenticateAES: AES-128, CMAC
)

// Key is a DESFire key: 16 bytes of 2K3DES (single DES when both halves
// are equal, as the factory all-zero key) or of AES-128.
type Key struct {
	AES  bool
	Data [16]byte
}

// single reports a 2K3DES key whose halves are equal: it enciphers as
// single DES.
func (k Key) single() bool {
	return !k.AES && subtle.ConstantTimeCompare(k.Data[:8], k.Data[8:]) == 1
}

// Block returns the key's block cipher: AES, or TDEA with K1 K2 K1.
func (k Key) Block() cipher.Block {
	if k.AES {
		b, _ := aes.NewCipher(k.Data[:])
		return b
	}
	var k3 [24]byte
	copy(k3[:], k.Data[:])
	copy(k3[16:], k.Data[:8])
	b, _ := des.NewTripleDESCipher(k3[:])
	return b
}

// BlockSize is 16 for AES keys and 8 for DES keys: the size of RndA and
// RndB too.
func (k Key) BlockSize() int {
	if k.AES {
		return 16
	}
	return 8
}

func rotl(b []byte) []byte {
	out := make([]byte, len(b))
	copy(out, b[1:])
	out[len(b)-1] = b[0]
	return out
}

func xorInto(dst, a, b []byte) {
	for i := range dst {
		dst[i] = a[i] ^ b[i]
	}
}

// cbcEncrypt enciphers whole blocks in CBC from iv and returns the last
// ciphertext block (the next IV).
func cbcEncrypt(b cipher.Block, iv, data []byte) (out, next []byte) {
	out = make([]byte, len(data))
	cipher.NewCBCEncrypter(b, iv).CryptBlocks(out, data)
	return out, out[len(out)-b.BlockSize():]
}

// cbcDecrypt deciphers whole blocks in CBC from iv and returns the last
// ciphertext block (the next IV).
func cbcDecrypt(b cipher.Block, iv, data []byte) (out, next []byte) {
	out = make([]byte, len(data))
	cipher.NewCBCDecrypter(b, iv).CryptBlocks(out, data)
	return out, append([]byte(nil), data[len(data)-b.BlockSize():]...)
}

// SendLegacy is the reader's "send mode" of D40 secure messaging: each
// block is XORed with the previous result and then *deciphered*, so that
// the card only ever enciphers (MF3ICD40; libfreefare MCD_SEND with
// MCO_DECYPHER). The IV is zero.
func SendLegacy(b cipher.Block, data []byte) []byte {
	n := b.BlockSize()
	out := make([]byte, len(data))
	prev := make([]byte, n)
	for i := 0; i < len(data); i += n {
		xorInto(out[i:i+n], data[i:i+n], prev)
		b.Decrypt(out[i:i+n], out[i:i+n])
		prev = out[i : i+n]
	}
	return out
}

// ReceiveLegacy is the card's side of SendLegacy: each block enciphered
// and XORed with the previous cryptogram block.
func ReceiveLegacy(b cipher.Block, data []byte) []byte {
	n := b.BlockSize()
	out := make([]byte, len(data))
	prev := make([]byte, n)
	for i := 0; i < len(data); i += n {
		b.Encrypt(out[i:i+n], data[i:i+n])
		xorInto(out[i:i+n], out[i:i+n], prev)
		prev = data[i : i+n]
	}
	return out
}

// Card is the card's side of one authentication between its two frames.
type Card struct {
	scheme Scheme
	key    Key
	rndB   []byte
	iv     []byte // ISO/AES: the IV the reader's token was chained from
}

// CardStart is the card's first answer: E(K, RndB), with rndB a fresh
// random number of the key's block size.
func CardStart(s Scheme, key Key, rndB []byte) (*Card, []byte, error) {
	if len(rndB) != key.BlockSize() {
		return nil, nil, ErrLength
	}
	enc, next := cbcEncrypt(key.Block(), make([]byte, key.BlockSize()), rndB)
	c := &Card{scheme: s, key: key, rndB: append([]byte(nil), rndB...)}
	if s != Legacy {
		c.iv = append([]byte(nil), next...)
	}
	return c, enc, nil
}

// Finish checks the reader's E(K, RndA || RndB') and returns the card's
// last answer E(K, RndA') and the session.
func (c *Card) Finish(token []byte) (*Session, []byte, error) {
	n := c.key.BlockSize()
	if len(token) != 2*n {
		return nil, nil, ErrLength
	}
	b := c.key.Block()
	var plain, next []byte
	if c.scheme == Legacy {
		plain = ReceiveLegacy(b, token)
	} else {
		plain, next = cbcDecrypt(b, c.iv, token)
	}
	if subtle.ConstantTimeCompare(plain[n:], rotl(c.rndB)) != 1 {
		return nil, nil, ErrAuth
	}
	rndA := plain[:n]
	var out []byte
	if c.scheme == Legacy {
		out, _ = cbcEncrypt(b, make([]byte, n), rotl(rndA))
	} else {
		out, _ = cbcEncrypt(b, next, rotl(rndA))
	}
	return NewSession(c.scheme, SessionKey(c.key, rndA, c.rndB)), out, nil
}

// Reader is the reader's side of one authentication.
type Reader struct {
	scheme     Scheme
	key        Key
	rndA, rndB []byte
	iv         []byte
}

// ReaderStep decrypts the card's E(K, RndB) and returns the token
// E(K, RndA || RndB') to send; rndA has the key's block size.
func ReaderStep(s Scheme, key Key, encRndB, rndA []byte) (*Reader, []byte, error) {
	n := key.BlockSize()
	if len(encRndB) != n || len(rndA) != n {
		return nil, nil, ErrLength
	}
	b := key.Block()
	rndB, next := cbcDecrypt(b, make([]byte, n), encRndB)
	token := append(append([]byte(nil), rndA...), rotl(rndB)...)
	r := &Reader{scheme: s, key: key, rndA: append([]byte(nil), rndA...), rndB: rndB}
	if s == Legacy {
		token = SendLegacy(b, token)
	} else {
		token, r.iv = cbcEncrypt(b, next, token)
		r.iv = append([]byte(nil), r.iv...)
	}
	return r, token, nil
}

// Finish checks the card's E(K, RndA') and returns the session.
func (r *Reader) Finish(resp []byte) (*Session, error) {
	n := r.key.BlockSize()
	if len(resp) != n {
		return nil, ErrLength
	}
	iv := r.iv
	if r.scheme == Legacy {
		iv = make([]byte, n)
	}
	plain, _ := cbcDecrypt(r.key.Block(), iv, resp)
	if subtle.ConstantTimeCompare(plain, rotl(r.rndA)) != 1 {
		return nil, ErrAuth
	}
	return NewSession(r.scheme, SessionKey(r.key, r.rndA, r.rndB)), nil
}

// SessionKey builds the session key from the random numbers (MF3ICD40,
// MF3ICDx1 datasheets): AES RndA[0:4] || RndB[0:4] || RndA[12:16] ||
// RndB[12:16]; 2K3DES RndA[0:4] || RndB[0:4] || RndA[4:8] || RndB[4:8];
// single DES RndA[0:4] || RndB[0:4] in both halves.
func SessionKey(key Key, rndA, rndB []byte) Key {
	var k Key
	k.AES = key.AES
	switch {
	case key.AES:
		copy(k.Data[0:4], rndA[0:4])
		copy(k.Data[4:8], rndB[0:4])
		copy(k.Data[8:12], rndA[12:16])
		copy(k.Data[12:16], rndB[12:16])
	case key.single():
		copy(k.Data[0:4], rndA[0:4])
		copy(k.Data[4:8], rndB[0:4])
		copy(k.Data[8:16], k.Data[0:8])
	default:
		copy(k.Data[0:4], rndA[0:4])
		copy(k.Data[4:8], rndB[0:4])
		copy(k.Data[8:12], rndA[4:8])
		copy(k.Data[12:16], rndB[4:8])
	}
	return k
}

// CMAC is NIST SP 800-38B CMAC over the key's block cipher, chained from
// iv (zero for the standard MAC) as EV1 ISO/AES sessions chain it.
func CMAC(b cipher.Block, iv, msg []byte) []byte {
	n := b.BlockSize()
	rb := byte(0x87)
	if n == 8 {
		rb = 0x1B
	}
	l := make([]byte, n)
	b.Encrypt(l, l)
	k1 := dbl(l, rb)
	k2 := dbl(k1, rb)
	var last []byte
	var body []byte
	if len(msg) > 0 && len(msg)%n == 0 {
		body = msg[:len(msg)-n]
		last = make([]byte, n)
		xorInto(last, msg[len(msg)-n:], k1)
	} else {
		full := len(msg) / n * n
		body = msg[:full]
		last = make([]byte, n)
		copy(last, msg[full:])
		last[len(msg)-full] = 0x80
		xorInto(last, last, k2)
	}
	x := append([]byte(nil), iv...)
	for i := 0; i < len(body); i += n {
		xorInto(x, x, body[i:i+n])
		b.Encrypt(x, x)
	}
	xorInto(x, x, last)
	b.Encrypt(x, x)
	return x
}

func dbl(l []byte, rb byte) []byte {
	out := make([]byte, len(l))
	for i := range l {
		out[i] = l[i] << 1
		if i+1 < len(l) {
			out[i] |= l[i+1] >> 7
		}
	}
	if l[0]&0x80 != 0 {
		out[len(out)-1] ^= rb
	}
	return out
}

// CRC16 is the ISO/IEC 14443-3 type A CRC (CRC_A: preset 6363, reflected
// polynomial 8408) that D40 secure messaging appends, least significant
// byte first.
func CRC16(b []byte) [2]byte {
	crc := uint16(0x6363)
	for _, v := range b {
		v ^= byte(crc)
		v ^= v << 4
		crc = crc>>8 ^ uint16(v)<<8 ^ uint16(v)<<3 ^ uint16(v)>>4
	}
	return [2]byte{byte(crc), byte(crc >> 8)}
}

// CRC32 is the CRC ISO/AES secure messaging appends: IEEE 802.3 without
// the final complement (CRC-32/JAMCRC), least significant byte first.
func CRC32(b []byte) [4]byte {
	var out [4]byte
	binary.LittleEndian.PutUint32(out[:], ^crc32.ChecksumIEEE(b))
	return out
}
