//go:build !windows

package durable

import "os"

// restrict makes the new, still empty file f owner-only.
func restrict(f *os.File) error {
	return f.Chmod(0o600)
}

// restrictDir leaves dir as MkdirAll made it: a directory that already
// existed keeps the mode its owner gave it.
func restrictDir(string) error { return nil }
