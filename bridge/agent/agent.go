// Package agent is the bridge's policy towards the cloud: it announces the
// encoders (readers) attached to this PC, takes encode and scan jobs from
// the cloud, runs them on a bridge.Station (one at a time per encoder,
// encoders in parallel), reports progress and results, and keeps every
// job in the journal so that none is lost or run twice across dropped
// connections and restarts.
//
// It sees the cloud only through the Link interface (bridge/link
// implements it) and the journal only through the Store interface
// (bridge/journal implements it), so tests can fake either; the message
// shapes are those of package protocol. It must not import reader/pcsc,
// reader/sim or cmd/: readers come in through bridge.Station.
package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/encoder-bridge/encoder-bridge/bridge"
	"github.com/encoder-bridge/encoder-bridge/bridge/clock"
	"github.com/encoder-bridge/encoder-bridge/bridge/config"
	"github.com/encoder-bridge/encoder-bridge/bridge/journal"
	"github.com/encoder-bridge/encoder-bridge/bridge/link"
	"github.com/encoder-bridge/encoder-bridge/protocol"
	"github.com/encoder-bridge/encoder-bridge/reader"
)

// Log field keys, shared with package bridge so one query finds a job's
// lines from both.
const (
	FieldJobID   = bridge.FieldJobID
	FieldEncoder = bridge.FieldEncoder
	FieldReader  = bridge.FieldReader
	FieldCode    = bridge.FieldCode
	fieldType    = "type"
	fieldStage   = "stage"
)

// DefaultTechnologies are the card technologies this build writes, as
// announced for every encoder unless Options.Technologies says otherwise.
var DefaultTechnologies = []string{
	string(reader.TechClassic1K), string(reader.TechClassic4K),
	string(reader.TechUL21),
	string(reader.TechNTAG213), string(reader.TechNTAG215), string(reader.TechNTAG216),
	string(reader.TechDESFireEV2), string(reader.TechDESFireEV3),
}

// Link is the transport to the cloud (bridge/link.Link): Run dials,
// calls serve with each connection, and redials until ctx ends or an
// error is permanent.
type Link interface {
	Run(ctx context.Context, serve func(context.Context, link.Session) error) error
}

var _ Link = (*link.Link)(nil)

// Store is the durable job journal (bridge/journal.Journal). Every method
// that changes a job returns only once the change is on disk.
type Store interface {
	// Recover runs once at startup: it returns the jobs not finished,
	// each in the state it was found in; the agent decides what each
	// means (see recoverJobs).
	Recover() ([]journal.Entry, error)
	// Receive stores a new job (isNew) or returns the one stored.
	Receive(e journal.Entry) (stored journal.Entry, isNew bool, err error)
	// BeginWrite records that writing the card with UID uid (hex)
	// begins, and counts the attempt.
	BeginWrite(jobID, uid string) (journal.Entry, error)
	// SetCardUID records the real UID (hex) of the card a job writes,
	// once the layout read it (a random-UID card), before the record is
	// written.
	SetCardUID(jobID, uid string) error
	// Finish stores a result; a job finishes once, and the result stored
	// first is returned.
	Finish(jobID string, r protocol.Result) (protocol.Result, error)
	// Acknowledge forgets a finished job's result; cloudNow is the time
	// on the cloud's clock, which the remembered ids age by.
	Acknowledge(jobID string, cloudNow time.Time) error
	// Snapshot lists, as of one moment, the results not yet acknowledged
	// and the jobs not finished.
	Snapshot() (pending []protocol.Result, active []journal.Entry, err error)
	// Reset is non-nil when the journal was found damaged and started
	// over, until MarkResetReported records that the cloud was told.
	Reset() *journal.Reset
	MarkResetReported() error
}

var _ Store = (*journal.Journal)(nil)

