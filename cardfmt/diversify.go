package cardfmt

import (
	"crypto/aes"
	"fmt"
)

// an10922AES128 is the diversification constant AN10922 §2.2 puts before
// the input when the diversified key is an AES-128 key.
const an10922AES128 = 0x01

// Limits of the diversification input M (AN10922 §2.2).
const (
	minDiversifyInput = 1
	maxDiversifyInput = 31
)

// DiversifyAES128 derives an AES-128 key from master and the
// diversification input m as NXP AN10922 §2.2 specifies:
//
//	D = 0x01 || m                    (2 to 32 bytes)
//	if len(D) < 32: D = D || 0x80 || 0x00…, padded to 32 bytes, and the
//	                second block is XORed with CMAC subkey K2
//	else:           the second block is XORed with CMAC subkey K1
//	key = AES-CBC-MAC(master, D) with a zero IV
//
// This is AES-CMAC of 0x01||m except that a short input is padded to two
// blocks rather than to one, so it is not the same as CMAC(master,
// 0x01||m) for inputs shorter than 15 bytes. m must be 1 to 31 bytes.
func DiversifyAES128(master [16]byte, m []byte) ([16]byte, error) {
	if len(m) < minDiversifyInput || len(m) > maxDiversifyInput {
		return [16]byte{}, fmt.Errorf("diversification input must be %d to %d bytes, got %d",
			minDiversifyInput, maxDiversifyInput, len(m))
	}
	return newCMAC(master).diversify(m), nil
}

// diversify is DiversifyAES128 for an m already known to be 1 to 31 bytes.
func (c *cmacKey) diversify(m []byte) [16]byte {
	var d [2 * aes.BlockSize]byte
	d[0] = an10922AES128
	n := 1 + copy(d[1:], m)
	if n == len(d) {
		subtleXOR(d[aes.BlockSize:], c.k1[:])
	} else {
		d[n] = 0x80
		subtleXOR(d[aes.BlockSize:], c.k2[:])
	}
	var x [aes.BlockSize]byte
	c.block.Encrypt(x[:], d[:aes.BlockSize])
	subtleXOR(x[:], d[aes.BlockSize:])
	c.block.Encrypt(x[:], x[:])
	clear(d[:])
	return x
}
