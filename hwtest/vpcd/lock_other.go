//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package vpcd

import (
	"fmt"
	"os"
	"sync"
)

// Without flock the lock only excludes users within this process.
var (
	lockDir  = os.TempDir()
	lockMu   sync.Mutex
	lockHeld = map[string]bool{}
)

func lockFile(path string) (func(), error) {
	lockMu.Lock()
	defer lockMu.Unlock()
	if lockHeld[path] {
		return nil, fmt.Errorf("%w (lock %s)", ErrSlotBusy, path)
	}
	lockHeld[path] = true
	var once sync.Once
	return func() {
		once.Do(func() {
			lockMu.Lock()
			delete(lockHeld, path)
			lockMu.Unlock()
		})
	}, nil
}
