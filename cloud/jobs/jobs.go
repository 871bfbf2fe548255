// Package jobs runs the cloud's side of encode and scan jobs: it turns an
// API request into an action attempt and a job, hands the job to the
// bridge's link, stores what the bridge reports (ack, progress, result),
// finishes the action attempt, and expires jobs whose deadline passed.
//
// It sees bridge links only through the Links interface (package hub
// implements it) and answers the hub through plain method calls that
// return the messages to send. Among several instances it reaches the
// links of the others through a bus.Bus (instances.go). It must not
// import api or hub.
package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/encoder-bridge/encoder-bridge/cloud/bus"
	"github.com/encoder-bridge/encoder-bridge/cloud/clock"
	"github.com/encoder-bridge/encoder-bridge/cloud/seam"
	"github.com/encoder-bridge/encoder-bridge/cloud/store"
	"github.com/encoder-bridge/encoder-bridge/protocol"
)

// Log field keys.
const (
	FieldJobID    = "job_id"
	FieldBridgeID = "bridge_id"
	FieldAttempt  = "action_attempt_id"
	FieldEncoder  = "encoder"
)

// Links is how jobs reach the bridges linked to this instance.
type Links interface {
	// Online reports whether the bridge has a live link that said hello.
	// It must not block on the database.
	Online(bridgeID string) bool
	// SendFrame queues an encoded message on the bridge's current link;
	// false if it has none.
	SendFrame(bridgeID string, frame []byte) bool
	// Disconnect closes every link of the bridge.
	Disconnect(bridgeID, reason string)
	// BridgeIDs lists the bridges with a link open.
	BridgeIDs() []string
	// Holds reports whether the bridge has a link open here, said hello
	// or not (a job sent during its hello waits for it).
	Holds(bridgeID string) bool
}

// Defaults.
const (
	DefaultTimeout       = 60 * time.Second
	DefaultSweepInterval = time.Second
	// DefaultReofferAfter is how long a job may stay unacknowledged on a
	// connected bridge before it is offered again (the bridge may have
	// failed to store it, or the link it went to died).
	DefaultReofferAfter = 10 * time.Second
)

// Config configures a Service.
type Config struct {
	Store *store.Store
	Clock clock.Clock // nil: the real clock
	Log   *zap.Logger // nil: no logging
	Links Links       // may be set later with SetLinks
	// Timeout is how long a job may take, from dispatch to result.
	Timeout time.Duration
	// SweepInterval is how often Run looks for expired jobs.
	SweepInterval time.Duration
	// ReofferAfter: see DefaultReofferAfter.
	ReofferAfter time.Duration
	// MaxEncoderRecords: see DefaultMaxEncoderRecords.
	MaxEncoderRecords int
	// Observer, when set, hears jobs finish and reach their bridge (for
	// metrics).
	Observer Observer
	// Bus, when set, joins this instance to others on the same database
	// (instances.go); nil is the one instance, as on SQLite.
	Bus bus.Bus
	// Instance names this instance on the Bus; default a new UUID.
	Instance string
	// HeartbeatInterval: see DefaultHeartbeatInterval.
	HeartbeatInterval time.Duration
	// OnEvents, when set, is called after a commit that recorded events
	// (the webhook deliverer's Kick). It must not block.
	OnEvents func()
}

// Observer hears what happens to jobs. Labels it may make of kind,
// outcome and reason are bounded: a protocol.JobKind and Seam error
// types the cloud normalised.
type Observer interface {
	// JobFinished: a bridge's result finished the job's action attempt,
	// with outcome "success" or the attempt's error type.
	JobFinished(kind, outcome string)
	// JobAcked: the bridge stored the job, sinceCreated after the API
	// made it.
	JobAcked(kind string, sinceCreated time.Duration)
	// AttemptExpired: the sweeper finished the attempt at its deadline;
	// reason is the error type it set.
	AttemptExpired(kind, reason string)
}

type noObserver struct{}

