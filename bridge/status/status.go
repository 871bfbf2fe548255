// Package status keeps what the bridge shows about itself on this PC:
// the link to the cloud, each encoder with its reader, card and last
// job, and recent errors with their remedy, as a Snapshot for the status
// page, and the same events as Prometheus metrics (metrics.go).
//
// The agent reports to a Recorder through small hooks; the Recorder
// decides nothing. Nothing it keeps is secret: no card UID, credential,
// token or key reaches a Snapshot or a metric label. It must not import
// bridge/agent, bridge/link, cardfmt or reader: it sees events, not the
// things that cause them.
package status

import (
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultMaxProblems is how many recent problems a Recorder keeps.
const DefaultMaxProblems = 10

// Snapshot is the bridge's state at one moment.
type Snapshot struct {
	At       time.Time
	Version  string
	BridgeID string
	// KeyID identifies the site key set (its public id and current
	// version); never the keys.
	KeyID    string
	Link     Link
	Encoders []Encoder // sorted by reader name
	// Problems are the recent errors, newest first.
	Problems []Problem
}

// Link is the state of the connection to the cloud.
type Link struct {
	Up bool
	// URL is the cloud endpoint of the current connection, or of the last
	// one while the link is down; it holds no credentials.
	URL string
	// Since is when the link last went up or down; zero before either.
	Since time.Time
	// LastContact is when a message last arrived from the cloud.
	LastContact time.Time
	// Reconnects counts the connections made after the first.
	Reconnects int
	// Error is why the link is down, while it is.
	Error string
}

// Encoder is an encoder attached to this PC.
type Encoder struct {
	ID     string
	Name   string
	Reader string
	// CardKnown is false until the encoder's card presence is first seen.
	CardKnown   bool
	CardPresent bool
	LastJob     *Job
}

// Job is a finished job as the page shows it.
type Job struct {
	Kind string // encode or scan
	// Outcome is "ok" or the job's error code.
	Outcome string
	// Message is the job error's message, for people; it never holds
	// card data or keys.
	Message  string
	At       time.Time
	Duration time.Duration
}

// OK reports whether the job succeeded.
func (j Job) OK() bool { return j.Outcome == OutcomeOK }

// OutcomeOK is the outcome of a job that succeeded.
const OutcomeOK = "ok"

// Problem is a recent error and what to do about it. The same problem
// again right after is counted, not listed twice.
type Problem struct {
	At     time.Time // the last time it happened
	Where  string    // "link", "readers" or an encoder's name
	What   string
	Remedy string
	Count  int
}

// JobReport is what the agent reports about a finished job.
type JobReport struct {
	EncoderID string
	Kind      string
	Outcome   string // OutcomeOK or the error code
	Message   string
	Duration  time.Duration
	// APDUs is how many APDUs the job sent to the card; 0 when it
	// reached no card.
	APDUs int
}

// EncoderInfo names an attached encoder.
type EncoderInfo struct {
	ID, Name, Reader string
}

// Options configure a Recorder.
type Options struct {
	Version  string
	BridgeID string
	KeyID    string
	// Now is the time source; nil is time.Now.
	Now         func() time.Time
	MaxProblems int // 0: DefaultMaxProblems
}

// Recorder keeps the bridge's state from the agent's reports. Its
// methods are safe for concurrent use and never block on I/O.
type Recorder struct {
	opts    Options
	reg     *prometheus.Registry
	metrics *metrics

	mu       sync.Mutex
	link     Link
	wasUp    bool
	encoders map[string]*Encoder
	lastJob  map[string]Job // by encoder id, kept while the encoder is unplugged
	problems []Problem      // oldest first
}

// New builds a Recorder with its own Prometheus registry (never the
// global one).
func New(opts Options) *Recorder {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxProblems <= 0 {
		opts.MaxProblems = DefaultMaxProblems
	}
	reg := prometheus.NewRegistry()
	return &Recorder{
		opts:     opts,
		reg:      reg,
		metrics:  newMetrics(reg, opts.Version),
		encoders: map[string]*Encoder{},
		lastJob:  map[string]Job{},
	}
}

// Gatherer is the registry /metrics serves.
func (r *Recorder) Gatherer() prometheus.Gatherer { return r.reg }

// Registerer lets the caller add collectors (the Go runtime's, say).
func (r *Recorder) Registerer() prometheus.Registerer { return r.reg }

// LinkUp records that a connection to the cloud was accepted.
func (r *Recorder) LinkUp() {
	now := r.opts.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.link.Up {
		return
	}
	if r.wasUp {
		r.link.Reconnects++
		r.metrics.reconnects.Inc()
	}
	r.wasUp = true
	r.link.Up, r.link.Since, r.link.LastContact, r.link.Error = true, now, now, ""
	r.metrics.linkUp.Set(1)
}

// LinkDown records that the link is down, or that a dial failed, and
// why; remedy tells staff what to do about it.
func (r *Recorder) LinkDown(err error, remedy string) {
	now := r.opts.Now()
	what := "connection to the cloud lost"
	if err != nil {
		what = err.Error()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.link.Up || r.link.Since.IsZero() {
		r.link.Since = now
	}
	r.link.Up, r.link.Error = false, what
	r.metrics.linkUp.Set(0)
	r.addLocked(Problem{At: now, Where: "link", What: what, Remedy: remedy})
}

// LinkURL records the cloud endpoint a connection was made to: with
// several cloud instances, the one this bridge is on.
func (r *Recorder) LinkURL(url string) {
	r.mu.Lock()
	r.link.URL = url
	r.mu.Unlock()
}

// Contact records that a message arrived from the cloud.
func (r *Recorder) Contact() {
	now := r.opts.Now()
	r.mu.Lock()
	r.link.LastContact = now
	r.mu.Unlock()
}

// SetEncoders records the encoders attached now.
func (r *Recorder) SetEncoders(encs []EncoderInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	next := make(map[string]*Encoder, len(encs))
	for _, e := range encs {
		n := &Encoder{ID: e.ID, Name: e.Name, Reader: e.Reader}
		if old, ok := r.encoders[e.ID]; ok {
			n.CardKnown, n.CardPresent = old.CardKnown, old.CardPresent
		}
		next[e.ID] = n
	}
	for id := range r.encoders {
		if _, ok := next[id]; !ok {
			r.metrics.forgetEncoder(id)
		}
	}
	r.encoders = next
}

// CardPresent records whether a card is on the encoder id.
func (r *Recorder) CardPresent(id string, present bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.encoders[id]
	if !ok {
		return
	}
	e.CardKnown, e.CardPresent = true, present
	r.metrics.setCard(id, present)
}

// JobDone records a finished job; a failed one is also a problem.
func (r *Recorder) JobDone(j JobReport) {
	now := r.opts.Now()
	kind, outcome := labelValue(j.Kind), labelValue(j.Outcome)
	r.metrics.job(kind, outcome, j.Duration, j.APDUs)
	r.mu.Lock()
	defer r.mu.Unlock()
	_, attached := r.encoders[j.EncoderID]
	if _, had := r.lastJob[j.EncoderID]; attached || had {
		// Only encoders seen here: a job naming another is no row.
		r.lastJob[j.EncoderID] = Job{Kind: kind, Outcome: outcome, Message: j.Message, At: now, Duration: j.Duration}
	}
	if outcome == OutcomeOK {
		return
	}
	where := "encoder"
	if e, ok := r.encoders[j.EncoderID]; ok {
		where = e.Name
	}
	what := outcome
	if j.Message != "" {
		what += ": " + j.Message
	}
	r.addLocked(Problem{At: now, Where: where, What: what, Remedy: JobRemedy(outcome)})
}

// ReadersFailed records that the smart-card service could not be asked
// for the readers.
func (r *Recorder) ReadersFailed(err error) {
	now := r.opts.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.addLocked(Problem{At: now, Where: "readers", What: err.Error(), Remedy: RemedyReaders})
}

// addLocked lists p, or counts it again when it repeats the newest.
func (r *Recorder) addLocked(p Problem) {
	if n := len(r.problems); n > 0 {
		last := &r.problems[n-1]
		if last.Where == p.Where && last.What == p.What {
			last.At = p.At
			last.Count++
			return
		}
	}
	p.Count = 1
	r.problems = append(r.problems, p)
	if over := len(r.problems) - r.opts.MaxProblems; over > 0 {
		r.problems = slices.Delete(r.problems, 0, over)
	}
}

// Snapshot returns the state now.
func (r *Recorder) Snapshot() Snapshot {
	now := r.opts.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	s := Snapshot{
		At: now, Version: r.opts.Version, BridgeID: r.opts.BridgeID, KeyID: r.opts.KeyID,
		Link: r.link,
	}
	for _, e := range r.encoders {
		c := *e
		if j, ok := r.lastJob[e.ID]; ok {
			c.LastJob = &j
		}
		s.Encoders = append(s.Encoders, c)
	}
	slices.SortFunc(s.Encoders, func(x, y Encoder) int { return strings.Compare(x.Reader, y.Reader) })
	for i := len(r.problems) - 1; i >= 0; i-- {
		s.Problems = append(s.Problems, r.problems[i])
	}
	return s
}

// labelValue keeps a metric label to a short lower-case word, so nothing
// unexpected (an id, a message) can become a label value.
func labelValue(s string) string {
	if s == "" || len(s) > 40 {
		return "other"
	}
	for _, c := range s {
		if (c < 'a' || c > 'z') && c != '_' {
			return "other"
		}
	}
	return s
}
