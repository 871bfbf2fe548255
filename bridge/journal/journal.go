// Package journal is the bridge's durable record of its jobs, in a bbolt
// file (fsync on every commit, mode 0600) in the state directory.
//
// A job is written before the cloud is told it was received, moves
// through queued, running, writing and finished, and is deleted once the
// cloud acknowledges its result. What that buys:
//
//   - a received job is never lost: it is stored before it is acked;
//   - a job delivered again is never run twice: Receive reports the
//     stored entry (with its result, if finished), and the id of a job
//     whose result was acknowledged is remembered until well past the
//     job's deadline, measured on the cloud's clock (the PC's may be
//     hours off), and at most MaxAcked of them;
//   - a result is kept until the cloud acknowledges it;
//   - after a crash, Recover hands back every job not finished with the
//     state it was in, a job that was writing a card included, for the
//     caller to finish or run again;
//   - a damaged file is never taken for a new one: Open checks it before
//     bbolt maps it, sets a damaged file aside (renamed, never deleted),
//     salvages what it can and starts again, saying so in Reset; one entry
//     that does not decode is set aside and its job never runs again.
//
// It stores and recovers; it does not decide what a job means. It must
// not import bridge/link, bridge/agent, reader or cardfmt.
package journal

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	"go.uber.org/zap"

	"github.com/encoder-bridge/encoder-bridge/internal/durable"
	"github.com/encoder-bridge/encoder-bridge/protocol"
)

// FileName is the journal's file in the state directory.
const FileName = "journal.db"

// schema is the layout version of the buckets below.
const schema = 1

var (
	bucketJobs  = []byte("jobs")  // job id → Entry (JSON)
	bucketAcked = []byte("acked") // job id → tombstone (JSON)
	bucketMeta  = []byte("meta")
	// bucketQuarantine holds entries that did not decode, as they were:
	// "jobs/<id>" or "acked/<id>" → the raw value.
	bucketQuarantine = []byte("quarantine")
	keySchema        = []byte("schema")
)

// State is where a job is.
type State string

const (
	StateQueued   State = "queued"   // stored, waiting for its encoder
	StateRunning  State = "running"  // waiting for or reading a card; nothing written yet
	StateWriting  State = "writing"  // writing the card may have begun
	StateFinished State = "finished" // the result is stored, not yet acknowledged
	// StateAcknowledged is reported by Receive and Get for a job whose
	// result the cloud acknowledged: only its id is left.
	StateAcknowledged State = "acknowledged"
	// StateDamaged is a job whose entry did not decode: only its id is
	// known, and whether its card was written is not.
	StateDamaged State = "damaged"
)

// Sentinel errors, matched with errors.Is.
var (
	ErrNotFound    = errors.New("journal: no such job")
	ErrFinished    = errors.New("journal: job already finished")
	ErrNotFinished = errors.New("journal: job not finished")
	// ErrNotWriting: the job is not writing its card (BeginWrite).
	ErrNotWriting = errors.New("journal: job not writing its card")
	// ErrAcknowledged: the job's result was already acknowledged; only
	// its id is left.
	ErrAcknowledged = errors.New("journal: job already acknowledged")
	ErrLocked       = errors.New("journal: in use by another process")
)

// Entry is one job as stored.
type Entry struct {
	Job protocol.Job `json:"job"`
	// Reader is the reader the job's encoder stood for when it arrived.
	Reader     string    `json:"reader,omitempty"`
	State      State     `json:"state"`
	ReceivedAt time.Time `json:"received_at"`
	// Seq orders the jobs as they arrived, which ReceivedAt, read from
	// the PC's clock, cannot once that clock is set back. 0 in entries
	// written before it existed.
	Seq       uint64           `json:"seq,omitempty"`
	UpdatedAt time.Time        `json:"updated_at"`
	Result    *protocol.Result `json:"result,omitempty"`
	// Attempt counts the times writing the card began (BeginWrite): a
	// write run again after a restart found the old record is attempt 2.
	Attempt int `json:"attempt,omitempty"`
	// CardUID is the UID of the card being written, hex, so that a job
	// resumed after a crash finds that card again and no other.
	CardUID string `json:"card_uid,omitempty"`
}

type tombstone struct {
	Deadline time.Time `json:"deadline"`
	AckedAt  time.Time `json:"acked_at"`
}

