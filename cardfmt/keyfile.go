package cardfmt

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/encoder-bridge/encoder-bridge/internal/durable"
)

// KeyFileFormat is the value of the key file's "format" field.
const KeyFileFormat = "encoder-bridge-keys/1"

// maxKeyFileSize bounds what LoadKeySet reads: 255 versions take about
// 40 KiB.
const maxKeyFileSize = 1 << 20

// The key file is JSON:
//
//	{
//	  "format": "encoder-bridge-keys/1",
//	  "key_id": "<16 hex digits>",
//	  "current_version": 2,
//	  "versions": [
//	    {"version": 1, "created_at": "<RFC 3339>", "mac_key": "<32 hex digits>", "div_key": "<32 hex digits>",
//	     "verify_until": "<RFC 3339, optional>"},
//	    …
//	  ]
//	}
type keyFileJSON struct {
	Format         string           `json:"format"`
	KeyID          string           `json:"key_id"`
	CurrentVersion int              `json:"current_version"`
	Versions       []keyVersionJSON `json:"versions"`
}

type keyVersionJSON struct {
	Version   int    `json:"version"`
	CreatedAt string `json:"created_at"`
	MACKey    string `json:"mac_key"`
	DivKey    string `json:"div_key"`
	// VerifyUntil is optional: RFC 3339, see SiteKey.VerifyUntil.
	VerifyUntil string `json:"verify_until,omitempty"`
}

// keyFileError carries a message of its own (never key bytes) and the
// error it stands for.
type keyFileError struct {
	msg string
	err error
}

func (e *keyFileError) Error() string { return e.msg }
func (e *keyFileError) Unwrap() error { return e.err }

// LoadKeySet reads and validates the key file at path.
//
// A missing file gives an error that wraps fs.ErrNotExist and says how to
// create one. Except on Windows, a file whose mode has any group or other
// permission bit (mode&0o077 != 0) is refused with ErrKeyFileInsecure and
// the chmod command that fixes it; on Windows, access is governed by the
// ACL, which WriteKeySet sets and LoadKeySet does not check. A file that is not a valid key file gives
// ErrKeyFileInvalid with the offending field, as ParseKeySet.
func LoadKeySet(path string) (*KeySet, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &keyFileError{
				msg: fmt.Sprintf("key file %s does not exist: create one with \"encoder-bridge keys init --out %s\"", path, shellQuote(path)),
				err: err,
			}
		}
		return nil, fmt.Errorf("key file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrKeyFileInvalid, path)
	}
	if err := checkKeyFileMode(path, fi.Mode()); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	defer clear(data)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	if len(data) > maxKeyFileSize {
		return nil, fmt.Errorf("key file %s: %w: larger than %d bytes", path, ErrKeyFileInvalid, maxKeyFileSize)
	}
	ks, err := ParseKeySet(data)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return ks, nil
}

// checkKeyFileMode refuses group and other permission bits, except on
// Windows where the mode does not reflect the ACLs.
func checkKeyFileMode(path string, mode fs.FileMode) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	perm := mode.Perm()
	if perm&0o077 == 0 {
		return nil
	}
	what := "readable"
	if perm&0o044 == 0 {
		what = "writable"
	}
	return &keyFileError{
		msg: fmt.Sprintf("key file %s is %s by group or others (mode %04o): run \"chmod 600 %s\"", path, what, perm, shellQuote(path)),
		err: ErrKeyFileInsecure,
	}
}

// ParseKeySet decodes and validates the contents of a key file. Decoding
// is strict: an unknown field, a missing field, a value of the wrong type
// or range, a duplicate version or a current_version that is not among
// the versions gives ErrKeyFileInvalid with the field named, for example
// "versions[1].mac_key: must be 32 hex digits". No error contains key
// bytes.
func ParseKeySet(data []byte) (*KeySet, error) {
	ks, err := parseKeySet(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeyFileInvalid, err)
	}
	return ks, nil
}

// fieldProblem is a key file field that does not fit. Its message is made
// only of field names and fixed words, never of the field's value.
func fieldProblem(field, format string, args ...any) error {
	return errors.New(field + ": " + fmt.Sprintf(format, args...))
}

