package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/encoder-bridge/encoder-bridge/bridge/journal"
	"github.com/encoder-bridge/encoder-bridge/bridge/link"
	"github.com/encoder-bridge/encoder-bridge/protocol"
)

// outQueue is how many frames may wait for the connection. Progress is
// dropped when it is full; anything else closes the connection instead,
// since the next hello carries everything that matters.
const outQueue = 256

// maxHelloResults bounds the results carried in a hello (a result is at
// most a few KiB); the rest follow as result messages after the welcome.
const maxHelloResults = 64

var errQueueFull = errors.New("agent: the cloud is not reading; reconnecting")

// session is one connection, from the hello on.
type session struct {
	conn   link.Session
	out    chan []byte
	cancel context.CancelCauseFunc
	log    *zap.Logger
	// sent holds the jobs whose result went out on this connection;
	// guarded by Agent.mu.
	sent map[string]bool
	// welcomed: the cloud accepted the hello; guarded by Agent.mu.
	welcomed bool
	// reset: the hello told the cloud the journal was reset.
	reset bool
}

// enqueue queues m for the writer. It never blocks.
func (s *session) enqueue(m *protocol.Message, droppable bool) {
	b, err := protocol.Encode(m)
	if err != nil {
		s.log.Error("message not sent", zap.String(fieldType, string(m.Type)), zap.Error(err))
		return
	}
	select {
	case s.out <- b:
	default:
		if !droppable {
			s.cancel(errQueueFull)
		}
	}
}

func (s *session) reply(m *protocol.Message) { s.enqueue(m, false) }

func protoError(code protocol.ErrorCode, jobID, format string, args ...any) *protocol.Message {
	m := protocol.New(protocol.TypeError)
	m.Error = &protocol.Error{Code: code, JobID: jobID, Message: fmt.Sprintf(format, args...)}
	return m
}

// serve speaks the protocol on one connection: hello, welcome, then
// jobs in and acks, progress and results out, until the connection ends.
func (a *Agent) serve(ctx context.Context, conn link.Session) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	s := &session{conn: conn, out: make(chan []byte, outQueue), cancel: cancel, log: a.log, sent: map[string]bool{}}
	hello, extra, err := a.attach(s)
	if err != nil {
		a.fatal(err)
		return link.Permanent(err)
	}
	defer a.detach(s)
	if err := conn.Send(ctx, hello); err != nil {
		return err
	}
	if err := a.awaitWelcome(ctx, s); err != nil {
		return err
	}
	a.mu.Lock()
	s.welcomed = true
	a.mu.Unlock()
	if s.reset {
		// The cloud has taken the hello that told it.
		if err := a.opts.Store.MarkResetReported(); err != nil {
			err = fmt.Errorf("agent: record that the cloud was told of the journal reset: %w", err)
			a.fatal(err)
			return link.Permanent(err)
		}
	}
	for _, r := range extra {
		m := protocol.New(protocol.TypeResult)
		m.Result = &r
		b, err := protocol.Encode(m)
		if err != nil {
			continue
		}
		if err := conn.Send(ctx, b); err != nil {
			return err
		}
	}
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		for {
			select {
			case <-ctx.Done():
				return
			case b := <-s.out:
				if err := conn.Send(ctx, b); err != nil {
					cancel(err)
					return
				}
			}
		}
	}()
	defer func() { <-writerDone }()
	a.releaseHeld()
	for {
		b, err := conn.Recv(ctx)
		if err != nil {
			cancel(err)
			return context.Cause(ctx)
		}
		a.handle(s, b)
	}
}

