package reader_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/encoder-bridge/encoder-bridge/reader"
	"github.com/encoder-bridge/encoder-bridge/reader/sim"
	"github.com/encoder-bridge/encoder-bridge/reader/sim/chip"
)

func TestATRTechnology(t *testing.T) {
	tests := []struct {
		atr  string
		want reader.Technology
	}{
		{"3B8F8001804F0CA000000306030001000000006A", reader.TechClassic1K},
		{"3B8F8001804F0CA0000003060300020000000069", reader.TechClassic4K},
		{"3B8F8001804F0CA0000003060300030000000068", reader.TechUL11},
		{"3B8F8001804F0CA000000306030099000000006A", reader.TechUnknown},
		{"3B818001808", reader.TechUnknown},
		{"3B8180018080", reader.TechDESFire},
		{"", reader.TechUnknown},
		{"3B8F8001804F0CA0000003", reader.TechUnknown}, // truncated
	}
	for _, tt := range tests {
		if got := reader.ATRTechnology(unhex(t, tt.atr)); got != tt.want {
			t.Errorf("ATRTechnology(%s) = %s, want %s", tt.atr, got, tt.want)
		}
	}
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	if len(s)%2 == 1 {
		s = s[:len(s)-1]
	}
	b := make([]byte, len(s)/2)
	for i := range b {
		var v byte
		for _, c := range s[2*i : 2*i+2] {
			v <<= 4
			switch {
			case c >= '0' && c <= '9':
				v |= byte(c - '0')
			case c >= 'A' && c <= 'F':
				v |= byte(c - 'A' + 10)
			default:
				t.Fatalf("bad hex %q", s)
			}
		}
		b[i] = v
	}
	return b
}

