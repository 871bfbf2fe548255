package journal

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/encoder-bridge/encoder-bridge/protocol"
)

var t0 = time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

func open(t *testing.T, dir string, c *clock) *Journal {
	t.Helper()
	j, err := Open(dir, Options{Now: c.Now, LockTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func job(id string, deadline time.Time) Entry {
	seq := uint32(1)
	return Entry{Reader: "Sim 00", Job: protocol.Job{
		JobID: id, ActionAttemptID: "aa-" + id, Kind: protocol.JobEncode, EncoderID: "e1", Deadline: deadline,
		Credential: &protocol.Credential{CredentialID: "6f1c2d8e-3a4b-4c5d-9e6f-708192a3b4c5", CardNumber: "1", CardFunctionType: "guest",
			StartsAt: "2026-11-23T15:00:00Z", EndsAt: "2026-11-26T11:00:00Z", IssueSequence: &seq},
	}}
}

func okResult() protocol.Result {
	return protocol.Result{Card: &protocol.Card{UID: "04A1B2C3", Technology: "ntag213", Valid: true}}
}

func errResult(typ protocol.ErrorType) protocol.Result {
	return protocol.Result{Error: &protocol.JobError{Type: typ, Message: string(typ)}}
}

func TestReceiveIsDurableAndDeduplicates(t *testing.T) {
	c := &clock{now: t0}
	j := open(t, t.TempDir(), c)
	defer j.Close()

	e, isNew, err := j.Receive(job("j1", t0.Add(time.Minute)))
	if err != nil || !isNew || e.State != StateQueued || !e.ReceivedAt.Equal(t0) {
		t.Fatalf("first Receive = %+v, %v, %v", e, isNew, err)
	}
	c.set(t0.Add(time.Second))
	again := job("j1", t0.Add(time.Hour)) // a redelivery never replaces the stored job
	e, isNew, err = j.Receive(again)
	if err != nil || isNew || !e.Job.Deadline.Equal(t0.Add(time.Minute)) || !e.ReceivedAt.Equal(t0) {
		t.Fatalf("second Receive = %+v, %v, %v", e, isNew, err)
	}
	if _, _, err := j.Receive(Entry{}); err == nil {
		t.Fatal("Receive without a job id succeeded")
	}
	if _, err := j.Get("nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get unknown = %v", err)
	}
}

func TestStatesFinishOnce(t *testing.T) {
	c := &clock{now: t0}
	j := open(t, t.TempDir(), c)
	defer j.Close()
	j.Receive(job("j1", t0.Add(time.Minute)))
	for _, s := range []State{StateRunning, StateWriting} {
		if err := j.SetState("j1", s); err != nil {
			t.Fatal(err)
		}
		if e, _ := j.Get("j1"); e.State != s {
			t.Fatalf("state = %s, want %s", e.State, s)
		}
	}
	if err := j.SetState("j1", StateFinished); err == nil {
		t.Fatal("SetState(finished) accepted")
	}
	if err := j.SetState("nope", StateRunning); !errors.Is(err, ErrNotFound) {
		t.Fatalf("SetState unknown = %v", err)
	}
	if _, err := j.Finish("j1", protocol.Result{}); err == nil {
		t.Fatal("Finish with neither card nor error accepted")
	}
	r, err := j.Finish("j1", okResult())
	if err != nil || r.JobID != "j1" || r.Card == nil || !r.FinishedAt.Equal(t0) {
		t.Fatalf("Finish = %+v, %v", r, err)
	}
	// A second outcome never replaces the first.
	r, err = j.Finish("j1", errResult("encoding_interrupted"))
	if err != nil || r.Card == nil {
		t.Fatalf("second Finish = %+v, %v; want the first result", r, err)
	}
	if err := j.SetState("j1", StateRunning); !errors.Is(err, ErrFinished) {
		t.Fatalf("SetState after Finish = %v", err)
	}
	if _, err := j.Finish("nope", okResult()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Finish unknown = %v", err)
	}
	pending, _ := j.Pending()
	active, _ := j.Active()
	if len(pending) != 1 || pending[0].JobID != "j1" || len(active) != 0 {
		t.Fatalf("pending %v active %v", pending, active)
	}
	// Redelivered after finishing: the stored result comes back.
	e, isNew, _ := j.Receive(job("j1", t0.Add(time.Minute)))
	if isNew || e.State != StateFinished || e.Result == nil || e.Result.Card == nil {
		t.Fatalf("Receive of a finished job = %+v, %v", e, isNew)
	}
}

func TestAcknowledgeForgetsButRemembersTheID(t *testing.T) {
	c := &clock{now: t0}
	j := open(t, t.TempDir(), c)
	defer j.Close()
	deadline := t0.Add(time.Minute)
	j.Receive(job("j1", deadline))
	j.Receive(job("j2", t0.Add(48*time.Hour)))
	if err := j.Acknowledge("j1", t0); !errors.Is(err, ErrNotFinished) {
		t.Fatalf("Acknowledge of a queued job = %v", err)
	}
	if err := j.Acknowledge("nope", t0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Acknowledge unknown = %v", err)
	}
	j.Finish("j1", okResult())
	if err := j.Acknowledge("j1", t0); err != nil {
		t.Fatal(err)
	}
	if err := j.Acknowledge("j1", t0); err != nil {
		t.Fatalf("second Acknowledge = %v", err)
	}
	if p, _ := j.Pending(); len(p) != 0 {
		t.Fatalf("pending after ack: %v", p)
	}
	e, isNew, err := j.Receive(job("j1", deadline))
	if err != nil || isNew || e.State != StateAcknowledged {
		t.Fatalf("redelivery after ack = %+v, %v, %v; want acknowledged, not new", e, isNew, err)
	}
	if _, err := j.Finish("j1", okResult()); !errors.Is(err, ErrAcknowledged) {
		t.Fatalf("Finish after ack = %v", err)
	}

	// Past deadline+retention on the cloud's clock the id is forgotten
	// (at the next ack).
	j.Finish("j2", okResult())
	if err := j.Acknowledge("j2", deadline.Add(25*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := j.Get("j1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("old tombstone kept: %v", err)
	}
	if e, _ := j.Get("j2"); e.State != StateAcknowledged {
		t.Fatalf("fresh tombstone dropped: %+v", e)
	}
}

// The dedup record of a job survives a PC clock that is a day or more off
// either way: tombstones age on the cloud's clock, which Acknowledge is
// given, never on the PC's. (With the PC's clock 24 h ahead, the record
// Acknowledge had just written used to be pruned by the same call.)
func TestTombstoneSurvivesPCClockSkew(t *testing.T) {
	for _, skew := range []time.Duration{24 * time.Hour, 25 * time.Hour, 30 * 24 * time.Hour, -24 * time.Hour} {
		t.Run(skew.String(), func(t *testing.T) {
			c := &clock{now: t0.Add(skew)} // the PC's clock
			j := open(t, t.TempDir(), c)
			defer j.Close()
			cloudNow := t0
			j.Receive(job("j1", cloudNow.Add(time.Minute)))
			j.Finish("j1", okResult())
			if err := j.Acknowledge("j1", cloudNow.Add(2*time.Second)); err != nil {
				t.Fatal(err)
			}
			j.Receive(job("j2", cloudNow.Add(2*time.Minute)))
			j.Finish("j2", okResult())
			if err := j.Acknowledge("j2", cloudNow.Add(3*time.Second)); err != nil {
				t.Fatal(err)
			}
			for _, id := range []string{"j1", "j2"} {
				e, isNew, err := j.Receive(job(id, cloudNow.Add(time.Minute)))
				if err != nil || isNew || e.State != StateAcknowledged {
					t.Fatalf("%s delivered again = %+v, new %v, %v; want acknowledged", id, e, isNew, err)
				}
			}
		})
	}
}

// At most MaxAcked ids are remembered; the oldest deadlines go first, the
// one just acknowledged never, and an undecodable record is kept.
func TestTombstonesBoundedByCount(t *testing.T) {
	c := &clock{now: t0}
	j, err := Open(t.TempDir(), Options{Now: c.Now, MaxAcked: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	err = j.db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketAcked).Put([]byte("damaged"), []byte("{"))
	})
	if err != nil {
		t.Fatal(err)
	}
	// Deadlines out of order: j3 is the oldest.
	deadlines := map[string]time.Duration{"j1": 2 * time.Minute, "j2": 3 * time.Minute, "j3": time.Minute, "j4": 4 * time.Minute, "j5": 0}
	for _, id := range []string{"j1", "j2", "j3", "j4", "j5"} {
		j.Receive(job(id, t0.Add(deadlines[id])))
		j.Finish(id, okResult())
		if err := j.Acknowledge(id, t0); err != nil {
			t.Fatal(err)
		}
	}
	for id, want := range map[string]bool{"damaged": true, "j1": false, "j2": true, "j3": false, "j4": true, "j5": true} {
		_, err := j.Get(id)
		if got := err == nil; got != want {
			t.Errorf("%s remembered = %v, want %v (%v)", id, got, want, err)
		}
	}
}

// The journal is closed without finishing its jobs, as a crash leaves it,
// and opened again.
func TestRecoverAfterCrash(t *testing.T) {
	dir := t.TempDir()
	c := &clock{now: t0}
	j := open(t, dir, c)
	soon, later := t0.Add(time.Minute), t0.Add(time.Hour)
	steps := []struct {
		id       string
		deadline time.Time
		state    State
	}{
		{"queued-in-time", later, StateQueued},
		{"running-in-time", later, StateRunning},
		{"writing", later, StateWriting},
		{"queued-expired", soon, StateQueued},
		{"running-expired", soon, StateRunning},
		{"finished", soon, StateFinished},
	}
	for i, s := range steps {
		c.set(t0.Add(time.Duration(i) * time.Second))
		if _, _, err := j.Receive(job(s.id, s.deadline)); err != nil {
			t.Fatal(err)
		}
		switch s.state {
		case StateRunning, StateWriting:
			j.SetState(s.id, s.state)
		case StateFinished:
			j.Finish(s.id, okResult())
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}

	now := t0.Add(10 * time.Minute)
	c.set(now)
	j = open(t, dir, c)
	defer j.Close()
	again, err := j.Recover()
	if err != nil {
		t.Fatal(err)
	}
	// Every job not finished comes back as it was, the one writing
	// included, expired or not by the PC's clock: what each means, and
	// whether its time ran out, the agent decides.
	wantAgain := map[string]State{
		"queued-in-time":  StateQueued,
		"running-in-time": StateRunning,
		"writing":         StateWriting,
		"queued-expired":  StateQueued,
		"running-expired": StateRunning,
	}
	var ids []string
	for _, e := range again {
		ids = append(ids, e.Job.JobID)
		if e.State != wantAgain[e.Job.JobID] || e.Job.Credential == nil || e.Reader != "Sim 00" || e.Result != nil {
			t.Errorf("recovered %+v, want state %q and no result", e, wantAgain[e.Job.JobID])
		}
	}
	if want := []string{"queued-in-time", "running-in-time", "writing", "queued-expired", "running-expired"}; !slices.Equal(ids, want) {
		t.Fatalf("recovered %v, want %v", ids, want)
	}
	// The journal writes no result of its own.
	if pending, _ := j.Pending(); len(pending) != 1 || pending[0].JobID != "finished" {
		t.Fatalf("pending = %+v, want only the finished job's", pending)
	}
	// Recover changes nothing: again, the same.
	if again2, _ := j.Recover(); !slices.Equal(jobIDs(again2), ids) {
		t.Fatalf("second Recover = %v", jobIDs(again2))
	}
}

func jobIDs(es []Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Job.JobID)
	}
	return out
}

func TestFileAndLock(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	c := &clock{now: t0}
	j := open(t, dir, c)
	defer j.Close()
	if j.Path() != filepath.Join(dir, FileName) {
		t.Fatalf("path %s", j.Path())
	}
	if runtime.GOOS != "windows" {
		fi, err := os.Stat(j.Path())
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("journal mode %v, %v", fi.Mode(), err)
		}
		di, _ := os.Stat(dir)
		if di.Mode().Perm() != 0o700 {
			t.Fatalf("state dir mode %v", di.Mode())
		}
	}
	if _, err := Open(dir, Options{LockTimeout: 50 * time.Millisecond}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
}

func TestLooseModeTightened(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("mode bits do not govern access on Windows")
	}
	dir := t.TempDir()
	j := open(t, dir, &clock{now: t0})
	j.Close()
	os.Chmod(filepath.Join(dir, FileName), 0o644)
	j = open(t, dir, &clock{now: t0})
	defer j.Close()
	if fi, _ := os.Stat(j.Path()); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v after reopening", fi.Mode())
	}
}

