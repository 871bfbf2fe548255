//go:build !windows

package journal

import "os"

// prepareDir makes the state directory, owner-only.
func prepareDir(dir string) error {
	return os.MkdirAll(dir, 0o700)
}
