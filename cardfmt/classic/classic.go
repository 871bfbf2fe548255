// Package classic lays the credential record (cardfmt) onto MIFARE Classic
// 1K and 4K cards: a MAD1 entry for the application, sector keys
// diversified per card from the site's secret master key, the record in the
// data blocks of the application's sectors, trailers written after the
// data. docs/card-format.md gives the byte layout and APDU sequences.
//
// It talks to the card through the small Tag interface; it must not import
// bridge or reader/pcsc.
package classic

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/encoder-bridge/encoder-bridge/cardfmt"
	"github.com/encoder-bridge/encoder-bridge/reader"
)

// Tag is what the layout needs from a card connection; *reader.Tag
// implements it.
type Tag interface {
	LoadKey(ctx context.Context, slot byte, key []byte) error
	Authenticate(ctx context.Context, block int, kt reader.KeyType, slot byte) error
	ReadBinary(ctx context.Context, block, n int) ([]byte, error)
	UpdateBinary(ctx context.Context, block int, data []byte) error
	// Reset re-activates the card; it fails with reader.ErrCardChanged
	// when another card answers (two cards in the field).
	Reset(ctx context.Context) error
}

var _ Tag = (*reader.Tag)(nil)

const (
	blockSize = 16
	// sectorData is the data capacity of sectors 1..15 (3 blocks each).
	sectorData = 3 * blockSize
	// Capacity is the largest record the layout holds.
	Capacity = madSectors * sectorData
)

// transportKey is the key every sector of a new card opens with.
var transportKey = []byte{0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}

// appAccess is the access-condition part (bytes 6..9) of this system's
// trailers: data blocks readable with key A or B and writable only with key
// B (C1C2C3 = 100); in the trailer key A, access bits and key B writable only
// with key B, key B never readable (011). Locks need only key A.
var appAccess = []byte{0x78, 0x77, 0x88, 0x00}

// madAccess is the same for sector 0, with the MAD general purpose byte.
var madAccess = []byte{0x78, 0x77, 0x88, madGPB}

// Supports reports whether t is a Classic card this layout handles.
func Supports(t reader.Technology) bool {
	return t == reader.TechClassic1K || t == reader.TechClassic4K
}

func trailerBlock(sector int) int { return 4*sector + 3 }

// dataBlocks lists the data blocks of sector (1..15), in order.
func dataBlocks(sector int) []int {
	b := 4 * sector
	return []int{b, b + 1, b + 2}
}

// cardKeys are one key version's keys for one card.
type cardKeys struct {
	version uint8
	a, b    []byte // application sectors
	madB    []byte // sector 0 key B
}

func deriveKeys(k *cardfmt.SiteKey, uid []byte) (cardKeys, error) {
	out := cardKeys{version: k.Version}
	for _, p := range []struct {
		purpose byte
		dst     *[]byte
	}{
		{cardfmt.PurposeClassicKeyA, &out.a},
		{cardfmt.PurposeClassicKeyB, &out.b},
		{cardfmt.PurposeMADKeyB, &out.madB},
	} {
		full, err := k.CardKey(p.purpose, uid)
		if err != nil {
			return cardKeys{}, err
		}
		*p.dst = full[:6]
	}
	return out, nil
}

// allKeys derives every version's keys in cardfmt.KeySet.TryOrder: the
// current version first.
func allKeys(ks *cardfmt.KeySet, uid []byte) ([]cardKeys, error) {
	var out []cardKeys
	for _, k := range ks.TryOrder() {
		ck, err := deriveKeys(k, uid)
		if err != nil {
			return nil, err
		}
		out = append(out, ck)
	}
	if len(out) == 0 {
		return nil, errors.New("classic: key set has no keys")
	}
	return out, nil
}

// session tracks the reader's key slot and the card's authentication so
// that no key is loaded and no sector authenticated twice.
type session struct {
	t       Tag
	loaded  []byte
	sector  int // authenticated sector, -1 for none
	keyType reader.KeyType
	key     []byte
}

const slot = 0x00

func newSession(t Tag) *session { return &session{t: t, sector: -1} }

