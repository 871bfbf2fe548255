package logfile

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

// tempDir is t.TempDir emptied with os.Remove: packaging/windows runs
// these tests built for Windows under Wine 8, where os.RemoveAll fails
// with "Invalid function" (Go's Windows RemoveAll asks for a POSIX delete
// Wine lacks).
func tempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "logfile-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeTree(t, dir) })
	return dir
}

// removeTree removes dir and everything in it, deepest first.
func removeTree(t *testing.T, dir string) {
	t.Helper()
	var paths []string
	err := filepath.WalkDir(dir, func(p string, _ os.DirEntry, err error) error {
		paths = append(paths, p)
		return err
	})
	if err != nil {
		t.Error(err)
	}
	for i := len(paths) - 1; i >= 0; i-- {
		if err := os.Remove(paths[i]); err != nil {
			t.Error(err)
		}
	}
}

// files returns the directory's files and their contents.
func files(t *testing.T, dir string) map[string]string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = string(b)
	}
	return m
}

func names(m map[string]string) []string {
	var n []string
	for k := range m {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

func TestRotation(t *testing.T) {
	line := func(i int) string { return fmt.Sprintf("entry %02d.....\n", i) } // 15 bytes
	tests := []struct {
		name     string
		size     int64
		keep     int
		writes   int
		want     map[string]string
		wantFail bool
	}{
		{name: "fits", size: 100, keep: 2, writes: 3,
			want: map[string]string{"b.log": line(0) + line(1) + line(2)}},
		{name: "exactly full does not rotate", size: 45, keep: 2, writes: 3,
			want: map[string]string{"b.log": line(0) + line(1) + line(2)}},
		{name: "one over rotates", size: 45, keep: 2, writes: 4,
			want: map[string]string{"b.log": line(3), "b.1.log": line(0) + line(1) + line(2)}},
		{name: "oldest dropped", size: 30, keep: 2, writes: 9,
			want: map[string]string{"b.log": line(8), "b.1.log": line(6) + line(7), "b.2.log": line(4) + line(5)}},
		{name: "one rotated file kept", size: 15, keep: 1, writes: 5,
			want: map[string]string{"b.log": line(4), "b.1.log": line(3)}},
		{name: "entry larger than the size gets its own file", size: 10, keep: 3, writes: 3,
			want: map[string]string{"b.log": line(2), "b.1.log": line(1), "b.2.log": line(0)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := tempDir(t)
			l, err := Open(Options{Path: filepath.Join(dir, "b.log"), MaxSize: tc.size, MaxFiles: tc.keep})
			if err != nil {
				t.Fatal(err)
			}
			for i := range tc.writes {
				if n, err := l.Write([]byte(line(i))); err != nil || n != len(line(i)) {
					t.Fatalf("write %d: %d, %v", i, n, err)
				}
			}
			if err := l.Sync(); err != nil {
				t.Fatal(err)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			got := files(t, dir)
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("files:\n got %q\nwant %q", got, tc.want)
			}
			var total int64
			for _, c := range got {
				total += int64(len(c))
			}
			if bound := tc.size * int64(tc.keep+1); tc.size >= 15 && total > bound {
				t.Errorf("%d bytes in all, bound %d", total, bound)
			}
		})
	}
}

// A restart appends to the current file and forgets rotated files a
// configuration with a larger count left.
func TestReopen(t *testing.T) {
	dir := tempDir(t)
	path := filepath.Join(dir, "bridge.log")
	l, err := Open(Options{Path: path, MaxSize: 10, MaxFiles: 4})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"aaaaaaaa\n", "bbbbbbbb\n", "cccccccc\n", "dddddddd\n", "eeee\n"} {
		if _, err := l.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	if got := names(files(t, dir)); strings.Join(got, " ") != "bridge.1.log bridge.2.log bridge.3.log bridge.4.log bridge.log" {
		t.Fatalf("before: %v", got)
	}

	l, err = Open(Options{Path: path, MaxSize: 10, MaxFiles: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Write([]byte("ff\n")); err != nil {
		t.Fatal(err)
	}
	l.Close()
	got := files(t, dir)
	want := map[string]string{"bridge.log": "eeee\nff\n", "bridge.1.log": "dddddddd\n", "bridge.2.log": "cccccccc\n"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after:\n got %q\nwant %q", got, want)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := tempDir(t)
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{"no path", Options{MaxSize: 1, MaxFiles: 1}, "no path"},
		{"zero size", Options{Path: filepath.Join(dir, "a.log"), MaxFiles: 1}, "size 0"},
		{"no rotated file", Options{Path: filepath.Join(dir, "a.log"), MaxSize: 1}, "keeps 0"},
		// The message is the platform's.
		{"a directory", Options{Path: dir, MaxSize: 1, MaxFiles: 1}, dir},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			if tc.o.Path != dir && !errors.Is(err, ErrOptions) {
				t.Errorf("%v is not ErrOptions", err)
			}
		})
	}
}

// A rotation that cannot rename (something in the way) drops the entry
// with an error, keeps the file's size bounded, and succeeds once the
// obstacle is gone.
func TestRotationBlocked(t *testing.T) {
	dir := tempDir(t)
	path := filepath.Join(dir, "b.log")
	l, err := Open(Options{Path: path, MaxSize: 10, MaxFiles: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := l.Write([]byte("12345678\n")); err != nil {
		t.Fatal(err)
	}
	block := Rotated(path, 1)
	if err := os.MkdirAll(filepath.Join(block, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Write([]byte("dropped\n")); err == nil {
		t.Fatal("a write needing a blocked rotation succeeded")
	}
	if b, _ := os.ReadFile(path); string(b) != "12345678\n" {
		t.Errorf("current file after the failed rotation: %q", b)
	}
	removeTree(t, block)
	if _, err := l.Write([]byte("kept\n")); err != nil {
		t.Fatal(err)
	}
	got := files(t, dir)
	want := map[string]string{"b.log": "kept\n", "b.1.log": "12345678\n"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

// Entries from many goroutines stay whole and none is lost.
func TestConcurrentWrites(t *testing.T) {
	dir := tempDir(t)
	path := filepath.Join(dir, "b.log")
	const writers, each = 8, 200
	l, err := Open(Options{Path: path, MaxSize: 1 << 20, MaxFiles: 3})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if _, err := fmt.Fprintf(l, "writer %d entry %03d\n", w, i); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	l.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
	if len(lines) != writers*each {
		t.Fatalf("%d lines, want %d", len(lines), writers*each)
	}
	seen := map[string]bool{}
	for _, ln := range lines {
		var w, i int
		if _, err := fmt.Sscanf(string(ln), "writer %d entry %d", &w, &i); err != nil {
			t.Fatalf("torn line %q", ln)
		}
		seen[string(ln)] = true
	}
	if len(seen) != writers*each {
		t.Errorf("%d distinct lines", len(seen))
	}
}

func TestRotatedName(t *testing.T) {
	for _, tc := range []struct {
		path string
		n    int
		want string
	}{
		{"/var/log/encoder-bridge.log", 1, "/var/log/encoder-bridge.1.log"},
		{"logs/bridge", 3, "logs/bridge.3"},
		{"a.b/c.txt", 2, "a.b/c.2.txt"},
	} {
		if got := Rotated(tc.path, tc.n); got != tc.want {
			t.Errorf("Rotated(%q, %d) = %q, want %q", tc.path, tc.n, got, tc.want)
		}
	}
}
