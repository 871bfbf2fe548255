package cardfmt

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

func sameKeys(t *testing.T, a, b *KeySet) {
	t.Helper()
	if a.ID() != b.ID() || a.Current().Version != b.Current().Version || !slices.Equal(a.Versions(), b.Versions()) {
		t.Fatalf("key sets differ: %v vs %v", a, b)
	}
	for _, v := range a.Versions() {
		ka, _ := a.Version(v)
		kb, _ := b.Version(v)
		if ka.secret.mac != kb.secret.mac || ka.secret.div != kb.secret.div || !ka.CreatedAt.Equal(kb.CreatedAt) {
			t.Fatalf("version %d differs", v)
		}
	}
}

func TestKeyFileRoundTrip(t *testing.T) {
	ks := testKeySet(t)
	rotateTestKeySet(t, ks)
	path := filepath.Join(t.TempDir(), "keys.json")
	if err := WriteKeySet(path, ks, false); err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("mode %04o, want 0600", fi.Mode().Perm())
		}
	}
	got, err := LoadKeySet(path)
	if err != nil {
		t.Fatal(err)
	}
	sameKeys(t, ks, got)

	// A record sealed before the round trip opens after it.
	rec := mustSeal(t, testCredential(), ks, uid7)
	if _, err := Open(rec, got, uid7); err != nil {
		t.Fatal(err)
	}

	// No temporary file is left behind.
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("directory holds %v", entries)
	}

	// The file is the documented JSON, versions oldest first.
	data, _ := os.ReadFile(path)
	var kf map[string]any
	if err := json.Unmarshal(data, &kf); err != nil {
		t.Fatal(err)
	}
	if kf["format"] != "encoder-bridge-keys/1" || kf["key_id"] != "0102030405060708" || kf["current_version"] != 2.0 {
		t.Fatalf("key file %s", data)
	}
	vs := kf["versions"].([]any)
	v0 := vs[0].(map[string]any)
	if len(vs) != 2 || v0["version"] != 1.0 || v0["mac_key"] != "101112131415161718191a1b1c1d1e1f" || v0["div_key"] != "202122232425262728292a2b2c2d2e2f" {
		t.Fatalf("key file %s", data)
	}
	if _, err := time.Parse(time.RFC3339, v0["created_at"].(string)); err != nil {
		t.Fatal(err)
	}
}

// A hand-written key file in the documented format loads.
func TestParseKeySetDocumentedExample(t *testing.T) {
	data := `{
  "format": "encoder-bridge-keys/1",
  "key_id": "0102030405060708",
  "current_version": 2,
  "versions": [
    {"version": 1, "created_at": "2026-01-02T03:04:05Z", "mac_key": "101112131415161718191A1B1C1D1E1F", "div_key": "202122232425262728292a2b2c2d2e2f"},
    {"version": 2, "created_at": "2026-06-01T00:00:00+02:00", "mac_key": "303132333435363738393a3b3c3d3e3f", "div_key": "404142434445464748494a4b4c4d4e4f"}
  ]
}`
	ks, err := ParseKeySet([]byte(data))
	if err != nil {
		t.Fatal(err)
	}
	want := testKeySet(t)
	rotateTestKeySet(t, want)
	if ks.ID() != want.ID() || ks.Current().Version != 2 || !slices.Equal(ks.Versions(), []uint8{2, 1}) {
		t.Fatalf("parsed %v", ks)
	}
	for _, v := range []uint8{1, 2} {
		a, _ := ks.Version(v)
		b, _ := want.Version(v)
		if a.secret.mac != b.secret.mac || a.secret.div != b.secret.div {
			t.Fatalf("version %d keys differ", v)
		}
	}
	v2, _ := ks.Version(2)
	if !v2.CreatedAt.Equal(time.Date(2026, 5, 31, 22, 0, 0, 0, time.UTC)) {
		t.Fatalf("created_at %v", v2.CreatedAt)
	}
	// current_version below the newest is allowed, and Rotate goes above
	// the newest.
	older := strings.Replace(data, `"current_version": 2`, `"current_version": 1`, 1)
	ks, err = ParseKeySet([]byte(older))
	if err != nil || ks.Current().Version != 1 {
		t.Fatalf("current_version 1: %v", err)
	}
	sk, err := ks.Rotate(bytes.NewReader(seq(0x50, 32)))
	if err != nil || sk.Version != 3 {
		t.Fatalf("rotate: %v, %v", sk, err)
	}
}

const validKeyFile = `{"format":"encoder-bridge-keys/1","key_id":"0102030405060708","current_version":1,
"versions":[{"version":1,"created_at":"2026-01-02T03:04:05Z","mac_key":"101112131415161718191a1b1c1d1e1f","div_key":"202122232425262728292a2b2c2d2e2f"}]}`

