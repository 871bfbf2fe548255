package journal

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	"go.uber.org/zap"
)

// ErrDamaged is a journal file that cannot be trusted: empty, truncated,
// with broken meta pages, or failing bbolt's consistency check. Open
// never returns it: it quarantines the file and says so in Reset.
var ErrDamaged = errors.New("journal: file damaged")

// checkLimit is the largest file bbolt's consistency check runs on at
// Open. A journal holds only unacknowledged jobs and dedup records, so it
// stays far below; a larger file is opened without the check.
const checkLimit = 64 << 20

// bbolt's on-disk meta page (go.etcd.io/bbolt/internal/common): a 16-byte
// page header, then magic, version, page size, flags (uint32 each), the
// root bucket (pgid, sequence), the freelist pgid, the high-water pgid,
// the txid and an FNV-64a checksum of everything before it, in the
// machine's byte order.
const (
	boltMagic       = 0xED0CDAED
	boltVersion     = 2
	pageHeaderSize  = 16
	metaSize        = 64
	metaChecksumOff = 56
)

type boltMeta struct {
	pageSize uint32
	root     uint64
	freelist uint64
	pgid     uint64 // pages [0, pgid) are in use
	txid     uint64
}

// parseMeta reads a meta page at the start of b, or says why it cannot.
func parseMeta(b []byte) (boltMeta, error) {
	if len(b) < pageHeaderSize+metaSize {
		return boltMeta{}, errors.New("short")
	}
	m := b[pageHeaderSize : pageHeaderSize+metaSize]
	le := binary.NativeEndian
	if le.Uint32(m[0:]) != boltMagic {
		return boltMeta{}, errors.New("not a bbolt meta page")
	}
	if v := le.Uint32(m[4:]); v != boltVersion {
		return boltMeta{}, fmt.Errorf("bbolt format version %d", v)
	}
	h := fnv.New64a()
	h.Write(m[:metaChecksumOff])
	if h.Sum64() != le.Uint64(m[metaChecksumOff:]) {
		return boltMeta{}, errors.New("checksum mismatch")
	}
	bm := boltMeta{
		pageSize: le.Uint32(m[8:]),
		root:     le.Uint64(m[16:]),
		freelist: le.Uint64(m[32:]),
		pgid:     le.Uint64(m[40:]),
		txid:     le.Uint64(m[48:]),
	}
	if bm.pageSize < 1024 || bm.pageSize > 1<<24 || bm.pageSize&(bm.pageSize-1) != 0 {
		return boltMeta{}, fmt.Errorf("page size %d", bm.pageSize)
	}
	return bm, nil
}

// checkFile looks at an existing journal file before bbolt maps it: bbolt
// reads pages through a memory map, so a page past the end of a truncated
// file is a SIGBUS that no recover catches, and an empty file is taken
// for a new one. It wants at least one valid meta page, and every valid
// meta page's pages inside the file.
func checkFile(f *os.File) error {
	info, err := f.Stat()
	if err != nil {
		return err
	}
	size := info.Size()
	if size == 0 {
		return fmt.Errorf("%w: the file is empty", ErrDamaged)
	}
	buf := make([]byte, 4096)
	n, _ := f.ReadAt(buf, 0)
	m0, err0 := parseMeta(buf[:n])
	pageSize := int64(os.Getpagesize())
	if err0 == nil {
		pageSize = int64(m0.pageSize)
	}
	if size < 2*pageSize {
		return fmt.Errorf("%w: %d bytes, shorter than two %d-byte meta pages", ErrDamaged, size, pageSize)
	}
	n, _ = f.ReadAt(buf, pageSize)
	m1, err1 := parseMeta(buf[:n])
	if err0 != nil && err1 != nil {
		return fmt.Errorf("%w: both meta pages are invalid (%v; %v)", ErrDamaged, err0, err1)
	}
	for i, m := range []struct {
		meta boltMeta
		err  error
	}{{m0, err0}, {m1, err1}} {
		if m.err != nil {
			// bbolt falls back to the other meta page, which is how it
			// survives a torn meta write.
			continue
		}
		if m.meta.pageSize != uint32(pageSize) {
			return fmt.Errorf("%w: meta page %d says page size %d, meta page 0 %d", ErrDamaged, i, m.meta.pageSize, pageSize)
		}
		if need := int64(m.meta.pgid) * pageSize; need > size || m.meta.pgid < 2 {
			return fmt.Errorf("%w: truncated: meta page %d needs %d pages (%d bytes), the file has %d bytes", ErrDamaged, i, m.meta.pgid, need, size)
		}
		if m.meta.root >= m.meta.pgid || (m.meta.freelist >= m.meta.pgid && m.meta.freelist != noFreelist) {
			return fmt.Errorf("%w: meta page %d points past its last page", ErrDamaged, i)
		}
	}
	// bbolt reads the freelist of the newest meta page at open and panics
	// ("invalid freelist page") or faults on a bad one: look first.
	m := m0
	if err0 != nil || (err1 == nil && m1.txid > m0.txid) {
		m = m1
	}
	return checkPages(f, m, size)
}