// Options configure an Agent.
type Options struct {
	// BridgeID names this bridge to the cloud; encoder ids derive from it.
	BridgeID        string
	SoftwareVersion string
	// Encoders picks and names the readers offered (the configuration's
	// encoders). Empty: every attached reader, under its own name.
	Encoders []config.Encoder
	// ExcludeReaders are reader name patterns never offered.
	ExcludeReaders []string
	// Technologies announced for every encoder; nil: DefaultTechnologies.
	Technologies []string

	Link    Link
	Store   Store
	Station *bridge.Station
	Log     *zap.Logger
	// Observer, when set, hears the link, encoders, cards and jobs for
	// the status page and metrics.
	Observer Observer
	// Clock is the time source; nil means the system clock. Deadlines
	// are measured on its monotonic clock from the cloud's time at the
	// welcome, never on the PC's wall clock.
	Clock clock.Clock

	// WelcomeTimeout is how long a new connection waits for the cloud's
	// welcome (default 30s).
	WelcomeTimeout time.Duration
	// WriteGrace is how long a stop waits for a card write in progress to
	// complete before interrupting it (default 10s). Jobs not writing stop
	// at once and resume at the next start.
	WriteGrace time.Duration
	// AckGrace is how long a stop then waits for the cloud to acknowledge
	// the results sent on the connection (default 2s), so that the next
	// start does not carry them again.
	AckGrace time.Duration
	// ReaderRetry is the pause after the reader service failed to list
	// readers (default 2s).
	ReaderRetry time.Duration
	// WriteMargin is how long before its deadline an encode must begin
	// writing (default 1s): a write takes up to a few hundred
	// milliseconds on a real encoder, and its result must reach the
	// cloud before the cloud expires the attempt.
	WriteMargin time.Duration
	// CardMargin is how long before its deadline a job stops waiting for
	// a card (default 2s), or a tenth of the time the job had left when
	// it started if that is less: its "no card" result must reach the
	// cloud before the cloud expires the attempt at the deadline.
	CardMargin time.Duration
}

// Agent runs jobs from the cloud on this PC's encoders.
type Agent struct {
	opts    Options
	log     *zap.Logger
	clk     clock.Clock
	readers reader.Context
	station *bridge.Station

	helloResults int // maxHelloResults; smaller in tests

	started  atomic.Bool
	fatalErr atomic.Pointer[fatalError] // the first fatal error, even one during a stop
	anchor   atomic.Pointer[anchor]     // the cloud's clock, from the last welcome

	// Set by Run.
	jobBase  context.Context
	fatalRun context.CancelCauseFunc
	jobsWG   sync.WaitGroup

	mu       sync.Mutex
	sess     *session                                // the connection, once the hello is built; nil offline
	encoders map[protocol.EncoderID]protocol.Encoder // online, by id
	seen     map[protocol.EncoderID]string           // every encoder id seen by this process → reader name
	serials  map[string]string                       // attached reader name → serial number ("" none), once known
	queues   map[protocol.EncoderID]*queue           // by encoder id
	running  map[string]*jobRun                      // by job id
	// held is the jobs Recover returned, until the first welcome tells
	// the cloud's time: only then can the bridge know which expired.
	held     []journal.Entry
	stopping bool
	// acked hears of every result_ack and every connection that ends,
	// for a stop waiting on the cloud.
	acked chan struct{}

	cardWatch map[protocol.EncoderID]*cardWatch // by encoder id, with an Observer
	watchWG   sync.WaitGroup
}

// anchor ties the cloud's clock to the monotonic one: at mono, the cloud
// said it was server.
type anchor struct {
	server time.Time
	mono   time.Duration
}

// Status is a snapshot of the agent for local monitoring.
type Status struct {
	// Connected: the link to the cloud is up, the hello was sent and the
	// cloud welcomed it, so jobs can arrive.
	Connected bool
	// Encoders is how many encoders are attached and announced.
	Encoders int
	// Jobs is how many jobs are running (waiting for or working on a card).
	Jobs int
}

// Status reports the agent's state now.
func (a *Agent) Status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	return Status{Connected: a.sess != nil && a.sess.welcomed, Encoders: len(a.encoders), Jobs: len(a.running)}
}

