package link

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"strings"
)

// ErrTokenFileInsecure: group or others may read or write the token file.
var ErrTokenFileInsecure = errors.New("token file is readable or writable by group or others")

// maxTokenFile bounds what ReadTokenFile reads.
const maxTokenFile = 16 << 10

// ReadTokenFile reads the bridge's bearer token: one line, surrounding
// white space ignored. As for the key file, except on Windows (where ACLs
// govern access and the mode bits mean nothing) a file with any group or
// other permission bit is refused, naming the chmod that fixes it.
func ReadTokenFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("token file %s is not a regular file", path)
	}
	if err := checkTokenMode(path, fi.Mode()); err != nil {
		return "", err
	}
	b, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	if len(b) > maxTokenFile {
		return "", fmt.Errorf("token file %s: larger than %d bytes", path, maxTokenFile)
	}
	tok := strings.TrimSpace(string(b))
	switch {
	case tok == "":
		return "", fmt.Errorf("token file %s is empty", path)
	case strings.ContainsAny(tok, "\r\n\t "):
		return "", fmt.Errorf("token file %s: the token must be one word on one line", path)
	}
	return tok, nil
}

func checkTokenMode(path string, mode fs.FileMode) error {
	if runtime.GOOS == "windows" || mode.Perm()&0o077 == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s has mode %04o; fix with: chmod 600 %s", ErrTokenFileInsecure, path, mode.Perm(), path)
}