func (noObserver) JobFinished(string, string)     {}
func (noObserver) JobAcked(string, time.Duration) {}
func (noObserver) AttemptExpired(string, string)  {}

// Service runs jobs.
type Service struct {
	st         *store.Store
	clk        clock.Clock
	log        *zap.Logger
	links      Links
	timeout    time.Duration
	sweepEvery time.Duration
	reoffer    time.Duration
	maxEncRecs int
	obs        Observer
	// started is when this process started: a job whose deadline passed
	// before it was down, not disconnected.
	started time.Time
	waiters settleWaiters // callers of Await

	bus       bus.Bus // nil: the only instance
	instance  string
	heartbeat time.Duration
	onEvents  func()
}

// New makes a Service.
func New(cfg Config) *Service {
	s := &Service{st: cfg.Store, clk: cfg.Clock, log: cfg.Log, links: cfg.Links, timeout: cfg.Timeout, sweepEvery: cfg.SweepInterval, reoffer: cfg.ReofferAfter, obs: cfg.Observer,
		onEvents: cfg.OnEvents}
	if s.obs == nil {
		s.obs = noObserver{}
	}
	if s.clk == nil {
		s.clk = clock.Real{}
	}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	if s.timeout <= 0 {
		s.timeout = DefaultTimeout
	}
	if s.sweepEvery <= 0 {
		s.sweepEvery = DefaultSweepInterval
	}
	if s.reoffer <= 0 {
		s.reoffer = DefaultReofferAfter
	}
	if s.maxEncRecs = cfg.MaxEncoderRecords; s.maxEncRecs <= 0 {
		s.maxEncRecs = DefaultMaxEncoderRecords
	}
	s.started = s.clk.Now()
	s.bus, s.instance, s.heartbeat = cfg.Bus, cfg.Instance, cfg.HeartbeatInterval
	if s.instance == "" {
		s.instance = uuid.NewString()
	}
	if s.heartbeat <= 0 {
		s.heartbeat = DefaultHeartbeatInterval
	}
	return s
}

// SetLinks sets the bridge links (the hub is made after the service).
func (s *Service) SetLinks(l Links) { s.links = l }

// Timeout is the job timeout.
func (s *Service) Timeout() time.Duration { return s.timeout }

// local reports whether the bridge's link is on this instance.
func (s *Service) local(bridgeID string) bool { return s.links != nil && s.links.Online(bridgeID) }

// NotFoundError is a resource that does not exist in the workspace.
type NotFoundError struct {
	Resource string // acs_encoder, acs_credential, access_method
	ID       string
}

func (e *NotFoundError) Error() string { return e.Resource + " " + e.ID + " not found" }

// ErrNotSandbox refuses a simulation outside a sandbox workspace.
var ErrNotSandbox = errors.New("simulations are only allowed in a sandbox workspace")

// encoderNamespace derives acs_encoder_ids (UUIDv5).
var encoderNamespace = uuid.MustParse("4654bf5f-6aad-41bc-8d49-b9e0a9f9db55")

// AcsEncoderID is the acs_encoder_id, the cloud's UUID, of the encoder a
// bridge calls id: the same on every reconnect, and different for every
// bridge. The two id spaces never mix: protocol.EncoderID only on the
// websocket, the acs_encoder_id only in the store and the API.
func AcsEncoderID(bridgeID string, id protocol.EncoderID) string {
	return uuid.NewSHA1(encoderNamespace, []byte(bridgeID+"\x00"+string(id))).String()
}

func (s *Service) now() time.Time { return s.clk.Now().UTC().Truncate(time.Millisecond) }

// EncodeRequest names what to encode where. Exactly one of CredentialID
// and AccessMethodID is set (the API checks).
type EncodeRequest struct {
	EncoderID      string
	CredentialID   string
	AccessMethodID string
}