const (
	noFreelist       = ^uint64(0)
	branchPageFlag   = 0x01
	leafPageFlag     = 0x02
	freelistPageFlag = 0x10
)

// checkPages checks the headers of the pages meta m names: the root
// bucket's page is a branch or a leaf, the freelist page is one and its
// page ids lie inside it.
func checkPages(f *os.File, m boltMeta, size int64) error {
	ps := int64(m.pageSize)
	header := func(pgid uint64) (flags uint16, count uint16, overflow uint32, err error) {
		var h [pageHeaderSize]byte
		if _, err := f.ReadAt(h[:], int64(pgid)*ps); err != nil {
			return 0, 0, 0, err
		}
		le := binary.NativeEndian
		return le.Uint16(h[8:]), le.Uint16(h[10:]), le.Uint32(h[12:]), nil
	}
	flags, _, _, err := header(m.root)
	if err != nil {
		return fmt.Errorf("%w: root page %d: %v", ErrDamaged, m.root, err)
	}
	if flags != branchPageFlag && flags != leafPageFlag {
		return fmt.Errorf("%w: root page %d has page type %#x", ErrDamaged, m.root, flags)
	}
	if m.freelist == noFreelist {
		return nil
	}
	flags, count, overflow, err := header(m.freelist)
	if err != nil {
		return fmt.Errorf("%w: freelist page %d: %v", ErrDamaged, m.freelist, err)
	}
	if flags != freelistPageFlag {
		return fmt.Errorf("%w: freelist page %d has page type %#x", ErrDamaged, m.freelist, flags)
	}
	end := (int64(m.freelist) + 1 + int64(overflow)) * ps
	if overflow >= uint32(m.pgid) || end > size {
		return fmt.Errorf("%w: freelist page %d runs past the end of the file", ErrDamaged, m.freelist)
	}
	n := uint64(count)
	if count == 0xFFFF {
		// The count did not fit the header: it is the first element.
		var c [8]byte
		if _, err := f.ReadAt(c[:], int64(m.freelist)*ps+pageHeaderSize); err != nil {
			return fmt.Errorf("%w: freelist page %d: %v", ErrDamaged, m.freelist, err)
		}
		n = binary.NativeEndian.Uint64(c[:]) + 1
	}
	if n > uint64(end-int64(m.freelist)*ps-pageHeaderSize)/8 {
		return fmt.Errorf("%w: freelist page %d lists more pages than it holds", ErrDamaged, m.freelist)
	}
	return nil
}

// guard runs f with faults on mapped memory turned into panics, and turns
// a panic into ErrDamaged: bbolt panics on pages it cannot parse ("invalid
// freelist page") instead of returning an error.
func guard(what string, f func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: bbolt panicked during %s: %v", ErrDamaged, what, r)
		}
	}()
	return f()
}