// Options tune Open. The zero value is fine.
type Options struct {
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// LockTimeout is how long Open waits for another process to release
	// the file (default 2s).
	LockTimeout time.Duration
	// Retention is how long after a job's deadline its id is remembered
	// once its result is acknowledged (default 24h), on the cloud's clock.
	// A delivery of the job after that is past its deadline anyway, and
	// never runs.
	Retention time.Duration
	// MaxAcked bounds how many acknowledged ids are remembered (default
	// 10000); past it the ones with the oldest deadlines go first. It
	// must stay far above the jobs a bridge finishes within one job
	// timeout, the window in which the cloud may deliver a job again.
	MaxAcked int
	// Log gets an error line for every damaged file or entry set aside;
	// nil logs nothing.
	Log *zap.Logger
}

// Journal is the open job journal. It is safe for concurrent use.
type Journal struct {
	db   *bbolt.DB
	path string
	opts Options
	log  *zap.Logger

	mu    sync.Mutex
	reset *Reset // set by Open when the file was damaged
}

// Open opens (creating if needed) the journal in dir, which is created
// with owner-only access.
//
// An existing file is checked before bbolt maps it (size, both meta
// pages), opened with bbolt's panics recovered, and put through bbolt's
// consistency check. A damaged one is renamed aside with a timestamp,
// what can be read of it is salvaged into a new file, and the new
// journal's Reset says so; entries that do not decode are set aside (see
// StateDamaged). Open fails on a damaged file only if it cannot set it
// aside.
func Open(dir string, opts Options) (*Journal, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = 2 * time.Second
	}
	if opts.Retention <= 0 {
		opts.Retention = 24 * time.Hour
	}
	if opts.MaxAcked <= 0 {
		opts.MaxAcked = 10000
	}
	if err := durable.MkdirSecret(dir); err != nil {
		return nil, fmt.Errorf("journal: state directory %s: %w", dir, err)
	}
	path := filepath.Join(dir, FileName)
	j := &Journal{path: path, opts: opts, log: opts.Log}
	if j.log == nil {
		j.log = zap.NewNop()
	}
	created, damaged, err := j.open()
	if err != nil {
		return nil, err
	}
	if damaged != nil {
		if err := j.startOver(damaged); err != nil {
			return nil, err
		}
		created = true
	}
	db := j.db
	if runtime.GOOS != "windows" {
		// bbolt applies the mode only when it creates the file; a journal
		// copied in with a looser mode is tightened here.
		if err := os.Chmod(path, 0o600); err != nil {
			db.Close()
			return nil, fmt.Errorf("journal: %w", err)
		}
		if created {
			// The file's directory entry must survive a power cut too.
			if err := durable.SyncDir(dir); err != nil {
				db.Close()
				return nil, fmt.Errorf("journal: sync %s: %w", dir, err)
			}
		}
	}
	return j, nil
}

func lockedErr(path string) error {
	return fmt.Errorf("%w: %s is locked (is another encoder-bridge running?)", ErrLocked, path)
}

// open opens the existing or a new file into j.db. damaged is set (and
// j.db nil) when the file is damaged.
func (j *Journal) open() (created bool, damaged error, err error) {
	f, err := os.Open(j.path)
	if errors.Is(err, os.ErrNotExist) {
		created = true
	} else if err != nil {
		return false, nil, fmt.Errorf("journal: open %s: %w", j.path, err)
	} else {
		// Hold bbolt's lock while looking, so that a file another
		// process is writing is never judged, let alone renamed.
		err := lockFile(f, j.opts.LockTimeout)
		if err != nil {
			f.Close()
			if errors.Is(err, berrors.ErrTimeout) {
				return false, nil, lockedErr(j.path)
			}
			return false, nil, fmt.Errorf("journal: lock %s: %w", j.path, err)
		}
		damaged = checkFile(f)
		f.Close() // releases the lock
		if damaged != nil {
			return false, damaged, nil
		}
	}
	var size int64
	if fi, err := os.Stat(j.path); err == nil {
		size = fi.Size()
	}
	db, err := openBolt(j.path, bbolt.Options{Timeout: j.opts.LockTimeout})
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return false, nil, lockedErr(j.path)
	case errors.Is(err, ErrDamaged):
		return false, err, nil
	case err != nil:
		return false, nil, fmt.Errorf("journal: open %s: %w", j.path, err)
	}
	// Read every entry first, here, where a wild pointer in a page is a
	// recovered fault: bbolt's consistency check reads pages from a
	// goroutine of its own, where it would end the process.
	var bad badEntries
	err = guard("reading the entries", func() error {
		return db.View(func(tx *bbolt.Tx) (err error) {
			bad, err = findBad(tx)
			return err
		})
	})
	if err == nil && !created {
		err = checkDB(db, size)
	}
	if errors.Is(err, ErrDamaged) {
		db.Close()
		return false, err, nil
	}
	if err != nil {
		db.Close()
		return false, nil, fmt.Errorf("journal: %s: %w", j.path, err)
	}
	j.db = db
	if err := j.init(); err != nil {
		db.Close()
		return false, nil, err
	}
	// Write only when an entry needs setting aside: a commit costs two
	// fsyncs.
	if !bad.none() {
		if err := j.db.Update(j.repairLocked); err != nil {
			db.Close()
			return false, nil, fmt.Errorf("journal: %s: %w", j.path, err)
		}
	}
	r, err := j.loadReset()
	if err != nil {
		db.Close()
		return false, nil, err
	}
	j.reset = r
	return created, nil, nil
}