func TestParseKeySetErrors(t *testing.T) {
	if _, err := ParseKeySet([]byte(validKeyFile)); err != nil {
		t.Fatal(err)
	}
	r := func(old, new string) string {
		if !strings.Contains(validKeyFile, old) {
			t.Fatalf("%q not in the valid file", old)
		}
		return strings.Replace(validKeyFile, old, new, 1)
	}
	const v1 = `{"version":1,"created_at":"2026-01-02T03:04:05Z","mac_key":"101112131415161718191a1b1c1d1e1f","div_key":"202122232425262728292a2b2c2d2e2f"}`
	for _, tc := range []struct {
		name, data, want string
	}{
		{"empty", ``, "malformed JSON"},
		{"not an object", `[1,2]`, "must be a JSON object"},
		{"null", `null`, "must be a JSON object"},
		{"syntax error", r(`"current_version":1`, `"current_version":x1`), "malformed JSON at line 1"},
		{"trailing data", validKeyFile + `{}`, "malformed JSON"},
		{"unknown field", r(`"current_version"`, `"comment":"x","current_version"`), `unknown field "comment"`},
		{"unknown field in a version", r(`"version":1,`, `"version":1,"note":1,`), `versions[0]: unknown field "note"`},
		{"field name case", r(`"key_id"`, `"Key_ID"`), `unknown field "Key_ID"`},
		{"format missing", r(`"format":"encoder-bridge-keys/1",`, ``), "format: missing"},
		{"format other", r(`encoder-bridge-keys/1`, `encoder-bridge-keys/2`), `format: "encoder-bridge-keys/2" is not supported`},
		{"format number", r(`"encoder-bridge-keys/1"`, `1`), "format: must be a JSON string"},
		{"key_id short", r(`"0102030405060708"`, `"01020304050607"`), "key_id: must be 16 hex digits"},
		{"key_id not hex", r(`"0102030405060708"`, `"01020304050607zz"`), "key_id: must be 16 hex digits"},
		{"key_id null", r(`"0102030405060708"`, `null`), "key_id: must be a JSON string"},
		{"current_version missing", r(`"current_version":1,`, ``), "current_version: missing"},
		{"current_version 0", r(`"current_version":1`, `"current_version":0`), "current_version: must be an integer from 1 to 255"},
		{"current_version 256", r(`"current_version":1`, `"current_version":256`), "current_version: must be an integer from 1 to 255"},
		{"current_version fraction", r(`"current_version":1`, `"current_version":1.5`), "current_version: must be an integer from 1 to 255"},
		{"current_version string", r(`"current_version":1`, `"current_version":"1"`), "current_version: must be an integer from 1 to 255"},
		{"current_version not listed", r(`"current_version":1`, `"current_version":2`), "current_version: version 2 is not in versions"},
		{"versions missing", `{"format":"encoder-bridge-keys/1","key_id":"0102030405060708","current_version":1}`, "versions: missing"},
		{"versions empty", r(v1, ``), "versions: must list at least one key version"},
		{"versions object", r(`[`+v1+`]`, v1), "versions: must be a JSON array"},
		{"version not an object", r(v1, `1`), "versions[0]: must be a JSON object"},
		{"version missing", r(`"version":1,`, ``), "versions[0].version: missing"},
		{"version 0", r(`"version":1,`, `"version":0,`), "versions[0].version: must be an integer from 1 to 255"},
		{"duplicate version", r(v1, v1+","+strings.Replace(v1, "1011", "9911", 1)), "versions[1].version: duplicates versions[0] (version 1)"},
		{"created_at missing", r(`"created_at":"2026-01-02T03:04:05Z",`, ``), "versions[0].created_at: missing"},
		{"created_at bad", r(`2026-01-02T03:04:05Z`, `2026-01-02`), "versions[0].created_at: must be an RFC 3339 time"},
		{"mac_key missing", r(`"mac_key":"101112131415161718191a1b1c1d1e1f",`, ``), "versions[0].mac_key: missing"},
		{"mac_key short", r(`101112131415161718191a1b1c1d1e1f`, `101112131415161718191a1b1c1d1e`), "versions[0].mac_key: must be 32 hex digits"},
		{"mac_key not hex", r(`101112131415161718191a1b1c1d1e1f`, `101112131415161718191a1b1c1d1e1g`), "versions[0].mac_key: must be 32 hex digits"},
		{"mac_key zero", r(`101112131415161718191a1b1c1d1e1f`, strings.Repeat("0", 32)), "versions[0].mac_key: must not be all zeros"},
		{"div_key not hex", r(`202122232425262728292a2b2c2d2e2f`, `202122232425262728292a2b2c2d2e2x`), "versions[0].div_key: must be 32 hex digits"},
		{"div_key number", r(`"202122232425262728292a2b2c2d2e2f"`, `1`), "versions[0].div_key: must be a JSON string"},
		{"equal keys", r(`202122232425262728292a2b2c2d2e2f`, `101112131415161718191a1b1c1d1e1f`), "versions[0]: mac_key and div_key must differ"},
		{"verify_until bad", r(`"version":1,`, `"version":1,"verify_until":"2026-13-01T00:00:00Z",`), "versions[0].verify_until: must be an RFC 3339 time"},
		{"verify_until number", r(`"version":1,`, `"version":1,"verify_until":1,`), "versions[0].verify_until: must be a JSON string"},
		{"verify_until on the current version", r(`"version":1,`, `"version":1,"verify_until":"2026-12-01T00:00:00Z",`), "versions[0].verify_until: the current version cannot have one"},
		{"duplicate field", r(`"current_version":1`, `"current_version":1,"current_version":1`), `duplicate field "current_version"`},
		{"duplicate field, escaped", r(`"current_version":1`, `"current_version":1,"current_\u0076ersion":1`), `duplicate field "current_version"`},
		{"duplicate key in a version", r(`"div_key":"202122232425262728292a2b2c2d2e2f"`, `"div_key":"202122232425262728292a2b2c2d2e2f","div_key":"303132333435363738393a3b3c3d3e3f"`), `versions[0]: duplicate field "div_key"`},
		{"duplicate versions array", r(`"versions":[`+v1+`]`, `"versions":[`+v1+`],"versions":[`+v1+`]`), `duplicate field "versions"`},
		{"unknown field named like a key", r(`"current_version"`, `"101112131415161718191a1b1c1d1e1f":1,"current_version"`), "unknown field (name not shown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseKeySet([]byte(tc.data))
			if !errors.Is(err, ErrKeyFileInvalid) {
				t.Fatalf("ParseKeySet: %v, want ErrKeyFileInvalid", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q lacks %q", err, tc.want)
			}
			assertNoHexRun(t, err.Error())
		})
	}
}

