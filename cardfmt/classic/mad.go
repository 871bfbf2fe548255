package classic

import "fmt"

// MIFARE Application Directory version 1 (NXP AN10787): sector 0 blocks 1
// and 2 hold a CRC, an info byte and one 2-byte AID per sector 1..15. It is
// read with the public key A below, so any reader can find which sectors
// belong to which application without knowing their keys.

// madKeyA is AN10787's public key A of the MAD sector.
var madKeyA = []byte{0xA0, 0xA1, 0xA2, 0xA3, 0xA4, 0xA5}

// madSectors is how many sectors MAD1 describes (1..15). 4K cards keep the
// record in these too, so one directory serves both sizes.
const madSectors = 15

// aid is a MAD application identifier as stored: application code first,
// then function cluster code.
type aid [2]byte

var (
	aidFree = aid{0x00, 0x00}
	// AppAID is this system's application: function cluster 0x51 (access
	// control and security), application code 0xE8.
	AppAID = aid{0xE8, 0x51}
)

// madGPB is the general purpose byte of sector 0's trailer: DA (MAD
// available), MA (multi-application card), MAD version 1.
const madGPB = 0xC1

type mad struct {
	info byte
	aids [madSectors]aid // index 0 = sector 1
}

// madCRC is AN10787's CRC-8: polynomial 0x1D, preset 0xC7, MSB first,
// over the info byte and the AIDs.
func madCRC(b []byte) byte {
	crc := byte(0xC7)
	for _, v := range b {
		crc ^= v
		for i := 0; i < 8; i++ {
			if crc&0x80 != 0 {
				crc = crc<<1 ^ 0x1D
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// parseMAD decodes blocks 1 and 2 of sector 0 (32 bytes).
func parseMAD(b []byte) (*mad, error) {
	if len(b) != 32 {
		return nil, fmt.Errorf("MAD: %d bytes", len(b))
	}
	if madCRC(b[1:]) != b[0] {
		return nil, fmt.Errorf("MAD: CRC mismatch")
	}
	m := &mad{info: b[1]}
	for i := range m.aids {
		m.aids[i] = aid{b[2+2*i], b[3+2*i]}
	}
	return m, nil
}

func (m *mad) bytes() []byte {
	b := make([]byte, 32)
	b[1] = m.info
	for i, a := range m.aids {
		b[2+2*i], b[3+2*i] = a[0], a[1]
	}
	b[0] = madCRC(b[1:])
	return b
}

// sectorsWith lists the sectors (1..15) holding a, ascending.
func (m *mad) sectorsWith(a aid) []int {
	var s []int
	for i, v := range m.aids {
		if v == a {
			s = append(s, i+1)
		}
	}
	return s
}

// foreignApps reports whether the directory lists any application other
// than this system's (administrative codes 0x00xx do not count).
func (m *mad) foreignApps() bool {
	for _, v := range m.aids {
		if v != AppAID && v[1] != 0x00 {
			return true
		}
	}
	return false
}