// New checks opts and builds an Agent; Run starts it.
func New(opts Options) (*Agent, error) {
	switch {
	case opts.BridgeID == "":
		return nil, errors.New("agent: no bridge id")
	case opts.Link == nil:
		return nil, errors.New("agent: no link")
	case opts.Store == nil:
		return nil, errors.New("agent: no store")
	case opts.Station == nil || opts.Station.Readers == nil:
		return nil, errors.New("agent: no station with readers")
	case opts.Station.Keys == nil:
		return nil, errors.New("agent: the station has no key set")
	}
	if opts.Technologies == nil {
		opts.Technologies = DefaultTechnologies
	}
	if opts.WelcomeTimeout <= 0 {
		opts.WelcomeTimeout = 30 * time.Second
	}
	if opts.WriteGrace <= 0 {
		opts.WriteGrace = 10 * time.Second
	}
	if opts.AckGrace <= 0 {
		opts.AckGrace = 2 * time.Second
	}
	if opts.ReaderRetry <= 0 {
		opts.ReaderRetry = 2 * time.Second
	}
	if opts.WriteMargin <= 0 {
		opts.WriteMargin = time.Second
	}
	if opts.CardMargin <= 0 {
		opts.CardMargin = 2 * time.Second
	}
	a := &Agent{
		opts:     opts,
		log:      opts.Log,
		clk:      opts.Clock,
		readers:  opts.Station.Readers,
		station:  opts.Station,
		encoders: map[protocol.EncoderID]protocol.Encoder{},
		seen:     map[protocol.EncoderID]string{},
		serials:  map[string]string{},
		queues:   map[protocol.EncoderID]*queue{},
		running:  map[string]*jobRun{},
		acked:    make(chan struct{}, 1),

		cardWatch: map[protocol.EncoderID]*cardWatch{},

		helloResults: maxHelloResults,
	}
	if a.log == nil {
		a.log = zap.NewNop()
	}
	if a.clk == nil {
		a.clk = clock.Real{}
	}
	return a, nil
}

// fatalError is an error that stops Run: the journal failed, so the
// guarantees it gives can no longer be kept.
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }
func (e *fatalError) Unwrap() error { return e.err }

func (a *Agent) fatal(err error) {
	a.log.Error("stopping: the job journal failed", zap.Error(err))
	a.fatalErr.CompareAndSwap(nil, &fatalError{err})
	a.fatalRun(&fatalError{err})
}

// cloudTime is the time on the cloud's clock, which set the deadlines: the
// server time of the last welcome plus the monotonic time since, so that
// the PC's wall clock jumping either way changes nothing. ok is false
// before the first welcome.
func (a *Agent) cloudTime() (now time.Time, ok bool) {
	an := a.anchor.Load()
	if an == nil {
		return time.Time{}, false
	}
	return an.server.Add(a.clk.Mono() - an.mono), true
}

// cloudNow is cloudTime where a job needs it. Jobs run only after a
// welcome, so the PC's clock stands in only if something runs earlier.
func (a *Agent) cloudNow() time.Time {
	if t, ok := a.cloudTime(); ok {
		return t
	}
	return a.clk.Now()
}

// recoverJobs finishes the jobs whose journal entry was damaged, or that
// a stop or crash cut short while they wrote a card the journal does not
// name: the card may hold part of a record, so they end as
// encoding_interrupted and never run again. The others are returned to
// wait for the cloud's time (see releaseHeld): queued or running (nothing
// written yet) run again; writing, with the card's UID, resume (see
// resume), which looks at that card before anything else.
func (a *Agent) recoverJobs() ([]journal.Entry, error) {
	found, err := a.opts.Store.Recover()
	if err != nil {
		return nil, err
	}
	var again []journal.Entry
	for _, e := range found {
		var msg string
		switch e.State {
		case journal.StateWriting:
			if e.CardUID != "" && e.Job.Kind == protocol.JobEncode {
				again = append(again, e)
				continue
			}
			msg = msgStoppedWriting
		case journal.StateDamaged:
			msg = "the bridge's journal entry for this job was damaged, so whether the card was written is unknown; encode the card again"
		default:
			again = append(again, e)
			continue
		}
		r := errorResult(protocol.ErrorEncodingInterrupted, msg)
		// No cloud time before the welcome: the PC's clock stamps it.
		r.FinishedAt = a.clk.Now().UTC()
		if _, err := a.opts.Store.Finish(e.Job.JobID, r); err != nil {
			return nil, fmt.Errorf("finish job %s: %w", e.Job.JobID, err)
		}
		a.log.Warn("job cut short while writing its card", zap.String(FieldJobID, e.Job.JobID), zap.String("state", string(e.State)))
	}
	return again, nil
}

