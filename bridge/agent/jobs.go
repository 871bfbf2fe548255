package agent

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/encoder-bridge/encoder-bridge/bridge"
	"github.com/encoder-bridge/encoder-bridge/bridge/journal"
	"github.com/encoder-bridge/encoder-bridge/protocol"
)

// queue is the jobs waiting for one encoder. One worker goroutine at a
// time drains it, so an encoder runs one job at a time.
type queue struct {
	jobs    []journal.Entry
	running bool
}

// jobRun is a job being run, as a stop sees it.
type jobRun struct {
	cancel context.CancelFunc

	mu       sync.Mutex
	writing  bool // StageWriting was reached: the card may be half written
	stopping bool
	card     bridge.Card // the card identified last
	// real is the real UID the layout read from the card identified last,
	// when its anticollision UID is random; nil otherwise.
	real []byte
	// want is the UID of the card the job must work on, once it wrote
	// one (for a random-UID card its real UID); nil: any card.
	want []byte
}

// errStopping refuses to start writing a card while the bridge stops.
var errStopping = errors.New("agent: the bridge is stopping")

// errTimeUp refuses to start writing a card once the job's time has run
// out on the cloud's clock: the cloud expires the action attempt at the
// deadline, and the card would carry a credential it reported as failed.
var errTimeUp = errors.New("agent: the job's time ran out before writing began")

// schedule queues e on its encoder and starts the encoder's worker.
func (a *Agent) schedule(e journal.Entry) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopping {
		return // still queued in the journal: it runs at the next start
	}
	enc := e.Job.EncoderID
	q := a.queues[enc]
	if q == nil {
		q = &queue{}
		a.queues[enc] = q
	}
	q.jobs = append(q.jobs, e)
	if !q.running {
		q.running = true
		a.jobsWG.Add(1)
		go a.work(enc, q)
	}
}

func (a *Agent) work(enc protocol.EncoderID, q *queue) {
	defer a.jobsWG.Done()
	for {
		a.mu.Lock()
		if len(q.jobs) == 0 || a.stopping {
			q.running = false
			if len(q.jobs) == 0 {
				delete(a.queues, enc)
			}
			a.mu.Unlock()
			return
		}
		e := q.jobs[0]
		q.jobs = q.jobs[1:]
		a.mu.Unlock()
		a.runJob(e)
	}
}

// stopJobs stops every job: those not writing at once (they stay in the
// journal and resume at the next start), those writing after WriteGrace.
func (a *Agent) stopJobs() {
	a.mu.Lock()
	a.stopping = true
	runs := make([]*jobRun, 0, len(a.running))
	for _, r := range a.running {
		runs = append(runs, r)
	}
	a.mu.Unlock()
	for _, r := range runs {
		r.mu.Lock()
		r.stopping = true
		if r.writing {
			t := time.AfterFunc(a.opts.WriteGrace, r.cancel)
			defer t.Stop()
		} else {
			r.cancel()
		}
		r.mu.Unlock()
	}
	a.jobsWG.Wait()
}