// Encode starts an ENCODE_CREDENTIAL action attempt. The attempt is
// pending while the job runs; it is already finished when the encoder's
// bridge is offline (encoder_not_online), when the credential cannot be
// encoded, or when a simulated outcome was set.
func (s *Service) Encode(ctx context.Context, workspaceID string, req EncodeRequest) (store.ActionAttempt, error) {
	var att store.ActionAttempt
	var job *store.Job
	enc, err := s.encoder(ctx, workspaceID, req.EncoderID)
	if err != nil {
		return att, err
	}
	online := s.online(ctx, enc.BridgeID)
	now := s.now()
	err = s.st.Update(ctx, func(tx *store.Tx) error {
		att, job = store.ActionAttempt{}, nil
		ws, err := tx.Workspace(ctx, workspaceID)
		if err != nil {
			return err
		}
		var cred store.Credential
		if req.CredentialID != "" {
			cred, err = tx.Credential(ctx, workspaceID, req.CredentialID)
			if errors.Is(err, store.ErrNotFound) {
				return &NotFoundError{Resource: "acs_credential", ID: req.CredentialID}
			}
		} else {
			cred, err = tx.CredentialByAccessMethod(ctx, workspaceID, req.AccessMethodID)
			if errors.Is(err, store.ErrNotFound) {
				return &NotFoundError{Resource: "access_method", ID: req.AccessMethodID}
			}
		}
		if err != nil {
			return err
		}
		att = newAttempt(workspaceID, seam.ActionEncodeCredential, now)
		fail := func(typ protocol.ErrorType, msg string) error {
			att.Status, att.ErrorType, att.ErrorMessage = store.StatusError, string(typ), msg
			return tx.CreateActionAttempt(ctx, att)
		}
		if sim, ok, err := s.takeSimulation(ctx, tx, enc.ID, simEncode, cred.ID); err != nil {
			return err
		} else if ok {
			return s.simulateEncode(ctx, tx, ws, &att, cred, sim, now)
		}
		if !cred.EndsAt.After(now) {
			if cred.IsIssued {
				return fail(protocol.ErrorCredentialCannotBeReissued, fmt.Sprintf(
					"The credential's validity ended at %s, so it cannot be reissued; create a new credential.", seam.Time(cred.EndsAt)))
			}
			return fail(protocol.ErrorUncategorized, fmt.Sprintf(
				"The credential's validity ended at %s before it was encoded; create a new credential.", seam.Time(cred.EndsAt)))
		}
		if enc.RemovedAt != nil {
			return fail(protocol.ErrorEncoderNotOnline, "The encoder was removed from its bridge (reader "+enc.ReaderName+").")
		}
		if !online {
			return fail(protocol.ErrorEncoderNotOnline, "The encoder's bridge is not connected.")
		}
		// The first encode job of a credential writes the sequence it was
		// created with; every later one (a retry or a replacement card)
		// takes a new, higher sequence, so the newest card cancels every
		// older card of this credential at the locks (and no other
		// credential's card).
		before, err := tx.CountEncodeJob(ctx, cred.ID)
		if err != nil {
			return err
		}
		seq := cred.IssueSequence
		if before > 0 || cred.IsIssued {
			if seq, err = tx.NextIssueSequence(ctx, workspaceID); err != nil {
				return err
			}
		}
		pc := ProtocolCredential(cred)
		pc.IssueSequence = &seq
		j, err := s.newJob(att, enc, protocol.JobEncode, pc, now)
		if err != nil {
			return err
		}
		j.CredentialID, j.IssueSequence = cred.ID, seq
		if err := tx.CreateActionAttempt(ctx, att); err != nil {
			return err
		}
		job = &j
		return tx.CreateJob(ctx, j)
	})
	if err != nil {
		return store.ActionAttempt{}, err
	}
	if job == nil && att.Status == store.StatusSuccess {
		s.eventsRecorded() // a simulated encode issued the credential
	}
	s.offer(ctx, job)
	return att, nil
}

