package cardfmt

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestGenerateKeySet(t *testing.T) {
	ks := testKeySet(t)
	if ks.ID() != testKeyID {
		t.Fatalf("ID %x", ks.ID())
	}
	if ks.Current().Version != 1 || !slices.Equal(ks.Versions(), []uint8{1}) {
		t.Fatalf("versions %v, current %d", ks.Versions(), ks.Current().Version)
	}
	if _, ok := ks.Version(2); ok {
		t.Fatal("version 2 present")
	}
	if sk, ok := ks.Version(1); !ok || sk != ks.Current() || sk.CreatedAt.IsZero() {
		t.Fatalf("version 1: %v %v", sk, ok)
	}

	for _, tc := range []struct {
		name string
		r    io.Reader
	}{
		{"short read", bytes.NewReader(seq(1, 39))},
		{"all-zero MAC key", bytes.NewReader(slices.Concat(seq(1, 8), make([]byte, 16), seq(0x20, 16)))},
		{"all-zero diversification key", bytes.NewReader(slices.Concat(seq(1, 8), seq(0x10, 16), make([]byte, 16)))},
		{"equal keys", bytes.NewReader(slices.Concat(seq(1, 8), seq(0x10, 16), seq(0x10, 16)))},
	} {
		if _, err := GenerateKeySet(tc.r); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}

func TestRotateLimit(t *testing.T) {
	ks := testKeySet(t)
	r := bytes.NewReader(bytes.Repeat(slices.Concat(testMACKey2[:], testDivKey2[:]), 260))
	for v := 2; v <= 255; v++ {
		sk, err := ks.Rotate(r)
		if err != nil || int(sk.Version) != v {
			t.Fatalf("rotate to %d: %v", v, err)
		}
	}
	if _, err := ks.Rotate(r); err == nil {
		t.Fatal("rotated past version 255")
	}
	if vs := ks.Versions(); len(vs) != 255 || vs[0] != 255 || vs[254] != 1 {
		t.Fatalf("versions %v", vs)
	}
}

// Card keys follow AN10922 with M = UID || purpose || key id under the
// diversification master key, and differ by purpose, card, version and
// key set.
func TestCardKey(t *testing.T) {
	ks := testKeySet(t)
	sk := ks.Current()
	seen := map[[16]byte]string{}
	for _, p := range []byte{PurposeClassicKeyA, PurposeClassicKeyB, PurposeMADKeyB, PurposeUltralightPWD} {
		for _, uid := range [][]byte{uid4, uid7, uid10} {
			k, err := sk.CardKey(p, uid)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := DiversifyAES128(testDivKey1, slices.Concat(uid, []byte{p}, testKeyID[:]))
			if k != want {
				t.Fatalf("CardKey(%c, %x) = %x, want %x", p, uid, k, want)
			}
			name := fmt.Sprintf("%c/%x", p, uid)
			if prev, dup := seen[k]; dup {
				t.Fatalf("%s and %s share a key", prev, name)
			}
			seen[k] = name
		}
	}
	// The record MAC key comes from the other master key.
	kmac := sk.recordMACKey(uid7)
	if _, dup := seen[kmac]; dup {
		t.Fatal("record MAC key equals a card key")
	}
	wantMAC, _ := DiversifyAES128(testMACKey1, slices.Concat(uid7, []byte{'M'}, testKeyID[:]))
	if kmac != wantMAC {
		t.Fatal("record MAC key is not AN10922 of the MAC master key")
	}

	for _, p := range []byte{'M', 0, 'a', 'Z'} {
		if _, err := sk.CardKey(p, uid7); err == nil {
			t.Errorf("purpose %q accepted", p)
		}
	}
	if _, err := sk.CardKey(PurposeClassicKeyA, []byte{1, 2, 3}); err == nil {
		t.Error("3-byte UID accepted")
	}
	if _, err := (&SiteKey{}).CardKey(PurposeClassicKeyA, uid7); err == nil {
		t.Error("zero SiteKey derived a key")
	}

	v2 := rotateTestKeySet(t, ks)
	k1, _ := sk.CardKey(PurposeClassicKeyA, uid7)
	k2, _ := v2.CardKey(PurposeClassicKeyA, uid7)
	if k1 == k2 {
		t.Fatal("key versions share card keys")
	}

	// Another key id, same master keys: other card keys.
	other, err := GenerateKeySet(bytes.NewReader(slices.Concat(seq(0xa0, 8), testMACKey1[:], testDivKey1[:])))
	if err != nil {
		t.Fatal(err)
	}
	k3, _ := other.Current().CardKey(PurposeClassicKeyA, uid7)
	if k1 == k3 {
		t.Fatal("key id is not part of the diversification input")
	}
}

// keyHexes lists every hex form of every key in ks, for redaction checks.
func keyHexes(ks *KeySet) []string {
	var out []string
	for _, v := range ks.Versions() {
		sk, _ := ks.Version(v)
		for _, k := range []AESKey{sk.secret.mac, sk.secret.div} {
			h := hex.EncodeToString(k[:])
			out = append(out, h, strings.ToUpper(h), h[:16], h[16:])
			// Also as fmt prints raw byte arrays.
			out = append(out, strings.Trim(fmt.Sprint([16]byte(k)), "[]"))
		}
	}
	return out
}

func assertNoKeys(t *testing.T, what, s string, ks *KeySet) {
	t.Helper()
	for _, h := range keyHexes(ks) {
		if strings.Contains(s, h) {
			t.Fatalf("%s leaks key material %q: %s", what, h, s)
		}
	}
}

func TestRedaction(t *testing.T) {
	ks := testKeySet(t)
	rotateTestKeySet(t, ks)
	sk := ks.Current()
	key := sk.secret.mac
	holder := struct {
		KS  *KeySet
		SK  SiteKey
		Key AESKey
	}{ks, *sk, key}

	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%q", "%d", "%T %v"} {
		for name, v := range map[string]any{
			"*KeySet": ks, "*SiteKey": sk, "SiteKey": *sk, "AESKey": key, "*AESKey": &key, "struct": holder,
		} {
			out := fmt.Sprintf(verb, v)
			assertNoKeys(t, name+" "+verb, out, ks)
		}
	}
	if got := fmt.Sprintf("%v|%s|%#v|%x", key, key, key, key); got != "[redacted]|[redacted]|[redacted]|[redacted]" {
		t.Errorf("AESKey prints %q", got)
	}
	if key.String() != "[redacted]" || key.GoString() != "[redacted]" {
		t.Error("AESKey String/GoString")
	}
	if s := fmt.Sprint(ks); !strings.Contains(s, "0102030405060708") || !strings.Contains(s, "[2 1]") {
		t.Errorf("KeySet prints %q, want its id and versions", s)
	}
	if _, err := key.MarshalText(); err == nil {
		t.Error("AESKey.MarshalText succeeded")
	}
	if _, err := key.MarshalJSON(); err == nil {
		t.Error("AESKey.MarshalJSON succeeded")
	}

	core, logs := observer.New(zapcore.DebugLevel)
	var buf bytes.Buffer
	jsonCore := zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(&buf), zapcore.DebugLevel)
	log := zap.New(zapcore.NewTee(core, jsonCore))
	log.Info("keys",
		zap.Object("keyset", ks),
		zap.Any("keyset_any", ks),
		zap.Object("sitekey", sk),
		zap.Any("sitekey_any", *sk),
		zap.Any("aeskey", key),
		zap.Reflect("aeskey_reflect", key),
		zap.Reflect("keyset_reflect", ks),
		zap.Reflect("sitekey_reflect", sk),
	)
	if err := log.Sync(); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	assertNoKeys(t, "zap JSON", out, ks)
	for _, want := range []string{`"key_id":"0102030405060708"`, `"versions":[2,1]`, `"current_version":2`, `"aeskey":"[redacted]"`, `"version":2`} {
		if !strings.Contains(out, want) {
			t.Errorf("zap output lacks %s: %s", want, out)
		}
	}
	for _, e := range logs.All() {
		assertNoKeys(t, "zap fields", fmt.Sprint(e.ContextMap()), ks)
	}
}