// runJob runs one job on its encoder and finishes it.
func (a *Agent) runJob(e journal.Entry) {
	id, job := e.Job.JobID, e.Job
	log := a.log.With(zap.String(FieldJobID, id), zap.String(FieldEncoder, string(job.EncoderID)))
	start := a.clk.Mono()
	var apdus atomic.Int64
	finish := func(r protocol.Result) {
		a.finish(id, r)
		a.observeJob(job, r, a.clk.Mono()-start, int(apdus.Load()))
	}
	expired := func(msg string) protocol.Result {
		if e.State == journal.StateWriting {
			// Resumed after a crash while writing: the card may hold
			// part of a record, which is what the staff must know.
			return errorResult(protocol.ErrorEncodingInterrupted, msgStoppedWriting)
		}
		return errorResult(protocol.ErrorActionAttemptExpired, msg)
	}
	now := a.cloudNow()
	if !now.Before(job.Deadline) {
		finish(expired("the job's deadline passed while it waited for its encoder"))
		return
	}
	// An encode must begin writing WriteMargin before the deadline, so
	// that it finishes, and its result reaches the cloud, before the
	// cloud expires the attempt.
	end := job.Deadline
	if job.Kind == protocol.JobEncode {
		end = end.Add(-a.opts.WriteMargin)
		if !now.Before(end) {
			finish(expired(fmt.Sprintf("too little of the job's time was left to write a card (%s before its deadline)", job.Deadline.Sub(now).Round(time.Millisecond))))
			return
		}
	}
	if e.Reader == "" {
		finish(errorResult(protocol.ErrorUncategorized, fmt.Sprintf("encoder %s is not an encoder of bridge %s", job.EncoderID, a.opts.BridgeID)))
		return
	}
	ctx, cancel := context.WithCancel(a.jobBase)
	defer cancel()
	run := &jobRun{cancel: cancel}
	a.mu.Lock()
	if a.stopping {
		a.mu.Unlock()
		return
	}
	a.running[id] = run
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		delete(a.running, id)
		a.mu.Unlock()
	}()
	// No durable "running" here: recovery treats a running job exactly as
	// a queued one (nothing written yet), so that fsync would buy nothing.
	// The one that matters, "writing", is made in the progress hook before
	// the first write.
	log.Info("job started", zap.String("kind", string(job.Kind)))
	waitEnd := a.cardWaitEnd(job, now)
	opts := bridge.JobOptions{
		Wait:     waitEnd.Sub(now),
		Progress: a.progressHook(id, end, run),
		Now:      a.cloudNow,
		APDUs:    &apdus,
		Card:     run.onCard,
		RealUID:  a.realUIDHook(id, run),
	}

	var res protocol.Result
	var err error
	switch job.Kind {
	case protocol.JobEncode:
		res, err = a.encode(ctx, e, opts, run, waitEnd)
	case protocol.JobScan:
		res, err = a.scan(ctx, e, opts, waitEnd)
	default:
		err = fmt.Errorf("job kind %q unknown", job.Kind)
		res = errorResult(protocol.ErrorUncategorized, err.Error())
	}
	if errors.Is(err, errTimeUp) {
		log.Warn("card not written: the job's time ran out before writing began")
		res = errorResult(protocol.ErrorActionAttemptExpired, "the job's time ran out before the card could be written; the card was not touched")
	} else if err != nil && (ctx.Err() != nil || errors.Is(err, errStopping)) {
		run.mu.Lock()
		writing := run.writing
		run.mu.Unlock()
		if !writing {
			// Nothing written: the journal still has the job as queued
			// (running is never made durable, see above), and it runs
			// again at the next start if its deadline allows.
			log.Info("job left for the next start")
			return
		}
		res = errorResult(protocol.ErrorEncodingInterrupted, msgStoppedWriting)
	}
	finish(res)
}

// cardWaitEnd is when a job that starts at now (the cloud's time) stops
// waiting for a card, for the card it wrote, or for its reader to come
// back: CardMargin before its deadline, or a tenth of the
// time it has left if that is less, so that its "no card" reaches the
// cloud before the cloud's sweeper expires the attempt at the deadline
// (waiting to the deadline itself lost that race); an encode stops by the
// time it must begin writing, if that is earlier. now is before the
// job's deadline, and before an encode's WriteMargin.
func (a *Agent) cardWaitEnd(job protocol.Job, now time.Time) time.Time {
	margin := min(a.opts.CardMargin, job.Deadline.Sub(now)/10)
	end := job.Deadline.Add(-margin)
	if job.Kind == protocol.JobEncode {
		end = minTime(end, job.Deadline.Add(-a.opts.WriteMargin))
	}
	return end
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// msgStoppedWriting ends a job the bridge stopped, or crashed, while it
// wrote the card.
const msgStoppedWriting = "the bridge stopped while writing the card, which may hold part of a record; encode the card again"

// progressHook records that writing begins, durably, before any write,
// and reports every stage to the cloud. It refuses to let writing begin
// at or after writeBy on the cloud's clock.
func (a *Agent) progressHook(id string, writeBy time.Time, run *jobRun) func(protocol.Stage) error {
	return func(st protocol.Stage) error {
		if st == protocol.StageWriting {
			if !a.cloudNow().Before(writeBy) {
				return errTimeUp
			}
			run.mu.Lock()
			if run.stopping {
				run.mu.Unlock()
				return errStopping
			}
			run.writing = true
			uid := run.card.UID
			if run.want != nil {
				// The card the job must work on (the hooks refuse others):
				// for a random-UID card, its real UID.
				uid = run.want
			}
			run.mu.Unlock()
			stored, err := a.opts.Store.BeginWrite(id, uidHex(uid))
			if err != nil {
				a.fatal(fmt.Errorf("agent: job %s: %w", id, err))
				return fmt.Errorf("agent: cannot record that writing begins: %w", err)
			}
			if stored.Attempt > 1 {
				a.log.Info("writing the card again", zap.String(FieldJobID, id), zap.Int("attempt", stored.Attempt))
			}
		}
		a.progress(id, protocol.Stage(st))
		return nil
	}
}

// errOtherCard refuses a card other than the one the job wrote.
var errOtherCard = errors.New("agent: another card than the one being encoded")

// onCard notes the card a job identified, and refuses it when the job
// must find the card it wrote and this is another. A random UID tells
// nothing: the layout's real UID decides (realUIDHook).
func (r *jobRun) onCard(c bridge.Card) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.want != nil && knownUID(c.UID) && !bytes.Equal(r.want, c.UID) {
		return errOtherCard
	}
	r.card, r.real = c, nil
	return nil
}

