package journal

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/encoder-bridge/encoder-bridge/protocol"
)

// written makes a journal in dir with a job being written, a job queued,
// a finished one and an acknowledged one, and closes it.
func written(t *testing.T, dir string) {
	t.Helper()
	c := &clock{now: t0}
	j := open(t, dir, c)
	for _, id := range []string{"writing", "queued", "finished", "acked"} {
		if _, _, err := j.Receive(job(id, t0.Add(time.Hour))); err != nil {
			t.Fatal(err)
		}
	}
	must(t, j.SetState("writing", StateWriting))
	for _, id := range []string{"finished", "acked"} {
		if _, err := j.Finish(id, okResult()); err != nil {
			t.Fatal(err)
		}
	}
	must(t, j.Acknowledge("acked", t0))
	must(t, j.Close())
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// metaOf reads the newest valid meta page of the file.
func metaOf(t *testing.T, path string) boltMeta {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m0, err0 := parseMeta(b)
	if err0 != nil {
		t.Fatal(err0)
	}
	m1, err1 := parseMeta(b[m0.pageSize:])
	if err1 == nil && m1.txid > m0.txid {
		return m1
	}
	return m0
}

func garbage(n int) []byte { return bytes.Repeat([]byte{0xA5, 0x5A, 0xFF, 0x00, 0x13}, n/5+1)[:n] }

func overwritePage(t *testing.T, path string, pgid uint64) {
	t.Helper()
	overwrite(t, path, int64(pgid)*int64(metaOf(t, path).pageSize), int(metaOf(t, path).pageSize))
}

func overwrite(t *testing.T, path string, off int64, n int) {
	t.Helper()
	overwriteWith(t, path, off, garbage(n))
}

func overwriteWith(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

type salvageWant int

const (
	no salvageWant = iota
	yes
	either
)

// TestDamagedFileSetAside: a damaged journal is never taken for a new
// one, never crashes the process, is renamed aside (not deleted), and
// what can be read of it is salvaged: the job that was writing a card is
// finished as encoding_interrupted and never handed back to run.
func TestDamagedFileSetAside(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, path string)
		reason string
		// salvage: the writing job is read back (and finished as
		// encoding_interrupted): yes, no, or either (depends on where
		// bbolt put it).
		salvage salvageWant
	}{
		{"zero length", func(t *testing.T, path string) { must(t, os.Truncate(path, 0)) }, "empty", no},
		{"shorter than the meta pages", func(t *testing.T, path string) { must(t, os.Truncate(path, 1500)) }, "meta pages", no},
		{"truncated", func(t *testing.T, path string) {
			// The pages past the cut are read through bbolt's memory map:
			// unchecked, that is a SIGBUS.
			m := metaOf(t, path)
			must(t, os.Truncate(path, int64(m.pgid-1)*int64(m.pageSize)))
		}, "truncated", either},
		{"both meta pages garbage", func(t *testing.T, path string) {
			ps := int64(metaOf(t, path).pageSize)
			overwrite(t, path, 0, int(ps))
			overwrite(t, path, ps, int(ps))
		}, "both meta pages", no},
		{"garbage in the freelist page", func(t *testing.T, path string) {
			overwritePage(t, path, metaOf(t, path).freelist) // unchecked, bbolt panics: invalid freelist page
		}, "freelist page", yes},
		{"freelist count past its page", func(t *testing.T, path string) {
			m := metaOf(t, path)
			overwrite(t, path, int64(m.freelist)*int64(m.pageSize)+10, 2) // count 0xFFFF: the first element counts
			overwrite(t, path, int64(m.freelist)*int64(m.pageSize)+pageHeaderSize, 8)
		}, "freelist page", yes},
		{"garbage in the root page", func(t *testing.T, path string) {
			overwritePage(t, path, metaOf(t, path).root)
		}, "root page", no},
		{"garbage in a leaf's elements", func(t *testing.T, path string) {
			// Past the header of the page holding the jobs: bbolt's
			// consistency check or the reads of the entries trip on it.
			m := metaOf(t, path)
			b, err := os.ReadFile(path)
			must(t, err)
			// Every page holding the entry, since freed copies of it
			// remain in the file.
			needle, n := []byte(`"job_id":"writing"`), 0
			for off := 0; ; n++ {
				i := bytes.Index(b[off:], needle)
				if i < 0 {
					break
				}
				page := int64(off+i) / int64(m.pageSize) * int64(m.pageSize)
				overwrite(t, path, page+pageHeaderSize, 64)
				off = int(page) + int(m.pageSize)
			}
			if n == 0 {
				t.Fatal("no job entry in the file")
			}
		}, "damaged", either},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			written(t, dir)
			path := filepath.Join(dir, FileName)
			tc.damage(t, path)
			before, err := os.ReadFile(path)
			must(t, err)

			now := t0.Add(5 * time.Minute)
			j := open(t, dir, &clock{now: now})
			defer j.Close()
			r := j.Reset()
			if r == nil {
				t.Fatal("a damaged journal was opened as if nothing happened")
			}
			if !strings.Contains(r.Reason, tc.reason) || !r.At.Equal(now) || r.Quarantined == "" {
				t.Errorf("Reset = %+v, want a reason with %q", r, tc.reason)
			}
			aside, err := os.ReadFile(filepath.Join(dir, r.Quarantined))
			if err != nil || !bytes.Equal(aside, before) {
				t.Fatalf("the damaged file was not kept as it was: %v", err)
			}

			again, err := j.Recover()
			if err != nil {
				t.Fatal(err)
			}
			// Salvaged, the job that was writing a card comes back as
			// writing, for the agent to finish: never as one to run.
			var writing bool
			for _, e := range again {
				if e.Job.JobID == "writing" {
					if e.State != StateWriting {
						t.Fatalf("the job that was writing a card comes back %s", e.State)
					}
					writing = true
				}
			}
			if tc.salvage != either && writing != (tc.salvage == yes) {
				t.Errorf("writing job salvaged: %v, want %v (recovered %+v)", writing, tc.salvage == yes, again)
			}
			if tc.salvage == yes {
				if e, _, err := j.Receive(job("acked", t0.Add(time.Hour))); err != nil || e.State != StateAcknowledged {
					t.Errorf("salvaged dedup record: Receive = %+v, %v", e, err)
				}
			}

			// The new journal works, and the reset is reported until the
			// cloud has been told.
			if _, isNew, err := j.Receive(job("new", now.Add(time.Minute))); err != nil || !isNew {
				t.Fatalf("Receive on the new journal: %v %v", isNew, err)
			}
			must(t, j.Close())
			j = open(t, dir, &clock{now: now})
			if j.Reset() == nil {
				t.Fatal("the reset was forgotten at the next start")
			}
			must(t, j.MarkResetReported())
			if j.Reset() != nil {
				t.Fatal("Reset after MarkResetReported")
			}
			must(t, j.Close())
			j = open(t, dir, &clock{now: now})
			if j.Reset() != nil {
				t.Fatal("Reset came back after MarkResetReported")
			}
		})
	}
}

