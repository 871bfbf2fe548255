// Package aescmac is AES-CMAC (RFC 4493) and NXP AN10922's AES-128 key
// diversification, which is CMAC with different padding. The credential
// record, the per-card keys and DESFire's EV2 secure messaging all use it;
// one implementation keeps them in step.
package aescmac

import (
	"crypto/aes"
	"crypto/cipher"
)

// Key is an AES key with its CMAC subkeys (RFC 4493 §2.3). It holds key
// material: never log or print it.
type Key struct {
	block  cipher.Block
	k1, k2 [aes.BlockSize]byte
}

// New prepares the AES-128 key for CMAC.
func New(key [16]byte) *Key {
	block, err := aes.NewCipher(key[:])
	if err != nil {
		// Only a key length other than 16, 24 or 32 bytes fails.
		panic("aescmac: " + err.Error())
	}
	return FromBlock(block)
}

// FromBlock prepares an AES cipher for CMAC.
func FromBlock(block cipher.Block) *Key {
	k := &Key{block: block}
	var l [aes.BlockSize]byte
	block.Encrypt(l[:], l[:])
	k.k1 = dbl(l)
	k.k2 = dbl(k.k1)
	return k
}

// Sum returns the RFC 4493 AES-CMAC of msg under the AES-128 key.
func Sum(key [16]byte, msg []byte) [16]byte { return New(key).Sum(msg) }

// Sum is RFC 4493 §2.4: CBC-MAC with a zero IV whose last block is XORed
// with K1 when it is complete and with K2 after 10* padding otherwise.
func (k *Key) Sum(msg []byte) [16]byte {
	var x [aes.BlockSize]byte
	for len(msg) > aes.BlockSize {
		xor(x[:], msg[:aes.BlockSize])
		k.block.Encrypt(x[:], x[:])
		msg = msg[aes.BlockSize:]
	}
	var last [aes.BlockSize]byte
	n := copy(last[:], msg)
	if n == aes.BlockSize {
		xor(last[:], k.k1[:])
	} else {
		last[n] = 0x80
		xor(last[:], k.k2[:])
	}
	xor(x[:], last[:])
	k.block.Encrypt(x[:], x[:])
	return x
}

// Diversify is AN10922 §2.2's AES-128 diversification of the key with
// the input d = 0x01 || m, m 1 to 31 bytes (the caller checks): d padded
// to two blocks with 0x80 0x00… (second block XORed with K2), or taken as
// it is when it fills them (XORed with K1), then CBC-MAC with a zero IV.
// It differs from Sum(0x01||m) for inputs shorter than 15 bytes.
func (k *Key) Diversify(m []byte) [16]byte {
	var d [2 * aes.BlockSize]byte
	d[0] = 0x01
	n := 1 + copy(d[1:], m)
	if n == len(d) {
		xor(d[aes.BlockSize:], k.k1[:])
	} else {
		d[n] = 0x80
		xor(d[aes.BlockSize:], k.k2[:])
	}
	var x [aes.BlockSize]byte
	k.block.Encrypt(x[:], d[:aes.BlockSize])
	xor(x[:], d[aes.BlockSize:])
	k.block.Encrypt(x[:], x[:])
	clear(d[:])
	return x
}

// Subkeys returns K1 and K2, for checking them against published vectors.
func (k *Key) Subkeys() (k1, k2 [16]byte) { return k.k1, k.k2 }

// dbl multiplies by x in GF(2^128) with the CMAC polynomial: shift left by
// one bit and, if the top bit was set, XOR 0x87 into the last byte, with a
// mask so that the time does not depend on the key.
func dbl(in [aes.BlockSize]byte) [aes.BlockSize]byte {
	var out [aes.BlockSize]byte
	for i := 0; i < aes.BlockSize-1; i++ {
		out[i] = in[i]<<1 | in[i+1]>>7
	}
	out[aes.BlockSize-1] = in[aes.BlockSize-1]<<1 ^ (0x87 & -(in[0] >> 7))
	return out
}

// xor sets dst[i] ^= src[i] for i < len(dst).
func xor(dst, src []byte) {
	for i := range dst {
		dst[i] ^= src[i]
	}
}
