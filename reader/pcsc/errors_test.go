package pcsc

import (
	"errors"
	"strings"
	"testing"

	"github.com/ebfe/scard"

	"github.com/encoder-bridge/encoder-bridge/reader"
)

var sentinels = []error{
	reader.ErrNoService, reader.ErrNoReaders, reader.ErrUnknownReader,
	reader.ErrReaderGone, reader.ErrNoCard, reader.ErrCardRemoved,
	reader.ErrTimeout, reader.ErrSharingViolation, reader.ErrClosed,
}

func TestMapErr(t *testing.T) {
	tests := []struct {
		op   string
		err  error
		want error // sentinel, nil for none
		text string
	}{
		{"transmit", scard.ErrRemovedCard, reader.ErrCardRemoved, "pcsc: transmit: card removed (SCARD_W_REMOVED_CARD)"},
		{"transmit", scard.ErrNotTransacted, reader.ErrCardRemoved, "pcsc: transmit: card removed (SCARD_E_NOT_TRANSACTED)"},
		{"transmit", scard.ErrResetCard, reader.ErrCardRemoved, "pcsc: transmit: card removed (SCARD_W_RESET_CARD)"},
		{"transmit", scard.ErrNoSmartcard, reader.ErrCardRemoved, "pcsc: transmit: card removed (SCARD_E_NO_SMARTCARD)"},
		{"transmit", scard.ErrUnpoweredCard, reader.ErrCardRemoved, "pcsc: transmit: card removed (SCARD_W_UNPOWERED_CARD)"},
		{`transmit "R"`, scard.ErrTimeout, reader.ErrTimeout, `pcsc: transmit "R": card reader timed out (SCARD_E_TIMEOUT)`},
		{"transmit", scard.ErrUnresponsiveCard, reader.ErrTimeout, "pcsc: transmit: card reader timed out (SCARD_W_UNRESPONSIVE_CARD)"},
		{"transmit", scard.ErrReaderUnavailable, reader.ErrReaderGone, "pcsc: transmit: card reader unplugged (SCARD_E_READER_UNAVAILABLE)"},
		{"transmit", scard.ErrUnknownReader, reader.ErrReaderGone, "pcsc: transmit: card reader unplugged (SCARD_E_UNKNOWN_READER)"},
		{"transmit", scard.ErrCommError, reader.ErrNoService, "pcsc: transmit: smart-card service not available (SCARD_F_COMM_ERROR)"},
		{"wait card", scard.ErrSecurityViolation, reader.ErrNoService, "pcsc: wait card: smart-card service not available (SCARD_W_SECURITY_VIOLATION)"},
		{"wait card", scard.ErrCommError, reader.ErrNoService, "pcsc: wait card: smart-card service not available (SCARD_F_COMM_ERROR)"},
		{"transmit", scard.ErrNoService, reader.ErrNoService, "pcsc: transmit: smart-card service not available (SCARD_E_NO_SERVICE)"},
		{"transmit", scard.ErrServiceStopped, reader.ErrNoService, "pcsc: transmit: smart-card service not available (SCARD_E_SERVICE_STOPPED)"},
		{"transmit", scard.ErrInvalidHandle, reader.ErrCardRemoved, "pcsc: transmit: card removed (SCARD_E_INVALID_HANDLE)"},
		{"reset", scard.ErrNoSmartcard, reader.ErrCardRemoved, "pcsc: reset: card removed (SCARD_E_NO_SMARTCARD)"},
		{"disconnect", scard.ErrRemovedCard, reader.ErrCardRemoved, "pcsc: disconnect: card removed (SCARD_W_REMOVED_CARD)"},
		{`connect "R"`, scard.ErrNoSmartcard, reader.ErrNoCard, `pcsc: connect "R": no card on the reader (SCARD_E_NO_SMARTCARD)`},
		{`connect "R"`, scard.ErrRemovedCard, reader.ErrNoCard, `pcsc: connect "R": no card on the reader (SCARD_W_REMOVED_CARD)`},
		{`connect "R"`, scard.ErrSharingViolation, reader.ErrSharingViolation, `pcsc: connect "R": card is in use by another program (SCARD_E_SHARING_VIOLATION)`},
		{`connect "R"`, scard.ErrUnknownReader, reader.ErrUnknownReader, `pcsc: connect "R": unknown card reader (SCARD_E_UNKNOWN_READER)`},
		{`wait card "R"`, scard.ErrUnknownReader, reader.ErrUnknownReader, `pcsc: wait card "R": unknown card reader (SCARD_E_UNKNOWN_READER)`},
		{"list readers", scard.ErrNoService, reader.ErrNoService, "pcsc: list readers: smart-card service not available (SCARD_E_NO_SERVICE)"},
		{"list readers", scard.ErrInvalidHandle, reader.ErrNoService, "pcsc: list readers: smart-card service not available (SCARD_E_INVALID_HANDLE)"},
		{"list readers", scard.ErrNoReadersAvailable, reader.ErrNoReaders, "pcsc: list readers: no card reader attached (SCARD_E_NO_READERS_AVAILABLE)"},
		{"wait readers", scard.ErrShutdown, reader.ErrNoService, "pcsc: wait readers: smart-card service not available (SCARD_P_SHUTDOWN)"},
		{`connect "R"`, scard.ErrProtoMismatch, nil, `pcsc: connect "R": SCARD_E_PROTO_MISMATCH`},
		{"wait card", scard.ErrCancelled, nil, "pcsc: wait card: SCARD_E_CANCELLED"},
		{"transmit", scard.Error(0x801000F0), nil, "pcsc: transmit: 0x801000F0"},
		{"transmit", errors.New("boom"), nil, "pcsc: transmit: boom"},
	}
	for _, tt := range tests {
		t.Run(tt.op+"/"+tt.text, func(t *testing.T) {
			got := mapErr(tt.op, tt.err)
			if got.Error() != tt.text {
				t.Errorf("text = %q, want %q", got, tt.text)
			}
			for _, s := range sentinels {
				if is := errors.Is(got, s); is != (s == tt.want) {
					t.Errorf("errors.Is(%q, %q) = %v", got, s, is)
				}
			}
			if !errors.Is(got, tt.err) {
				t.Errorf("the scard error is not wrapped: %v", got)
			}
		})
	}
	if mapErr("transmit", nil) != nil {
		t.Error("mapErr(nil) != nil")
	}
}

