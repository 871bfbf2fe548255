package pgtest

import "syscall"

// setParentDeath stops postgres if the test binary dies without Main
// running its cleanup (killed by a timeout).
func setParentDeath(attr *syscall.SysProcAttr) { attr.Pdeathsig = syscall.SIGINT }
