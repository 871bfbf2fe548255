package reader_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/encoder-bridge/encoder-bridge/reader"
	"github.com/encoder-bridge/encoder-bridge/reader/sim"
	"github.com/encoder-bridge/encoder-bridge/reader/sim/chip"
)

// fakeVersion is a card whose GetVersion hardware frame is given: an EV1
// or a DESFire Light answers like this.
type fakeVersion struct {
	chip.Card
	hw    []byte
	frame int
}

func (f *fakeVersion) Transmit(apdu []byte) ([]byte, error) {
	if len(apdu) >= 2 && apdu[0] == 0x90 && (apdu[1] == 0x60 || apdu[1] == 0xAF) {
		if apdu[1] == 0x60 {
			f.frame = 0
		}
		f.frame++
		if f.frame <= 2 { // hardware, then software: the same layout
			return append(bytes.Clone(f.hw), 0x91, 0xAF), nil
		}
		return append(make([]byte, 14), 0x91, 0x00), nil
	}
	return f.Card.Transmit(apdu)
}

// Identify names DESFire EV2 and EV3 from GetVersion, every size, random
// UID or not, and leaves other generations as the family alone.
func TestIdentifyDESFire(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		opts   chip.DESFireOptions
		hw     string // replaces the hardware frame when set
		want   reader.Technology
		random bool
	}{
		{name: "EV2 2K", opts: chip.DESFireOptions{Generation: chip.DESFireEV2, Size: 2048}, want: reader.TechDESFireEV2},
		{name: "EV2 8K random UID", opts: chip.DESFireOptions{Generation: chip.DESFireEV2, Size: 8192, RandomUID: true}, want: reader.TechDESFireEV2, random: true},
		{name: "EV3 4K", opts: chip.DESFireOptions{Generation: chip.DESFireEV3, Size: 4096}, want: reader.TechDESFireEV3},
		{name: "EV3 2K random UID AES PICC", opts: chip.DESFireOptions{Generation: chip.DESFireEV3, Size: 2048, RandomUID: true, AESPICCKey: true}, want: reader.TechDESFireEV3, random: true},
		{name: "EV1", opts: chip.DESFireOptions{Generation: chip.DESFireEV2, Size: 4096}, hw: "04010101001805", want: reader.TechDESFire},
		{name: "Light", opts: chip.DESFireOptions{Generation: chip.DESFireEV2, Size: 4096}, hw: "04080130001305", want: reader.TechDESFire},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := chip.NewDESFire(tc.opts, nil)
			if err != nil {
				t.Fatal(err)
			}
			var c chip.Card = d
			if tc.hw != "" {
				c = &fakeVersion{Card: d, hw: unhex(t, tc.hw)}
			}
			s := sim.New()
			s.Plug("Sim 00").Insert(c)
			card, err := s.Connect(ctx, "Sim 00")
			if err != nil {
				t.Fatal(err)
			}
			defer card.Close()
			tag := reader.NewTag(card)
			info, err := reader.Identify(ctx, tag)
			if err != nil {
				t.Fatal(err)
			}
			if info.Technology != tc.want || info.Technology.Family() != reader.FamilyDESFire {
				t.Errorf("technology %s (%s), want %s", info.Technology, info.Technology.Family(), tc.want)
			}
			if tc.random != (len(info.UID) == 4 && info.UID[0] == 0x08) {
				t.Errorf("UID % X, random %v", info.UID, tc.random)
			}
			// Identify read every frame: the next command is answered.
			if _, st, err := tag.Wrapped(ctx, 0x6A, nil); err != nil || st != 0x00 {
				t.Errorf("GetApplicationIDs after Identify: %02X, %v", st, err)
			}
		})
	}
}