// attach builds the hello from the journal and the online encoders and
// makes s the session that events go to, atomically, so that nothing
// finishing meanwhile is missed or sent twice.
func (a *Agent) attach(s *session) (hello []byte, extra []protocol.Result, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	pending, active, err := a.opts.Store.Snapshot()
	if err != nil {
		return nil, nil, fmt.Errorf("agent: read the journal: %w", err)
	}
	h := &protocol.Hello{
		BridgeID:        a.opts.BridgeID,
		SoftwareVersion: a.opts.SoftwareVersion,
		ProtocolVersion: protocol.Version,
		Encoders:        a.encoderListLocked(),
	}
	for _, e := range active {
		h.ActiveJobs = append(h.ActiveJobs, e.Job.JobID)
	}
	if r := a.opts.Store.Reset(); r != nil {
		reason := r.Reason
		if len(reason) > protocol.MaxReasonLen {
			reason = strings.ToValidUTF8(reason[:protocol.MaxReasonLen], "")
		}
		h.JournalReset = &protocol.JournalReset{At: r.At.UTC(), Reason: reason}
		s.reset = true
	}
	n := min(len(pending), a.helloResults)
	for {
		h.Results = pending[:n]
		m := protocol.New(protocol.TypeHello)
		m.Hello = h
		hello, err = protocol.Encode(m)
		if err == nil {
			break
		}
		if !errors.Is(err, protocol.ErrTooLarge) || n == 0 {
			return nil, nil, fmt.Errorf("agent: hello: %w", err)
		}
		n /= 2
	}
	if n == 0 {
		h.Results = nil
	}
	extra = pending[n:]
	for _, r := range pending {
		s.sent[r.JobID] = true
	}
	a.sess = s
	return hello, extra, nil
}

func (a *Agent) detach(s *session) {
	a.mu.Lock()
	if a.sess == s {
		a.sess = nil
	}
	a.mu.Unlock()
	a.signalAcked()
}

// awaitWelcome waits for the cloud to accept the hello. Anything else
// before it is refused with an error message.
func (a *Agent) awaitWelcome(ctx context.Context, s *session) error {
	wctx, cancel := context.WithTimeout(ctx, a.opts.WelcomeTimeout)
	defer cancel()
	sendNow := func(m *protocol.Message) error {
		b, err := protocol.Encode(m)
		if err != nil {
			return err
		}
		return s.conn.Send(ctx, b)
	}
	for {
		b, err := s.conn.Recv(wctx)
		if err != nil {
			if ctx.Err() == nil && wctx.Err() != nil {
				return fmt.Errorf("agent: no welcome from the cloud within %s", a.opts.WelcomeTimeout)
			}
			return err
		}
		m, derr := protocol.Decode(b)
		if derr != nil {
			if err := sendNow(decodeError(derr, b)); err != nil {
				return err
			}
			continue
		}
		switch m.Type {
		case protocol.TypeWelcome:
			a.welcomed(m.Welcome)
			return nil
		case protocol.TypeError:
			a.logCloudError(m.Error)
			if m.Error.Code == protocol.CodeUnauthenticated {
				return link.Permanent(fmt.Errorf("%w: %s", link.ErrAuthRevoked, m.Error.Message))
			}
			if m.Error.Code == protocol.CodeUnsupported {
				return fmt.Errorf("agent: the cloud does not speak protocol version %d: %s", protocol.Version, m.Error.Message)
			}
		default:
			if err := sendNow(protoError(protocol.CodeUnexpected, m.JobID(), "expected welcome after hello, got %s", m.Type)); err != nil {
				return err
			}
		}
	}
}

// skewWarn is the clock difference worth telling operators about.
const skewWarn = 30 * time.Second

func (a *Agent) welcomed(w *protocol.Welcome) {
	if w.BridgeID != "" && w.BridgeID != a.opts.BridgeID {
		a.log.Warn("the cloud welcomed another bridge id", zap.String("bridge_id", a.opts.BridgeID), zap.String("welcomed", w.BridgeID))
	}
	mono, wall := a.clk.Mono(), a.clk.Now()
	if w.ServerTime.IsZero() {
		// A cloud that does not say its time: the PC's clock is all
		// there is, read once and then carried on the monotonic clock.
		a.log.Warn("the cloud's welcome has no server_time; job deadlines follow this PC's clock")
		a.anchor.CompareAndSwap(nil, &anchor{server: wall, mono: mono})
	} else {
		// Deadlines are on the cloud's clock; carry it on the monotonic
		// one until the next welcome.
		a.anchor.Store(&anchor{server: w.ServerTime, mono: mono})
		if skew := w.ServerTime.Sub(wall); skew > skewWarn || skew < -skewWarn {
			a.log.Warn("this PC's clock differs from the cloud's; job deadlines follow the cloud", zap.Duration("skew", skew))
		}
	}
	a.log.Info("connected to the cloud")
	if a.opts.Observer != nil {
		a.opts.Observer.LinkUp()
	}
}

