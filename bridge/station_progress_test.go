package bridge

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/encoder-bridge/encoder-bridge/protocol"
	"github.com/encoder-bridge/encoder-bridge/reader/sim/chip"
)

// writeCounter counts UPDATE BINARY commands reaching the chip.
type writeCounter struct {
	chip.Card
	writes int
}

func (w *writeCounter) Transmit(apdu []byte) ([]byte, error) {
	if len(apdu) >= 2 && apdu[0] == 0xFF && apdu[1] == 0xD6 {
		w.writes++
	}
	return w.Card.Transmit(apdu)
}

func TestProgressStages(t *testing.T) {
	cred, err := ParseCredential([]byte(credJSON))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var got []protocol.Stage
	record := func(s protocol.Stage) error { got = append(got, s); return nil }

	st, _, _ := station(t, "mifare_classic_1k")
	card, err := st.EncodeWith(ctx, "Sim 00", cred, JobOptions{Progress: record})
	if err != nil {
		t.Fatal(err)
	}
	want := []protocol.Stage{protocol.StageWaitingForCard, protocol.StageCardDetected, protocol.StageWriting, protocol.StageVerifying}
	if !slices.Equal(got, want) {
		t.Fatalf("encode stages %v, want %v", got, want)
	}
	if card.Technology != "mifare_classic_1k" {
		t.Fatalf("card %+v", card)
	}

	got = nil
	if _, err := st.ScanWith(ctx, "Sim 00", JobOptions{Progress: record}); err != nil {
		t.Fatal(err)
	}
	if want := []protocol.Stage{protocol.StageWaitingForCard, protocol.StageCardDetected}; !slices.Equal(got, want) {
		t.Fatalf("scan stages %v, want %v", got, want)
	}
}

// A hook that refuses protocol.StageWriting stops the job before the card is
// touched.
func TestProgressRefusalWritesNothing(t *testing.T) {
	cred, _ := ParseCredential([]byte(credJSON))
	st, r, c := station(t, "mifare_classic_1k")
	wc := &writeCounter{Card: c}
	r.Insert(wc)
	stop := errors.New("stop")
	_, err := st.EncodeWith(context.Background(), "Sim 00", cred, JobOptions{Progress: func(s protocol.Stage) error {
		if s == protocol.StageWriting {
			return stop
		}
		return nil
	}})
	if !errors.Is(err, stop) {
		t.Fatalf("err = %v", err)
	}
	if wc.writes != 0 {
		t.Fatalf("%d writes after the hook refused", wc.writes)
	}
}
