package cardfmt

import "github.com/encoder-bridge/encoder-bridge/internal/aescmac"

// CMAC returns the RFC 4493 AES-CMAC of msg under the AES-128 key.
func CMAC(key [16]byte, msg []byte) [16]byte { return aescmac.Sum(key, msg) }