// auth authenticates sector with key. A refused key halts a Classic chip,
// so the card is reset before the error is returned; the caller may try
// another key straight away.
func (s *session) auth(ctx context.Context, sector int, kt reader.KeyType, key []byte) error {
	if s.sector == sector && s.keyType == kt && bytes.Equal(s.key, key) {
		return nil
	}
	if !bytes.Equal(s.loaded, key) {
		if err := s.t.LoadKey(ctx, slot, key); err != nil {
			return err
		}
		s.loaded = key
	}
	err := s.t.Authenticate(ctx, trailerBlock(sector), kt, slot)
	if err != nil {
		s.sector = -1
		if errors.Is(err, reader.ErrAuthFailed) {
			if rerr := s.t.Reset(ctx); rerr != nil {
				return rerr
			}
		}
		return err
	}
	s.sector, s.keyType, s.key = sector, kt, key
	return nil
}

type candidate struct {
	kt      reader.KeyType
	key     []byte
	version uint8 // 0 for the transport key
}

// authAny tries candidates in order and returns the one the sector took.
// Only refused keys move on to the next; transport errors end the attempt.
func (s *session) authAny(ctx context.Context, sector int, cands []candidate) (candidate, error) {
	for _, c := range cands {
		err := s.auth(ctx, sector, c.kt, c.key)
		if err == nil {
			return c, nil
		}
		if !errors.Is(err, reader.ErrAuthFailed) {
			return candidate{}, err
		}
	}
	return candidate{}, reader.ErrAuthFailed
}

func (s *session) read(ctx context.Context, block int) ([]byte, error) {
	return s.t.ReadBinary(ctx, block, blockSize)
}

// directory is what sector 0 told about the card.
type directory struct {
	mad        *mad // nil: no valid MAD
	madKey     candidate
	raw        []byte // blocks 1 and 2 as read
	foreignMAD bool   // readable with the MAD key but not a valid directory
}

// readDirectory opens sector 0 with the public MAD key or, on a new card,
// the transport key, and reads the MAD. A card whose sector 0 takes
// neither is keyed by another system.
func readDirectory(ctx context.Context, s *session) (directory, error) {
	c, err := s.authAny(ctx, 0, []candidate{
		{kt: reader.KeyA, key: madKeyA},
		{kt: reader.KeyA, key: transportKey},
	})
	if errors.Is(err, reader.ErrAuthFailed) {
		return directory{}, fmt.Errorf("classic: sector 0 takes neither the MAD key nor the transport key: %w", cardfmt.ErrForeign)
	}
	if err != nil {
		return directory{}, err
	}
	b1, err := s.read(ctx, 1)
	if err != nil {
		return directory{}, err
	}
	b2, err := s.read(ctx, 2)
	if err != nil {
		return directory{}, err
	}
	d := directory{madKey: c, raw: append(b1, b2...)}
	m, err := parseMAD(d.raw)
	switch {
	case err == nil:
		d.mad = m
	case bytes.Equal(c.key, madKeyA):
		// Someone keyed sector 0 as a MAD sector but the directory is
		// not valid: this system always writes it whole before the keys.
		d.foreignMAD = true
	}
	return d, nil
}

// Scan reads and verifies the record. A card without a valid record is a
// successful scan with a Reason; errors are transport failures.
func Scan(ctx context.Context, t Tag, info reader.Info, ks *cardfmt.KeySet) (cardfmt.Scan, error) {
	if !Supports(info.Technology) {
		return cardfmt.Scan{}, fmt.Errorf("classic: %s: %w", info.Technology, cardfmt.ErrIncompatible)
	}
	keys, err := allKeys(ks, info.UID)
	if err != nil {
		return cardfmt.Scan{}, err
	}
	s := newSession(t)
	dir, err := readDirectory(ctx, s)
	if errors.Is(err, cardfmt.ErrForeign) {
		return cardfmt.Verdict(cardfmt.Record{}, err)
	}
	if err != nil {
		return cardfmt.Scan{}, err
	}
	var ours []int
	if dir.mad != nil {
		ours = dir.mad.sectorsWith(AppAID)
	}
	if len(ours) == 0 {
		if dir.foreignMAD || (dir.mad != nil && dir.mad.foreignApps()) {
			return cardfmt.Verdict(cardfmt.Record{}, fmt.Errorf("classic: the directory lists another system's applications: %w", cardfmt.ErrForeign))
		}
		return cardfmt.Verdict(cardfmt.Record{}, fmt.Errorf("classic: no application sector: %w", cardfmt.ErrNoRecord))
	}

	cands := make([]candidate, len(keys))
	for i, k := range keys {
		cands[i] = candidate{kt: reader.KeyA, key: k.a, version: k.version}
	}
	c, err := s.authAny(ctx, ours[0], cands)
	if errors.Is(err, reader.ErrAuthFailed) {
		return cardfmt.Verdict(cardfmt.Record{}, fmt.Errorf("classic: sector %d takes no key version in the key file: %w", ours[0], cardfmt.ErrUnknownKeyVersion))
	}
	if err != nil {
		return cardfmt.Scan{}, err
	}
	rec, err := readRecord(ctx, s, ours, c)
	if err != nil {
		return cardfmt.Verdict(cardfmt.Record{}, err)
	}
	return cardfmt.Verdict(cardfmt.Open(rec, ks, info.UID))
}