// realUIDHook notes the real UID of a random-UID card, refuses it when
// the job must find the card it wrote and this is another, and once
// writing began records it in the journal before the record is written,
// so that a job resumed after a crash knows the card.
func (a *Agent) realUIDHook(id string, run *jobRun) func([]byte) error {
	return func(uid []byte) error {
		run.mu.Lock()
		if run.want != nil && !bytes.Equal(run.want, uid) {
			run.mu.Unlock()
			return errOtherCard
		}
		run.real = bytes.Clone(uid)
		writing := run.writing
		run.mu.Unlock()
		if !writing {
			return nil
		}
		if err := a.opts.Store.SetCardUID(id, uidHex(uid)); err != nil {
			a.fatal(fmt.Errorf("agent: job %s: %w", id, err))
			return fmt.Errorf("agent: cannot record the card's real UID: %w", err)
		}
		return nil
	}
}

// cardUID is the UID that tells the job's card apart: the real one the
// layout read, or the anticollision UID.
func (r *jobRun) cardUID() []byte {
	if r.real != nil {
		return r.real
	}
	return r.card.UID
}

// progress reports a stage if the cloud is connected; progress is not
// kept across connections.
func (a *Agent) progress(id string, st protocol.Stage) {
	a.log.Debug("job progress", zap.String(FieldJobID, id), zap.String(fieldStage, string(st)))
	a.mu.Lock()
	s := a.sess
	a.mu.Unlock()
	if s == nil {
		return
	}
	m := protocol.New(protocol.TypeProgress)
	m.Progress = &protocol.Progress{JobID: id, Stage: st}
	s.enqueue(m, true)
}

// encode writes the job's card. A job the journal found writing after a
// restart resumes: what the card holds then decides (see resume), as for
// one that loses the card or its reader in transport after writing
// began. A reader that goes away before writing began (pcscd restarted,
// a USB reset) is waited for until end.
func (a *Agent) encode(ctx context.Context, e journal.Entry, opts bridge.JobOptions, run *jobRun, end time.Time) (protocol.Result, error) {
	if e.Job.Credential == nil {
		return errorResult(protocol.ErrorInvalidCredential, "encode job without a credential"), nil
	}
	cred, err := bridge.CredentialOf(*e.Job.Credential)
	if err != nil {
		return jobErrorResult(bridge.OpEncode, err), nil
	}
	if e.State == journal.StateWriting {
		uid, _ := hex.DecodeString(e.CardUID)
		a.log.Info("job resumed while writing its card: looking at the card", zap.String(FieldJobID, e.Job.JobID), zap.Int("attempt", e.Attempt))
		return a.resume(ctx, e, cred, opts, run, end, uid)
	}
	for {
		res, err := a.station.EncodeWith(ctx, e.Reader, cred, opts)
		if err == nil {
			return encodedResult(e, res), nil
		}
		if ctx.Err() != nil || errors.Is(err, errStopping) || errors.Is(err, errTimeUp) {
			return jobErrorResult(bridge.OpEncode, err), err
		}
		run.mu.Lock()
		writing, uid := run.writing, run.cardUID()
		run.mu.Unlock()
		switch {
		case writing && cardLost(err):
			// Writing began and the card or reader went away: the card
			// may hold the new record (the read-back lost it), the old
			// one, or part of one; only the card can tell.
			a.log.Info("the card was lost after writing began: waiting for it", zap.String(FieldJobID, e.Job.JobID), zap.Error(err))
			return a.resume(ctx, e, cred, opts, run, end, uid)
		case !writing && readerLost(err):
			if a.awaitReader(ctx, e.Job.JobID, e.Reader, end) {
				opts.Wait = end.Sub(a.cloudNow())
				continue
			}
		}
		return jobErrorResult(bridge.OpEncode, err), err
	}
}