// openBolt opens path with bbolt, a panic becoming ErrDamaged. The file
// bbolt opened is unlocked and closed after a panic, so that it can be
// renamed and salvaged.
func openBolt(path string, o bbolt.Options) (db *bbolt.DB, err error) {
	var file *os.File
	o.OpenFile = func(name string, flag int, mode os.FileMode) (*os.File, error) {
		f, err := os.OpenFile(name, flag, mode)
		file = f
		return f, err
	}
	err = guard("open", func() error {
		var err error
		db, err = bbolt.Open(path, 0o600, &o)
		return err
	})
	if errors.Is(err, ErrDamaged) && file != nil {
		// The memory map bbolt made cannot be undone from here; it stays
		// until the process ends.
		_ = unlockFile(file)
		file.Close()
	}
	if errors.Is(err, berrors.ErrInvalid) || errors.Is(err, berrors.ErrChecksum) || errors.Is(err, berrors.ErrVersionMismatch) {
		err = fmt.Errorf("%w: %v", ErrDamaged, err)
	}
	return db, err
}

// checkDB runs bbolt's consistency check when the file is small enough
// for it to be cheap.
func checkDB(db *bbolt.DB, size int64) error {
	if size > checkLimit {
		return nil
	}
	return guard("the consistency check", func() error {
		return db.View(func(tx *bbolt.Tx) error {
			var errs []error
			// Drained to the end: the check reads pages from a goroutine
			// of its own, which must be done before the transaction ends.
			for err := range tx.Check() {
				if len(errs) < 5 {
					errs = append(errs, err)
				}
			}
			if len(errs) > 0 {
				return fmt.Errorf("%w: consistency check: %w", ErrDamaged, errors.Join(errs...))
			}
			return nil
		})
	})
}

// Reset describes a journal that was damaged and set aside: the journal
// in use started empty (but for what could be salvaged), so jobs it held
// may have been lost.
type Reset struct {
	// At is when the damaged file was set aside (this PC's clock).
	At time.Time `json:"at"`
	// Reason is what was wrong with it.
	Reason string `json:"reason"`
	// Quarantined is the name the damaged file was given, in the state
	// directory. It is never deleted.
	Quarantined string `json:"quarantined"`
	// Salvaged is how many jobs and dedup records were read back from it.
	SalvagedJobs    int `json:"salvaged_jobs"`
	SalvagedRecords int `json:"salvaged_records"`
	// Reported: the cloud has been told (see MarkResetReported).
	Reported bool `json:"reported,omitempty"`
}

var keyReset = []byte("reset")

// quarantine renames the damaged journal aside, with a timestamp. It is
// never deleted: an operator may want what is left of it.
func quarantine(path string, now time.Time) (string, error) {
	name := fmt.Sprintf("%s.damaged-%s", filepath.Base(path), now.UTC().Format("20060102T150405.000000000Z"))
	to := filepath.Join(filepath.Dir(path), name)
	if err := os.Rename(path, to); err != nil {
		return "", fmt.Errorf("journal: set the damaged %s aside: %w", path, err)
	}
	return name, nil
}

type salvaged struct {
	jobs, acked [][2][]byte // key, value
}

// salvage reads what it can of a quarantined journal: read-only (bbolt
// then does not load the freelist), faults and panics recovered, keeping
// every entry read before one stops it.
func salvage(path string) salvaged {
	var s salvaged
	db, err := openBolt(path, bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return s
	}
	defer db.Close()
	for _, b := range []struct {
		name []byte
		into *[][2][]byte
	}{{bucketJobs, &s.jobs}, {bucketAcked, &s.acked}} {
		_ = guard("salvage", func() error {
			return db.View(func(tx *bbolt.Tx) error {
				bk := tx.Bucket(b.name)
				if bk == nil {
					return nil
				}
				return bk.ForEach(func(k, v []byte) error {
					if v != nil {
						*b.into = append(*b.into, [2][]byte{bytes.Clone(k), bytes.Clone(v)})
					}
					return nil
				})
			})
		})
	}
	return s
}

// restore writes what was salvaged into the new journal and records the
// reset, in one transaction. Entries that do not decode are repaired as
// repairLocked does.
func (j *Journal) restore(s salvaged, r *Reset) error {
	return j.db.Update(func(tx *bbolt.Tx) error {
		jobs, acked := tx.Bucket(bucketJobs), tx.Bucket(bucketAcked)
		var seq uint64
		for _, kv := range s.jobs {
			if err := jobs.Put(kv[0], kv[1]); err != nil {
				return err
			}
			var e Entry
			if json.Unmarshal(kv[1], &e) == nil {
				seq = max(seq, e.Seq)
			}
		}
		// New jobs queue behind the salvaged ones.
		if err := jobs.SetSequence(seq); err != nil {
			return err
		}
		for _, kv := range s.acked {
			if err := acked.Put(kv[0], kv[1]); err != nil {
				return err
			}
		}
		r.SalvagedJobs, r.SalvagedRecords = len(s.jobs), len(s.acked)
		if err := j.repairLocked(tx); err != nil {
			return err
		}
		v, err := json.Marshal(r)
		if err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(keyReset, v)
	})
}

