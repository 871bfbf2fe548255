//go:build !windows

package cardfmt

import "os"

// restrictKeyFile makes the new, still empty key file f owner-only before
// any key byte is written to it.
func restrictKeyFile(f *os.File) error {
	return f.Chmod(0o600)
}