func parseKeySet(data []byte) (*KeySet, error) {
	top, err := decodeObject("", data)
	if err != nil {
		return nil, err
	}
	if err := checkFields("", top, "format", "key_id", "current_version", "versions"); err != nil {
		return nil, err
	}

	format, err := decodeString("format", top)
	if err != nil {
		return nil, err
	}
	if format != KeyFileFormat {
		if q, ok := safeQuote(format); ok {
			return nil, fieldProblem("format", "%s is not supported (want %q)", q, KeyFileFormat)
		}
		return nil, fieldProblem("format", "must be %q", KeyFileFormat)
	}

	idHex, err := decodeString("key_id", top)
	if err != nil {
		return nil, err
	}
	var id [KeyIDLen]byte
	if !decodeHex(id[:], idHex) {
		return nil, fieldProblem("key_id", "must be %d hex digits", 2*KeyIDLen)
	}

	current, err := decodeVersion("current_version", top)
	if err != nil {
		return nil, err
	}

	raw, ok := top["versions"]
	if !ok {
		return nil, fieldProblem("versions", "missing")
	}
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fieldProblem("versions", "must be a JSON array")
	}
	if len(list) == 0 {
		return nil, fieldProblem("versions", "must list at least one key version")
	}
	if len(list) > 255 {
		return nil, fieldProblem("versions", "at most 255 key versions, got %d", len(list))
	}
	keys := make([]*SiteKey, 0, len(list))
	seen := map[uint8]int{}
	for i, raw := range list {
		name := fmt.Sprintf("versions[%d]", i)
		sk, err := parseKeyVersion(name, raw, id)
		if err != nil {
			return nil, err
		}
		if j, dup := seen[sk.Version]; dup {
			return nil, fieldProblem(name+".version", "duplicates versions[%d] (version %d)", j, sk.Version)
		}
		seen[sk.Version] = i
		keys = append(keys, sk)
	}
	i, ok := seen[current]
	if !ok {
		return nil, fieldProblem("current_version", "version %d is not in versions", current)
	}
	if !keys[i].VerifyUntil.IsZero() {
		return nil, fieldProblem(fmt.Sprintf("versions[%d].verify_until", i), "the current version cannot have one (rotate first)")
	}
	return newKeySet(id, current, keys), nil
}

func parseKeyVersion(name string, data []byte, id [KeyIDLen]byte) (*SiteKey, error) {
	obj, err := decodeObject(name, data)
	if err != nil {
		return nil, err
	}
	if err := checkFields(name+".", obj, "version", "created_at", "mac_key", "div_key", "verify_until"); err != nil {
		return nil, err
	}
	v, err := decodeVersion(name+".version", obj)
	if err != nil {
		return nil, err
	}
	created, err := decodeString(name+".created_at", obj)
	if err != nil {
		return nil, err
	}
	createdAt, err := time.Parse(time.RFC3339, created)
	if err != nil {
		return nil, fieldProblem(name+".created_at", "must be an RFC 3339 time such as 2026-01-02T15:04:05Z")
	}
	var keys [2]AESKey
	for i, field := range [2]string{"mac_key", "div_key"} {
		s, err := decodeString(name+"."+field, obj)
		if err != nil {
			return nil, err
		}
		if !decodeHex(keys[i][:], s) {
			return nil, fieldProblem(name+"."+field, "must be 32 hex digits")
		}
		if keys[i].isZero() {
			return nil, fieldProblem(name+"."+field, "must not be all zeros")
		}
	}
	if keys[0] == keys[1] {
		return nil, fieldProblem(name, "mac_key and div_key must differ")
	}
	sk := newSiteKey(id, v, createdAt.UTC(), keys[0], keys[1])
	if _, ok := obj["verify_until"]; ok {
		s, err := decodeString(name+".verify_until", obj)
		if err != nil {
			return nil, err
		}
		until, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return nil, fieldProblem(name+".verify_until", "must be an RFC 3339 time such as 2026-01-02T15:04:05Z")
		}
		sk.VerifyUntil = until.UTC()
	}
	return sk, nil
}

// decodeObject decodes a JSON object into its raw fields; name is the
// field it is, "" for the whole file.
func decodeObject(name string, data []byte) (map[string]json.RawMessage, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil {
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			// The syntax error's own text quotes the offending character,
			// which may be part of a key: give the position only.
			return nil, fmt.Errorf("malformed JSON at line %d (byte %d)", 1+bytes.Count(data[:min(int(syn.Offset), len(data))], []byte{'\n'}), syn.Offset)
		}
		return nil, notObject(name)
	}
	if obj == nil {
		return nil, notObject(name)
	}
	// Unmarshal keeps the last of two members with one name: a hand-edited
	// file could hold two keys for one field, and the one not used would go
	// unnoticed.
	if dup, ok := duplicateMember(data); ok {
		msg := "duplicate field (name not shown: it looks like key material)"
		if q, ok := safeQuote(dup); ok {
			msg = "duplicate field " + q
		}
		if name == "" {
			return nil, errors.New(msg)
		}
		return nil, fieldProblem(name, "%s", msg)
	}
	return obj, nil
}

// duplicateMember returns the first member name that occurs twice in the
// JSON object data, which json.Unmarshal has accepted. Names compare after
// unescaping, as Unmarshal compares them.
func duplicateMember(data []byte) (string, bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if _, err := dec.Token(); err != nil {
		return "", false
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return "", false
		}
		name, _ := tok.(string)
		if seen[name] {
			return name, true
		}
		seen[name] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return "", false
		}
	}
	return "", false
}

