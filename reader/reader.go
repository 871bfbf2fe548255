// Package reader is the seam between the bridge and card encoders: PC/SC
// readers through the system's smart-card service (reader/pcsc) or the
// in-process simulator (reader/sim).
//
// It knows readers, cards, APDUs and the PC/SC Part 3 storage-card
// pseudo-APDUs; it knows nothing of jobs, credentials or keys. It must not
// import bridge, cardfmt or any transport.
package reader

import (
	"context"
	"errors"
	"fmt"
)

// Context is a session with a smart-card service. Implementations are safe
// for concurrent use; every blocking call returns promptly once ctx is done.
type Context interface {
	// Readers lists the names of the attached readers. No reader is not an
	// error: the list is empty.
	Readers(ctx context.Context) ([]string, error)

	// WaitReadersChange blocks until the attached readers differ from known
	// and returns the new list.
	WaitReadersChange(ctx context.Context, known []string) ([]string, error)

	// WaitCard blocks until a card is present in the named reader
	// (present=true) or until it is absent (present=false).
	WaitCard(ctx context.Context, reader string, present bool) error

	// Connect opens an exclusive connection to the card in the named reader.
	// With no card present it fails with ErrNoCard.
	Connect(ctx context.Context, reader string) (Card, error)

	// Close releases the context. Blocked calls return ErrClosed.
	Close() error
}

// Card is an exclusive connection to one card in one reader.
type Card interface {
	// Reader is the name of the reader the card is in.
	Reader() string

	// ATR is the answer-to-reset the reader reported for the card.
	ATR() []byte

	// Transmit sends one command APDU and returns the whole response APDU,
	// status word included. A response without a status word means the card
	// went away, and is reported as ErrCardRemoved, never as success.
	Transmit(ctx context.Context, apdu []byte) ([]byte, error)

	// Reset re-activates the card, which clears its authentication state.
	// Contactless chips drop to IDLE after a failed authentication or a NAK
	// and answer nothing until they are selected again.
	Reset(ctx context.Context) error

	// Close ends the connection and resets the card, so the next
	// connection finds it freshly selected whatever state this one left
	// it in.
	Close() error
}

// Sentinel errors. Implementations wrap them with %w and the operation, so
// callers test with errors.Is.
var (
	// ErrNoService: the smart-card service (pcscd, Windows' SCardSvr) is not
	// running or not reachable.
	ErrNoService = errors.New("smart-card service not available")
	// ErrNotAuthorized: the smart-card service runs but refuses this
	// process's account (pcscd 2.x asks polkit). It is an ErrNoService:
	// callers wait for it the same way, and it lasts until an admin acts.
	ErrNotAuthorized = fmt.Errorf("%w: it refused this account", ErrNoService)
	// ErrNoReaders: no reader is attached.
	ErrNoReaders = errors.New("no card reader attached")
	// ErrUnknownReader: the named reader is not attached.
	ErrUnknownReader = errors.New("unknown card reader")
	// ErrReaderGone: the reader was unplugged while in use.
	ErrReaderGone = errors.New("card reader unplugged")
	// ErrNoCard: no card is present in the reader.
	ErrNoCard = errors.New("no card on the reader")
	// ErrCardRemoved: the card left the field while in use.
	ErrCardRemoved = errors.New("card removed")
	// ErrCardChanged: after a reset, a card with another UID answered.
	// With two cards in the field the reader may select the other one
	// when it re-activates the field; the job must stop rather than read
	// or write a card it did not start with.
	ErrCardChanged = errors.New("another card answered after a reset (more than one card on the encoder?)")
	// ErrTimeout: the reader or card did not answer in time.
	ErrTimeout = errors.New("card reader timed out")
	// ErrSharingViolation: another program holds the card exclusively.
	ErrSharingViolation = errors.New("card is in use by another program")
	// ErrClosed: the context was closed.
	ErrClosed = errors.New("reader context closed")
)
