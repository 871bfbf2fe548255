//go:build !unix

package pgtest

import "syscall"

// Elsewhere the binaries run as the caller.
func sysProcAttr(*account) *syscall.SysProcAttr { return nil }
