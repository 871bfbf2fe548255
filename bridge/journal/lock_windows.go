//go:build windows

package journal

import (
	"errors"
	"os"
	"time"

	berrors "go.etcd.io/bbolt/errors"
	"golang.org/x/sys/windows"
)

// lockFile takes the lock bbolt takes on its file (LockFileEx on the byte
// at offset 2^64-1), so that a journal another process has open is not
// judged while it writes. The lock goes with f.Close.
func lockFile(f *os.File, timeout time.Duration) error {
	start := time.Now()
	const m1 = ^uint32(0)
	for {
		err := windows.LockFileEx(windows.Handle(f.Fd()), windows.LOCKFILE_FAIL_IMMEDIATELY|windows.LOCKFILE_EXCLUSIVE_LOCK,
			0, 1, 0, &windows.Overlapped{Offset: m1, OffsetHigh: m1})
		if !errors.Is(err, windows.ERROR_LOCK_VIOLATION) {
			return err
		}
		if time.Since(start) > timeout {
			return berrors.ErrTimeout
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// unlockFile drops the lock bbolt took on f, which a mapping left behind
// by a panic in bbolt would otherwise keep.
func unlockFile(f *os.File) error {
	const m1 = ^uint32(0)
	return windows.UnlockFileEx(windows.Handle(f.Fd()), 0, 1, 0, &windows.Overlapped{Offset: m1, OffsetHigh: m1})
}