// Run recovers the journal, announces the encoders and serves the cloud
// until ctx ends (nil) or a fatal error: the link's auth was revoked, or
// the journal failed. When ctx ends, the bridge stops gracefully with the
// link still up: it takes no new job (an offer is refused with
// bridge_stopping and not acked, so the cloud offers it again at the next
// hello), jobs waiting for a card are left in the journal to resume at
// the next start, a card being written gets WriteGrace to complete, the
// results go out and the cloud gets AckGrace to acknowledge them; then
// the link closes with a going-away frame. Run returns once every job
// goroutine is done; the caller then closes the Store. Run may be called
// once.
func (a *Agent) Run(ctx context.Context) error {
	if !a.started.CompareAndSwap(false, true) {
		return errors.New("agent: Run called twice")
	}
	// The link and the reader watch outlive ctx by the stop, so that the
	// result of a card being written still reaches the cloud.
	runCtx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancel(nil)
	a.fatalRun = cancel
	a.jobBase = context.WithoutCancel(ctx)

	again, err := a.recoverJobs()
	if err != nil {
		return fmt.Errorf("agent: recover the journal: %w", err)
	}
	names, err := a.readers.Readers(runCtx)
	if err != nil {
		a.log.Warn("cannot list readers", zap.Error(err))
		if a.opts.Observer != nil {
			a.opts.Observer.ReadersFailed(err)
		}
	}
	a.setReaders(runCtx, names)
	// The PC's clock cannot say which of these expired while the bridge
	// was down (it may be minutes off either way): they wait for the
	// welcome, and are listed as active in the hello meanwhile.
	a.mu.Lock()
	a.held = again
	a.mu.Unlock()

	var wg sync.WaitGroup
	wg.Go(func() { a.watchReaders(runCtx, names) })
	linkDone := make(chan error, 1)
	go func() { linkDone <- a.opts.Link.Run(runCtx, a.serve) }()
	var lerr error
	select {
	case lerr = <-linkDone:
		cancel(context.Canceled)
		a.stopJobs()
	case <-ctx.Done():
		a.mu.Lock()
		a.stopping = true
		a.mu.Unlock()
		a.log.Info("stopping: no new jobs; a card being written may complete", zap.Duration("write_grace", a.opts.WriteGrace))
		a.stopJobs()
		a.awaitAcks(runCtx)
		cancel(context.Canceled)
		lerr = <-linkDone
	}
	wg.Wait()
	a.stopCardWatchers()

	if fe := a.fatalErr.Load(); fe != nil {
		return fe.err
	}
	if lerr != nil {
		return fmt.Errorf("agent: %w", lerr)
	}
	return nil
}

// awaitAcks waits, within AckGrace, until the cloud has acknowledged every
// result sent on the current connection, or the connection is gone.
func (a *Agent) awaitAcks(ctx context.Context) {
	t := time.NewTimer(a.opts.AckGrace)
	defer t.Stop()
	for {
		pending, _, err := a.opts.Store.Snapshot()
		if err != nil {
			return
		}
		a.mu.Lock()
		s, waiting := a.sess, 0
		for _, r := range pending {
			if s != nil && s.welcomed && s.sent[r.JobID] {
				waiting++
			}
		}
		a.mu.Unlock()
		if waiting == 0 {
			return
		}
		select {
		case <-a.acked:
		case <-ctx.Done():
			return
		case <-t.C:
			a.log.Info("stopping without the cloud's acknowledgement of some results; the next start sends them again", zap.Int("results", waiting))
			return
		}
	}
}

// signalAcked wakes awaitAcks.
func (a *Agent) signalAcked() {
	select {
	case a.acked <- struct{}{}:
	default:
	}
}
