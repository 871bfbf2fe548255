package cardfmt

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/encoder-bridge/encoder-bridge/internal/aescmac"
)

// AESKey is a secret AES-128 key. It prints as "[redacted]" with every fmt
// verb and in logs, and refuses to be marshalled: only WriteKeySet writes
// key bytes out.
type AESKey [16]byte

const redacted = "[redacted]"

// String returns "[redacted]".
func (AESKey) String() string { return redacted }

// GoString returns "[redacted]".
func (AESKey) GoString() string { return redacted }

// Format writes "[redacted]" whatever the verb and flags.
func (AESKey) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, redacted) }

var errMarshalKey = errors.New("cardfmt: AES keys are not marshalled; the key file is written by WriteKeySet")

// MarshalText refuses: key bytes are written only by WriteKeySet.
func (AESKey) MarshalText() ([]byte, error) { return nil, errMarshalKey }

// MarshalJSON refuses: key bytes are written only by WriteKeySet.
func (AESKey) MarshalJSON() ([]byte, error) { return nil, errMarshalKey }

func (k *AESKey) isZero() bool { return *k == AESKey{} }

// Purposes of card keys: the byte after the UID in the diversification
// input. They are part of the card format; 'M' is the record MAC key's,
// which is diversified from the other master key and never leaves the
// package.
const (
	PurposeClassicKeyA   byte = 'A' // 0x41 MIFARE Classic sector key A
	PurposeClassicKeyB   byte = 'B' // 0x42 MIFARE Classic sector key B
	PurposeMADKeyB       byte = 'S' // 0x53 MIFARE Classic MAD sector (sector 0) key B
	PurposeUltralightPWD byte = 'P' // 0x50 MIFARE Ultralight EV1 / NTAG PWD and PACK
	PurposeDESFireMaster byte = 'K' // 0x4B MIFARE DESFire application master key (key 0)
	PurposeDESFireRead   byte = 'R' // 0x52 MIFARE DESFire read key (key 1, locks)
	PurposeDESFireWrite  byte = 'W' // 0x57 MIFARE DESFire write key (key 2, encoders)
	PurposeDESFireUID    byte = 'U' // 0x55 MIFARE DESFire key 3, site-wide: reads a random-UID card's UID

	purposeRecordMAC byte = 'M' // 0x4D record MAC key, from the MAC master key
)

func knownCardKeyPurpose(p byte) bool {
	switch p {
	case PurposeClassicKeyA, PurposeClassicKeyB, PurposeMADKeyB, PurposeUltralightPWD,
		PurposeDESFireMaster, PurposeDESFireRead, PurposeDESFireWrite, PurposeDESFireUID:
		return true
	}
	return false
}

// KeyIDLen is the length of a key set's id.
const KeyIDLen = 8

// SiteKey is one version of a site's keys: a MAC master key and a
// diversification master key, both secret, both AES-128. It prints and
// logs without its keys. A SiteKey comes from a KeySet; the zero value
// has no keys and derives nothing.
type SiteKey struct {
	Version   uint8
	CreatedAt time.Time
	// VerifyUntil, when set, is the moment from which Open refuses records
	// sealed under this version (ErrRetiredKeyVersion), for example after
	// its keys leaked. Layouts still use its card keys, so that an encode
	// can re-key such a card under the current version. The current
	// version never has one.
	VerifyUntil time.Time
	// secret is behind a pointer so that even fmt's reflection on a value
	// holding a SiteKey shows an address, not key bytes.
	secret *siteSecret
}

type siteSecret struct {
	keyID    [KeyIDLen]byte
	mac, div AESKey
	macCMAC  *aescmac.Key
	divCMAC  *aescmac.Key
}

func newSiteKey(keyID [KeyIDLen]byte, version uint8, createdAt time.Time, mac, div AESKey) *SiteKey {
	return &SiteKey{
		Version:   version,
		CreatedAt: createdAt,
		secret: &siteSecret{
			keyID:   keyID,
			mac:     mac,
			div:     div,
			macCMAC: aescmac.New(mac),
			divCMAC: aescmac.New(div),
		},
	}
}

var errNoKeyMaterial = errors.New("cardfmt: site key has no key material (use one from a KeySet)")

// CardKey derives the card key for purpose (PurposeClassicKeyA,
// PurposeClassicKeyB, PurposeMADKeyB or PurposeUltralightPWD) of the card
// with the given UID: AN10922 AES-128 diversification of the
// diversification master key with M = UID || purpose || key id.
func (k *SiteKey) CardKey(purpose byte, uid []byte) ([16]byte, error) {
	if k == nil || k.secret == nil {
		return [16]byte{}, errNoKeyMaterial
	}
	if !knownCardKeyPurpose(purpose) {
		return [16]byte{}, fmt.Errorf("cardfmt: unknown card key purpose 0x%02x (want 'A', 'B', 'S', 'P', 'K', 'R', 'W' or 'U')", purpose)
	}
	if err := checkUID(uid); err != nil {
		return [16]byte{}, err
	}
	return k.secret.divCMAC.Diversify(diversificationInput(uid, purpose, k.secret.keyID)), nil
}

