package cloud

import (
	"os"
	"runtime"
)

// syncDir makes a rename in dir durable. Windows cannot sync a directory
// handle; NTFS journals the rename itself.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
