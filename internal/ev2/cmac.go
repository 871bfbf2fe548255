package ev2

import (
	"crypto/aes"
	"crypto/cipher"
)

// CMAC returns the RFC 4493 AES-CMAC of msg under the AES-128 key.
func CMAC(key [16]byte, msg []byte) [16]byte {
	return newCMAC(newBlock(key)).sum(msg)
}

func newBlock(key [16]byte) cipher.Block {
	b, err := aes.NewCipher(key[:])
	if err != nil {
		// Only a key length other than 16, 24 or 32 bytes fails.
		panic("ev2: " + err.Error())
	}
	return b
}

// cmac is an AES cipher with its CMAC subkeys (RFC 4493 §2.3).
type cmac struct {
	block  cipher.Block
	k1, k2 [aes.BlockSize]byte
}

func newCMAC(block cipher.Block) *cmac {
	c := &cmac{block: block}
	var l [aes.BlockSize]byte
	block.Encrypt(l[:], l[:])
	c.k1 = dbl(l)
	c.k2 = dbl(c.k1)
	return c
}

// dbl multiplies by x in GF(2^128): shift left one bit and, if the top
// bit was set, XOR 0x87 into the last byte, with a mask so that the time
// does not depend on the key.
func dbl(in [aes.BlockSize]byte) [aes.BlockSize]byte {
	var out [aes.BlockSize]byte
	for i := 0; i < aes.BlockSize-1; i++ {
		out[i] = in[i]<<1 | in[i+1]>>7
	}
	out[aes.BlockSize-1] = in[aes.BlockSize-1]<<1 ^ (0x87 & -(in[0] >> 7))
	return out
}

// sum is RFC 4493 §2.4.
func (c *cmac) sum(msg []byte) [16]byte {
	var x [aes.BlockSize]byte
	for len(msg) > aes.BlockSize {
		xor(x[:], msg[:aes.BlockSize])
		c.block.Encrypt(x[:], x[:])
		msg = msg[aes.BlockSize:]
	}
	var last [aes.BlockSize]byte
	n := copy(last[:], msg)
	if n == aes.BlockSize {
		xor(last[:], c.k1[:])
	} else {
		last[n] = 0x80
		xor(last[:], c.k2[:])
	}
	xor(x[:], last[:])
	c.block.Encrypt(x[:], x[:])
	return x
}

// xor sets dst[i] ^= src[i] for i < len(dst).
func xor(dst, src []byte) {
	for i := range dst {
		dst[i] ^= src[i]
	}
}