func notObject(name string) error {
	if name == "" {
		return errors.New("must be a JSON object")
	}
	return fieldProblem(name, "must be a JSON object")
}

// checkFields rejects fields other than the known ones, naming the first
// in sorted order.
func checkFields(prefix string, obj map[string]json.RawMessage, known ...string) error {
	var unknown []string
	for k := range obj {
		if !slices.Contains(known, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	msg := "unknown field (name not shown: it looks like key material)"
	if q, ok := safeQuote(unknown[0]); ok {
		msg = "unknown field " + q
	}
	if prefix == "" {
		return errors.New(msg)
	}
	return fieldProblem(strings.TrimSuffix(prefix, "."), "%s", msg)
}

func decodeString(field string, obj map[string]json.RawMessage) (string, error) {
	raw, ok := obj[field[strings.LastIndexByte(field, '.')+1:]]
	if !ok {
		return "", fieldProblem(field, "missing")
	}
	var s *string
	if err := json.Unmarshal(raw, &s); err != nil || s == nil {
		return "", fieldProblem(field, "must be a JSON string")
	}
	return *s, nil
}

func decodeVersion(field string, obj map[string]json.RawMessage) (uint8, error) {
	raw, ok := obj[field[strings.LastIndexByte(field, '.')+1:]]
	if !ok {
		return 0, fieldProblem(field, "missing")
	}
	var v *int
	if err := json.Unmarshal(raw, &v); err != nil || v == nil || *v < 1 || *v > 255 {
		return 0, fieldProblem(field, "must be an integer from 1 to 255")
	}
	return uint8(*v), nil
}

// decodeHex decodes exactly len(dst) bytes of hex digits into dst.
func decodeHex(dst []byte, s string) bool {
	if len(s) != 2*len(dst) {
		return false
	}
	_, err := hex.Decode(dst, []byte(s))
	return err == nil
}

// safeQuote quotes a value from the key file for an error message if it
// is short, printable and holds no run of 16 or more hex digits, so that
// no message can carry a key or a large part of one.
func safeQuote(s string) (string, bool) {
	if len(s) > 40 {
		return "", false
	}
	run := 0
	for _, r := range s {
		if r < 0x20 || r > 0x7e {
			return "", false
		}
		if r < 0x80 && isHexDigit(byte(r)) {
			run++
			if run >= 16 {
				return "", false
			}
		} else {
			run = 0
		}
	}
	return fmt.Sprintf("%q", s), true
}

func isHexDigit(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// encodeKeySet is the key file's contents, versions in ascending order.
func encodeKeySet(ks *KeySet) []byte {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	kf := keyFileJSON{
		Format:         KeyFileFormat,
		KeyID:          hex.EncodeToString(ks.id[:]),
		CurrentVersion: int(ks.current),
	}
	for _, k := range slices.Backward(ks.keys) {
		kv := keyVersionJSON{
			Version:   int(k.Version),
			CreatedAt: k.CreatedAt.UTC().Format(time.RFC3339),
			MACKey:    hex.EncodeToString(k.secret.mac[:]),
			DivKey:    hex.EncodeToString(k.secret.div[:]),
		}
		if !k.VerifyUntil.IsZero() {
			kv.VerifyUntil = k.VerifyUntil.UTC().Format(time.RFC3339)
		}
		kf.Versions = append(kf.Versions, kv)
	}
	data, err := json.MarshalIndent(kf, "", "  ")
	if err != nil {
		// Strings and integers only: this cannot fail.
		panic("cardfmt: encoding key file: " + err.Error())
	}
	return append(data, '\n')
}

// WriteKeySet writes ks to the key file at path through package durable:
// owner-only (mode 0600; on Windows a protected ACL: SYSTEM,
// Administrators and the owner) before any key byte is written, and
// atomic, so that a crash leaves either the old file or the new one.
// Unless overwrite is set it refuses a path that exists, with an error
// wrapping fs.ErrExist; losing a key file loses every card sealed under
// it.
func WriteKeySet(path string, ks *KeySet, overwrite bool) error {
	if ks == nil {
		return errors.New("cardfmt: write key file: nil key set")
	}
	if ks.Current() == nil {
		return errEmptyKeySet
	}
	data := encodeKeySet(ks)
	defer clear(data)
	write := durable.CreateSecret
	if overwrite {
		write = durable.WriteSecret
	}
	if err := write(path, data); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return &keyFileError{
				msg: fmt.Sprintf("key file %s already exists; refusing to overwrite it", path),
				err: fs.ErrExist,
			}
		}
		return fmt.Errorf("write key file: %w", err)
	}
	return nil
}

// shellQuote quotes a path for a POSIX shell command in a message, only
// when it needs quoting.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-+:@,%=", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