// connect puts a new card of kind on a simulated reader called name.
func connect(t *testing.T, name, kind string) (*reader.Tag, chip.Card) {
	t.Helper()
	c, err := chip.New(kind, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := sim.New()
	s.Plug(name).Insert(c)
	card, err := s.Connect(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { card.Close() })
	return reader.NewTag(card), c
}

func TestIdentify(t *testing.T) {
	for _, name := range []string{"HID Global OMNIKEY 5022 Smart Card Reader 00 00", "ACS ACR122U PICC Interface 00 00"} {
		for _, kind := range chip.Kinds() {
			t.Run(name+"/"+kind, func(t *testing.T) {
				tag, c := connect(t, name, kind)
				info, err := reader.Identify(context.Background(), tag)
				if err != nil {
					t.Fatal(err)
				}
				if string(info.Technology) != kind {
					t.Errorf("technology %s, want %s", info.Technology, kind)
				}
				if !bytes.Equal(info.UID, c.UID()) {
					t.Errorf("UID % X, want % X", info.UID, c.UID())
				}
				if info.Technology.Family() == reader.FamilyUnknown {
					t.Error("no family")
				}
			})
		}
	}
}

func TestTagErrors(t *testing.T) {
	ctx := context.Background()
	tag, _ := connect(t, "Sim 00", "mifare_classic_1k")
	if err := tag.LoadKey(ctx, 0, []byte{1, 2, 3, 4, 5, 6}); err != nil {
		t.Fatal(err)
	}
	if err := tag.Authenticate(ctx, 3, reader.KeyA, 0); !errors.Is(err, reader.ErrAuthFailed) {
		t.Fatalf("wrong key: %v", err)
	}
	if err := tag.LoadKey(ctx, 0, []byte{1, 2}); err == nil {
		t.Fatal("short key accepted")
	}
	if err := tag.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := tag.ReadBinary(ctx, 4, 16); !errors.Is(err, reader.ErrRefused) {
		t.Fatalf("unauthenticated read: %v", err)
	}
	if _, err := tag.Native(ctx, []byte{0x60}); !errors.Is(err, reader.ErrRefused) {
		t.Fatalf("native frame to a Classic card: %v", err)
	}
	if _, err := tag.Native(ctx, nil); err == nil {
		t.Fatal("empty frame accepted")
	}
}

func TestNoStatusWordIsRemoval(t *testing.T) {
	tag := reader.NewTag(shortCard{})
	_, err := tag.UID(context.Background())
	if !errors.Is(err, reader.ErrCardRemoved) {
		t.Fatalf("got %v", err)
	}
}

// shortCard answers every APDU with no status word, as pcscd does for a
// card pulled away mid-transmit.
type shortCard struct{}

func (shortCard) Reader() string                                   { return "short" }
func (shortCard) ATR() []byte                                      { return nil }
func (shortCard) Reset(context.Context) error                      { return nil }
func (shortCard) Close() error                                     { return nil }
func (shortCard) Transmit(context.Context, []byte) ([]byte, error) { return []byte{}, nil }

// replyCard answers every APDU with a fixed response.
type replyCard struct{ resp []byte }

func (replyCard) Reader() string              { return "reply" }
func (replyCard) ATR() []byte                 { return nil }
func (replyCard) Reset(context.Context) error { return nil }
func (replyCard) Close() error                { return nil }
func (r replyCard) Transmit(context.Context, []byte) ([]byte, error) {
	return r.resp, nil
}

func TestTransparentReplies(t *testing.T) {
	tests := []struct {
		name string
		resp string
		want string
		err  error
	}{
		{"ok", "C00300900092010096020000970200019000", "0001", nil},
		{"card NAK", "C003016401" + "9000", "", reader.ErrRefused},
		{"no data object", "C0030090009000", "", reader.ErrRefused},
		{"truncated TLV", "C00300909700" + "9000", "", reader.ErrRefused},
		{"long reply, 81 nn", "C003009000" + "978180" + strings.Repeat("AB", 128) + "9000", strings.Repeat("AB", 128), nil},
		{"long reply, 82 nn nn", "C003009000" + "97820100" + strings.Repeat("CD", 256) + "9000", strings.Repeat("CD", 256), nil},
		{"long reply, truncated", "C003009000" + "978180" + strings.Repeat("AB", 127) + "9000", "", reader.ErrRefused},
		{"length of 83 bytes", "C003009000" + "9783000001" + "AB" + "9000", "", reader.ErrRefused},
		{"error status word", "6A81", "", reader.ErrUnsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tag := reader.NewTag(replyCard{resp: unhex(t, tt.resp)})
			got, err := tag.Native(context.Background(), []byte{0x30, 0x04})
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil || !bytes.Equal(got, unhex(t, tt.want)) {
				t.Fatalf("got % X, %v", got, err)
			}
		})
	}
}

func FuzzNativeReply(f *testing.F) {
	f.Add([]byte{0xC0, 0x03, 0x00, 0x90, 0x00, 0x97, 0x01, 0x0A, 0x90, 0x00})
	f.Add([]byte{0xD5, 0x43, 0x00, 0x0A, 0x90, 0x00})
	f.Fuzz(func(t *testing.T, resp []byte) {
		for _, name := range []string{"part3", "ACR122"} {
			tag := reader.NewTag(namedReply{name: name, resp: resp})
			// Must not panic; any reply must be inside the response.
			got, err := tag.Native(context.Background(), []byte{0x60})
			if err == nil && !bytes.Contains(resp, got) {
				t.Fatalf("reply % X not taken from % X", got, resp)
			}
		}
	})
}

type namedReply struct {
	name string
	resp []byte
}

func (n namedReply) Reader() string            { return n.name }
func (namedReply) ATR() []byte                 { return nil }
func (namedReply) Reset(context.Context) error { return nil }
func (namedReply) Close() error                { return nil }
func (n namedReply) Transmit(context.Context, []byte) ([]byte, error) {
	return n.resp, nil
}