// encodedResult is the result of an encode the layout verified.
func encodedResult(e journal.Entry, res bridge.Encoded) protocol.Result {
	given := *e.Job.Credential
	return protocol.Result{Card: &protocol.Card{
		UID:        uidHex(res.UID),
		Technology: string(res.Technology),
		// The versions of the record the layout verified on the card.
		KeyVersion:    int(res.Record.KeyVersion),
		FormatVersion: int(res.Record.FormatVersion),
		Valid:         true,
		Credential:    &given,
	}}
}

func (a *Agent) scan(ctx context.Context, e journal.Entry, opts bridge.JobOptions, end time.Time) (protocol.Result, error) {
	res, err := a.station.ScanWith(ctx, e.Reader, opts)
	for err != nil && ctx.Err() == nil && readerLost(err) && a.awaitReader(ctx, e.Job.JobID, e.Reader, end) {
		opts.Wait = end.Sub(a.cloudNow())
		res, err = a.station.ScanWith(ctx, e.Reader, opts)
	}
	if err != nil {
		return jobErrorResult(bridge.OpScan, err), err
	}
	c := &protocol.Card{
		UID:        uidHex(res.UID),
		Technology: string(res.Technology),
		Valid:      res.Valid(),
		Reason:     string(res.Reason),
		Warnings:   res.Warnings,
	}
	if res.Record != nil && res.Valid() {
		spec := bridge.SpecOf(res.Record.Credential)
		c.Credential = &spec
		c.KeyVersion = int(res.Record.KeyVersion)
		c.FormatVersion = int(res.Record.FormatVersion)
	}
	return protocol.Result{Card: c}, nil
}

func uidHex(uid []byte) string { return strings.ToUpper(hex.EncodeToString(uid)) }

func errorResult(code protocol.ErrorType, msg string) protocol.Result {
	return protocol.Result{Error: &protocol.JobError{Type: code, Message: msg}}
}

// jobErrorResult types a failed job with bridge.Classify. The message is
// the JobError's, which never holds card data or keys.
func jobErrorResult(op bridge.Op, err error) protocol.Result {
	je := bridge.Classify(op, err)
	return errorResult(je.Code, je.Err.Error())
}

// finish stores a job's result and sends it if the cloud is connected;
// otherwise the next hello carries it.
func (a *Agent) finish(id string, r protocol.Result) {
	if t, ok := a.cloudTime(); ok && r.FinishedAt.IsZero() {
		// The cloud compares finished_at with its own times.
		r.FinishedAt = t.UTC()
	}
	stored, err := a.opts.Store.Finish(id, r)
	if errors.Is(err, journal.ErrAcknowledged) {
		a.log.Debug("job already acknowledged", zap.String(FieldJobID, id))
		return
	}
	if err != nil {
		a.fatal(fmt.Errorf("agent: finish job %s: %w", id, err))
		return
	}
	fields := []zap.Field{zap.String(FieldJobID, id)}
	if stored.Error != nil {
		fields = append(fields, zap.String(FieldCode, string(stored.Error.Type)))
		a.log.Info("job failed", fields...)
	} else {
		a.log.Info("job done", fields...)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if s := a.sess; s != nil && !s.sent[id] {
		s.sent[id] = true
		m := protocol.New(protocol.TypeResult)
		m.Result = &stored
		s.reply(m)
	}
}
