//go:build !windows

package pcsc

import "github.com/ebfe/scard"

// serviceName names the smart-card service in log lines.
const serviceName = "pcscd"

// osErrRows adds platform-specific codes to errTable. pcsc-lite returns
// only SCARD_* codes.
var osErrRows []errRow

// osDeadCodes are platform-specific codes meaning the scard context died
// with the service.
var osDeadCodes []scard.Error