// startOver sets the damaged file aside, salvages what it can, and opens
// a new journal holding that and the Reset.
func (j *Journal) startOver(damaged error) error {
	now := j.opts.Now()
	name, err := quarantine(j.path, now)
	if err != nil {
		return fmt.Errorf("%w (%v)", err, damaged)
	}
	s := salvage(filepath.Join(filepath.Dir(j.path), name))
	db, err := bbolt.Open(j.path, 0o600, &bbolt.Options{Timeout: j.opts.LockTimeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return lockedErr(j.path)
	}
	if err != nil {
		return fmt.Errorf("journal: open %s: %w", j.path, err)
	}
	j.db = db
	if err := j.init(); err != nil {
		db.Close()
		return err
	}
	r := &Reset{At: now.UTC(), Reason: damaged.Error(), Quarantined: name}
	if err := j.restore(s, r); err != nil {
		db.Close()
		return fmt.Errorf("journal: %s: %w", j.path, err)
	}
	j.reset = r
	j.log.Error("journal: the job journal was damaged and was set aside; a new one was started, and jobs it held may have been lost",
		zap.String("reason", r.Reason), zap.String("quarantined", name),
		zap.Int("salvaged_jobs", r.SalvagedJobs), zap.Int("salvaged_records", r.SalvagedRecords))
	return nil
}

func (j *Journal) loadReset() (*Reset, error) {
	var r *Reset
	err := j.db.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketMeta).Get(keyReset)
		if v == nil {
			return nil
		}
		r = &Reset{}
		if err := json.Unmarshal(v, r); err != nil {
			// Still a reset, whatever else was lost.
			r = &Reset{At: j.opts.Now().UTC(), Reason: "the record of an earlier reset is damaged"}
		}
		return nil
	})
	return r, err
}

// Reset reports whether this journal was started over because the
// previous file was damaged, and how; nil if it was not. It stays until
// MarkResetReported.
func (j *Journal) Reset() *Reset {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.reset == nil || j.reset.Reported {
		return nil
	}
	r := *j.reset
	return &r
}

// MarkResetReported records that the cloud has been told of the reset;
// Reset reports nil from then on.
func (j *Journal) MarkResetReported() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.reset == nil || j.reset.Reported {
		return nil
	}
	r := *j.reset
	r.Reported = true
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	err = j.db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyReset, v) })
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	j.reset = &r
	return nil
}

func (j *Journal) init() error {
	return j.db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketJobs, bucketAcked, bucketMeta, bucketQuarantine} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("journal: %w", err)
			}
		}
		meta := tx.Bucket(bucketMeta)
		v := meta.Get(keySchema)
		if v == nil {
			return meta.Put(keySchema, []byte(strconv.Itoa(schema)))
		}
		if n, err := strconv.Atoi(string(v)); err != nil || n != schema {
			return fmt.Errorf("journal: %s has layout %q, this build reads %d (written by another version of encoder-bridge?)", j.path, v, schema)
		}
		return nil
	})
}

// Path is the journal file.
func (j *Journal) Path() string { return j.path }