type kv struct{ k, v []byte }

// badEntries are the entries that do not decode, copied out of the
// transaction.
type badEntries struct{ jobs, acked []kv }

func (b badEntries) none() bool { return len(b.jobs) == 0 && len(b.acked) == 0 }

// findBad lists the entries that do not decode. It reads every key and
// value of the jobs and acked buckets, either of which may be missing.
func findBad(tx *bbolt.Tx) (badEntries, error) {
	var bad badEntries
	jobs, acked := tx.Bucket(bucketJobs), tx.Bucket(bucketAcked)
	if jobs == nil || acked == nil {
		return bad, nil
	}
	err := jobs.ForEach(func(k, v []byte) error {
		var e Entry
		if v == nil {
			return nil
		}
		if err := json.Unmarshal(v, &e); err != nil || e.Job.JobID != string(k) {
			bad.jobs = append(bad.jobs, kv{bytes.Clone(k), bytes.Clone(v)})
		}
		return nil
	})
	if err != nil {
		return bad, err
	}
	err = acked.ForEach(func(k, v []byte) error {
		var t tombstone
		if v != nil && json.Unmarshal(v, &t) != nil {
			bad.acked = append(bad.acked, kv{bytes.Clone(k), bytes.Clone(v)})
		}
		return nil
	})
	return bad, err
}

// repairLocked sets aside, in the quarantine bucket, every job entry and
// dedup record that does not decode, so that one bad entry is not fatal:
//   - a job entry becomes a placeholder in StateDamaged (what the job had
//     done is unknown; Recover returns it so, and the agent finishes it as
//     encoding_interrupted: it never runs again);
//   - a dedup record is replaced by one kept Retention from now (its
//     deadline is unknown), so the job id is still known as acknowledged.
func (j *Journal) repairLocked(tx *bbolt.Tx) error {
	now := j.opts.Now()
	jobs, acked, q := tx.Bucket(bucketJobs), tx.Bucket(bucketAcked), tx.Bucket(bucketQuarantine)
	bad, err := findBad(tx)
	if err != nil {
		return err
	}
	for _, b := range bad.jobs {
		if err := q.Put(append([]byte("jobs/"), b.k...), b.v); err != nil {
			return err
		}
		e := Entry{Job: jobOnlyID(string(b.k)), State: StateDamaged, ReceivedAt: now, UpdatedAt: now}
		if err := putEntry(jobs, e); err != nil {
			return err
		}
		j.log.Error("journal: a job entry did not decode; set aside, the job is reported encoding_interrupted and never runs again",
			zap.String("job_id", string(b.k)))
	}
	for _, b := range bad.acked {
		if err := q.Put(append([]byte("acked/"), b.k...), b.v); err != nil {
			return err
		}
		v, _ := json.Marshal(tombstone{Deadline: now, AckedAt: now})
		if err := acked.Put(b.k, v); err != nil {
			return err
		}
		j.log.Error("journal: a dedup record did not decode; set aside and replaced", zap.String("job_id", string(b.k)))
	}
	return nil
}

// CheckFile looks at the journal in dir the way Open does before bbolt
// maps it (size, both meta pages), without opening it with bbolt, locking
// it or changing anything: a wrapped ErrDamaged means the next Open will
// set it aside. A missing file is fine (nil).
func CheckFile(dir string) error {
	f, err := os.Open(filepath.Join(dir, FileName))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	return checkFile(f)
}

// SetAside lists the damaged journals Open renamed aside in dir, oldest
// first.
func SetAside(dir string) ([]string, error) {
	return filepath.Glob(filepath.Join(dir, FileName+".damaged-*"))
}