// recordMACKey derives K_mac for the card: AN10922 AES-128 diversification
// of the MAC master key with M = UID || 'M' || key id. uid has been
// checked.
func (k *SiteKey) recordMACKey(uid []byte) [16]byte {
	return k.secret.macCMAC.Diversify(diversificationInput(uid, purposeRecordMAC, k.secret.keyID))
}

// recordMAC is AES-CMAC(K_mac, body || len(UID) || UID || bound); bound
// is nil for format version 1.
func (k *SiteKey) recordMAC(body, uid, bound []byte) [16]byte {
	kmac := k.recordMACKey(uid)
	msg := make([]byte, 0, len(body)+1+len(uid)+len(bound))
	msg = append(msg, body...)
	msg = append(msg, byte(len(uid)))
	msg = append(msg, uid...)
	msg = append(msg, bound...)
	mac := CMAC(kmac, msg)
	clear(kmac[:])
	return mac
}

// diversificationInput is M = UID || purpose || key id: at most 10+1+8 =
// 19 bytes, within AN10922's 31.
func diversificationInput(uid []byte, purpose byte, keyID [KeyIDLen]byte) []byte {
	m := make([]byte, 0, len(uid)+1+KeyIDLen)
	m = append(m, uid...)
	m = append(m, purpose)
	return append(m, keyID[:]...)
}

// Format prints the version, creation time, any VerifyUntil and
// "[redacted]" for the keys, whatever the verb.
func (k SiteKey) Format(f fmt.State, _ rune) {
	until := ""
	if !k.VerifyUntil.IsZero() {
		until = " VerifyUntil:" + k.VerifyUntil.UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(f, "SiteKey{Version:%d CreatedAt:%s%s Keys:%s}", k.Version, k.CreatedAt.UTC().Format(time.RFC3339), until, redacted)
}

// MarshalLogObject logs the version, creation time and any VerifyUntil.
func (k SiteKey) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddUint8("version", k.Version)
	enc.AddTime("created_at", k.CreatedAt)
	if !k.VerifyUntil.IsZero() {
		enc.AddTime("verify_until", k.VerifyUntil)
	}
	return nil
}

// KeySet is a site's keys: an 8-byte key id and up to 255 versions of
// SiteKey, one of them current. Seal uses the current version; Open uses
// the version a record names, so cards sealed before a rotation stay
// readable while their version is kept. A KeySet is safe for concurrent
// use. Make one with GenerateKeySet or LoadKeySet: the zero KeySet holds
// no keys, and Seal and Open refuse it.
type KeySet struct {
	mu      sync.RWMutex
	id      [KeyIDLen]byte
	current uint8
	keys    []*SiteKey // highest version first
	// now is the clock Open checks VerifyUntil against; nil is time.Now.
	now func() time.Time
}

func (ks *KeySet) clock() time.Time {
	if ks.now != nil {
		return ks.now()
	}
	return time.Now()
}

// GenerateKeySet makes a key set with a new key id and key version 1,
// reading 8 + 16 + 16 bytes from r: crypto/rand.Reader in production.
func GenerateKeySet(r io.Reader) (*KeySet, error) {
	ks := &KeySet{}
	if _, err := io.ReadFull(r, ks.id[:]); err != nil {
		return nil, fmt.Errorf("cardfmt: generate key set: reading random bytes: %w", err)
	}
	sk, err := generateSiteKey(r, ks.id, 1)
	if err != nil {
		return nil, err
	}
	ks.keys = []*SiteKey{sk}
	ks.current = 1
	return ks, nil
}

func generateSiteKey(r io.Reader, id [KeyIDLen]byte, version uint8) (*SiteKey, error) {
	var mac, div AESKey
	if _, err := io.ReadFull(r, mac[:]); err != nil {
		return nil, fmt.Errorf("cardfmt: generate key version %d: reading random bytes: %w", version, err)
	}
	if _, err := io.ReadFull(r, div[:]); err != nil {
		return nil, fmt.Errorf("cardfmt: generate key version %d: reading random bytes: %w", version, err)
	}
	if err := checkKeyPair(&mac, &div); err != nil {
		return nil, fmt.Errorf("cardfmt: generate key version %d: the random source is broken: %w", version, err)
	}
	return newSiteKey(id, version, time.Now().UTC().Truncate(time.Second), mac, div), nil
}

// checkKeyPair rejects key material that only a broken random source or a
// hand-edited file produces.
func checkKeyPair(mac, div *AESKey) error {
	switch {
	case mac.isZero() || div.isZero():
		return errors.New("all-zero key")
	case *mac == *div:
		return errors.New("MAC and diversification master keys are equal")
	}
	return nil
}

// Rotate adds a new key version, one above the highest, reading 16 + 16
// bytes from r, and makes it current. The older versions stay so that
// cards sealed under them still open; Retire removes one.
func (ks *KeySet) Rotate(r io.Reader) (*SiteKey, error) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if len(ks.keys) == 0 {
		return nil, errEmptyKeySet
	}
	top := ks.keys[0].Version
	if top == 255 {
		return nil, errors.New("cardfmt: rotate: key version 255 is the last one; generate a new key set and re-encode every card")
	}
	sk, err := generateSiteKey(r, ks.id, top+1)
	if err != nil {
		return nil, err
	}
	ks.keys = slices.Insert(ks.keys, 0, sk)
	ks.current = sk.Version
	return sk, nil
}

