// Package chip models contactless cards as a PC/SC reader's firmware sees
// them: MIFARE Classic 1K/4K, MIFARE Ultralight EV1 and NTAG213/215/216
// behind the PC/SC Part 3 storage-card pseudo-APDUs, and MIFARE DESFire
// EV2/EV3 behind ISO/IEC 7816-4 wrapped native commands with EV2 secure
// messaging (internal/ev2). The in-process
// simulator (reader/sim) and the virtual card on vpcd (hwtest) share these
// models, so unit tests and hardware tests meet the same chip semantics.
//
// Where the datasheets and reader manuals leave room, the models choose
// the strict reading, so code that passes here also passes on real chips:
//
//   - Any NAK, silence or failed authentication leaves the chip halted:
//     every later card command answers 63 00 (or a failed native
//     exchange) until Reset, which is a re-activation.
//   - Classic READ/UPDATE BINARY outside the authenticated sector, or
//     with no authentication, answers 69 82 and halts the chip; access
//     conditions refusing the command answer 63 00 and halt it.
//   - The reader itself still answers GET DATA and LOAD KEYS when the
//     chip is halted; key slots survive Reset.
//   - DESFire: any error inside an authenticated session ends the session;
//     a command whose MACt does not check (replayed, modified, another
//     session's) answers 91 1E and changes nothing; a backup file's write
//     is invisible until CommitTransaction and dropped by Reset,
//     SelectApplication and AbortTransaction. Only AES applications and
//     the EV2 authentications are modelled: the factory 2K3DES PICC key
//     refuses AuthenticateEV2First (91 AE).
//
// It must not import bridge, cardfmt or reader/pcsc.
package chip

import "errors"

// Card is an emulated card in a reader's field.
type Card interface {
	// ATR is the answer-to-reset a PC/SC Part 3 reader builds for the card.
	ATR() []byte
	// UID is the card's anticollision identifier.
	UID() []byte
	// Transmit handles one command APDU sent to the reader and returns the
	// response APDU with its status word. ErrRemoved means the card left
	// the field during the command: the transport must report the card as
	// gone and return nothing.
	Transmit(apdu []byte) ([]byte, error)
	// Reset is a field reset / re-activation: authentication and session
	// state is cleared, memory is kept.
	Reset()
}

// ErrRemoved reports that the card left the field.
var ErrRemoved = errors.New("chip: card removed from the field")