// With two cards in the field, the reader may select the other one when a
// reset re-activates it. Once the UID is known, Reset notices; before,
// there is nothing to compare with.
func TestResetNoticesAnotherCard(t *testing.T) {
	ctx := context.Background()
	open := func(t *testing.T, kind string) (*reader.Tag, *chip.Pair) {
		t.Helper()
		a, _ := chip.New(kind, nil)
		b, _ := chip.New(kind, nil)
		pair := chip.NewPair(a, b)
		s := sim.New()
		s.Plug("R").Insert(pair)
		card, err := s.Connect(ctx, "R")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { card.Close() })
		return reader.NewTag(card), pair
	}

	t.Run("same card", func(t *testing.T) {
		tag, pair := open(t, "mifare_classic_1k")
		uid, _ := tag.UID(ctx)
		pair.SwapAtReset(0)
		if err := tag.Reset(ctx); err != nil {
			t.Fatal(err)
		}
		if got, _ := tag.UID(ctx); !bytes.Equal(got, uid) {
			t.Fatal("UID changed")
		}
	})
	t.Run("another card", func(t *testing.T) {
		tag, pair := open(t, "mifare_classic_1k")
		if _, err := tag.UID(ctx); err != nil {
			t.Fatal(err)
		}
		pair.SwapAtReset(1)
		if err := tag.Reset(ctx); !errors.Is(err, reader.ErrCardChanged) {
			t.Fatalf("Reset: %v, want ErrCardChanged", err)
		}
	})
	t.Run("UID not read yet", func(t *testing.T) {
		tag, pair := open(t, "mifare_classic_1k")
		pair.SwapAtReset(1)
		if err := tag.Reset(ctx); err != nil {
			t.Fatal(err)
		}
	})
	// Identify resets a chip that refuses GET_VERSION (halted by another
	// program) and asks again: not of another card.
	t.Run("identify", func(t *testing.T) {
		tag, pair := open(t, "ntag213")
		if _, err := tag.Native(ctx, []byte{0x30, 0xFF}); !errors.Is(err, reader.ErrRefused) {
			t.Fatalf("READ past memory: %v, want a NAK", err)
		}
		pair.SwapAtReset(1)
		if _, err := reader.Identify(ctx, tag); !errors.Is(err, reader.ErrCardChanged) {
			t.Fatalf("Identify: %v, want ErrCardChanged", err)
		}
	})
}

// FastRead answers exactly the pages asked, in commands of at most
// FastReadPages pages, through both native paths.
func TestFastRead(t *testing.T) {
	ctx := context.Background()
	for _, name := range []string{"HID Global OMNIKEY 5022 Smart Card Reader 00 00", "ACS ACR122U PICC Interface 00 00"} {
		for _, r := range []struct{ first, last int }{{4, 4}, {4, 35}, {4, 36}, {0, 0xE6}} {
			t.Run(fmt.Sprintf("%s/%d-%d", name, r.first, r.last), func(t *testing.T) {
				tag, c := connect(t, name, "ntag216")
				u := c.(*chip.Ultralight)
				got, err := tag.FastRead(ctx, r.first, r.last)
				if err != nil {
					t.Fatal(err)
				}
				var want []byte
				for p := r.first; p <= r.last; p++ {
					want = append(want, u.Page(p)...)
				}
				if p := u.ConfigPage() + 2; r.last >= p {
					// PWD and PACK read as zeros.
					clear(want[(p-r.first)*4 : (p-r.first+2)*4])
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("got % X\nwant % X", got, want)
				}
			})
		}
	}
	tag, _ := connect(t, "Sim 00", "ntag213")
	if _, err := tag.FastRead(ctx, 5, 4); err == nil {
		t.Fatal("range with first > last accepted")
	}
	// A reply of another length than asked (a reader repeating bytes).
	short := reader.NewTag(replyCard{resp: unhex(t, "C003009000"+"9705"+"0102030405"+"9000")})
	if _, err := short.FastRead(ctx, 4, 4); !errors.Is(err, reader.ErrRefused) {
		t.Fatalf("5-byte reply to a 1-page read: %v", err)
	}
}
