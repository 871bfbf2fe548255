package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/encoder-bridge/encoder-bridge/cloud/seam"
	"github.com/encoder-bridge/encoder-bridge/cloud/store"
	"github.com/encoder-bridge/encoder-bridge/protocol"
)

// Hello takes a bridge's hello: it records the bridge's encoders (those it
// no longer lists are marked removed), stores the results it finished
// offline, and returns what to send, in order: welcome, a result_ack per
// result, then every job of the bridge that is still pending, has no
// result, is not among the jobs the bridge holds (hello.active_jobs) and
// whose deadline has not passed. Offering a job again is safe: the bridge
// deduplicates by job id.
func (s *Service) Hello(ctx context.Context, b store.Bridge, h *protocol.Hello) ([]*protocol.Message, error) {
	now := s.now()
	keep := make([]string, 0, len(h.Encoders))
	var refused []protocol.EncoderID
	var events bool
	err := s.st.Update(ctx, func(tx *store.Tx) error {
		keep, refused, events = keep[:0], refused[:0], false // Update may run this again
		ws, err := tx.Workspace(ctx, b.WorkspaceID)
		if err != nil {
			return err
		}
		if err := tx.TouchBridge(ctx, b.ID, now, h.SoftwareVersion); err != nil {
			return err
		}
		if s.bus != nil {
			if err := tx.SetBridgeLink(ctx, b.ID, s.instance, now); err != nil {
				return err
			}
		}
		if r := h.JournalReset; r != nil {
			// Stored before the welcome: the bridge stops reporting it
			// once welcomed.
			s.log.Error("bridge reports its job journal was damaged and started over; jobs it held may have been lost",
				zap.String(FieldBridgeID, b.ID), zap.Time("reset_at", r.At), zap.String("reason", r.Reason))
			if err := tx.RecordJournalReset(ctx, b.ID, now, r.Reason); err != nil {
				return err
			}
		}
		for _, e := range h.Encoders {
			if ok, err := s.encoderRoom(ctx, tx, b, e.ID); err != nil || !ok {
				refused = append(refused, e.ID)
				if err != nil {
					return err
				}
				continue
			}
			enc := storeEncoder(b, e, now)
			added, err := s.encoderAdded(ctx, tx, ws, enc, now)
			if err != nil {
				return err
			}
			events = events || added
			if _, err := tx.UpsertEncoder(ctx, enc); err != nil {
				return err
			}
			keep = append(keep, string(e.ID))
		}
		removed, err := tx.RemoveEncodersExcept(ctx, b.ID, keep, now)
		if err != nil {
			return err
		}
		events = events || len(removed) > 0
		return s.encodersRemoved(ctx, tx, ws, removed, now)
	})
	if err != nil {
		return nil, fmt.Errorf("hello from bridge %s: %w", b.ID, err)
	}
	if events {
		s.eventsRecorded()
	}
	w := protocol.New(protocol.TypeWelcome)
	w.Welcome = &protocol.Welcome{BridgeID: b.ID, ServerTime: s.clk.Now().UTC()}
	out := []*protocol.Message{w}
	for _, id := range refused {
		out = append(out, s.noEncoderRoom(b, id))
	}
	for i := range h.Results {
		if err := s.result(ctx, b.ID, &h.Results[i]); err != nil {
			return nil, err
		}
		out = append(out, resultAck(h.Results[i].JobID))
	}
	offerable, err := s.st.Q().OfferableJobs(ctx, b.ID, now)
	if err != nil {
		return nil, fmt.Errorf("hello from bridge %s: pending jobs: %w", b.ID, err)
	}
	// Jobs the bridge says it holds will produce a result: offering them
	// again would be harmless (the bridge deduplicates) but pointless.
	held := make(map[string]bool, len(h.ActiveJobs))
	for _, id := range h.ActiveJobs {
		held[id] = true
	}
	pending := offerable[:0]
	for _, j := range offerable {
		if !held[j.ID] {
			pending = append(pending, j)
		}
	}
	for _, j := range pending {
		m, err := jobMessage(j)
		if err != nil {
			s.log.Error("job not offered", zap.String(FieldJobID, j.ID), zap.Error(err))
			continue
		}
		out = append(out, m)
	}
	if len(pending) > 0 {
		err := s.st.Update(ctx, func(tx *store.Tx) error {
			for _, j := range pending {
				if err := tx.MarkJobSent(ctx, j.ID, now); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("hello from bridge %s: %w", b.ID, err)
		}
	}
	if len(pending) > 0 {
		s.log.Info("jobs offered again", zap.String(FieldBridgeID, b.ID), zap.Int("jobs", len(pending)))
	}
	return out, nil
}

func storeEncoder(b store.Bridge, e protocol.Encoder, now time.Time) store.Encoder {
	name := e.DisplayName
	if name == "" {
		name = e.ReaderName
	}
	return store.Encoder{
		ID:           AcsEncoderID(b.ID, e.ID),
		WorkspaceID:  b.WorkspaceID,
		BridgeID:     b.ID,
		ProtocolID:   string(e.ID),
		DisplayName:  name,
		ReaderName:   e.ReaderName,
		Technologies: e.Technologies,
		CreatedAt:    now,
	}
}

// DefaultMaxEncoderRecords bounds the encoders a bridge has ever
// registered: removed ones stay on record, so without it a bridge adding
// and removing encoders would grow the table without end (issue 10).
const DefaultMaxEncoderRecords = 1024

// encoderRoom reports whether encoder id of bridge b may be registered:
// it is on record already, or the bridge has room for another.
func (s *Service) encoderRoom(ctx context.Context, tx *store.Tx, b store.Bridge, id protocol.EncoderID) (bool, error) {
	n, known, err := tx.EncoderRecords(ctx, b.ID, AcsEncoderID(b.ID, id))
	return known || n < s.maxEncRecs, err
}

func (s *Service) noEncoderRoom(b store.Bridge, id protocol.EncoderID) *protocol.Message {
	s.log.Warn("encoder refused: the bridge has registered the most encoders it may", zap.String(FieldBridgeID, b.ID), zap.Int("max", s.maxEncRecs))
	return refuse(protocol.CodeMalformed, "", "this bridge has registered %d encoders, the most it may: encoder %.64q is not registered", s.maxEncRecs, id)
}

func resultAck(jobID string) *protocol.Message {
	m := protocol.New(protocol.TypeResultAck)
	m.ResultAck = &protocol.ResultAck{JobID: jobID}
	return m
}

func refuse(code protocol.ErrorCode, jobID, format string, args ...any) *protocol.Message {
	m := protocol.New(protocol.TypeError)
	m.Error = &protocol.Error{Code: code, Message: fmt.Sprintf(format, args...), JobID: jobID}
	return m
}

// Message handles one message from a bridge that has said hello and
// returns the replies. Messages a bridge should not send are answered with
// an error message.
func (s *Service) Message(ctx context.Context, b store.Bridge, m *protocol.Message) ([]*protocol.Message, error) {
	now := s.now()
	switch m.Type {
	case protocol.TypeEncoderAdded:
		// Counted and added in one transaction: the count holds until
		// the insert (another link of the bridge waits), and so does the
		// encoder's state that decides acs_encoder.added.
		var room, added bool
		err := s.st.Update(ctx, func(tx *store.Tx) error {
			var err error
			added = false
			if room, err = s.encoderRoom(ctx, tx, b, m.Encoder.ID); err != nil || !room {
				return err
			}
			ws, err := tx.Workspace(ctx, b.WorkspaceID)
			if err != nil {
				return err
			}
			enc := storeEncoder(b, *m.Encoder, now)
			if added, err = s.encoderAdded(ctx, tx, ws, enc, now); err != nil {
				return err
			}
			_, err = tx.UpsertEncoder(ctx, enc)
			return err
		})
		if err != nil {
			return nil, err
		}
		if !room {
			return []*protocol.Message{s.noEncoderRoom(b, m.Encoder.ID)}, nil
		}
		if added {
			s.eventsRecorded()
		}
		return nil, nil
	case protocol.TypeEncoderRemoved:
		var removed bool
		err := s.st.Update(ctx, func(tx *store.Tx) error {
			ws, err := tx.Workspace(ctx, b.WorkspaceID)
			if err != nil {
				return err
			}
			e, changed, err := tx.RemoveEncoder(ctx, b.ID, string(m.EncoderID), now)
			if err != nil || !changed {
				return err
			}
			removed = true
			return s.encodersRemoved(ctx, tx, ws, []store.Encoder{e}, now)
		})
		if errors.Is(err, store.ErrNotFound) {
			return []*protocol.Message{refuse(protocol.CodeUnknownEncoder, "", "no encoder %q on this bridge", m.EncoderID)}, nil
		}
		if err == nil && removed {
			s.eventsRecorded()
		}
		return nil, err
	case protocol.TypeAck:
		j, ok, err := s.bridgeJob(ctx, b.ID, m.Ack.JobID)
		if err != nil || !ok {
			return unknownJob(m.Ack.JobID, err)
		}
		if err := s.st.Q().MarkJobAcked(ctx, j.ID, now); err != nil {
			return nil, err
		}
		if j.AckedAt == nil {
			s.obs.JobAcked(j.Kind, now.Sub(j.CreatedAt))
		}
		return nil, nil
	case protocol.TypeProgress:
		j, ok, err := s.bridgeJob(ctx, b.ID, m.Progress.JobID)
		if err != nil || !ok {
			return unknownJob(m.Progress.JobID, err)
		}
		return nil, s.st.Q().SetJobStage(ctx, j.ID, string(m.Progress.Stage), now)
	case protocol.TypeResult:
		if err := s.result(ctx, b.ID, m.Result); err != nil {
			return nil, err
		}
		return []*protocol.Message{resultAck(m.Result.JobID)}, nil
	case protocol.TypeError:
		return nil, s.bridgeError(ctx, b, m.Error)
	case protocol.TypeHello:
		return []*protocol.Message{refuse(protocol.CodeUnexpected, "", "hello was already received on this connection")}, nil
	}
	return []*protocol.Message{refuse(protocol.CodeUnexpected, "", "a bridge does not send %s messages", m.Type)}, nil
}

func unknownJob(jobID string, err error) ([]*protocol.Message, error) {
	if err != nil {
		return nil, err
	}
	return []*protocol.Message{refuse(protocol.CodeUnexpected, jobID, "no job %q for this bridge", jobID)}, nil
}

// bridgeJob returns a job only if it belongs to the bridge: one bridge
// never reads or finishes another's jobs.
func (s *Service) bridgeJob(ctx context.Context, bridgeID, jobID string) (store.Job, bool, error) {
	j, err := s.st.Q().Job(ctx, jobID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && j.BridgeID != bridgeID) {
		return store.Job{}, false, nil
	}
	return j, err == nil, err
}

// bridgeError handles an error message from the bridge: about a job, it
// may end the job.
func (s *Service) bridgeError(ctx context.Context, b store.Bridge, e *protocol.Error) error {
	log := s.log.With(zap.String(FieldBridgeID, b.ID), zap.String("code", string(e.Code)), zap.String(FieldJobID, e.JobID))
	if e.JobID == "" {
		log.Warn("bridge refused a message", zap.String("message", e.Message))
		return nil
	}
	j, ok, err := s.bridgeJob(ctx, b.ID, e.JobID)
	if err != nil || !ok {
		log.Warn("bridge error about an unknown job", zap.String("message", e.Message))
		return err
	}
	var typ protocol.ErrorType
	switch e.Code {
	case protocol.CodeUnknownEncoder:
		typ = protocol.ErrorEncoderNotOnline
	case protocol.CodeDeadlinePassed:
		typ = protocol.ErrorActionAttemptExpired
	default:
		log.Warn("bridge refused a job", zap.String("message", e.Message))
		return nil
	}
	now := s.now()
	var finished bool
	var errType string
	err = s.st.Update(ctx, func(tx *store.Tx) error {
		att, err := tx.ActionAttempt(ctx, j.WorkspaceID, j.ActionAttemptID)
		if err != nil {
			return err
		}
		errType = string(seam.NormalizeErrorType(att.ActionType, typ))
		// The job's row first, then the attempt's, as result does: two
		// instances finishing one job never lock them in opposite order.
		if err := tx.CloseJob(ctx, j.ID, now); err != nil {
			return err
		}
		finished, err = tx.FinishActionAttempt(ctx, att.ID, store.StatusError, nil, errType,
			"The bridge refused the job: "+e.Message, now)
		return err
	})
	if err == nil && finished {
		s.settled(j.ActionAttemptID)
		s.obs.JobFinished(j.Kind, errType)
	}
	return err
}

// Disconnected records that a bridge's link went away.
func (s *Service) Disconnected(ctx context.Context, bridgeID string) {
	err := s.st.Update(ctx, func(tx *store.Tx) error {
		if s.bus != nil {
			if err := tx.DropBridgeLink(ctx, bridgeID, s.instance); err != nil {
				return err
			}
		}
		return tx.SeenBridge(ctx, bridgeID, s.now())
	})
	if err != nil {
		s.log.Warn("record bridge disconnect", zap.String(FieldBridgeID, bridgeID), zap.Error(err))
	}
}

// result stores a job's result once and finishes its action attempt. A
// result for a job this bridge does not have is logged and dropped (the
// caller still acknowledges it, so the bridge can forget it). A result
// arriving after the attempt expired does not change the attempt, but a
// card that was written is recorded on the credential: it exists, and its
// issue sequence matters at the locks.
func (s *Service) result(ctx context.Context, bridgeID string, r *protocol.Result) error {
	j, ok, err := s.bridgeJob(ctx, bridgeID, r.JobID)
	if err != nil {
		return err
	}
	if !ok {
		s.log.Warn("result for an unknown job acknowledged and dropped", zap.String(FieldBridgeID, bridgeID), zap.String(FieldJobID, r.JobID))
		return nil
	}
	raw, err := json.Marshal(r)
	if err != nil {
		return err
	}
	now := s.now()
	var finished, first bool
	var status, errType string
	err = s.st.Update(ctx, func(tx *store.Tx) error {
		if first, err = tx.SetJobResult(ctx, j.ID, raw, now); err != nil || !first {
			return err
		}
		att, err := tx.ActionAttempt(ctx, j.WorkspaceID, j.ActionAttemptID)
		if err != nil {
			return err
		}
		ws, err := tx.Workspace(ctx, j.WorkspaceID)
		if err != nil {
			return err
		}
		var result json.RawMessage
		var errMsg string
		var typ protocol.ErrorType
		status, result, typ, errMsg, err = s.outcome(ctx, tx, ws, j, att, r, now)
		if err != nil {
			return err
		}
		errType = string(typ)
		if finished, err = tx.FinishActionAttempt(ctx, att.ID, status, result, errType, errMsg, now); err != nil {
			return err
		}
		return tx.CloseJob(ctx, j.ID, now)
	})
	if err != nil {
		return fmt.Errorf("result of job %s: %w", r.JobID, err)
	}
	if first {
		s.eventsRecorded() // perhaps none; a kick costs one query
	}
	if finished {
		s.settled(j.ActionAttemptID)
	}
	log := s.log.With(zap.String(FieldJobID, j.ID), zap.String(FieldBridgeID, bridgeID))
	switch {
	case !first:
		log.Debug("duplicate result ignored")
	case !finished:
		log.Warn("result arrived after the action attempt had finished")
	default:
		outcome := "success"
		if r.Error != nil {
			outcome = string(r.Error.Type)
		}
		log.Info("job finished", zap.String("outcome", outcome))
		if status == store.StatusError {
			s.obs.JobFinished(j.Kind, errType)
		} else {
			s.obs.JobFinished(j.Kind, store.StatusSuccess)
		}
	}
	return nil
}

// outcome turns a result into the action attempt's final state, updating
// the credential for a successful encode or assignment.
func (s *Service) outcome(ctx context.Context, tx *store.Tx, ws store.Workspace, j store.Job, att store.ActionAttempt,
	r *protocol.Result, now time.Time) (status string, result json.RawMessage, errType protocol.ErrorType, errMsg string, err error) {
	if r.Error != nil {
		msg := r.Error.Message
		if msg == "" {
			msg = string(r.Error.Type)
		}
		return store.StatusError, nil, seam.NormalizeErrorType(att.ActionType, r.Error.Type), msg, nil
	}
	card := r.Card
	switch att.ActionType {
	case seam.ActionEncodeCredential:
		if problem := untrustedEncode(j, card); problem != "" {
			s.log.Warn("encode result refused", zap.String(FieldJobID, j.ID), zap.String("reason", problem))
			return store.StatusError, nil, protocol.ErrorUncategorized, "The bridge reported an encode the cloud cannot accept: " + problem + ".", nil
		}
		// The bridge's clock may be off: a time outside the job's life
		// would date the card before its credential existed, or in the
		// future. The cloud's own time of receipt is used instead.
		issuedAt := r.FinishedAt.UTC().Truncate(time.Millisecond)
		if issuedAt.Before(j.CreatedAt) || issuedAt.After(now) {
			issuedAt = now
		}
		before, err := tx.Credential(ctx, ws.ID, j.CredentialID)
		if err != nil {
			return "", nil, "", "", err
		}
		cred, err := s.issue(ctx, tx, ws, before, store.CardIssued{
			IssueSequence: j.IssueSequence, IssuedAt: issuedAt,
			CardUID: card.UID, CardTechnology: card.Technology, KeyVersion: card.KeyVersion,
		}, now)
		if err != nil {
			return "", nil, "", "", err
		}
		b, err := json.Marshal(seam.Credential(cred, ws))
		return store.StatusSuccess, b, "", "", err
	case seam.ActionScanCredential:
		onSeam, err := s.credentialOnCard(ctx, tx, ws, card)
		if err != nil {
			return "", nil, "", "", err
		}
		b, err := json.Marshal(seam.Scan(card, onSeam, ws))
		return store.StatusSuccess, b, "", "", err
	case seam.ActionScanToAssignCredential:
		onSeam, err := s.credentialOnCard(ctx, tx, ws, card)
		if err != nil {
			return "", nil, "", "", err
		}
		if onSeam == nil {
			return store.StatusError, nil, protocol.ErrorNoCredentialOnEncoder, "The card holds no credential of this workspace.", nil
		}
		var to assignTo
		_ = json.Unmarshal([]byte(j.AssignTo), &to)
		if err := tx.AssignCredential(ctx, onSeam.ID, to.AcsUserID, to.UserIdentityID); err != nil {
			return "", nil, "", "", err
		}
		cred, err := tx.Credential(ctx, ws.ID, onSeam.ID)
		if err != nil {
			return "", nil, "", "", err
		}
		b, err := json.Marshal(seam.Credential(cred, ws))
		return store.StatusSuccess, b, "", "", err
	}
	return store.StatusError, nil, protocol.ErrorUncategorized, "unknown action type " + att.ActionType, nil
}

// untrustedEncode says why a successful encode result cannot be taken as
// the job's card, or "" if it can: the card must hold a valid record of
// the job's credential and issue sequence, and have a UID.
func untrustedEncode(j store.Job, card *protocol.Card) string {
	switch {
	case card == nil:
		return "no card"
	case !card.Valid:
		return "the card does not hold a valid record"
	case card.UID == "":
		return "no card UID"
	case card.Credential == nil || card.Credential.CredentialID != j.CredentialID:
		return "the card holds another credential"
	case card.Credential.IssueSequence == nil || *card.Credential.IssueSequence != j.IssueSequence:
		return "the card holds another issue sequence"
	}
	return ""
}

// credentialOnCard returns the workspace's credential whose id the card
// holds, or nil (no valid record, or not this workspace's).
func (s *Service) credentialOnCard(ctx context.Context, tx *store.Tx, ws store.Workspace, card *protocol.Card) (*store.Credential, error) {
	if card == nil || !card.Valid || card.Credential == nil || card.Credential.CredentialID == "" {
		return nil, nil
	}
	c, err := tx.Credential(ctx, ws.ID, card.Credential.CredentialID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &c, nil
}