// Close closes the file. A job not finished stays as it was, for Recover.
func (j *Journal) Close() error { return j.db.Close() }

func jobOnlyID(id string) protocol.Job { return protocol.Job{JobID: id} }

func getEntry(b *bbolt.Bucket, id string) (Entry, bool, error) {
	v := b.Get([]byte(id))
	if v == nil {
		return Entry{}, false, nil
	}
	var e Entry
	if err := json.Unmarshal(v, &e); err != nil {
		return Entry{}, false, fmt.Errorf("journal: job %q: corrupt entry: %w", id, err)
	}
	return e, true, nil
}

func putEntry(b *bbolt.Bucket, e Entry) error {
	v, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return b.Put([]byte(e.Job.JobID), v)
}

func getTombstone(b *bbolt.Bucket, id string) (tombstone, bool) {
	v := b.Get([]byte(id))
	if v == nil {
		return tombstone{}, false
	}
	var t tombstone
	_ = json.Unmarshal(v, &t) // a damaged tombstone still says "acknowledged"
	return t, true
}

// Receive stores e as a new queued job, durably, and returns it with
// isNew true. A job already known is returned as stored, with isNew false:
// its state says whether it is still running, finished (with its Result),
// or acknowledged.
func (j *Journal) Receive(e Entry) (stored Entry, isNew bool, err error) {
	id := e.Job.JobID
	if id == "" {
		return Entry{}, false, errors.New("journal: job without an id")
	}
	now := j.opts.Now()
	err = j.db.Update(func(tx *bbolt.Tx) error {
		jobs := tx.Bucket(bucketJobs)
		old, ok, err := getEntry(jobs, id)
		if err != nil {
			return err
		}
		if ok {
			stored = old
			return nil
		}
		if t, ok := getTombstone(tx.Bucket(bucketAcked), id); ok {
			stored = Entry{Job: protocol.Job{JobID: id, Deadline: t.Deadline}, State: StateAcknowledged, UpdatedAt: t.AckedAt}
			return nil
		}
		e.State, e.Result = StateQueued, nil
		if e.ReceivedAt.IsZero() {
			e.ReceivedAt = now
		}
		if e.Seq, err = jobs.NextSequence(); err != nil {
			return err
		}
		e.UpdatedAt = now
		stored, isNew = e, true
		return putEntry(jobs, e)
	})
	if err != nil {
		return Entry{}, false, fmt.Errorf("journal: receive %q: %w", id, err)
	}
	return stored, isNew, nil
}

// Get returns the entry of job id. A job whose result the cloud
// acknowledged comes back as StateAcknowledged with only its id and
// deadline; a job the journal never had, or has forgotten, is ErrNotFound.
func (j *Journal) Get(id string) (Entry, error) {
	var e Entry
	err := j.db.View(func(tx *bbolt.Tx) error {
		var ok bool
		var err error
		if e, ok, err = getEntry(tx.Bucket(bucketJobs), id); err != nil || ok {
			return err
		}
		if t, ok := getTombstone(tx.Bucket(bucketAcked), id); ok {
			e = Entry{Job: protocol.Job{JobID: id, Deadline: t.Deadline}, State: StateAcknowledged, UpdatedAt: t.AckedAt}
			return nil
		}
		return fmt.Errorf("%w: %q", ErrNotFound, id)
	})
	return e, err
}

// SetState moves an unfinished job to queued, running or writing. When
// it returns nil the new state is on disk.
func (j *Journal) SetState(id string, s State) error {
	switch s {
	case StateQueued, StateRunning, StateWriting:
	default:
		return fmt.Errorf("journal: SetState(%q, %q): use Finish or Acknowledge", id, s)
	}
	return j.update(id, func(e *Entry) (bool, error) {
		if e.State == StateFinished {
			return false, fmt.Errorf("%w: %q", ErrFinished, id)
		}
		e.State, e.UpdatedAt = s, j.opts.Now()
		return true, nil
	})
}

// update reads job id, lets change alter it and stores it when change
// says so, in one transaction.
func (j *Journal) update(id string, change func(e *Entry) (store bool, err error)) error {
	return j.db.Update(func(tx *bbolt.Tx) error {
		jobs := tx.Bucket(bucketJobs)
		e, ok, err := getEntry(jobs, id)
		switch {
		case err != nil:
			return err
		case !ok:
			return fmt.Errorf("%w: %q", ErrNotFound, id)
		}
		if store, err := change(&e); err != nil || !store {
			return err
		}
		return putEntry(jobs, e)
	})
}