// Retire removes key version v, which must not be the current one. Cards
// sealed under it then fail to open with ErrUnknownKeyVersion, and no
// layout can open them to re-encode them: remove a version once its cards
// have expired or been re-encoded. After a leak, RetireAt stops its
// records from verifying while its cards can still be re-keyed.
func (ks *KeySet) Retire(v uint8) error {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if v == ks.current {
		return fmt.Errorf("cardfmt: retire: key version %d is current; rotate first", v)
	}
	i := slices.IndexFunc(ks.keys, func(k *SiteKey) bool { return k.Version == v })
	if i < 0 {
		return fmt.Errorf("cardfmt: retire: no key version %d", v)
	}
	ks.keys = slices.Delete(ks.keys, i, i+1)
	return nil
}

// RetireAt stops records sealed under key version v from verifying from
// the moment t on, while keeping v's keys so that an encode can still
// open such a card and re-key it under the current version. v must not be
// the current version. Retire removes a version altogether.
func (ks *KeySet) RetireAt(v uint8, t time.Time) error {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if v == ks.current {
		return fmt.Errorf("cardfmt: retire: key version %d is current; rotate first", v)
	}
	if t.IsZero() {
		return errors.New("cardfmt: retire: no time given")
	}
	i := slices.IndexFunc(ks.keys, func(k *SiteKey) bool { return k.Version == v })
	if i < 0 {
		return fmt.Errorf("cardfmt: retire: no key version %d", v)
	}
	// A copy: callers may hold the old *SiteKey.
	k := *ks.keys[i]
	k.VerifyUntil = t.UTC().Truncate(time.Second)
	ks.keys[i] = &k
	return nil
}

// ID returns the key set's id. It is not secret: it goes into every
// diversification input, so that two sites never share card keys even by
// accident, and it names the key set in logs.
func (ks *KeySet) ID() [KeyIDLen]byte {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	return ks.id
}

var errEmptyKeySet = errors.New("cardfmt: key set holds no keys (use GenerateKeySet or LoadKeySet)")

// Current returns the version Seal uses; nil only for the zero KeySet.
func (ks *KeySet) Current() *SiteKey {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	for _, k := range ks.keys {
		if k.Version == ks.current {
			return k
		}
	}
	return nil
}

// currentVersion is Current().Version, 0 for the zero KeySet.
func (ks *KeySet) currentVersion() uint8 {
	if k := ks.Current(); k != nil {
		return k.Version
	}
	return 0
}

// Version returns key version v, if the set holds it.
func (ks *KeySet) Version(v uint8) (*SiteKey, bool) {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	for _, k := range ks.keys {
		if k.Version == v {
			return k, true
		}
	}
	return nil, false
}

// Versions lists the key versions held, newest (highest) first.
func (ks *KeySet) Versions() []uint8 {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	vs := make([]uint8, len(ks.keys))
	for i, k := range ks.keys {
		vs[i] = k.Version
	}
	return vs
}

// Format prints the key id, the current version and the versions, never
// the keys, whatever the verb.
func (ks *KeySet) Format(f fmt.State, _ rune) {
	if ks == nil {
		_, _ = io.WriteString(f, "KeySet(nil)")
		return
	}
	id := ks.ID()
	fmt.Fprintf(f, "KeySet{ID:%s Current:%d Versions:%v Keys:%s}", hex.EncodeToString(id[:]), ks.currentVersion(), ks.Versions(), redacted)
}

// MarshalLogObject logs the key id (hex), the current version and the
// versions held.
func (ks *KeySet) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	id := ks.ID()
	enc.AddString("key_id", hex.EncodeToString(id[:]))
	enc.AddUint8("current_version", ks.currentVersion())
	return enc.AddArray("versions", zapcore.ArrayMarshalerFunc(func(ae zapcore.ArrayEncoder) error {
		for _, v := range ks.Versions() {
			ae.AppendUint8(v)
		}
		return nil
	}))
}

// newKeySet assembles a key set from decoded parts, which must be
// non-empty, free of duplicate versions and contain current.
func newKeySet(id [KeyIDLen]byte, current uint8, keys []*SiteKey) *KeySet {
	keys = slices.Clone(keys)
	slices.SortFunc(keys, func(a, b *SiteKey) int { return int(b.Version) - int(a.Version) })
	return &KeySet{id: id, current: current, keys: keys}
}

// TryOrder lists the key versions in the order a layout should try them on
// a card: the current version first (cards are re-keyed to it), then the
// others newest first.
func (ks *KeySet) TryOrder() []*SiteKey {
	cur := ks.Current()
	out := []*SiteKey{}
	if cur != nil {
		out = append(out, cur)
	}
	for _, v := range ks.Versions() {
		if cur != nil && v == cur.Version {
			continue
		}
		if k, ok := ks.Version(v); ok {
			out = append(out, k)
		}
	}
	return out
}
