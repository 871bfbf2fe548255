package pcsc

import (
	"errors"
	"fmt"
	"strings"

	"github.com/ebfe/scard"

	"github.com/encoder-bridge/encoder-bridge/reader"
)

// Operation names, the first word of the op passed to mapErr. Card
// operations map some codes differently from context operations: a missing
// card is ErrNoCard before Connect and ErrCardRemoved after it.
const (
	opEstablish   = "establish context"
	opList        = "list readers"
	opWaitReaders = "wait readers"
	opWaitCard    = "wait card"
	opConnect     = "connect"
	opTransmit    = "transmit"
	opReset       = "reset"
	opDisconnect  = "disconnect"
	opSerial      = "serial number"
)

var cardOps = map[string]bool{opTransmit: true, opReset: true, opDisconnect: true}

// readerOp names an operation on one reader, so errors say which one.
func readerOp(op, name string) string {
	return fmt.Sprintf("%s %q", op, name)
}

func isCardOp(op string) bool {
	verb, _, _ := strings.Cut(op, " ")
	return cardOps[verb]
}

// errRow maps one scard code to the reader sentinel callers test for.
// A nil sentinel means no caller would act differently on it: the error
// still carries the code name.
type errRow struct {
	code    scard.Error
	name    string
	context error // Readers, Wait*, Connect
	card    error // Transmit, Reset, Close on a connected card
}

var errTable = append([]errRow{
	{scard.ErrNoService, "SCARD_E_NO_SERVICE", reader.ErrNoService, reader.ErrNoService},
	{scard.ErrServiceStopped, "SCARD_E_SERVICE_STOPPED", reader.ErrNoService, reader.ErrNoService},
	{scard.ErrShutdown, "SCARD_P_SHUTDOWN", reader.ErrNoService, reader.ErrNoService},
	// Windows cancels every call at logoff and shutdown.
	{scard.ErrSystemCancelled, "SCARD_E_SYSTEM_CANCELLED", reader.ErrNoService, reader.ErrNoService},
	// A context op sees this only after a retry on a fresh context failed,
	// so the service is gone. A card handle never survives a service
	// restart: the session, and whatever was authenticated, is lost.
	{scard.ErrInvalidHandle, "SCARD_E_INVALID_HANDLE", reader.ErrNoService, reader.ErrCardRemoved},
	// pcsc-lite's client returns it when pcscd's socket closes under a
	// call, and keeps returning it (or NO_SERVICE) on that context after
	// pcscd is back. A driver's I/O error reaches clients as
	// NOT_TRANSACTED instead.
	{scard.ErrCommError, "SCARD_F_COMM_ERROR", reader.ErrNoService, reader.ErrNoService},
	// pcsc-lite's client turns ECONNRESET on its pcscd socket into this:
	// pcscd resets clients polkit denies, and a dying pcscd resets those
	// with requests unread. Establishing a context, and Connect on a fresh
	// one, map it to reader.ErrNotAuthorized instead (establishErr,
	// Connect): there it is polkit's answer.
	{scard.ErrSecurityViolation, "SCARD_W_SECURITY_VIOLATION", reader.ErrNoService, reader.ErrNoService},

	{scard.ErrNoReadersAvailable, "SCARD_E_NO_READERS_AVAILABLE", reader.ErrNoReaders, reader.ErrReaderGone},
	{scard.ErrUnknownReader, "SCARD_E_UNKNOWN_READER", reader.ErrUnknownReader, reader.ErrReaderGone},
	{scard.ErrReaderUnavailable, "SCARD_E_READER_UNAVAILABLE", reader.ErrReaderGone, reader.ErrReaderGone},

	{scard.ErrNoSmartcard, "SCARD_E_NO_SMARTCARD", reader.ErrNoCard, reader.ErrCardRemoved},
	{scard.ErrRemovedCard, "SCARD_W_REMOVED_CARD", reader.ErrNoCard, reader.ErrCardRemoved},
	// pcscd answers a pulled card with NOT_TRANSACTED until its ~400 ms
	// presence poll notices, then REMOVED_CARD (PCSC-TESTING.md).
	{scard.ErrNotTransacted, "SCARD_E_NOT_TRANSACTED", reader.ErrNoCard, reader.ErrCardRemoved},
	// The card was reset under us: its authentication state is gone.
	{scard.ErrResetCard, "SCARD_W_RESET_CARD", reader.ErrCardRemoved, reader.ErrCardRemoved},
	{scard.ErrUnpoweredCard, "SCARD_W_UNPOWERED_CARD", reader.ErrNoCard, reader.ErrCardRemoved},
	// A mute card: typically a contactless card at the edge of the field.
	{scard.ErrUnresponsiveCard, "SCARD_W_UNRESPONSIVE_CARD", reader.ErrTimeout, reader.ErrTimeout},
	{scard.ErrTimeout, "SCARD_E_TIMEOUT", reader.ErrTimeout, reader.ErrTimeout},
	{scard.ErrSharingViolation, "SCARD_E_SHARING_VIOLATION", reader.ErrSharingViolation, reader.ErrSharingViolation},

	// Handled by the wait loops before mapping; never a sentinel, since
	// ctx cancellation uses it too.
	{scard.ErrCancelled, "SCARD_E_CANCELLED", nil, nil},
	{scard.ErrInternalError, "SCARD_F_INTERNAL_ERROR", nil, nil},
	{scard.ErrInvalidParameter, "SCARD_E_INVALID_PARAMETER", nil, nil},
	{scard.ErrInvalidTarget, "SCARD_E_INVALID_TARGET", nil, nil},
	{scard.ErrNoMemory, "SCARD_E_NO_MEMORY", nil, nil},
	{scard.ErrWaitedTooLong, "SCARD_F_WAITED_TOO_LONG", nil, nil},
	{scard.ErrInsufficientBuffer, "SCARD_E_INSUFFICIENT_BUFFER", nil, nil},
	{scard.ErrUnknownCard, "SCARD_E_UNKNOWN_CARD", nil, nil},
	{scard.ErrCantDispose, "SCARD_E_CANT_DISPOSE", nil, nil},
	{scard.ErrProtoMismatch, "SCARD_E_PROTO_MISMATCH", nil, nil},
	{scard.ErrNotReady, "SCARD_E_NOT_READY", nil, nil},
	{scard.ErrInvalidValue, "SCARD_E_INVALID_VALUE", nil, nil},
	{scard.ErrUnknownError, "SCARD_F_UNKNOWN_ERROR", nil, nil},
	{scard.ErrInvalidAtr, "SCARD_E_INVALID_ATR", nil, nil},
	{scard.ErrPciTooSmall, "SCARD_E_PCI_TOO_SMALL", nil, nil},
	{scard.ErrReaderUnsupported, "SCARD_E_READER_UNSUPPORTED", nil, nil},
	{scard.ErrDuplicateReader, "SCARD_E_DUPLICATE_READER", nil, nil},
	{scard.ErrCardUnsupported, "SCARD_E_CARD_UNSUPPORTED", nil, nil},
	// pcsc-lite gives SCARD_E_UNEXPECTED the same value and never returns it.
	{scard.ErrUnsupportedFeature, "SCARD_E_UNSUPPORTED_FEATURE", nil, nil},
	{scard.ErrServerTooBusy, "SCARD_E_SERVER_TOO_BUSY", nil, nil},
	{scard.ErrCommDataLost, "SCARD_E_COMM_DATA_LOST", nil, nil},
	{scard.ErrUnsupportedCard, "SCARD_W_UNSUPPORTED_CARD", nil, nil},
}, osErrRows...)