// readRecord reads the header, then as many further blocks as it says, from
// the application sectors in order, authenticating each with key.
func readRecord(ctx context.Context, s *session, sectors []int, key candidate) ([]byte, error) {
	var blocks []int
	for _, sec := range sectors {
		blocks = append(blocks, dataBlocks(sec)...)
	}
	var out []byte
	need := blockSize
	for i, blk := range blocks {
		if len(out) >= need {
			break
		}
		if err := s.auth(ctx, blk/4, key.kt, key.key); err != nil {
			if errors.Is(err, reader.ErrAuthFailed) {
				return nil, fmt.Errorf("classic: sector %d refuses the key that opened sector %d: %w", blk/4, sectors[0], cardfmt.ErrCorrupt)
			}
			return nil, err
		}
		b, err := s.read(ctx, blk)
		if err != nil {
			return nil, err
		}
		out = append(out, b...)
		if i == 0 {
			h, err := cardfmt.ParseHeader(out)
			if err != nil {
				return nil, err
			}
			need = h.Length
			if need > len(blocks)*blockSize {
				return nil, fmt.Errorf("classic: record of %d bytes overruns its %d sectors: %w", need, len(sectors), cardfmt.ErrCorrupt)
			}
		}
	}
	return out, nil
}

// Encode writes c onto the card under the key set's current version, reads
// it back and verifies it, and returns the record the card now holds.
// Errors after the first write wrap cardfmt.ErrInterrupted; the card stays
// re-encodable from any state an interruption leaves.
func Encode(ctx context.Context, t Tag, info reader.Info, ks *cardfmt.KeySet, c cardfmt.Credential) (cardfmt.Record, error) {
	if !Supports(info.Technology) {
		return cardfmt.Record{}, fmt.Errorf("classic: %s: %w", info.Technology, cardfmt.ErrIncompatible)
	}
	record, err := cardfmt.Seal(c, ks, info.UID)
	if err != nil {
		return cardfmt.Record{}, err
	}
	if len(record) > Capacity {
		return cardfmt.Record{}, fmt.Errorf("classic: record needs %d bytes, the card holds %d: %w", len(record), Capacity, cardfmt.ErrIncompatible)
	}
	keys, err := allKeys(ks, info.UID)
	if err != nil {
		return cardfmt.Record{}, err
	}
	cur := keys[0]
	s := newSession(t)
	dir, err := readDirectory(ctx, s)
	if err != nil {
		return cardfmt.Record{}, err
	}
	if dir.foreignMAD {
		return cardfmt.Record{}, fmt.Errorf("classic: sector 0 holds another system's directory: %w", cardfmt.ErrForeign)
	}

	need := (len(record) + sectorData - 1) / sectorData
	plan, err := planSectors(dir.mad, need, nil)
	if err != nil {
		return cardfmt.Record{}, err
	}

	// Sector 0 is rewritten when the directory changes, when it still has
	// transport keys, or when the card was keyed under an older version.
	// The first record sector tells the version; that authentication is
	// the one its write needs anyway. Its version is tried first on the
	// other sectors and on sector 0: an older card's sectors all carry the
	// same version, and each refused key costs a card reset.
	needMAD := plan.madChanged || bytes.Equal(dir.madKey.key, transportKey)
	var known uint8
	if !needMAD {
		c, err := s.authAny(ctx, plan.sectors[0], sectorCandidates(true, keys, 0))
		if errors.Is(err, reader.ErrAuthFailed) {
			return cardfmt.Record{}, fmt.Errorf("classic: sector %d refuses the transport key and this system's keys: %w", plan.sectors[0], cardfmt.ErrForeign)
		}
		if err != nil {
			return cardfmt.Record{}, err
		}
		known = c.version
		needMAD = c.version != cur.version
	}
	// Make sure the directory can be written before any sector is, so a
	// card with another system's directory is refused untouched.
	var madWith candidate
	if needMAD {
		madWith, err = s.authAny(ctx, 0, madCandidates(dir, keys, known))
		if errors.Is(err, reader.ErrAuthFailed) {
			return cardfmt.Record{}, fmt.Errorf("classic: sector 0 refuses this system's keys: %w", cardfmt.ErrForeign)
		}
		if err != nil {
			return cardfmt.Record{}, err
		}
		if known == 0 {
			known = madWith.version
		}
	}
	if plan, err = probeClaimed(ctx, s, dir, plan, need, keys); err != nil {
		return cardfmt.Record{}, err
	}

	w := &writer{s: s}
	var rekeyed []int
	for i, sec := range plan.sectors {
		chunk := record[i*sectorData : min((i+1)*sectorData, len(record))]
		rk, err := w.writeSector(ctx, sec, chunk, sectorCandidates(slices.Contains(plan.ours, sec), keys, known), cur)
		if err != nil {
			return cardfmt.Record{}, err
		}
		if rk {
			rekeyed = append(rekeyed, sec)
		}
	}
	madKeyed := false
	if needMAD {
		if madKeyed, err = w.writeMAD(ctx, plan.mad, dir.raw, madWith, cur); err != nil {
			return cardfmt.Record{}, err
		}
	}
	if err := w.verify(ctx, plan, record, cur, madKeyed, dir.madKey.key, rekeyed); err != nil {
		return cardfmt.Record{}, err
	}
	return cardfmt.SealedRecord(c, record), nil
}

