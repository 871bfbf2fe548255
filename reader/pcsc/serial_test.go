package pcsc

import (
	"errors"
	"testing"

	"github.com/encoder-bridge/encoder-bridge/reader"
)

func TestSerialNumber(t *testing.T) {
	svc := newFakeService(true, "A", "B", "C", "D")
	svc.serials = map[string][]byte{
		"A": []byte("RR123456\x00\x00"),
		"B": {0x01, 0x02, 0xFE},
		"C": []byte("  \x00"),
	}
	svc.setCard("A", true)
	c, _ := openFake(t, svc)
	ctx := t.Context()

	// A card held exclusively does not stand in the way.
	card, err := c.Connect(ctx, "A")
	if err != nil {
		t.Fatal(err)
	}
	defer card.Close()

	for _, tc := range []struct {
		reader string
		want   string
		err    error
	}{
		{"A", "RR123456", nil},
		{"B", "0102fe", nil},
		{"C", "", reader.ErrNoSerial},
		{"D", "", reader.ErrNoSerial},
		{"E", "", reader.ErrUnknownReader},
	} {
		got, err := c.SerialNumber(ctx, tc.reader)
		if got != tc.want || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Errorf("SerialNumber(%q) = %q, %v; want %q, %v", tc.reader, got, err, tc.want, tc.err)
		}
	}
	if _, err := card.Transmit(ctx, []byte{0xFF, 0xCA, 0, 0, 0}); err != nil {
		t.Errorf("the exclusive connection broke: %v", err)
	}
}

// A reader that answers no serial because the service is gone must not be
// mistaken for one without a serial: that would change the encoder's id.
func TestSerialNumberServiceDown(t *testing.T) {
	svc := newFakeService(true, "A")
	svc.serials = map[string][]byte{"A": []byte("RR1")}
	c, _ := openFake(t, svc)
	ctx := t.Context()
	if s, err := c.SerialNumber(ctx, "A"); err != nil || s != "RR1" {
		t.Fatalf("SerialNumber = %q, %v", s, err)
	}
	svc.stop()
	_, err := c.SerialNumber(ctx, "A")
	if !errors.Is(err, reader.ErrNoService) || errors.Is(err, reader.ErrNoSerial) {
		t.Errorf("service down: %v, want ErrNoService", err)
	}
	// Back, on a pooled context from before the restart.
	svc.start("A")
	if s, err := c.SerialNumber(ctx, "A"); err != nil || s != "RR1" {
		t.Errorf("after restart: %q, %v", s, err)
	}
}
