package vpcd

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
)

// ErrSlotBusy: another process or test holds the slot's lock.
var ErrSlotBusy = errors.New("vpcd: slot in use")

// LockPath is the lock file for the vpcd slot at addr. It is keyed by port
// only and lives in /tmp, not $TMPDIR, so every process on the machine
// agrees on it.
func LockPath(addr string) (string, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("vpcd: slot address %q: %w", addr, err)
	}
	return filepath.Join(lockDir, "encoder-bridge-vpcd-"+port+".lock"), nil
}

// LockSlot takes the exclusive lock of the vpcd slot at addr without
// waiting, or fails with ErrSlotBusy. A vpcd port holds one card, so every
// user of a slot (tests, virtual-encoder) takes it first. The kernel drops
// the lock if the process dies.
func LockSlot(addr string) (unlock func(), err error) {
	path, err := LockPath(addr)
	if err != nil {
		return nil, err
	}
	return lockFile(path)
}