var errRows = func() map[scard.Error]errRow {
	m := make(map[scard.Error]errRow, len(errTable))
	for _, r := range errTable {
		m[r.code] = r
	}
	return m
}()

// codeName is an scard code as its SCARD_* name, which is what vendor
// documentation and pcscd logs use; ebfe/scard's own text is a sentence on
// Linux and a Win32 message on Windows.
type codeName scard.Error

func (c codeName) Error() string {
	if r, ok := errRows[scard.Error(c)]; ok {
		return r.name
	}
	return fmt.Sprintf("0x%08X", uint32(c))
}

// Unwrap keeps errors.Is(err, scard.ErrRemovedCard) working for callers
// that care about the exact code.
func (c codeName) Unwrap() error { return scard.Error(c) }

// scardCode extracts the scard code from err.
func scardCode(err error) (scard.Error, bool) {
	var code scard.Error
	if errors.As(err, &code) {
		return code, true
	}
	return 0, false
}

// mapErr turns an error from ebfe/scard into "pcsc: <op>: <sentinel>
// (<SCARD_NAME>)", wrapping both the reader sentinel and the scard code.
// It never includes APDU bytes: they can carry keys.
func mapErr(op string, err error) error {
	if err == nil {
		return nil
	}
	code, ok := scardCode(err)
	if !ok {
		return fmt.Errorf("pcsc: %s: %w", op, err)
	}
	row := errRows[code]
	sentinel := row.context
	if isCardOp(op) {
		sentinel = row.card
	}
	if sentinel == nil {
		return fmt.Errorf("pcsc: %s: %w", op, codeName(code))
	}
	return fmt.Errorf("pcsc: %s: %w (%w)", op, sentinel, codeName(code))
}

// isDeadContext reports whether err means the scard context died with the
// service and has to be established again.
func isDeadContext(err error) bool {
	code, ok := scardCode(err)
	if !ok {
		return false
	}
	switch code {
	case scard.ErrNoService, scard.ErrServiceStopped, scard.ErrInvalidHandle,
		scard.ErrCommError, scard.ErrSecurityViolation, scard.ErrShutdown, scard.ErrSystemCancelled:
		return true
	}
	for _, c := range osDeadCodes {
		if code == c {
			return true
		}
	}
	return false
}

func isCode(err error, code scard.Error) bool {
	c, ok := scardCode(err)
	return ok && c == code
}