// sectorPlan says where the record goes.
type sectorPlan struct {
	sectors    []int // the record's sectors, ascending
	ours       []int // sectors the directory already gives this system
	mad        *mad  // the directory to write
	madChanged bool
}

// probeClaimed authenticates every sector the plan newly claims before
// anything is written. Unused sectors keep whatever key they had, on a new
// card the public transport key, so anyone can re-key one. On a card with
// a directory, a free sector that takes neither the transport key nor this
// system's is left alone and another free sector claimed instead; when
// none is left the record does not fit (ErrIncompatible). On a card
// without a directory such a sector means another system uses the card
// (ErrForeign). Either way nothing has been written. The sectors are
// probed highest first so that the first one written is still
// authenticated.
func probeClaimed(ctx context.Context, s *session, dir directory, plan sectorPlan, need int, keys []cardKeys) (sectorPlan, error) {
	usable := map[int]bool{}
	refused := map[int]bool{}
	for {
		sectors := slices.Clone(plan.sectors)
		slices.Reverse(sectors)
		bad := 0
		for _, sec := range sectors {
			if slices.Contains(plan.ours, sec) || usable[sec] {
				continue
			}
			_, err := s.authAny(ctx, sec, sectorCandidates(false, keys, 0))
			if errors.Is(err, reader.ErrAuthFailed) {
				bad = sec
				break
			}
			if err != nil {
				return plan, err
			}
			usable[sec] = true
		}
		if bad == 0 {
			return plan, nil
		}
		if dir.mad == nil {
			return plan, fmt.Errorf("classic: sector %d refuses the transport key and this system's keys: %w", bad, cardfmt.ErrForeign)
		}
		refused[bad] = true
		var err error
		if plan, err = planSectors(dir.mad, need, refused); err != nil {
			return plan, err
		}
	}
}