// ScanRequest asks for a scan; AcsUserID or UserIdentityID are set for a
// scan that assigns the card's credential to a user.
type ScanRequest struct {
	EncoderID      string
	Assign         bool
	AcsUserID      string
	UserIdentityID string
}

// Scan starts a SCAN_CREDENTIAL (or SCAN_TO_ASSIGN_CREDENTIAL) action
// attempt.
func (s *Service) Scan(ctx context.Context, workspaceID string, req ScanRequest) (store.ActionAttempt, error) {
	var att store.ActionAttempt
	var job *store.Job
	enc, err := s.encoder(ctx, workspaceID, req.EncoderID)
	if err != nil {
		return att, err
	}
	online := s.online(ctx, enc.BridgeID)
	now := s.now()
	actionType := seam.ActionScanCredential
	if req.Assign {
		actionType = seam.ActionScanToAssignCredential
	}
	err = s.st.Update(ctx, func(tx *store.Tx) error {
		att, job = newAttempt(workspaceID, actionType, now), nil
		ws, err := tx.Workspace(ctx, workspaceID)
		if err != nil {
			return err
		}
		fail := func(typ protocol.ErrorType, msg string) error {
			att.Status, att.ErrorType, att.ErrorMessage = store.StatusError, string(seam.NormalizeErrorType(actionType, typ)), msg
			return tx.CreateActionAttempt(ctx, att)
		}
		if !req.Assign {
			if sim, ok, err := s.takeSimulation(ctx, tx, enc.ID, simScan, ""); err != nil {
				return err
			} else if ok {
				return s.simulateScan(ctx, tx, ws, &att, sim)
			}
		}
		if enc.RemovedAt != nil {
			return fail(protocol.ErrorEncoderNotOnline, "The encoder was removed from its bridge (reader "+enc.ReaderName+").")
		}
		if !online {
			return fail(protocol.ErrorEncoderNotOnline, "The encoder's bridge is not connected.")
		}
		j, err := s.newJob(att, enc, protocol.JobScan, nil, now)
		if err != nil {
			return err
		}
		if req.Assign {
			b, _ := json.Marshal(assignTo{AcsUserID: req.AcsUserID, UserIdentityID: req.UserIdentityID})
			j.AssignTo = string(b)
		}
		if err := tx.CreateActionAttempt(ctx, att); err != nil {
			return err
		}
		job = &j
		return tx.CreateJob(ctx, j)
	})
	if err != nil {
		return store.ActionAttempt{}, err
	}
	s.offer(ctx, job)
	return att, nil
}

type assignTo struct {
	AcsUserID      string `json:"acs_user_id,omitempty"`
	UserIdentityID string `json:"user_identity_id,omitempty"`
}

func (s *Service) encoder(ctx context.Context, workspaceID, id string) (store.Encoder, error) {
	enc, err := s.st.Q().Encoder(ctx, workspaceID, id)
	if errors.Is(err, store.ErrNotFound) {
		return enc, &NotFoundError{Resource: "acs_encoder", ID: id}
	}
	return enc, err
}

func newAttempt(workspaceID, actionType string, now time.Time) store.ActionAttempt {
	return store.ActionAttempt{
		ID:          uuid.NewString(),
		WorkspaceID: workspaceID,
		ActionType:  actionType,
		Status:      store.StatusPending,
		CreatedAt:   now,
		UpdatedAt:   now,
	}
}

func (s *Service) newJob(att store.ActionAttempt, enc store.Encoder, kind protocol.JobKind, pc *protocol.Credential, now time.Time) (store.Job, error) {
	pj := protocol.Job{
		JobID:           uuid.NewString(),
		ActionAttemptID: att.ID,
		Kind:            kind,
		EncoderID:       protocol.EncoderID(enc.ProtocolID),
		Deadline:        now.Add(s.timeout),
		Credential:      pc,
	}
	// Marshalled once: every offer sends this body as it is stored.
	payload, err := protocol.MarshalJob(&pj)
	if err != nil {
		return store.Job{}, err
	}
	return store.Job{
		ID:              pj.JobID,
		ActionAttemptID: att.ID,
		WorkspaceID:     att.WorkspaceID,
		BridgeID:        enc.BridgeID,
		EncoderID:       enc.ID,
		Kind:            string(kind),
		Payload:         payload,
		Deadline:        pj.Deadline,
		CreatedAt:       now,
		// Offered right after the commit; one that misses its link is
		// offered again on the next hello.
		SentAt: &now,
	}, nil
}