func TestKeySetConcurrentUse(t *testing.T) {
	ks := testKeySet(t)
	c := testCredential()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 50 {
				rec, err := Seal(c, ks, uid7)
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := Open(rec, ks, uid7); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		r := bytes.NewReader(bytes.Repeat(slices.Concat(testMACKey2[:], testDivKey2[:]), 10))
		for range 10 {
			if _, err := ks.Rotate(r); err != nil {
				t.Error(err)
				return
			}
		}
	})
	wg.Wait()
}

// A version retired at a moment keeps its keys but stops verifying from
// that moment on; the current version cannot be retired.
func TestRetireAt(t *testing.T) {
	ks := testKeySet(t)
	old := mustSeal(t, testCredential(), ks, uid7)
	bound := []byte{0x42, 0x01} // layout bytes a format 2 record covers
	oldBound, err := SealBound(testCredential(), ks, uid7, bound)
	if err != nil {
		t.Fatal(err)
	}
	rotateTestKeySet(t, ks)
	v1, _ := ks.Version(1)
	until := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	if err := ks.RetireAt(1, until); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		now  time.Time
		want error
	}{
		{"a second before", until.Add(-time.Second), nil},
		{"at the moment", until, ErrRetiredKeyVersion},
		{"a year after", until.AddDate(1, 0, 0), ErrRetiredKeyVersion},
	} {
		ks.now = func() time.Time { return tc.now }
		_, err := Open(old, ks, uid7)
		if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("%s: Open: %v, want %v", tc.name, err, tc.want)
		}
		if tc.want != nil && ReasonFor(err) != ReasonRetiredKeyVersion {
			t.Errorf("%s: reason %q", tc.name, ReasonFor(err))
		}
		_, err = OpenBound(oldBound, ks, uid7, bound)
		if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("%s: OpenBound: %v, want %v", tc.name, err, tc.want)
		}
	}
	// The keys stay: layouts still open and re-key such cards.
	k, ok := ks.Version(1)
	if !ok || !k.VerifyUntil.Equal(until) || len(ks.TryOrder()) != 2 {
		t.Fatalf("version 1 after RetireAt: %v %v", k, ok)
	}
	if !v1.VerifyUntil.IsZero() {
		t.Fatal("RetireAt changed a SiteKey a caller held")
	}
	// Records under the current version are not affected.
	if _, err := Open(mustSeal(t, testCredential(), ks, uid7), ks, uid7); err != nil {
		t.Fatal(err)
	}
	if err := ks.RetireAt(2, until); err == nil || !strings.Contains(err.Error(), "current") {
		t.Fatalf("RetireAt(current): %v", err)
	}
	if err := ks.RetireAt(9, until); err == nil {
		t.Fatal("RetireAt of a missing version succeeded")
	}
	if err := ks.Retire(2); err == nil || !strings.Contains(err.Error(), "current") {
		t.Fatalf("Retire(current): %v", err)
	}
}
