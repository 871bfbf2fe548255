package cardfmt

import (
	"fmt"

	"github.com/encoder-bridge/encoder-bridge/internal/aescmac"
)

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
	return aescmac.New(master).Diversify(m), nil
}