// BeginWrite records, durably, that writing the card with UID uid (hex)
// begins for job id: the job moves to writing and its attempt number
// goes up by one. It returns the entry as stored.
func (j *Journal) BeginWrite(id, uid string) (Entry, error) {
	var out Entry
	err := j.update(id, func(e *Entry) (bool, error) {
		if e.State == StateFinished {
			return false, fmt.Errorf("%w: %q", ErrFinished, id)
		}
		e.State, e.UpdatedAt = StateWriting, j.opts.Now()
		e.Attempt++
		e.CardUID = uid
		out = *e
		return true, nil
	})
	return out, err
}

// SetCardUID records, durably, the UID (hex) of the card job id is
// writing, once it is known better than when writing began: the real UID
// of a card whose anticollision UID is random, which the layout reads
// before its first write of the record.
func (j *Journal) SetCardUID(id, uid string) error {
	return j.update(id, func(e *Entry) (bool, error) {
		switch {
		case e.State != StateWriting:
			return false, fmt.Errorf("%w: %q is %s", ErrNotWriting, id, e.State)
		case e.CardUID == uid:
			return false, nil
		}
		e.CardUID, e.UpdatedAt = uid, j.opts.Now()
		return true, nil
	})
}

// Finish stores the result of job id and returns the result stored. A
// job finishes once: finishing it again returns the first result, and
// finishing one already acknowledged is ErrAcknowledged.
func (j *Journal) Finish(id string, r protocol.Result) (protocol.Result, error) {
	r.JobID = id
	if r.FinishedAt.IsZero() {
		r.FinishedAt = j.opts.Now().UTC()
	}
	m := protocol.New(protocol.TypeResult)
	m.Result = &r
	if _, err := protocol.Encode(m); err != nil {
		return protocol.Result{}, fmt.Errorf("journal: finish %q: %w", id, err)
	}
	var out protocol.Result
	err := j.db.Update(func(tx *bbolt.Tx) error {
		jobs := tx.Bucket(bucketJobs)
		e, ok, err := getEntry(jobs, id)
		switch {
		case err != nil:
			return err
		case !ok:
			if _, acked := getTombstone(tx.Bucket(bucketAcked), id); acked {
				return fmt.Errorf("%w: %q", ErrAcknowledged, id)
			}
			return fmt.Errorf("%w: %q", ErrNotFound, id)
		case e.State == StateFinished && e.Result != nil:
			out = *e.Result
			return nil
		}
		e.State, e.Result, e.UpdatedAt = StateFinished, &r, j.opts.Now()
		out = r
		return putEntry(jobs, e)
	})
	return out, err
}

// Acknowledge forgets the result of job id, keeping only its id until
// Retention past its deadline. cloudNow is the time on the cloud's clock,
// the one deadlines are on: the PC's own clock may be hours off, and
// measured against it a record written now could be pruned at once. A
// zero cloudNow prunes by count only. Acknowledging a job already
// acknowledged is a no-op; acknowledging one not finished is
// ErrNotFinished, and an unknown one ErrNotFound.
func (j *Journal) Acknowledge(id string, cloudNow time.Time) error {
	now := j.opts.Now()
	return j.db.Update(func(tx *bbolt.Tx) error {
		jobs, acked := tx.Bucket(bucketJobs), tx.Bucket(bucketAcked)
		e, ok, err := getEntry(jobs, id)
		if err != nil {
			return err
		}
		if !ok {
			if _, ok := getTombstone(acked, id); ok {
				return nil
			}
			return fmt.Errorf("%w: %q", ErrNotFound, id)
		}
		if e.State != StateFinished {
			return fmt.Errorf("%w: %q is %s", ErrNotFinished, id, e.State)
		}
		if err := jobs.Delete([]byte(id)); err != nil {
			return err
		}
		v, _ := json.Marshal(tombstone{Deadline: e.Job.Deadline, AckedAt: now})
		if err := acked.Put([]byte(id), v); err != nil {
			return err
		}
		return j.pruneLocked(acked, cloudNow, []byte(id))
	})
}