func TestEmptyFileIsNotTakenForNew(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, FileName), nil, 0o600))
	j := open(t, dir, &clock{now: t0})
	defer j.Close()
	if j.Reset() == nil {
		t.Fatal("an empty journal file was opened as a new journal")
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Fatalf("state directory holds %d files, want the journal and the one set aside", len(ents))
	}
}

func TestNewJournalIsNoReset(t *testing.T) {
	dir := t.TempDir()
	j := open(t, dir, &clock{now: t0})
	must(t, j.Close())
	j = open(t, dir, &clock{now: t0})
	defer j.Close()
	if r := j.Reset(); r != nil {
		t.Fatalf("Reset = %+v on a sound journal", r)
	}
}

// putRaw writes v under key in bucket, as a damaged entry would be.
func putRaw(t *testing.T, dir string, bucket []byte, key string, v []byte) {
	t.Helper()
	db, err := bbolt.Open(filepath.Join(dir, FileName), 0o600, nil)
	must(t, err)
	must(t, db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucket).Put([]byte(key), v) }))
	must(t, db.Close())
}

// TestBadJobEntrySetAside: one job entry that does not decode is set
// aside and its job handed back as damaged; the others recover and the
// bridge starts.
func TestBadJobEntrySetAside(t *testing.T) {
	dir := t.TempDir()
	written(t, dir)
	raw := []byte(`{"job": {"job_id": "bad", "deadl`)
	putRaw(t, dir, bucketJobs, "bad", raw)

	j := open(t, dir, &clock{now: t0})
	defer j.Close()
	if j.Reset() != nil {
		t.Fatal("one bad entry reset the whole journal")
	}
	again, err := j.Recover()
	if err != nil {
		t.Fatalf("Recover failed on one bad entry: %v", err)
	}
	var got []string
	for _, e := range again {
		got = append(got, e.Job.JobID+"="+string(e.State))
	}
	slices.Sort(got)
	if want := []string{"bad=damaged", "queued=queued", "writing=writing"}; !slices.Equal(got, want) {
		t.Fatalf("recovered %v, want %v", got, want)
	}
	e, err := j.Get("bad")
	if err != nil || e.State != StateDamaged || e.Result != nil {
		t.Fatalf("bad entry: %+v, %v", e, err)
	}
	// The agent finishes it; a delivery of it again is then answered with
	// that result.
	if _, err := j.Finish("bad", protocol.Result{Error: &protocol.JobError{Type: protocol.ErrorEncodingInterrupted, Message: "x"}}); err != nil {
		t.Fatal(err)
	}
	if e, isNew, err := j.Receive(job("bad", t0.Add(time.Hour))); err != nil || isNew || e.State != StateFinished {
		t.Fatalf("a delivery of the bad job again: %+v new=%v %v", e, isNew, err)
	}
	must(t, j.db.View(func(tx *bbolt.Tx) error {
		if got := tx.Bucket(bucketQuarantine).Get([]byte("jobs/bad")); !bytes.Equal(got, raw) {
			t.Errorf("quarantined %q, want the raw entry", got)
		}
		return nil
	}))
}

