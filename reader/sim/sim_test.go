package sim

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/encoder-bridge/encoder-bridge/reader"
	"github.com/encoder-bridge/encoder-bridge/reader/sim/chip"
)

var getUID = []byte{0xFF, 0xCA, 0x00, 0x00, 0x00}

func newCard(t *testing.T) chip.Card {
	c, err := chip.New("mifare_classic_1k", nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestReadersAndPnP(t *testing.T) {
	ctx := context.Background()
	s := New()
	got := make(chan []string, 1)
	go func() {
		names, err := s.WaitReadersChange(ctx, nil)
		if err != nil {
			t.Error(err)
		}
		got <- names
	}()
	s.Plug("A")
	if names := <-got; !slices.Equal(names, []string{"A"}) {
		t.Fatalf("change = %v", names)
	}
	s.Plug("B")
	names, _ := s.Readers(ctx)
	if !slices.Equal(names, []string{"A", "B"}) {
		t.Fatalf("readers = %v", names)
	}
	// Same set in another order is no change.
	wctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := s.WaitReadersChange(wctx, []string{"B", "A"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("unchanged set: %v", err)
	}
	s.Unplug("A")
	names, _ = s.Readers(ctx)
	if !slices.Equal(names, []string{"B"}) {
		t.Fatalf("after unplug = %v", names)
	}
}

func TestWaitCard(t *testing.T) {
	ctx := context.Background()
	s := New()
	r := s.Plug("A")
	done := make(chan error, 1)
	// Each change comes once the waiter is blocked, so the blocking path
	// is the one tested.
	go func() { done <- s.WaitCard(ctx, "A", true) }()
	<-s.Waiting(1)
	r.Insert(newCard(t))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	go func() { done <- s.WaitCard(ctx, "A", false) }()
	<-s.Waiting(1)
	r.Remove()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := s.WaitCard(ctx, "nope", true); !errors.Is(err, reader.ErrUnknownReader) {
		t.Fatalf("unknown reader: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	go func() { done <- s.WaitCard(cctx, "A", true) }()
	<-s.Waiting(1)
	// A second waiter is not there yet.
	select {
	case <-s.Waiting(2):
		t.Fatal("Waiting(2) with one waiter")
	default:
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait: %v", err)
	}
	go func() { done <- s.WaitCard(ctx, "A", true) }()
	<-s.Waiting(1)
	s.Close()
	if err := <-done; !errors.Is(err, reader.ErrClosed) {
		t.Fatalf("closed context: %v", err)
	}
}

func TestConnect(t *testing.T) {
	ctx := context.Background()
	s := New()
	r := s.Plug("A")
	if _, err := s.Connect(ctx, "A"); !errors.Is(err, reader.ErrNoCard) {
		t.Fatalf("empty reader: %v", err)
	}
	r.Insert(newCard(t))
	c, err := s.Connect(ctx, "A")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Connect(ctx, "A"); !errors.Is(err, reader.ErrSharingViolation) {
		t.Fatalf("second connection: %v", err)
	}
	resp, err := c.Transmit(ctx, getUID)
	if err != nil || len(resp) != 6 {
		t.Fatalf("transmit: % X %v", resp, err)
	}
	c.Close()
	if _, err := c.Transmit(ctx, getUID); !errors.Is(err, reader.ErrClosed) {
		t.Fatalf("closed card: %v", err)
	}
}

func TestFaults(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		faults chip.Faults
		act    func(s *Context, r *Reader)
		want   error
	}{
		{"removed during APDU 2", chip.Faults{RemoveAt: 2}, nil, reader.ErrCardRemoved},
		{"transmit error", chip.Faults{FailAt: 2}, nil, reader.ErrTimeout},
		{"card taken away", chip.Faults{}, func(s *Context, r *Reader) { r.Remove() }, reader.ErrCardRemoved},
		{"card swapped", chip.Faults{}, func(s *Context, r *Reader) { r.Insert(newCard(t)) }, reader.ErrCardRemoved},
		{"reader unplugged", chip.Faults{}, func(s *Context, r *Reader) { s.Unplug("A") }, reader.ErrReaderGone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New()
			r := s.Plug("A")
			r.Insert(chip.WithFaults(newCard(t), tt.faults))
			c, err := s.Connect(ctx, "A")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Transmit(ctx, getUID); err != nil {
				t.Fatalf("first APDU: %v", err)
			}
			if tt.act != nil {
				tt.act(s, r)
			}
			if _, err := c.Transmit(ctx, getUID); !errors.Is(err, tt.want) {
				t.Fatalf("second APDU: %v, want %v", err, tt.want)
			}
			if errors.Is(tt.want, reader.ErrCardRemoved) && tt.act == nil && r.Card() != nil {
				t.Fatal("card still on the reader after leaving the field")
			}
		})
	}
}

func TestSlowCardCancelled(t *testing.T) {
	s := New()
	s.Plug("A").Insert(chip.WithFaults(newCard(t), chip.Faults{Delay: time.Millisecond}))
	c, err := s.Connect(context.Background(), "A")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Transmit(ctx, getUID); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled transmit: %v", err)
	}
	if _, err := c.Transmit(context.Background(), getUID); err != nil {
		t.Fatalf("slow card: %v", err)
	}
}

func TestSerialNumber(t *testing.T) {
	ctx := context.Background()
	s := New()
	s.PlugSerial("A", "RR42")
	s.Plug("B")
	if got, err := s.SerialNumber(ctx, "A"); got != "RR42" || err != nil {
		t.Errorf("A: %q, %v", got, err)
	}
	if _, err := s.SerialNumber(ctx, "B"); !errors.Is(err, reader.ErrNoSerial) {
		t.Errorf("B: %v, want ErrNoSerial", err)
	}
	if _, err := s.SerialNumber(ctx, "C"); !errors.Is(err, reader.ErrUnknownReader) {
		t.Errorf("C: %v, want ErrUnknownReader", err)
	}
}
