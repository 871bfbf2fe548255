package cardfmt

import (
	"crypto/aes"
	"crypto/cipher"
)

// CMAC returns the RFC 4493 AES-CMAC of msg under the AES-128 key.
func CMAC(key [16]byte, msg []byte) [16]byte {
	return newCMAC(key).sum(msg)
}

// cmacKey is an AES-128 cipher with its CMAC subkeys (RFC 4493 §2.3).
type cmacKey struct {
	block  cipher.Block
	k1, k2 [aes.BlockSize]byte
}

func newCMAC(key [16]byte) *cmacKey {
	block, err := aes.NewCipher(key[:])
	if err != nil {
		// Only a key length other than 16, 24 or 32 bytes fails.
		panic("cardfmt: " + err.Error())
	}
	c := &cmacKey{block: block}
	var l [aes.BlockSize]byte
	block.Encrypt(l[:], l[:])
	c.k1 = dbl(l)
	c.k2 = dbl(c.k1)
	return c
}

// dbl multiplies by x in GF(2^128) with the CMAC polynomial: shift left by
// one bit and, if the top bit was set, XOR 0x87 into the last byte. The
// reduction is applied with a mask so that the time does not depend on
// the key.
func dbl(in [aes.BlockSize]byte) [aes.BlockSize]byte {
	var out [aes.BlockSize]byte
	for i := 0; i < aes.BlockSize-1; i++ {
		out[i] = in[i]<<1 | in[i+1]>>7
	}
	out[aes.BlockSize-1] = in[aes.BlockSize-1]<<1 ^ (0x87 & -(in[0] >> 7))
	return out
}

// sum is RFC 4493 §2.4: CBC-MAC with a zero IV whose last block is XORed
// with K1 when it is complete and with K2 after 10* padding otherwise.
func (c *cmacKey) sum(msg []byte) [16]byte {
	var x [aes.BlockSize]byte
	n := len(msg)
	// Every block but the last goes through plain CBC.
	for n > aes.BlockSize {
		subtleXOR(x[:], msg[:aes.BlockSize])
		c.block.Encrypt(x[:], x[:])
		msg = msg[aes.BlockSize:]
		n -= aes.BlockSize
	}
	var last [aes.BlockSize]byte
	copy(last[:], msg)
	if n == aes.BlockSize {
		subtleXOR(last[:], c.k1[:])
	} else {
		last[n] = 0x80
		subtleXOR(last[:], c.k2[:])
	}
	subtleXOR(x[:], last[:])
	c.block.Encrypt(x[:], x[:])
	return x
}

// subtleXOR sets dst[i] ^= src[i] for i < len(dst).
func subtleXOR(dst, src []byte) {
	for i := range dst {
		dst[i] ^= src[i]
	}
}
