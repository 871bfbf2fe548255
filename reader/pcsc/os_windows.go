//go:build windows

package pcsc

import (
	"fmt"

	"github.com/ebfe/scard"

	"github.com/encoder-bridge/encoder-bridge/reader"
)

// serviceName names the smart-card service in log lines.
const serviceName = "SCardSvr"

// errorInvalidHandle is the Win32 ERROR_INVALID_HANDLE that WinSCard
// returns for a context or card handle that died with a stopped SCardSvr.
const errorInvalidHandle scard.Error = 6

// osErrRows adds the codes WinSCard returns beside the SCARD_* ones.
var osErrRows = []errRow{
	{errorInvalidHandle, "ERROR_INVALID_HANDLE", reader.ErrNoService, reader.ErrCardRemoved},
	// pcsc-lite numbers this 0x8010001F; WinSCard uses 0x80100022.
	{0x80100022, "SCARD_E_UNSUPPORTED_FEATURE", nil, nil},
}

// osDeadCodes: SCardSvr stops when the last reader is unplugged, and the
// contexts established before report ERROR_INVALID_HANDLE afterwards.
var osDeadCodes = []scard.Error{errorInvalidHandle}

// refusal says that the Smart Card service refused this process (SCARD_W_SECURITY_VIOLATION).
func refusal(_, name string) string {
	what := "this process"
	if name != "" {
		what = fmt.Sprintf("this process the reader %q", name)
	}
	return fmt.Sprintf("SCardSvr refused %s (SCARD_W_SECURITY_VIOLATION). "+
		"Fix: run the service as LocalSystem, or as an account the smart-card policy allows. "+
		"Retrying without logging this again until it is let in.", what)
}
