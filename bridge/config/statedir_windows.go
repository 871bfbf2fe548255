//go:build windows

package config

import (
	"os"
	"path/filepath"

	"golang.org/x/sys/windows"
)

// defaultStateDir is encoder-bridge under the ProgramData known folder.
// The folder is asked of the shell, not read from %ProgramData%: a
// service's environment need not carry the variable, or may carry
// another value (Wine gives services C:\users\Public).
func defaultStateDir() string {
	pd, err := windows.KnownFolderPath(windows.FOLDERID_ProgramData, 0)
	if err != nil || pd == "" {
		if pd = os.Getenv("ProgramData"); pd == "" {
			pd = `C:\ProgramData`
		}
	}
	return filepath.Join(pd, "encoder-bridge")
}
