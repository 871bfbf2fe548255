package vpcd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"time"
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

// lockPoll is how often WaitSlot tries a busy slot again: flock has no
// cancellable blocking wait.
const lockPoll = 20 * time.Millisecond

// WaitSlot takes the lock of the vpcd slot at addr, waiting while another
// process or test holds it, until ctx is done.
func WaitSlot(ctx context.Context, addr string) (unlock func(), err error) {
	t := time.NewTicker(lockPoll)
	defer t.Stop()
	for {
		unlock, err := LockSlot(addr)
		if !errors.Is(err, ErrSlotBusy) {
			return unlock, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %w", err, context.Cause(ctx))
		case <-t.C:
		}
	}
}