// releaseHeld decides, now that the cloud's time is known, what the jobs
// found in the journal at startup do: expire, or run again. The expired
// are finished first, so their results go out before any other.
func (a *Agent) releaseHeld() {
	a.mu.Lock()
	held := a.held
	a.held = nil
	a.mu.Unlock()
	now := a.cloudNow()
	var again []journal.Entry
	for _, e := range held {
		if now.Before(e.Job.Deadline) {
			again = append(again, e)
			continue
		}
		a.log.Info("job expired while the bridge was not running", zap.String(FieldJobID, e.Job.JobID), zap.String(FieldEncoder, string(e.Job.EncoderID)))
		if e.State == journal.StateWriting {
			// The card may hold part of a record: that is what matters.
			a.finish(e.Job.JobID, errorResult(protocol.ErrorEncodingInterrupted, msgStoppedWriting))
			continue
		}
		a.finish(e.Job.JobID, errorResult(protocol.ErrorActionAttemptExpired,
			fmt.Sprintf("the job's deadline (%s) passed while the bridge was not running", e.Job.Deadline.UTC().Format(time.RFC3339))))
	}
	for _, e := range again {
		a.log.Info("job resumed after restart", zap.String(FieldJobID, e.Job.JobID), zap.String(FieldEncoder, string(e.Job.EncoderID)))
		a.schedule(e)
	}
}

func (a *Agent) logCloudError(e *protocol.Error) {
	a.log.Warn("the cloud refused a message", zap.String(FieldCode, string(e.Code)), zap.String(FieldJobID, e.JobID), zap.String("message", e.Message))
}

// decodeError answers a frame protocol.Decode refused. It names the job
// when a lenient parse finds one, so the cloud can tie it to an attempt.
func decodeError(err error, frame []byte) *protocol.Message {
	code := protocol.CodeOf(err)
	var probe struct {
		Job *struct {
			JobID string `json:"job_id"`
		} `json:"job"`
		ResultAck *struct {
			JobID string `json:"job_id"`
		} `json:"result_ack"`
	}
	jobID := ""
	if len(frame) <= protocol.MaxMessageSize && json.Unmarshal(frame, &probe) == nil {
		switch {
		case probe.Job != nil:
			jobID = probe.Job.JobID
		case probe.ResultAck != nil:
			jobID = probe.ResultAck.JobID
		}
	}
	if !utf8.ValidString(jobID) || len(jobID) > 256 {
		jobID = ""
	}
	msg := err.Error()
	if len(msg) > 1024 {
		msg = msg[:1024]
	}
	return protoError(code, jobID, "%s", msg)
}

// handle acts on one frame from the cloud after the welcome.
func (a *Agent) handle(s *session, frame []byte) {
	if a.opts.Observer != nil {
		a.opts.Observer.Contact()
	}
	m, err := protocol.Decode(frame)
	if err != nil {
		a.log.Warn("refused a malformed message from the cloud", zap.Error(err))
		s.reply(decodeError(err, frame))
		return
	}
	switch m.Type {
	case protocol.TypeJob:
		a.onJob(s, m.Job)
	case protocol.TypeResultAck:
		a.onResultAck(s, m.ResultAck.JobID)
	case protocol.TypeError:
		// Never answered: two ends refusing each other's refusals loop.
		a.logCloudError(m.Error)
		if m.Error.Code == protocol.CodeUnauthenticated {
			s.cancel(link.Permanent(fmt.Errorf("%w: %s", link.ErrAuthRevoked, m.Error.Message)))
		}
	default:
		s.reply(protoError(protocol.CodeUnexpected, m.JobID(), "the bridge does not accept %s messages", m.Type))
	}
}

func ackFor(jobID string) *protocol.Message {
	m := protocol.New(protocol.TypeAck)
	m.Ack = &protocol.Ack{JobID: jobID}
	return m
}