func TestErrTableUnique(t *testing.T) {
	seen := map[scard.Error]string{}
	for _, r := range errTable {
		if prev, ok := seen[r.code]; ok {
			t.Errorf("0x%08X listed twice: %s and %s", uint32(r.code), prev, r.name)
		}
		seen[r.code] = r.name
		if !strings.HasPrefix(r.name, "SCARD_") && !strings.HasPrefix(r.name, "ERROR_") {
			t.Errorf("0x%08X: odd name %q", uint32(r.code), r.name)
		}
	}
}

func TestIsDeadContext(t *testing.T) {
	for _, code := range []scard.Error{scard.ErrNoService, scard.ErrServiceStopped, scard.ErrInvalidHandle, scard.ErrCommError, scard.ErrSecurityViolation} {
		if !isDeadContext(code) {
			t.Errorf("isDeadContext(%v) = false", codeName(code))
		}
		if !isDeadContext(mapErr("list readers", code)) {
			t.Errorf("isDeadContext(mapped %v) = false", codeName(code))
		}
	}
	for _, err := range []error{nil, scard.ErrTimeout, scard.ErrRemovedCard, scard.ErrUnknownReader, errors.New("x")} {
		if isDeadContext(err) {
			t.Errorf("isDeadContext(%v) = true", err)
		}
	}
}