var hexRun = regexp.MustCompile(`[0-9a-fA-F]{16,}`)

// assertNoHexRun fails if an error message holds 16 or more hex digits in
// a row: no message about a key file may carry key material.
func assertNoHexRun(t testing.TB, msg string) {
	t.Helper()
	if m := hexRun.FindString(msg); m != "" {
		t.Fatalf("message carries %q: %s", m, msg)
	}
}

func TestLoadKeySetMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	_, err := LoadKeySet(path)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("LoadKeySet: %v, want fs.ErrNotExist", err)
	}
	for _, want := range []string{path, "encoder-bridge keys init --out " + shellQuote(path)} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q lacks %q", err, want)
		}
	}
}

func TestLoadKeySetInsecureMode(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("Windows key files are protected by ACLs, not mode bits")
	}
	ks := testKeySet(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "keys.json")
	if err := WriteKeySet(path, ks, false); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mode fs.FileMode
		want string
	}{
		{0o644, `key file ` + path + ` is readable by group or others (mode 0644): run "chmod 600 ` + path + `"`},
		{0o640, "readable by group or others (mode 0640)"},
		{0o604, "readable by group or others (mode 0604)"},
		{0o620, "writable by group or others (mode 0620)"},
		{0o602, "writable by group or others (mode 0602)"},
		{0o610, "(mode 0610)"},
	} {
		if err := os.Chmod(path, tc.mode); err != nil {
			t.Fatal(err)
		}
		_, err := LoadKeySet(path)
		if !errors.Is(err, ErrKeyFileInsecure) {
			t.Fatalf("mode %04o: %v, want ErrKeyFileInsecure", tc.mode, err)
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("mode %04o: %q lacks %q", tc.mode, err, tc.want)
		}
	}
	for _, mode := range []fs.FileMode{0o600, 0o400} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadKeySet(path); err != nil {
			t.Fatalf("mode %04o: %v", mode, err)
		}
	}

	// A path that needs quoting is quoted in the fix.
	odd := filepath.Join(dir, "my keys.json")
	if err := WriteKeySet(odd, ks, false); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(odd, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeySet(odd); err == nil || !strings.Contains(err.Error(), `run "chmod 600 '`+odd+`'"`) {
		t.Fatalf("quoted path: %v", err)
	}
}

