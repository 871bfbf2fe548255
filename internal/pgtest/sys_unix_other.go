//go:build unix && !linux

package pgtest

import "syscall"

func setParentDeath(*syscall.SysProcAttr) {}