// Jobs keep the order they arrived in when the PC's clock is set back
// between them: ReceivedAt alone would put the later job first.
func TestArrivalOrderSurvivesClockSetBack(t *testing.T) {
	dir := t.TempDir()
	c := &clock{now: t0}
	j := open(t, dir, c)
	for i, id := range []string{"first", "second", "third"} {
		c.set(t0.Add(-time.Duration(i) * time.Hour))
		if _, _, err := j.Receive(job(id, t0.Add(time.Hour))); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"first", "second", "third"}
	if active, _ := j.Active(); !slices.Equal(jobIDs(active), want) {
		t.Fatalf("Active order %v, want %v", jobIDs(active), want)
	}
	j.Close()
	j = open(t, dir, c)
	defer j.Close()
	again, err := j.Recover()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(jobIDs(again), want) {
		t.Fatalf("Recover order %v, want %v", jobIDs(again), want)
	}
}

// BenchmarkAcknowledge is a job's Receive, Finish and Acknowledge (three
// commits), with no dedup records and with them at their bound: the
// difference is what pruning costs.
func BenchmarkAcknowledge(b *testing.B) {
	for _, n := range []int{0, 10000} {
		b.Run(fmt.Sprintf("records=%d", n), func(b *testing.B) {
			c := &clock{now: t0}
			j, err := Open(b.TempDir(), Options{Now: c.Now, MaxAcked: 10000})
			if err != nil {
				b.Fatal(err)
			}
			defer j.Close()
			err = j.db.Update(func(tx *bbolt.Tx) error {
				acked := tx.Bucket(bucketAcked)
				for i := range n {
					v, _ := json.Marshal(tombstone{Deadline: t0.Add(time.Duration(i) * time.Second), AckedAt: t0})
					if err := acked.Put([]byte(fmt.Sprintf("old-%05d", i)), v); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := range b.N {
				id := fmt.Sprintf("new-%d", i)
				j.Receive(job(id, t0.Add(24*time.Hour)))
				j.Finish(id, okResult())
				if err := j.Acknowledge(id, t0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BeginWrite counts the attempts and keeps the card's UID across a
// reopen, so that a job resumed after a crash finds its card again.
func TestBeginWriteCountsAttempts(t *testing.T) {
	c := &clock{now: t0}
	dir := t.TempDir()
	j := open(t, dir, c)
	j.Receive(job("j1", t0.Add(time.Minute)))
	j.Receive(job("done", t0.Add(time.Minute)))
	j.Finish("done", okResult())
	for _, tc := range []struct {
		name, id, uid string
		attempt       int
		err           error
	}{
		{"first write", "j1", "04A1B2C3D4E5F6", 1, nil},
		{"the write run again", "j1", "04A1B2C3D4E5F6", 2, nil},
		{"unknown job", "nope", "04", 0, ErrNotFound},
		{"finished job", "done", "04", 0, ErrFinished},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := j.BeginWrite(tc.id, tc.uid)
			if !errors.Is(err, tc.err) || (tc.err != nil) != (err != nil) {
				t.Fatalf("BeginWrite = %v, want %v", err, tc.err)
			}
			if err == nil && (e.State != StateWriting || e.Attempt != tc.attempt || e.CardUID != tc.uid) {
				t.Fatalf("BeginWrite = %+v", e)
			}
		})
	}
	j.Close()
	j = open(t, dir, c)
	defer j.Close()
	found, err := j.Recover()
	if err != nil || len(found) != 1 || found[0].State != StateWriting || found[0].Attempt != 2 || found[0].CardUID != "04A1B2C3D4E5F6" {
		t.Fatalf("Recover = %+v, %v", found, err)
	}
}

// SetCardUID replaces the UID of a job writing its card (a random-UID
// card's real one), keeps the attempt, and keeps it across a reopen.
func TestSetCardUID(t *testing.T) {
	c := &clock{now: t0}
	dir := t.TempDir()
	j := open(t, dir, c)
	j.Receive(job("j1", t0.Add(time.Minute)))
	j.Receive(job("queued", t0.Add(time.Minute)))
	j.Receive(job("done", t0.Add(time.Minute)))
	j.Finish("done", okResult())
	if _, err := j.BeginWrite("j1", "08A1B2C3"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, id, uid string
		err           error
	}{
		{"real UID", "j1", "04A1B2C3D4E5F6", nil},
		{"the same again", "j1", "04A1B2C3D4E5F6", nil},
		{"unknown job", "nope", "04A1B2C3D4E5F6", ErrNotFound},
		{"not writing", "queued", "04A1B2C3D4E5F6", ErrNotWriting},
		{"finished job", "done", "04A1B2C3D4E5F6", ErrNotWriting},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := j.SetCardUID(tc.id, tc.uid); !errors.Is(err, tc.err) || (tc.err != nil) != (err != nil) {
				t.Fatalf("SetCardUID = %v, want %v", err, tc.err)
			}
		})
	}
	j.Close()
	j = open(t, dir, c)
	defer j.Close()
	found, err := j.Recover()
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(found, func(e Entry) bool { return e.Job.JobID == "j1" })
	if i < 0 || found[i].State != StateWriting || found[i].Attempt != 1 || found[i].CardUID != "04A1B2C3D4E5F6" {
		t.Fatalf("Recover = %+v", found)
	}
}
