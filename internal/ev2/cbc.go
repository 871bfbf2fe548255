package ev2

import (
	"crypto/aes"
	"crypto/cipher"
	"errors"
)

// ErrPadding reports decrypted data whose ISO/IEC 9797-1 method 2 padding
// is missing or malformed: the wrong key, a wrong IV or a modified
// cryptogram.
var ErrPadding = errors.New("ev2: bad padding")

// ErrBlockSize reports a cryptogram that is not a whole number of AES
// blocks.
var ErrBlockSize = errors.New("ev2: cryptogram not a multiple of 16 bytes")

// Pad appends ISO/IEC 9797-1 padding method 2: 0x80, then zeros up to a
// multiple of 16. EV2 secure messaging always pads, so whole blocks gain
// a full block of padding.
func Pad(b []byte) []byte {
	n := (len(b)/aes.BlockSize + 1) * aes.BlockSize
	out := make([]byte, n)
	copy(out, b)
	out[len(b)] = 0x80
	return out
}

// Unpad removes ISO/IEC 9797-1 method 2 padding from whole blocks.
func Unpad(b []byte) ([]byte, error) {
	if len(b) == 0 || len(b)%aes.BlockSize != 0 {
		return nil, ErrBlockSize
	}
	for i := len(b) - 1; i >= len(b)-aes.BlockSize; i-- {
		switch b[i] {
		case 0x00:
			continue
		case 0x80:
			return b[:i], nil
		}
		return nil, ErrPadding
	}
	return nil, ErrPadding
}

// EncryptCBC encrypts whole blocks with AES-128-CBC.
func EncryptCBC(key, iv [16]byte, plain []byte) ([]byte, error) {
	if len(plain)%aes.BlockSize != 0 {
		return nil, ErrBlockSize
	}
	out := make([]byte, len(plain))
	cipher.NewCBCEncrypter(newBlock(key), iv[:]).CryptBlocks(out, plain)
	return out, nil
}

// DecryptCBC decrypts whole blocks with AES-128-CBC.
func DecryptCBC(key, iv [16]byte, ct []byte) ([]byte, error) {
	if len(ct)%aes.BlockSize != 0 {
		return nil, ErrBlockSize
	}
	out := make([]byte, len(ct))
	cipher.NewCBCDecrypter(newBlock(key), iv[:]).CryptBlocks(out, ct)
	return out, nil
}
