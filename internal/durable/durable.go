// Package durable writes files so that a crash or a power cut leaves
// either the old file or the new one, never a torn mix: a temporary file
// in the same directory, synced, renamed over the target, and the
// directory synced so the rename itself survives. Secret files are
// restricted to their owner before the first byte is written: mode 0600
// on Unix, a protected ACL on Windows.
//
// It is the one place the bridge, the cloud, the key file and the tools
// write such files. It imports nothing of this module.
package durable

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
)

// rename is os.Rename; tests replace it to make the final step fail.
var rename = os.Rename

// WriteFile replaces path with data. On Unix the file gets perm; on
// Windows mode bits mean nothing and the file inherits its directory's
// ACL.
func WriteFile(path string, data []byte, perm fs.FileMode) error {
	return write(path, data, perm, false, true)
}

// WriteSecret replaces path with data readable by its owner only.
func WriteSecret(path string, data []byte) error {
	return write(path, data, 0o600, true, true)
}

// CreateSecret is WriteSecret for a path that must not exist yet: if it
// does, even if it appears while the data is written, CreateSecret leaves
// it alone and returns an error wrapping fs.ErrExist.
func CreateSecret(path string, data []byte) error {
	return write(path, data, 0o600, true, false)
}

func write(path string, data []byte, perm fs.FileMode, secret, replace bool) error {
	if !replace {
		if _, err := os.Lstat(path); err == nil {
			return existsErr(path)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	placed := false
	defer func() {
		if !placed {
			_ = os.Remove(tmp)
		}
	}()
	if err := fill(f, data, perm, secret); err != nil {
		return err
	}
	if replace {
		if err := rename(tmp, path); err != nil {
			return err
		}
		placed = true
	} else if err := link(tmp, path); err != nil {
		return err
	}
	if err := SyncDir(dir); err != nil {
		return fmt.Errorf("%s written, but syncing its directory failed: %w", path, err)
	}
	return nil
}

// link places tmp at path unless path exists. A hard link fails if path
// has appeared since the caller's check, where a rename would replace it.
func link(tmp, path string) error {
	switch err := os.Link(tmp, path); {
	case err == nil:
		_ = os.Remove(tmp)
		return nil
	case errors.Is(err, fs.ErrExist):
		return existsErr(path)
	}
	// The file system has no hard links: fall back to a rename.
	if _, err := os.Lstat(path); err == nil {
		return existsErr(path)
	}
	return rename(tmp, path)
}

func existsErr(path string) error {
	return &fs.PathError{Op: "create", Path: path, Err: fs.ErrExist}
}

// fill restricts f (before any byte of data is in it, for a secret),
// writes data, syncs and closes it.
func fill(f *os.File, data []byte, perm fs.FileMode, secret bool) (err error) {
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	if secret {
		if err := restrict(f); err != nil {
			return err
		}
	} else if err := f.Chmod(perm); err != nil && !errors.Is(err, errors.ErrUnsupported) {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	return f.Sync()
}

// SyncDir makes a rename or a new file in dir durable. Windows cannot
// open a directory for syncing; NTFS journals the rename itself.
func SyncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// MkdirSecret makes dir (and its parents) if needed and restricts it to
// its owner: mode 0700 when created on Unix, a protected ACL inherited by
// what is created inside on Windows.
func MkdirSecret(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return restrictDir(dir)
}
