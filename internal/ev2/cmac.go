package ev2

import (
	"crypto/aes"
	"crypto/cipher"

	"github.com/encoder-bridge/encoder-bridge/internal/aescmac"
)

// CMAC returns the RFC 4493 AES-CMAC of msg under the AES-128 key.
func CMAC(key [16]byte, msg []byte) [16]byte { return aescmac.Sum(key, msg) }

func newBlock(key [16]byte) cipher.Block {
	b, err := aes.NewCipher(key[:])
	if err != nil {
		// Only a key length other than 16, 24 or 32 bytes fails.
		panic("ev2: " + err.Error())
	}
	return b
}

// xor sets dst[i] ^= src[i] for i < len(dst).
func xor(dst, src []byte) {
	for i := range dst {
		dst[i] ^= src[i]
	}
}