func TestLoadKeySetInvalidContents(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys.json")
	bad := strings.Replace(validKeyFile, "101112131415161718191a1b1c1d1e1f", "1011121314151617", 1)
	if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadKeySet(path)
	if !errors.Is(err, ErrKeyFileInvalid) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "versions[0].mac_key: must be 32 hex digits") {
		t.Fatalf("LoadKeySet: %v", err)
	}
	assertNoHexRun(t, strings.ReplaceAll(err.Error(), path, ""))

	if _, err := LoadKeySet(dir); err == nil {
		t.Fatal("loaded a directory")
	}
	if err := os.WriteFile(path, bytes.Repeat([]byte(" "), maxKeyFileSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeySet(path); !errors.Is(err, ErrKeyFileInvalid) {
		t.Fatalf("oversized file: %v", err)
	}
}

func TestWriteKeySetOverwrite(t *testing.T) {
	first := testKeySet(t)
	second, err := GenerateKeySet(bytes.NewReader(seq(0x80, 40)))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "keys.json")
	if err := WriteKeySet(path, first, false); err != nil {
		t.Fatal(err)
	}
	err = WriteKeySet(path, second, false)
	if !errors.Is(err, fs.ErrExist) || !strings.Contains(err.Error(), path) {
		t.Fatalf("second write: %v, want fs.ErrExist naming the path", err)
	}
	got, err := LoadKeySet(path)
	if err != nil {
		t.Fatal(err)
	}
	sameKeys(t, first, got)

	if err := WriteKeySet(path, second, true); err != nil {
		t.Fatal(err)
	}
	got, err = LoadKeySet(path)
	if err != nil {
		t.Fatal(err)
	}
	sameKeys(t, second, got)

	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("directory holds %v", entries)
	}

	if err := WriteKeySet(filepath.Join(dir, "missing", "keys.json"), first, false); err == nil {
		t.Fatal("wrote into a missing directory")
	}
	if err := WriteKeySet(filepath.Join(dir, "k.json"), nil, false); err == nil {
		t.Fatal("wrote a nil key set")
	}
}

// FuzzParseKeySet: decoding never panics, never puts key material into an
// error, and what it accepts encodes back to an equal key set.
func FuzzParseKeySet(f *testing.F) {
	f.Add([]byte(validKeyFile))
	ks := testKeySet(f)
	rotateTestKeySet(f, ks)
	f.Add(encodeKeySet(ks))
	f.Add([]byte(`{"format":"encoder-bridge-keys/1"}`))
	f.Add([]byte(`{"versions":[{}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ks, err := ParseKeySet(data)
		if err != nil {
			if !errors.Is(err, ErrKeyFileInvalid) {
				t.Fatalf("error does not wrap ErrKeyFileInvalid: %v", err)
			}
			assertNoHexRun(t, err.Error())
			return
		}
		back, err := ParseKeySet(encodeKeySet(ks))
		if err != nil {
			t.Fatalf("re-encoded key file does not parse: %v", err)
		}
		if back.ID() != ks.ID() || back.Current().Version != ks.Current().Version || !slices.Equal(back.Versions(), ks.Versions()) {
			t.Fatal("re-encoded key set differs")
		}
		for _, v := range ks.Versions() {
			a, _ := ks.Version(v)
			b, _ := back.Version(v)
			if a.secret.mac != b.secret.mac || a.secret.div != b.secret.div || !a.CreatedAt.Truncate(time.Second).Equal(b.CreatedAt) {
				t.Fatalf("version %d differs after re-encoding", v)
			}
		}
	})
}

// verify_until is optional, written only when set, and survives a round
// trip through the file.
func TestKeyFileVerifyUntil(t *testing.T) {
	ks := testKeySet(t)
	rotateTestKeySet(t, ks)
	if bytes.Contains(encodeKeySet(ks), []byte("verify_until")) {
		t.Fatal("verify_until written for versions without one")
	}
	until := time.Date(2026, 12, 1, 12, 30, 0, 0, time.UTC)
	if err := ks.RetireAt(1, until); err != nil {
		t.Fatal(err)
	}
	data := encodeKeySet(ks)
	if !bytes.Contains(data, []byte(`"verify_until": "2026-12-01T12:30:00Z"`)) {
		t.Fatalf("key file %s", data)
	}
	back, err := ParseKeySet(data)
	if err != nil {
		t.Fatal(err)
	}
	k1, _ := back.Version(1)
	k2, _ := back.Version(2)
	if !k1.VerifyUntil.Equal(until) || !k2.VerifyUntil.IsZero() {
		t.Fatalf("verify_until after a round trip: %v, %v", k1.VerifyUntil, k2.VerifyUntil)
	}
}
