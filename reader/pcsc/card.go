package pcsc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/ebfe/scard"

	"github.com/encoder-bridge/encoder-bridge/reader"
)

// Card is an exclusive connection to one card, made by Context.Connect. It
// implements reader.Card.
type Card struct {
	owner *Context
	name  string
	sc    scardContext // the card's own context, released by Close
	h     scardCard

	// mu serializes the conversation: a card answers one APDU at a time,
	// and Reset or Close must not cut into a Transmit.
	mu      sync.Mutex
	atr     []byte
	closed  bool
	removed bool // a call reported ErrCardRemoved; see noteRemoved
}

// Reader is the name of the reader the card is in.
func (k *Card) Reader() string { return k.name }

// ATR is the answer-to-reset the reader reported at Connect or the last
// Reset.
func (k *Card) ATR() []byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	return bytes.Clone(k.atr)
}

// Transmit sends one command APDU and returns the response, status word
// included.
func (k *Card) Transmit(ctx context.Context, apdu []byte) ([]byte, error) {
	op := readerOp(opTransmit, k.name)
	if len(apdu) == 0 {
		// ebfe/scard indexes cmd[0] and would panic.
		return nil, fmt.Errorf("pcsc: %s: empty command APDU", op)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.usable(ctx, op); err != nil {
		return nil, err
	}
	rsp, err := k.h.Transmit(apdu)
	if err != nil {
		return nil, k.noteRemoved(mapErr(op, err))
	}
	if len(rsp) < 2 {
		// pcscd reports a card pulled mid-transmit as success with an empty
		// response; the next transmit fails with NOT_TRANSACTED
		// (PCSC-TESTING.md).
		return nil, k.noteRemoved(fmt.Errorf("pcsc: %s: %w (%d-byte response, no status word)", op, reader.ErrCardRemoved, len(rsp)))
	}
	// ebfe/scard slices the response from a fresh 64 KiB buffer; copying
	// keeps callers from pinning one per APDU.
	return bytes.Clone(rsp), nil
}

// Reset re-activates the card (SCardReconnect with SCARD_RESET_CARD). For
// a contactless card the reader re-selects it, which clears the
// authentication state a failed authentication leaves behind.
func (k *Card) Reset(ctx context.Context) error {
	op := readerOp(opReset, k.name)
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.usable(ctx, op); err != nil {
		return err
	}
	if err := k.h.Reconnect(scard.ShareExclusive, scard.ProtocolAny, scard.ResetCard); err != nil {
		return k.noteRemoved(mapErr(op, err))
	}
	return k.refreshLocked(op)
}

// Close disconnects and resets the card, so the next connection finds it
// freshly selected: a contactless chip halted by a refused key or a NAK
// would otherwise stay halted until pcscd powers it down (~0.5 s later).
// It is idempotent.
func (k *Card) Close() error {
	k.mu.Lock()
	if k.closed {
		k.mu.Unlock()
		return nil
	}
	k.closed = true
	// Never reset a card already reported removed: that jams pcscd's slot
	// (see noteRemoved).
	disposition := scard.ResetCard
	if k.removed {
		disposition = scard.LeaveCard
	}
	err := k.h.Disconnect(disposition)
	if err == nil {
		k.owner.putIdle(k.sc)
	} else {
		_ = k.sc.Release()
	}
	k.mu.Unlock()

	k.owner.mu.Lock()
	delete(k.owner.cards, k)
	k.owner.mu.Unlock()

	if err == nil {
		return nil
	}
	err = mapErr(readerOp(opDisconnect, k.name), err)
	for _, gone := range []error{reader.ErrCardRemoved, reader.ErrReaderGone, reader.ErrNoService} {
		if errors.Is(err, gone) {
			// The connection is gone already: nothing to report to a
			// caller that only wanted it closed.
			return nil
		}
	}
	return err
}

// usable reports a closed card or context, a card already gone, or a done
// ctx, before anything reaches the card.
func (k *Card) usable(ctx context.Context, op string) error {
	if k.closed {
		return fmt.Errorf("pcsc: %s: card connection closed: %w", op, reader.ErrClosed)
	}
	if k.removed {
		return fmt.Errorf("pcsc: %s: %w earlier in this connection", op, reader.ErrCardRemoved)
	}
	return k.owner.check(ctx, op)
}

// noteRemoved makes ErrCardRemoved final for the connection. Besides
// sparing pcscd, it keeps Reset away from a removed card: pcscd's
// SCardReconnect then marks the slot empty behind the back of its presence
// poll, and a card presented before that poll (~400 ms) has seen the
// removal is never reported, until it leaves again.
func (k *Card) noteRemoved(err error) error {
	if errors.Is(err, reader.ErrCardRemoved) {
		k.removed = true
	}
	return err
}

// refresh reads the ATR and checks the protocol after Connect.
func (k *Card) refresh(op string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.refreshLocked(op)
}

func (k *Card) refreshLocked(op string) error {
	st, err := k.h.Status()
	if err != nil {
		return mapErr(op, err)
	}
	// ebfe/scard panics in Transmit on any other protocol.
	if p := k.h.ActiveProtocol(); p != scard.ProtocolT0 && p != scard.ProtocolT1 {
		return fmt.Errorf("pcsc: %s: card activated with protocol %d, not T=0 or T=1", op, p)
	}
	k.atr = bytes.Clone(st.Atr)
	return nil
}
