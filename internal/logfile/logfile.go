// Package logfile is a log file rotated by size: when the next entry
// would take the file past its size, the file becomes NAME.1.EXT, the
// older ones move up a number, and the oldest beyond the count kept is
// deleted, before the entry is written. The files never hold more than
// MaxSize × (MaxFiles + 1) bytes together (an entry larger than MaxSize
// gets a file of its own).
//
// Pruning is synchronous and needs no goroutine, and sizes are bytes:
// the rotation library the Go proxy serves (lumberjack v2.2.1) prunes
// from a goroutine a logger never stops, so the bound holds only
// eventually, and counts sizes in whole megabytes.
//
// It imports nothing of this module but internal/durable.
package logfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/encoder-bridge/encoder-bridge/internal/durable"
)

// Options describe the log file.
type Options struct {
	// Path is the current file; rotated files sit beside it.
	Path string
	// MaxSize is the size in bytes a file is rotated at.
	MaxSize int64
	// MaxFiles is how many rotated files are kept besides the current one.
	MaxFiles int
}

// ErrOptions marks options that cannot make a log file.
var ErrOptions = errors.New("logfile: bad options")

// File is an open, rotating log file. It is safe for concurrent use.
type File struct {
	opts Options

	mu   sync.Mutex
	f    *os.File // nil after a failed rotation, until the next write opens one
	size int64
}

// Open opens (appending) or creates the log file and its directory, and
// deletes rotated files beyond MaxFiles, left by a configuration that kept
// more.
func Open(o Options) (*File, error) {
	switch {
	case o.Path == "":
		return nil, fmt.Errorf("%w: no path", ErrOptions)
	case o.MaxSize <= 0:
		return nil, fmt.Errorf("%w: size %d is not positive", ErrOptions, o.MaxSize)
	case o.MaxFiles < 1:
		return nil, fmt.Errorf("%w: keeps %d rotated files, at least 1", ErrOptions, o.MaxFiles)
	}
	// Logs name readers, bridge and errors: not secret, but nobody else's
	// business either.
	if err := durable.MkdirSecret(filepath.Dir(o.Path)); err != nil {
		return nil, fmt.Errorf("logfile: %w", err)
	}
	l := &File{opts: o}
	if err := l.open(); err != nil {
		return nil, err
	}
	if err := l.prune(); err != nil {
		l.f.Close()
		return nil, err
	}
	return l, nil
}

func (l *File) open() error {
	f, err := os.OpenFile(l.opts.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("logfile: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("logfile: %w", err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return fmt.Errorf("logfile: %s is not a regular file", l.opts.Path)
	}
	l.f, l.size = f, st.Size()
	return nil
}

// Rotated is the name of the n-th rotated file: NAME.n.EXT, so a Windows
// PC still opens it as a log by its extension.
func Rotated(path string, n int) string {
	ext := filepath.Ext(path)
	return strings.TrimSuffix(path, ext) + "." + strconv.Itoa(n) + ext
}

// Write writes one entry (zap writes each entry in one call), rotating
// first when it would take the file past MaxSize. When a rotation fails
// (another program holds a rotated file open without letting it be
// renamed, as Windows allows) the entry is dropped and the error
// returned; the next write tries again, so the files stay bounded.
func (l *File) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		if err := l.open(); err != nil {
			return 0, err
		}
	}
	if l.size > 0 && l.size+int64(len(p)) > l.opts.MaxSize {
		if err := l.rotate(); err != nil {
			return 0, err
		}
	}
	n, err := l.f.Write(p)
	l.size += int64(n)
	return n, err
}

// rotate closes the current file, shifts the rotated ones up a number
// (the oldest is replaced), and starts a new current file.
func (l *File) rotate() error {
	if err := l.f.Close(); err != nil {
		return fmt.Errorf("logfile: %w", err)
	}
	l.f = nil
	for n := l.opts.MaxFiles - 1; n >= 1; n-- {
		err := os.Rename(Rotated(l.opts.Path, n), Rotated(l.opts.Path, n+1))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("logfile: rotate: %w", err)
		}
	}
	if err := os.Rename(l.opts.Path, Rotated(l.opts.Path, 1)); err != nil {
		return fmt.Errorf("logfile: rotate: %w", err)
	}
	return l.open()
}

// prune deletes rotated files numbered beyond MaxFiles.
func (l *File) prune() error {
	for n := l.opts.MaxFiles + 1; ; n++ {
		err := os.Remove(Rotated(l.opts.Path, n))
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("logfile: %w", err)
		}
	}
}

// Sync flushes the current file to disk.
func (l *File) Sync() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	return l.f.Sync()
}

// Close closes the current file; a later Write opens it again.
func (l *File) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
