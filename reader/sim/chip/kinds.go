package chip

import (
	"crypto/rand"
	"fmt"
)

// Card kinds accepted by New.
const (
	KindClassic1K  = "mifare_classic_1k"
	KindClassic4K  = "mifare_classic_4k"
	KindMF0UL11    = "mifare_ultralight_ev1_mf0ul11"
	KindMF0UL21    = "mifare_ultralight_ev1_mf0ul21"
	KindNTAG213    = "ntag213"
	KindNTAG215    = "ntag215"
	KindNTAG216    = "ntag216"
	KindDESFireEV2 = "mifare_desfire_ev2"
	KindDESFireEV3 = "mifare_desfire_ev3"
)

// Kinds lists the card kinds New understands.
func Kinds() []string {
	return []string{KindClassic1K, KindClassic4K, KindMF0UL11, KindMF0UL21, KindNTAG213, KindNTAG215, KindNTAG216,
		KindDESFireEV2, KindDESFireEV3}
}

// New builds a fresh card of the given kind. A nil uid draws a random one
// of the kind's natural length (4 bytes for Classic, 7 bytes starting with
// the NXP manufacturer code 0x04 for Ultralight/NTAG and DESFire); Classic
// also accepts a 7-byte UID. DESFire cards come as shipped: 4 KB, fixed
// UID, the 2K3DES PICC key (NewDESFire makes the other variants).
func New(kind string, uid []byte) (Card, error) {
	switch kind {
	case KindDESFireEV2, KindDESFireEV3:
		gen := DESFireEV2
		if kind == KindDESFireEV3 {
			gen = DESFireEV3
		}
		return NewDESFire(DESFireOptions{Generation: gen, Size: 4096}, uid)
	case KindClassic1K, KindClassic4K:
		if uid == nil {
			uid = randomUID(4)
		}
		if len(uid) != 4 && len(uid) != 7 {
			return nil, fmt.Errorf("chip: %s needs a 4- or 7-byte UID, got %d bytes", kind, len(uid))
		}
		if kind == KindClassic1K {
			return NewClassic1K(uid), nil
		}
		return NewClassic4K(uid), nil
	}
	m, ok := modelByKind(kind)
	if !ok {
		return nil, fmt.Errorf("chip: unknown card kind %q", kind)
	}
	if uid == nil {
		uid = randomUID(7)
	}
	if len(uid) != 7 {
		return nil, fmt.Errorf("chip: %s needs a 7-byte UID, got %d bytes", kind, len(uid))
	}
	return NewUltralight(m, uid), nil
}

func randomUID(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	if n == 7 {
		b[0] = 0x04 // NXP manufacturer code
		return b
	}
	// Avoid the values ISO/IEC 14443-3 reserves for UID0 of a single-size
	// UID: 0x88 is the cascade tag, xF is RFU, 0x08 marks a random ID,
	// which a fixed-UID card never answers.
	for b[0] == 0x88 || b[0] == 0x08 || b[0]&0x0F == 0x0F {
		_, _ = rand.Read(b[:1])
	}
	return b
}