// ProtocolCredential is the card data of a credential, as a job carries it.
func ProtocolCredential(c store.Credential) *protocol.Credential {
	seq := c.IssueSequence
	ents := c.EntranceIDs
	if ents == nil {
		ents = []string{}
	}
	return &protocol.Credential{
		CredentialID:     c.ID,
		CardNumber:       c.CardNumber,
		CardFunctionType: c.CardFunctionType,
		StartsAt:         c.StartsAt.UTC().Format(time.RFC3339),
		EndsAt:           c.EndsAt.UTC().Format(time.RFC3339),
		EntranceIDs:      ents,
		IssueSequence:    &seq,
	}
}

// jobMessage is the job message of a stored job.
func jobMessage(j store.Job) (*protocol.Message, error) {
	var pj protocol.Job
	if err := json.Unmarshal(j.Payload, &pj); err != nil {
		return nil, fmt.Errorf("%w: job %s: payload: %v", store.ErrDamaged, j.ID, err)
	}
	// A bridge that no longer knows a job it acked lost it with a damaged
	// journal, and must not write a card for it again.
	pj.Acked = j.AckedAt != nil
	m := protocol.New(protocol.TypeJob)
	m.Job = &pj
	return m, nil
}

// jobFrame is the frame of a stored job: its stored body as it is, unless
// the bridge acked the job (then the body must say so, see jobMessage).
func jobFrame(j store.Job) ([]byte, error) {
	if j.AckedAt == nil {
		if !json.Valid(j.Payload) || len(j.Payload) == 0 || j.Payload[0] != '{' {
			return nil, fmt.Errorf("%w: job %s: payload is not a JSON object", store.ErrDamaged, j.ID)
		}
		return protocol.JobFrame(j.Payload), nil
	}
	m, err := jobMessage(j)
	if err != nil {
		return nil, err
	}
	return protocol.Encode(m)
}

// offer sends a new job to its bridge: on the link here, else, with
// several instances, it tells the others. A job that cannot be sent now
// stays pending: it is offered again when the bridge says hello, or
// expires.
func (s *Service) offer(ctx context.Context, j *store.Job) {
	if j == nil || s.links == nil {
		return
	}
	f, err := jobFrame(*j)
	if err != nil {
		s.log.Error("job not offered", zap.String(FieldJobID, j.ID), zap.Error(err))
		return
	}
	sent := s.links.SendFrame(j.BridgeID, f)
	if s.bus != nil {
		// Announced even when sent here: the link here may be one the
		// bridge already left for another instance, which has not
		// noticed yet. The bridge deduplicates by job id.
		s.publish(ctx, bus.Event{Kind: bus.JobReady, Bridge: j.BridgeID, ID: j.ID})
		return
	}
	if !sent {
		s.log.Info("job not sent: bridge link gone; it waits for the bridge to reconnect",
			zap.String(FieldJobID, j.ID), zap.String(FieldBridgeID, j.BridgeID))
	}
}

