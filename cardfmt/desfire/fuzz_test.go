package desfire

import (
	"context"
	"testing"

	"github.com/encoder-bridge/encoder-bridge/reader"
)

// answers is a card that answers each command with the next slice of the
// fuzz input: a length byte, a status byte, then data.
type answers struct{ b []byte }

func (a *answers) Wrapped(_ context.Context, _ byte, _ []byte) ([]byte, byte, error) {
	if len(a.b) < 2 {
		return nil, 0, reader.ErrCardRemoved
	}
	n, st := int(a.b[0]), a.b[1]
	a.b = a.b[2:]
	n = min(n, len(a.b))
	out := a.b[:n]
	a.b = a.b[n:]
	return out, st, nil
}

// FuzzScanAndEncode feeds arbitrary card answers to Scan and Encode: a
// card's answers come from outside. Neither may panic, and no answers
// without the keys make a valid record.
func FuzzScanAndEncode(f *testing.F) {
	f.Add([]byte{0, 0x00, 1, 0x00, 1, 0x01, 16, 0xAF, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15})
	f.Add([]byte{0, 0xA0})
	f.Add([]byte{0, 0x00, 1, 0x00, 0x01})
	// The current AID missing, the legacy one there, FreeMemory.
	f.Add([]byte{0, 0xA0, 0, 0x00, 3, 0x00, 0x00, 0x10, 0x00, 0, 0x00})
	ks := keySet(f, "site", 1)
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, uid := range [][]byte{uidA, {0x08, 1, 2, 3}} {
			info := reader.Info{Technology: reader.TechDESFireEV2, UID: uid}
			s, err := Scan(context.Background(), &answers{b: data}, info, ks)
			if err == nil && s.Valid() {
				t.Fatal("a valid record from made-up answers")
			}
			_ = errOf(Encode(context.Background(), &answers{b: data}, info, ks, credential("1001", 0)))
		}
	})
}
