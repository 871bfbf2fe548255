package reader

import (
	"bytes"
	"context"
	"errors"
	"fmt"
)

// Technology names a card type precisely enough to choose a layout.
type Technology string

// The strings are stable: they appear in JSON output and job results, and
// reader/sim/chip uses the same names for its models.
const (
	TechUnknown   Technology = "unknown"
	TechClassic1K Technology = "mifare_classic_1k"
	TechClassic4K Technology = "mifare_classic_4k"
	TechUL11      Technology = "mifare_ultralight_ev1_mf0ul11"
	TechUL21      Technology = "mifare_ultralight_ev1_mf0ul21"
	TechNTAG213   Technology = "ntag213"
	TechNTAG215   Technology = "ntag215"
	TechNTAG216   Technology = "ntag216"
	// TechDESFire is a DESFire whose generation GetVersion did not name
	// (EV1, Light, or an answer this package does not know).
	TechDESFire    Technology = "mifare_desfire"
	TechDESFireEV2 Technology = "mifare_desfire_ev2"
	TechDESFireEV3 Technology = "mifare_desfire_ev3"
)

// Family groups technologies that share a layout.
type Family string

const (
	FamilyUnknown    Family = "unknown"
	FamilyClassic    Family = "mifare_classic"
	FamilyUltralight Family = "mifare_ultralight"
	FamilyDESFire    Family = "mifare_desfire"
)

// Family returns the layout family of t.
func (t Technology) Family() Family {
	switch t {
	case TechClassic1K, TechClassic4K:
		return FamilyClassic
	case TechUL11, TechUL21, TechNTAG213, TechNTAG215, TechNTAG216:
		return FamilyUltralight
	case TechDESFire, TechDESFireEV2, TechDESFireEV3:
		return FamilyDESFire
	}
	return FamilyUnknown
}

// Info describes the card on a reader.
type Info struct {
	Technology Technology
	UID        []byte
	ATR        []byte
}

// part3RID is the PC/SC registered application provider id that Part 3
// readers put in the ATR of a storage card, followed by the standard byte
// and a two-byte card name.
var part3RID = []byte{0xA0, 0x00, 0x00, 0x03, 0x06}

// ATRTechnology reads the card name a PC/SC Part 3 reader encodes in a
// storage card's ATR. Ultralight-family chips all report 00 03, so the
// answer for them is only the family; Identify refines it.
func ATRTechnology(atr []byte) Technology {
	i := bytes.Index(atr, part3RID)
	if i < 0 || len(atr) < i+len(part3RID)+3 {
		// ISO 14443-4 cards (DESFire) carry their historical bytes
		// instead; DESFire EV1+ answers 3B 81 80 01 80 80.
		if bytes.Equal(atr, []byte{0x3B, 0x81, 0x80, 0x01, 0x80, 0x80}) {
			return TechDESFire
		}
		return TechUnknown
	}
	name := uint16(atr[i+6])<<8 | uint16(atr[i+7])
	switch name {
	case 0x0001:
		return TechClassic1K
	case 0x0002:
		return TechClassic4K
	case 0x0003:
		return TechUL11 // family only; see Identify
	}
	return TechUnknown
}

// versionTech maps the storage-size byte of an NXP GET_VERSION reply.
var versionTech = map[[2]byte]Technology{
	{0x03, 0x0B}: TechUL11,
	{0x03, 0x0E}: TechUL21,
	{0x04, 0x0F}: TechNTAG213,
	{0x04, 0x11}: TechNTAG215,
	{0x04, 0x13}: TechNTAG216,
}

// Identify reads the UID and names the card's technology from the ATR and,
// for the Ultralight family, the chip's GET_VERSION reply.
func Identify(ctx context.Context, t *Tag) (Info, error) {
	info := Info{ATR: t.card.ATR(), Technology: ATRTechnology(t.card.ATR())}
	uid, err := t.UID(ctx)
	if err != nil {
		return info, err
	}
	info.UID = uid
	if info.Technology.Family() == FamilyDESFire {
		info.Technology, err = desfireGeneration(ctx, t)
		return info, err
	}
	if info.Technology.Family() != FamilyUltralight {
		return info, nil
	}
	v, err := t.Native(ctx, []byte{0x60})
	if errors.Is(err, ErrRefused) {
		// Another program may have left the chip halted: wake it and ask
		// once more before concluding it does not know GET_VERSION.
		if err = t.Reset(ctx); err != nil {
			return info, err
		}
		v, err = t.Native(ctx, []byte{0x60})
	}
	switch {
	case errors.Is(err, ErrRefused):
		// First-generation Ultralight and Ultralight C do not know
		// GET_VERSION and halt on it; wake the chip for the caller.
		info.Technology = TechUnknown
		if rerr := t.Reset(ctx); rerr != nil {
			return info, rerr
		}
		return info, nil
	case err != nil:
		return info, err
	}
	if len(v) != 8 || v[1] != 0x04 {
		info.Technology = TechUnknown
		return info, nil
	}
	tech, ok := versionTech[[2]byte{v[2], v[6]}]
	if !ok {
		tech = TechUnknown
	}
	info.Technology = tech
	return info, nil
}

// DESFire GetVersion: hardware vendor NXP, type DESFire, and the major
// versions of EV2 and EV3 (MF3D(H)x2 and MF3D(H)x3 datasheets, GetVersion).
const (
	versionVendorNXP   = 0x04
	versionTypeDESFire = 0x01
	versionMajorEV2    = 0x12
	versionMajorEV3    = 0x33
)

// desfireGeneration asks GetVersion, which answers in three frames
// (hardware, software, production data), and names the generation from
// the hardware frame.
func desfireGeneration(ctx context.Context, t *Tag) (Technology, error) {
	hw, st, err := t.Wrapped(ctx, 0x60, nil)
	if err != nil {
		return TechDESFire, err
	}
	// Read the other frames so the card is left between commands.
	for next := st; next == DESFireMoreFrames; {
		if _, next, err = t.Wrapped(ctx, DESFireMoreFrames, nil); err != nil {
			return TechDESFire, err
		}
	}
	if st != DESFireMoreFrames || len(hw) != 7 || hw[0] != versionVendorNXP || hw[1] != versionTypeDESFire {
		return TechDESFire, nil
	}
	switch hw[3] {
	case versionMajorEV2:
		return TechDESFireEV2, nil
	case versionMajorEV3:
		return TechDESFireEV3, nil
	}
	return TechDESFire, nil
}

// String formats the info without the UID: UIDs identify guests' cards and
// are only logged where the operator asked for them.
func (i Info) String() string {
	return fmt.Sprintf("%s (%d-byte UID)", i.Technology, len(i.UID))
}
