//go:build !windows

package journal

import (
	"errors"
	"os"
	"syscall"
	"time"

	berrors "go.etcd.io/bbolt/errors"
)

// lockFile takes the lock bbolt takes on its file (flock, exclusive), so
// that a journal another process has open is not judged while it writes.
// The lock goes with f.Close.
func lockFile(f *os.File, timeout time.Duration) error {
	start := time.Now()
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return err
		}
		if time.Since(start) > timeout {
			return berrors.ErrTimeout
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// unlockFile drops the lock bbolt took on f. Closing f is not enough
// when bbolt panicked after mapping it: the mapping keeps the open file,
// and so the lock, alive.
func unlockFile(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}
