//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package vpcd

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
)

const lockDir = "/tmp"

func lockFile(path string) (func(), error) {
	// Read-only is enough for flock and works on a file another user made;
	// O_CREATE only when it is missing (protected_regular forbids it on
	// other users' files in /tmp).
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		f, err = os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o666)
	}
	if err != nil {
		return nil, fmt.Errorf("vpcd: slot lock: %w", err)
	}
	// flock locks belong to the open file, so two goroutines of one process
	// exclude each other as two processes do.
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w (lock %s)", ErrSlotBusy, path)
		}
		return nil, fmt.Errorf("vpcd: slot lock %s: %w", path, err)
	}
	var once sync.Once
	return func() { once.Do(func() { f.Close() }) }, nil
}