// Sweep finishes every pending job whose deadline has passed: with
// bridge_disconnected if its bridge is not connected now (the link dropped
// during the job and did not come back), else action_attempt_expired. It
// returns how many it finished. It also offers again the jobs a bridge
// linked here has not acknowledged for ReofferAfter.
//
// Every instance sweeps: a job is claimed with its row locked (skipped
// if another instance holds it) and its attempt finished by a
// conditional update, so each attempt is finished, and observed, once.
func (s *Service) Sweep(ctx context.Context) (int, error) {
	now := s.now()
	// A job that cannot be offered again does not stop the expiry of
	// the others; its error is returned with the count.
	reofferErr := s.reofferUnacked(ctx, now)
	due, err := s.st.Q().DueJobs(ctx, now)
	if err != nil {
		return 0, errors.Join(reofferErr, fmt.Errorf("sweep: %w", err))
	}
	n := 0
	for _, j := range due {
		typ, msg := protocol.ErrorActionAttemptExpired,
			fmt.Sprintf("The encoder did not finish the job before its deadline (%s).", seam.Time(j.Deadline))
		if !s.online(ctx, j.BridgeID) && !j.Deadline.Before(s.started) {
			typ, msg = protocol.ErrorBridgeDisconnected,
				"The bridge disconnected while the job was running and did not reconnect before the deadline ("+seam.Time(j.Deadline)+")."
		}
		var done bool
		err := s.st.Update(ctx, func(tx *store.Tx) error {
			done = false
			// Another instance sweeping now has it, or has finished it.
			if _, open, err := tx.ClaimOpenJob(ctx, j.ID); err != nil || !open {
				return err
			}
			att, err := tx.ActionAttempt(ctx, j.WorkspaceID, j.ActionAttemptID)
			if err != nil {
				return err
			}
			// The job's row first, then the attempt's, as result does.
			if err := tx.CloseJob(ctx, j.ID, now); err != nil {
				return err
			}
			done, err = tx.FinishActionAttempt(ctx, j.ActionAttemptID, store.StatusError, nil,
				string(seam.NormalizeErrorType(att.ActionType, typ)), msg, now)
			return err
		})
		if err != nil {
			return n, errors.Join(reofferErr, fmt.Errorf("sweep job %s: %w", j.ID, err))
		}
		if done {
			n++
			s.settled(j.ActionAttemptID)
			s.obs.AttemptExpired(j.Kind, string(typ))
			s.log.Info("job expired", zap.String(FieldJobID, j.ID), zap.String(FieldBridgeID, j.BridgeID), zap.String("type", string(typ)))
		}
	}
	return n, reofferErr
}

func (s *Service) reofferUnacked(ctx context.Context, now time.Time) error {
	stale, err := s.st.Q().UnackedJobs(ctx, now.Add(-s.reoffer), now)
	if err != nil {
		return fmt.Errorf("sweep: %w", err)
	}
	var damaged []error
	for _, j := range stale {
		if !s.local(j.BridgeID) {
			continue // offered again on its next hello, or by its instance
		}
		f, err := jobFrame(j)
		if err != nil {
			// It can never be sent; the other jobs still are, and the
			// sweep expires this one at its deadline.
			s.log.Error("unacknowledged job not offered again", zap.String(FieldJobID, j.ID), zap.String(FieldBridgeID, j.BridgeID), zap.Error(err))
			damaged = append(damaged, err)
			continue
		}
		if s.links.SendFrame(j.BridgeID, f) {
			s.log.Info("unacknowledged job offered again", zap.String(FieldJobID, j.ID), zap.String(FieldBridgeID, j.BridgeID))
			if err := s.st.Q().MarkJobSent(ctx, j.ID, now); err != nil {
				return err
			}
		}
	}
	return errors.Join(damaged...)
}

// Run sweeps expired jobs until ctx is done; with several instances it
// also keeps this instance's row fresh and listens to the others.
func (s *Service) Run(ctx context.Context) {
	if s.bus != nil {
		// The row first, so the links of this instance count at once.
		if err := s.Beat(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("instance heartbeat failed", zap.Error(err))
		}
		var wg sync.WaitGroup
		defer wg.Wait()
		wg.Go(func() { s.listen(ctx) })
		wg.Go(func() { s.beat(ctx) })
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.clk.After(s.sweepEvery):
			if _, err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("sweep failed", zap.Error(err))
			}
		}
	}
}
