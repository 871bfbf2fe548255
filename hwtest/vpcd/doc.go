// Package vpcd plugs an emulated card (chip.Card) into the real pcscd through
// the vsmartcard vpcd reader driver, so hardware tests and demos exercise the
// system's PC/SC stack without a physical reader.
//
// The card is a TCP client of vpcd: connected means inserted, closed means
// removed. Every message, both ways, is a 2-byte big-endian length and the
// bytes. A 1-byte message from vpcd is a control code (power off, power on,
// reset, get ATR); anything else is a command APDU.
//
// How card errors reach pcscd:
//
//   - chip.ErrRemoved: the connection is closed without an answer. pcscd then
//     returns that transmit with a 0-byte response (or fails it), fails the
//     next one with SCARD_E_NOT_TRANSACTED and reports SCARD_W_REMOVED_CARD
//     after its next presence poll, as with a card pulled mid-command.
//   - any other error (chip.ErrTransmit): a transmission failure. The slot
//     answers a length header without a body and resets the connection,
//     which is the only way to make vpcd return IFD_COMMUNICATION_ERROR, so
//     SCardTransmit fails with SCARD_E_NOT_TRANSACTED. The card stays in the
//     reader: a fresh connection, dialled before the reset, waits in vpcd's
//     backlog and is picked up by pcscd's next presence poll (about 0.4 s),
//     so handles stay valid and no removal is reported. Transmits in that
//     window fail with SCARD_E_NOT_TRANSACTED too, since vpcd has no socket.
//     A status word such as 63 00 is the card model's business: it returns
//     it as a response, not as an error.
//
// It must not import bridge, cardfmt or reader/pcsc: those are what the
// virtual card is used to test.
package vpcd
