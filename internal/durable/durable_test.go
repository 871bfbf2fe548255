package durable

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

func TestWrite(t *testing.T) {
	tests := []struct {
		name     string
		write    func(path string, data []byte) error
		existing bool // a file is at path before the write
		wantErr  error
		wantMode fs.FileMode // checked on Unix
	}{
		{"file new", func(p string, d []byte) error { return WriteFile(p, d, 0o644) }, false, nil, 0o644},
		{"file replaces", func(p string, d []byte) error { return WriteFile(p, d, 0o640) }, true, nil, 0o640},
		{"secret new", WriteSecret, false, nil, 0o600},
		{"secret replaces", WriteSecret, true, nil, 0o600},
		{"create new", CreateSecret, false, nil, 0o600},
		{"create refuses", CreateSecret, true, fs.ErrExist, 0o644},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "f.json")
			want := "new\n"
			if tt.existing {
				if err := os.WriteFile(path, []byte("old\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			err := tt.write(path, []byte("new\n"))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				want = "old\n"
			}
			got, rerr := os.ReadFile(path)
			if rerr != nil || string(got) != want {
				t.Fatalf("content %q (%v), want %q", got, rerr, want)
			}
			if runtime.GOOS != "windows" {
				fi, err := os.Stat(path)
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != tt.wantMode {
					t.Errorf("mode %04o, want %04o", fi.Mode().Perm(), tt.wantMode)
				}
			}
			assertNoTemp(t, dir, "f.json")
		})
	}
}

// A rename that fails leaves the old file as it was and no temporary
// file behind.
func TestFailedRenameKeepsOld(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f.json")
	if err := os.WriteFile(path, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("rename refused")
	rename = func(string, string) error { return boom }
	t.Cleanup(func() { rename = os.Rename })

	for _, w := range []func(string, []byte) error{
		WriteSecret,
		func(p string, d []byte) error { return WriteFile(p, d, 0o644) },
	} {
		if err := w(path, []byte("new\n")); !errors.Is(err, boom) {
			t.Fatalf("err = %v, want the rename's error", err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != "old\n" {
			t.Fatalf("after a failed rename: %q (%v), want the old content", got, err)
		}
		assertNoTemp(t, dir, "f.json")
	}
}

// CreateSecret must not replace a file that appears between its check
// and the final step.
func TestCreateSecretRace(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f.json")
	tmp := filepath.Join(dir, "t")
	if err := os.WriteFile(tmp, []byte("new\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := link(tmp, path); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("link over an existing file: %v, want fs.ErrExist", err)
	}
	if got, _ := os.ReadFile(path); string(got) != "old\n" {
		t.Fatalf("existing file replaced: %q", got)
	}
}

func TestWriteMissingDir(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "f.json")
	if err := WriteSecret(path, []byte("x")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want fs.ErrNotExist", err)
	}
}

func TestMkdirSecret(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "state")
	if err := MkdirSecret(dir); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil || !fi.IsDir() {
		t.Fatalf("stat: %v", err)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("mode %04o, want owner-only", fi.Mode().Perm())
	}
	if err := MkdirSecret(dir); err != nil {
		t.Fatalf("again: %v", err)
	}
	if err := SyncDir(dir); err != nil {
		t.Fatalf("SyncDir: %v", err)
	}
}

func assertNoTemp(t *testing.T, dir, keep string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Name() != keep {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}