// TestBadDedupRecordKept: a dedup record that does not decode still says
// the job was acknowledged, and pruning does not drop it.
func TestBadDedupRecordKept(t *testing.T) {
	dir := t.TempDir()
	written(t, dir)
	putRaw(t, dir, bucketAcked, "gone", []byte("\x00not json"))

	c := &clock{now: t0}
	j := open(t, dir, c)
	defer j.Close()
	// Acknowledging prunes; an hour on, well inside Retention.
	c.set(t0.Add(time.Hour))
	if _, err := j.Finish("queued", okResult()); err != nil {
		t.Fatal(err)
	}
	must(t, j.Acknowledge("queued", t0.Add(time.Hour)))
	e, isNew, err := j.Receive(job("gone", t0.Add(2*time.Hour)))
	if err != nil || isNew || e.State != StateAcknowledged {
		t.Fatalf("a job whose dedup record was damaged: %+v new=%v %v", e, isNew, err)
	}
	must(t, j.db.View(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketQuarantine).Get([]byte("acked/gone")) == nil {
			t.Error("the damaged record was not set aside")
		}
		return nil
	}))
}

// TestLockedFileIsNotJudged: a file another process holds (here an empty
// one, as bbolt leaves it for an instant while it creates a journal) is
// neither judged damaged nor renamed.
func TestLockedFileIsNotJudged(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	must(t, os.WriteFile(path, nil, 0o600))
	other, err := os.Open(path)
	must(t, err)
	defer other.Close()
	must(t, lockFile(other, time.Second))
	if _, err := Open(dir, Options{LockTimeout: 50 * time.Millisecond}); !errors.Is(err, ErrLocked) {
		t.Fatalf("Open of a journal in use = %v, want ErrLocked", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("the state directory holds %d files: the file in use was set aside", len(ents))
	}
}

func FuzzCheckFile(f *testing.F) {
	dir := f.TempDir()
	j, err := Open(dir, Options{})
	if err != nil {
		f.Fatal(err)
	}
	j.Close()
	good, _ := os.ReadFile(filepath.Join(dir, FileName))
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(t.TempDir(), "f")
		must(t, os.WriteFile(p, b, 0o600))
		fh, err := os.Open(p)
		must(t, err)
		defer fh.Close()
		if err := checkFile(fh); err != nil && !errors.Is(err, ErrDamaged) {
			t.Fatalf("checkFile error %v is not ErrDamaged", err)
		}
	})
}

// TestOpenBoltRecoversPanics: should a damaged page get past checkFile,
// bbolt's panic at open is an error, and the file is left unlocked so
// that it can be set aside and salvaged.
func TestOpenBoltRecoversPanics(t *testing.T) {
	dir := t.TempDir()
	written(t, dir)
	path := filepath.Join(dir, FileName)
	overwritePage(t, path, metaOf(t, path).freelist)
	db, err := openBolt(path, bbolt.Options{Timeout: 50 * time.Millisecond})
	if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "invalid freelist page") {
		t.Fatalf("openBolt = %v, %v; want ErrDamaged from bbolt's panic", db, err)
	}
	s := salvage(path)
	if len(s.jobs) != 3 || len(s.acked) != 1 {
		t.Fatalf("salvaged %d jobs, %d records after the panic; want 3, 1", len(s.jobs), len(s.acked))
	}
}

// A damaged record of a reset still reports one, with a time (the hello
// needs one).
func TestDamagedResetRecord(t *testing.T) {
	dir := t.TempDir()
	j := open(t, dir, &clock{now: t0})
	must(t, j.Close())
	putRaw(t, dir, bucketMeta, string(keyReset), []byte("{not json"))
	j = open(t, dir, &clock{now: t0})
	defer j.Close()
	if r := j.Reset(); r == nil || r.At.IsZero() || r.Reason == "" {
		t.Fatalf("Reset = %+v", r)
	}
}