// planSectors keeps the sectors the directory already gives this system
// and claims free ones, other than those in refused, until n are
// available.
func planSectors(m *mad, n int, refused map[int]bool) (sectorPlan, error) {
	p := sectorPlan{}
	if m == nil {
		m = &mad{info: 0x00}
		p.madChanged = true
	} else {
		cp := *m
		m = &cp
	}
	p.ours = m.sectorsWith(AppAID)
	p.sectors = slices.Clone(p.ours)
	for i := 0; i < madSectors && len(p.sectors) < n; i++ {
		if m.aids[i] == aidFree && !refused[i+1] {
			m.aids[i] = AppAID
			p.sectors = append(p.sectors, i+1)
			p.madChanged = true
		}
	}
	if len(p.sectors) < n {
		if len(refused) > 0 {
			return p, fmt.Errorf("classic: record needs %d sectors, the card has %d usable (%d free sectors were re-keyed by someone else): %w",
				n, len(p.sectors), len(refused), cardfmt.ErrIncompatible)
		}
		return p, fmt.Errorf("classic: record needs %d sectors, the card has %d free: %w", n, len(p.sectors), cardfmt.ErrIncompatible)
	}
	slices.Sort(p.sectors)
	// Sectors beyond the record's needs stay this system's, untouched.
	p.sectors = p.sectors[:n]
	p.mad = m
	return p, nil
}

// sectorCandidates orders the keys a record sector may have: this system's
// key B where the directory says the sector is ours, the transport key
// first where it is free. Both lists hold both kinds, because an
// interrupted encode can leave either. Key B goes newest version first,
// or known first when the job has learnt the card's version (0: none).
func sectorCandidates(ours bool, keys []cardKeys, known uint8) []candidate {
	var own []candidate
	for _, k := range byVersion(keys, known) {
		own = append(own, candidate{kt: reader.KeyB, key: k.b, version: k.version})
	}
	transport := candidate{kt: reader.KeyA, key: transportKey}
	if ours {
		return append(own, transport)
	}
	return append([]candidate{transport}, own...)
}

func madCandidates(dir directory, keys []cardKeys, known uint8) []candidate {
	if bytes.Equal(dir.madKey.key, transportKey) {
		return []candidate{dir.madKey}
	}
	var c []candidate
	for _, k := range byVersion(keys, known) {
		c = append(c, candidate{kt: reader.KeyB, key: k.madB, version: k.version})
	}
	return c
}

// byVersion returns keys with version known moved to the front.
func byVersion(keys []cardKeys, known uint8) []cardKeys {
	i := slices.IndexFunc(keys, func(k cardKeys) bool { return k.version == known })
	if i <= 0 {
		return keys
	}
	out := append([]cardKeys{keys[i]}, keys[:i]...)
	return append(out, keys[i+1:]...)
}

// writer tracks whether the card has been written, which decides between
// a plain failure and an interrupted encode.
type writer struct {
	s       *session
	written bool
	// madBlocks are the directory blocks written: one that already held
	// its new content is neither written nor read back.
	madBlocks []int
}

func (w *writer) fail(err error) error {
	if w.written {
		return fmt.Errorf("%w: %w", cardfmt.ErrInterrupted, err)
	}
	return err
}

func (w *writer) write(ctx context.Context, block int, data []byte) error {
	w.written = true
	if err := w.s.t.UpdateBinary(ctx, block, data); err != nil {
		return w.fail(err)
	}
	return nil
}

// readBack reads block in the current session and compares it with want.
func (w *writer) readBack(ctx context.Context, block int, want []byte) error {
	b, err := w.s.read(ctx, block)
	if err != nil {
		return w.fail(err)
	}
	if !bytes.Equal(b, want) {
		return w.fail(fmt.Errorf("classic: block %d reads back differently", block))
	}
	return nil
}

// writeSector writes chunk into sec's data blocks and then, if the sector
// is not yet keyed with the current version, its trailer; rekeyed says it
// was. A sector already keyed under the current version is read back at
// once, in the session that wrote it: key B may read its data blocks, and
// its key A was proved when its trailer was written. A re-keyed sector is
// read back by verify, through its new key A, as a lock reads it.
func (w *writer) writeSector(ctx context.Context, sec int, chunk []byte, cands []candidate, cur cardKeys) (rekeyed bool, err error) {
	c, err := w.s.authAny(ctx, sec, cands)
	if errors.Is(err, reader.ErrAuthFailed) {
		return false, w.fail(fmt.Errorf("classic: sector %d refuses the transport key and this system's keys: %w", sec, cardfmt.ErrForeign))
	}
	if err != nil {
		return false, w.fail(err)
	}
	blocks := sectorBlocks(sec, chunk)
	for i, data := range blocks {
		if err := w.write(ctx, dataBlocks(sec)[i], data); err != nil {
			return false, err
		}
	}
	if c.kt == reader.KeyB && c.version == cur.version {
		for i, data := range blocks {
			if err := w.readBack(ctx, dataBlocks(sec)[i], data); err != nil {
				return false, err
			}
		}
		return false, nil
	}
	return true, w.write(ctx, trailerBlock(sec), trailer(cur.a, appAccess, cur.b))
}