// onJob stores a job, acks it, and runs it or finishes it at once.
func (a *Agent) onJob(s *session, job *protocol.Job) {
	log := a.log.With(zap.String(FieldJobID, job.JobID), zap.String(FieldEncoder, string(job.EncoderID)))
	now := a.cloudNow()
	a.mu.Lock()
	if a.stopping {
		a.mu.Unlock()
		// Not stored, not acked: the hello of the next start does not
		// list it, so the cloud offers it again then.
		log.Info("job refused: the bridge is stopping")
		s.reply(protoError(protocol.CodeStopping, job.JobID, "the bridge is stopping; offer the job again when it reconnects"))
		return
	}
	enc, online := a.encoders[job.EncoderID]
	readerName, seen := a.seen[job.EncoderID]
	if online {
		readerName = enc.ReaderName
	}
	a.mu.Unlock()

	e, isNew, err := a.opts.Store.Receive(journal.Entry{Job: *job, Reader: readerName, ReceivedAt: a.clk.Now()})
	if err != nil {
		// Not acked: the cloud offers the job again.
		log.Error("cannot store a job", zap.Error(err))
		s.reply(protoError(protocol.CodeInternal, job.JobID, "the bridge could not store the job"))
		return
	}
	if !isNew {
		a.onRedelivery(s, e)
		return
	}
	log.Info("job received", zap.String("kind", string(job.Kind)))
	s.reply(ackFor(job.JobID))
	switch {
	case job.Acked && job.Kind == protocol.JobEncode:
		// The cloud had this job's ack, so the bridge stored it, and the
		// journal no longer knows it: it was lost with a damaged journal,
		// maybe while writing the card. Writing again could put a second
		// card in play for one job; a scan writes nothing and runs.
		log.Error("the cloud offered again an encode job the journal lost; not run, reported encoding_interrupted")
		a.finish(job.JobID, errorResult(protocol.ErrorEncodingInterrupted,
			"the bridge had stored this job but lost it with a damaged journal, so whether the card was written is unknown; encode the card again"))
	case !now.Before(job.Deadline):
		a.finish(job.JobID, errorResult(protocol.ErrorActionAttemptExpired,
			fmt.Sprintf("the job's deadline %s had passed when it reached the bridge", job.Deadline.UTC().Format(time.RFC3339))))
	case !online && !seen:
		// Not an encoder of this bridge at all: the cloud's bookkeeping is
		// wrong, which the error message says; the result ends the action
		// attempt so that it does not hang.
		s.reply(protoError(protocol.CodeUnknownEncoder, job.JobID, "bridge %s has no encoder %s", a.opts.BridgeID, job.EncoderID))
		a.finish(job.JobID, errorResult(protocol.ErrorUncategorized,
			fmt.Sprintf("encoder %s is not an encoder of bridge %s", job.EncoderID, a.opts.BridgeID)))
	case !online:
		a.finish(job.JobID, errorResult(protocol.ErrorEncoderNotOnline,
			fmt.Sprintf("encoder %s (reader %q) is not attached", job.EncoderID, readerName)))
	default:
		a.schedule(e)
	}
}

// onRedelivery answers a job the journal already holds: it never runs
// twice.
func (a *Agent) onRedelivery(s *session, e journal.Entry) {
	id := e.Job.JobID
	a.log.Info("job delivered again", zap.String(FieldJobID, id), zap.String("state", string(e.State)))
	switch e.State {
	case journal.StateFinished:
		s.reply(ackFor(id))
		if e.Result != nil {
			a.mu.Lock()
			s.sent[id] = true
			m := protocol.New(protocol.TypeResult)
			m.Result = e.Result
			s.reply(m)
			a.mu.Unlock()
		}
	case journal.StateAcknowledged:
		s.reply(protoError(protocol.CodeUnexpected, id, "job %s already finished and its result was acknowledged", id))
	default:
		s.reply(ackFor(id))
	}
}

func (a *Agent) onResultAck(s *session, id string) {
	err := a.opts.Store.Acknowledge(id, a.cloudNow())
	defer a.signalAcked()
	switch {
	case err == nil:
		a.log.Debug("result acknowledged", zap.String(FieldJobID, id))
	case errors.Is(err, journal.ErrNotFound):
		s.reply(protoError(protocol.CodeUnexpected, id, "no result for job %s", id))
	case errors.Is(err, journal.ErrNotFinished):
		s.reply(protoError(protocol.CodeUnexpected, id, "job %s has no result yet", id))
	default:
		a.fatal(fmt.Errorf("agent: acknowledge %s: %w", id, err))
	}
}
