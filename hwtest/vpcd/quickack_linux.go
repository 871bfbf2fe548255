package vpcd

import (
	"net"
	"syscall"
)

// quickAck asks the kernel to ACK received data at once instead of delaying
// the ACK. Errors are ignored: the flag only affects speed.
func quickAck(c net.Conn) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
	})
}