// sectorBlocks splits chunk into the 16-byte blocks it fills, the last
// one padded with zeros.
func sectorBlocks(sec int, chunk []byte) [][]byte {
	var out [][]byte
	for i := range dataBlocks(sec) {
		if i*blockSize >= len(chunk) {
			break
		}
		data := make([]byte, blockSize)
		copy(data, chunk[i*blockSize:])
		out = append(out, data)
	}
	return out
}

// writeMAD writes the directory blocks that differ from have (blocks 1
// and 2 as read), and sector 0's trailer unless the sector is keyed under
// the current version already (keyed says it was written). Without a
// trailer write the blocks written are read back in the session that
// wrote them; with one, verify reads them through a key the trailer write
// changed.
func (w *writer) writeMAD(ctx context.Context, m *mad, have []byte, with candidate, cur cardKeys) (keyed bool, err error) {
	if err := w.s.auth(ctx, 0, with.kt, with.key); err != nil {
		return false, w.fail(err)
	}
	b := m.bytes()
	for i, blk := range []int{1, 2} {
		if want := b[i*16 : (i+1)*16]; !bytes.Equal(have[i*16:(i+1)*16], want) {
			if err := w.write(ctx, blk, want); err != nil {
				return false, err
			}
			w.madBlocks = append(w.madBlocks, blk)
		}
	}
	if with.kt == reader.KeyB && with.version == cur.version {
		for _, blk := range w.madBlocks {
			if err := w.readBack(ctx, blk, b[(blk-1)*16:blk*16]); err != nil {
				return false, err
			}
		}
		return false, nil
	}
	return true, w.write(ctx, trailerBlock(0), trailer(madKeyA, madAccess, cur.madB))
}

// verify reads back what writeSector and writeMAD could not read back in
// the session that wrote it: sector 0 when its trailer was written
// (through the public MAD key A, or the new MAD key B when key A did not
// change) and each re-keyed sector (through the new key A, as a lock
// reads it). Key bytes never read back; the authentication with a key the
// trailer write changed proves that write.
func (w *writer) verify(ctx context.Context, plan sectorPlan, record []byte, cur cardKeys, madKeyed bool, madKeyBefore []byte, rekeyed []int) error {
	cardfmt.TraceVerifying(ctx)
	if madKeyed {
		// The trailer write is atomic: a key it changed that now opens
		// the sector proves it landed. Key A is the public MAD key
		// unless sector 0 had the transport key; then only key B changed.
		proof := candidate{kt: reader.KeyA, key: madKeyA}
		if bytes.Equal(madKeyBefore, madKeyA) {
			proof = candidate{kt: reader.KeyB, key: cur.madB}
		}
		if err := w.s.auth(ctx, 0, proof.kt, proof.key); err != nil {
			return w.fail(fmt.Errorf("classic: verify directory: %w", err))
		}
		want := plan.mad.bytes()
		for _, blk := range w.madBlocks {
			if err := w.readBack(ctx, blk, want[(blk-1)*16:blk*16]); err != nil {
				return err
			}
		}
	}
	for i, sec := range plan.sectors {
		if !slices.Contains(rekeyed, sec) {
			continue
		}
		if err := w.s.auth(ctx, sec, reader.KeyA, cur.a); err != nil {
			return w.fail(fmt.Errorf("classic: verify sector %d: %w", sec, err))
		}
		chunk := record[i*sectorData : min((i+1)*sectorData, len(record))]
		for j, data := range sectorBlocks(sec, chunk) {
			if err := w.readBack(ctx, dataBlocks(sec)[j], data); err != nil {
				return err
			}
		}
	}
	return nil
}

func trailer(keyA, access, keyB []byte) []byte {
	b := make([]byte, 0, blockSize)
	b = append(b, keyA...)
	b = append(b, access...)
	return append(b, keyB...)
}
