//go:build unix

package pgtest

import "syscall"

func sysProcAttr(a *account) *syscall.SysProcAttr {
	attr := &syscall.SysProcAttr{}
	if a != nil {
		attr.Credential = &syscall.Credential{Uid: uint32(a.uid), Gid: uint32(a.gid)}
	}
	setParentDeath(attr)
	return attr
}
