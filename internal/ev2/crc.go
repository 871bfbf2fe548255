package ev2

import (
	"encoding/binary"
	"hash/crc32"
)

// CRC32 is the checksum DESFire EV1 secure messaging and ChangeKey of a
// key other than the authenticated one append, least significant byte
// first: the IEEE 802.3 CRC-32 (reflected, initial value FFFFFFFF)
// without the final complement, known as CRC-32/JAMCRC.
func CRC32(b []byte) [4]byte {
	var out [4]byte
	binary.LittleEndian.PutUint32(out[:], ^crc32.ChecksumIEEE(b))
	return out
}