// pruneLocked drops the tombstones Retention past their deadline on the
// cloud's clock, then the oldest deadlines beyond MaxAcked. It never drops
// keep (the one just written), nor a tombstone it cannot decode: that one
// still says "acknowledged", which is what keeps a job from running twice.
func (j *Journal) pruneLocked(acked *bbolt.Bucket, cloudNow time.Time, keep []byte) error {
	type stone struct {
		key      []byte
		deadline time.Time
	}
	var live []stone
	var old [][]byte
	err := acked.ForEach(func(k, v []byte) error {
		var t tombstone
		switch {
		case bytes.Equal(k, keep), json.Unmarshal(v, &t) != nil:
		case !cloudNow.IsZero() && cloudNow.After(t.Deadline.Add(j.opts.Retention)):
			old = append(old, bytes.Clone(k))
		default:
			live = append(live, stone{bytes.Clone(k), t.Deadline})
		}
		return nil
	})
	if err != nil {
		return err
	}
	n := len(live)
	if keep != nil {
		n++
	}
	if extra := n - j.opts.MaxAcked; extra > 0 {
		slices.SortFunc(live, func(a, b stone) int {
			if c := a.deadline.Compare(b.deadline); c != 0 {
				return c
			}
			return bytes.Compare(a.key, b.key)
		})
		for _, s := range live[:min(extra, len(live))] {
			old = append(old, s.key)
		}
	}
	for _, k := range old {
		if err := acked.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

func (j *Journal) all() ([]Entry, error) {
	var es []Entry
	err := j.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketJobs).ForEach(func(k, v []byte) error {
			var e Entry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("journal: job %q: corrupt entry: %w", k, err)
			}
			es = append(es, e)
			return nil
		})
	})
	return es, err
}

// Pending returns the results not yet acknowledged, oldest first.
func (j *Journal) Pending() ([]protocol.Result, error) {
	rs, _, err := j.Snapshot()
	return rs, err
}

// Active returns the jobs not finished, in the order they arrived.
func (j *Journal) Active() ([]Entry, error) {
	_, es, err := j.Snapshot()
	return es, err
}

// Snapshot returns Pending and Active as of one moment, so that a job
// finishing meanwhile is in exactly one of them.
func (j *Journal) Snapshot() (pending []protocol.Result, active []Entry, err error) {
	es, err := j.all()
	if err != nil {
		return nil, nil, err
	}
	for _, e := range es {
		if e.State == StateFinished && e.Result != nil {
			pending = append(pending, *e.Result)
		} else if e.State != StateFinished {
			active = append(active, e)
		}
	}
	slices.SortFunc(pending, func(a, b protocol.Result) int {
		if c := a.FinishedAt.Compare(b.FinishedAt); c != 0 {
			return c
		}
		return cmpString(a.JobID, b.JobID)
	})
	sortByArrival(active)
	return pending, active, nil
}

func sortByArrival(es []Entry) {
	slices.SortFunc(es, func(a, b Entry) int {
		// By Seq; entries from before Seq existed (0) came first.
		if c := cmp.Compare(a.Seq, b.Seq); c != 0 {
			return c
		}
		if c := a.ReceivedAt.Compare(b.ReceivedAt); c != 0 {
			return c
		}
		return cmpString(a.Job.JobID, b.Job.JobID)
	})
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Recover is run once at startup, before any job runs: it repairs what
// Open set aside and returns every job not finished, as found (queued,
// running, writing or damaged), in the order they arrived. It changes no
// job: what a job found writing or damaged means, and whether one found
// running may run again, is for the caller to decide, as is whether a
// deadline passed, once it knows the cloud's time.
func (j *Journal) Recover() ([]Entry, error) {
	var again []Entry
	err := j.db.Update(func(tx *bbolt.Tx) error {
		if err := j.repairLocked(tx); err != nil {
			return err
		}
		err := tx.Bucket(bucketJobs).ForEach(func(k, v []byte) error {
			var e Entry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("journal: job %q: corrupt entry: %w", k, err)
			}
			if e.State != StateFinished {
				again = append(again, e)
			}
			return nil
		})
		if err != nil {
			return err
		}
		// Before any welcome there is no cloud time to age tombstones by.
		return j.pruneLocked(tx.Bucket(bucketAcked), time.Time{}, nil)
	})
	if err != nil {
		return nil, err
	}
	sortByArrival(again)
	return again, nil
}
