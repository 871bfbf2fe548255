package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Action attempt statuses, as Seam names them.
const (
	StatusPending = "pending"
	StatusSuccess = "success"
	StatusError   = "error"
)

// ActionAttempt is the client's view of an asynchronous action.
type ActionAttempt struct {
	ID          string
	WorkspaceID string
	ActionType  string
	Status      string
	// Result is the JSON of the success result (Seam's shape).
	Result       json.RawMessage
	ErrorType    string
	ErrorMessage string
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// Job is the work behind an action attempt: what was sent to a bridge and
// what came back.
type Job struct {
	ID              string
	ActionAttemptID string
	WorkspaceID     string
	BridgeID        string
	EncoderID       string // the acs_encoder_id
	Kind            string // protocol.JobKind
	CredentialID    string
	IssueSequence   uint32
	// AssignTo is the user a SCAN_TO_ASSIGN_CREDENTIAL job assigns the
	// scanned credential to (JSON, empty for other jobs).
	AssignTo string
	// Payload is the protocol.Job message body, sent as is on every offer.
	Payload   json.RawMessage
	Deadline  time.Time
	CreatedAt time.Time
	// SentAt is when the job was first offered to a link of its bridge.
	SentAt  *time.Time
	AckedAt *time.Time
	Stage   string
	StageAt *time.Time
	// Result is the protocol.Result the bridge reported, once it has.
	Result   json.RawMessage
	ResultAt *time.Time
	// ClosedAt is when the action attempt stopped being pending.
	ClosedAt *time.Time
}

// CreateActionAttempt inserts a.
func (t *Tx) CreateActionAttempt(ctx context.Context, a ActionAttempt) error {
	_, err := t.exec(ctx, `INSERT INTO action_attempts (id, workspace_id, action_type, status, result, error_type,
		error_message, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		a.ID, a.WorkspaceID, a.ActionType, a.Status, nullJSON(a.Result), a.ErrorType, a.ErrorMessage, ms(a.CreatedAt), ms(a.UpdatedAt))
	if err != nil {
		return fmt.Errorf("store: create action attempt: %w", err)
	}
	return nil
}

const attemptCols = `id, workspace_id, action_type, status, result, error_type, error_message, created_at, updated_at`

func scanAttempt(row interface{ Scan(...any) error }) (ActionAttempt, error) {
	var a ActionAttempt
	var result sql.NullString
	var created, updated int64
	err := row.Scan(&a.ID, &a.WorkspaceID, &a.ActionType, &a.Status, &result, &a.ErrorType, &a.ErrorMessage, &created, &updated)
	if err != nil {
		return a, notFound(err)
	}
	if result.Valid {
		a.Result = json.RawMessage(result.String)
	}
	a.CreatedAt, a.UpdatedAt = fromMS(created), fromMS(updated)
	return a, nil
}

// ActionAttempt returns a workspace's action attempt.
func (t *Tx) ActionAttempt(ctx context.Context, workspaceID, id string) (ActionAttempt, error) {
	return scanAttempt(t.queryRow(ctx, `SELECT `+attemptCols+` FROM action_attempts WHERE id = ? AND workspace_id = ?`, id, workspaceID))
}

// FinishActionAttempt moves a pending action attempt to success (with
// result) or error. An attempt that already finished is left alone: it
// reports false.
func (t *Tx) FinishActionAttempt(ctx context.Context, id, status string, result json.RawMessage, errType, errMsg string, at time.Time) (bool, error) {
	res, err := t.exec(ctx, `UPDATE action_attempts SET status = ?, result = ?, error_type = ?, error_message = ?, updated_at = ?
		WHERE id = ? AND status = 'pending'`, status, nullJSON(result), errType, errMsg, ms(at), id)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// CreateJob inserts j.
func (t *Tx) CreateJob(ctx context.Context, j Job) error {
	_, err := t.exec(ctx, `INSERT INTO jobs (id, action_attempt_id, workspace_id, bridge_id, encoder_id, kind, credential_id,
		issue_sequence, assign_to, payload, deadline, created_at, sent_at, closed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		j.ID, j.ActionAttemptID, j.WorkspaceID, j.BridgeID, j.EncoderID, j.Kind, j.CredentialID, int64(j.IssueSequence), j.AssignTo,
		string(j.Payload), ms(j.Deadline), ms(j.CreatedAt), nullMS(j.SentAt), nullMS(j.ClosedAt))
	if err != nil {
		return fmt.Errorf("store: create job: %w", err)
	}
	return nil
}

const jobCols = `id, action_attempt_id, workspace_id, bridge_id, encoder_id, kind, credential_id, issue_sequence, assign_to, payload,
	deadline, created_at, sent_at, acked_at, stage, stage_at, result, result_at, closed_at`

func scanJob(row interface{ Scan(...any) error }) (Job, error) {
	var j Job
	var seq, deadline, created int64
	var payload string
	var result sql.NullString
	var sent, acked, stageAt, resultAt, closed sql.NullInt64
	err := row.Scan(&j.ID, &j.ActionAttemptID, &j.WorkspaceID, &j.BridgeID, &j.EncoderID, &j.Kind, &j.CredentialID, &seq, &j.AssignTo, &payload,
		&deadline, &created, &sent, &acked, &j.Stage, &stageAt, &result, &resultAt, &closed)
	if err != nil {
		return j, notFound(err)
	}
	j.IssueSequence = uint32(seq)
	j.Payload = json.RawMessage(payload)
	if result.Valid {
		j.Result = json.RawMessage(result.String)
	}
	j.Deadline, j.CreatedAt = fromMS(deadline), fromMS(created)
	j.SentAt, j.AckedAt, j.StageAt, j.ResultAt, j.ClosedAt = fromNullMS(sent), fromNullMS(acked), fromNullMS(stageAt), fromNullMS(resultAt), fromNullMS(closed)
	return j, nil
}

func (t *Tx) jobs(ctx context.Context, where string, args ...any) ([]Job, error) {
	rows, err := t.query(ctx, `SELECT `+jobCols+` FROM jobs WHERE `+where, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Job
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	return out, rows.Err()
}

// Job returns a job by id.
func (t *Tx) Job(ctx context.Context, id string) (Job, error) {
	return scanJob(t.queryRow(ctx, `SELECT `+jobCols+` FROM jobs WHERE id = ?`, id))
}

// JobOfAttempt returns the job behind an action attempt.
func (t *Tx) JobOfAttempt(ctx context.Context, actionAttemptID string) (Job, error) {
	return scanJob(t.queryRow(ctx, `SELECT `+jobCols+` FROM jobs WHERE action_attempt_id = ?`, actionAttemptID))
}

// OfferableJobs lists a bridge's jobs that are still pending, have no
// result and whose deadline is after now, oldest first.
func (t *Tx) OfferableJobs(ctx context.Context, bridgeID string, now time.Time) ([]Job, error) {
	return t.jobs(ctx, `bridge_id = ? AND closed_at IS NULL AND result IS NULL AND deadline > ? ORDER BY created_at, id`, bridgeID, ms(now))
}

// DueJobs lists pending jobs whose deadline is at or before now.
func (t *Tx) DueJobs(ctx context.Context, now time.Time) ([]Job, error) {
	return t.jobs(ctx, `closed_at IS NULL AND deadline <= ? ORDER BY deadline, id`, ms(now))
}

// MarkJobSent records that a job was offered to a bridge link.
func (t *Tx) MarkJobSent(ctx context.Context, id string, at time.Time) error {
	_, err := t.exec(ctx, `UPDATE jobs SET sent_at = ? WHERE id = ?`, ms(at), id)
	return err
}

// UnackedJobs lists pending jobs without ack or result that were last
// offered at or before offeredBefore and whose deadline is after now.
func (t *Tx) UnackedJobs(ctx context.Context, offeredBefore, now time.Time) ([]Job, error) {
	return t.jobs(ctx, `closed_at IS NULL AND result IS NULL AND acked_at IS NULL AND sent_at IS NOT NULL AND sent_at <= ?
		AND deadline > ? ORDER BY created_at, id`, ms(offeredBefore), ms(now))
}

// MarkJobAcked records the bridge's ack.
func (t *Tx) MarkJobAcked(ctx context.Context, id string, at time.Time) error {
	_, err := t.exec(ctx, `UPDATE jobs SET acked_at = COALESCE(acked_at, ?) WHERE id = ?`, ms(at), id)
	return err
}

// SetJobStage records the stage a running job reached.
func (t *Tx) SetJobStage(ctx context.Context, id, stage string, at time.Time) error {
	_, err := t.exec(ctx, `UPDATE jobs SET stage = ?, stage_at = ? WHERE id = ? AND result IS NULL`, stage, ms(at), id)
	return err
}

// SetJobResult stores the bridge's result, once: it reports false if the
// job already had one.
func (t *Tx) SetJobResult(ctx context.Context, id string, result json.RawMessage, at time.Time) (bool, error) {
	res, err := t.exec(ctx, `UPDATE jobs SET result = ?, result_at = ? WHERE id = ? AND result IS NULL`, string(result), ms(at), id)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// CloseJob records that the job's action attempt finished.
func (t *Tx) CloseJob(ctx context.Context, id string, at time.Time) error {
	_, err := t.exec(ctx, `UPDATE jobs SET closed_at = COALESCE(closed_at, ?) WHERE id = ?`, ms(at), id)
	return err
}

// SetSimulation makes the next job of kind on an encoder end with outcome
// (replacing an earlier one).
func (t *Tx) SetSimulation(ctx context.Context, encoderID, kind string, outcome json.RawMessage, at time.Time) error {
	_, err := t.exec(ctx, `INSERT INTO simulations (encoder_id, kind, outcome, created_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (encoder_id, kind) DO UPDATE SET outcome = excluded.outcome, created_at = excluded.created_at`,
		encoderID, kind, string(outcome), ms(at))
	return err
}

// Simulation returns the pending simulated outcome of the next job of
// kind on an encoder. In a transaction the row stays locked until it
// ends: two jobs started at once never both take one simulation.
func (t *Tx) Simulation(ctx context.Context, encoderID, kind string) (json.RawMessage, error) {
	var s string
	err := t.queryRow(ctx, `SELECT outcome FROM simulations WHERE encoder_id = ? AND kind = ?`+t.forUpdate(), encoderID, kind).Scan(&s)
	if err != nil {
		return nil, notFound(err)
	}
	return json.RawMessage(s), nil
}

// DeleteSimulation consumes a simulated outcome.
func (t *Tx) DeleteSimulation(ctx context.Context, encoderID, kind string) error {
	_, err := t.exec(ctx, `DELETE FROM simulations WHERE encoder_id = ? AND kind = ?`, encoderID, kind)
	return err
}

func nullJSON(b json.RawMessage) sql.NullString {
	if b == nil {
		return sql.NullString{}
	}
	return sql.NullString{String: string(b), Valid: true}
}

// ClaimOpenJob returns job id if it is still open, locked for the rest of
// the transaction, so that of several instances sweeping at once one
// works on it and the others pass it by (ok false) instead of waiting.
// Call it inside Update.
func (t *Tx) ClaimOpenJob(ctx context.Context, id string) (j Job, ok bool, err error) {
	j, err = scanJob(t.queryRow(ctx, `SELECT `+jobCols+` FROM jobs WHERE id = ? AND closed_at IS NULL`+t.skipLocked(), id))
	if errors.Is(err, ErrNotFound) {
		return j, false, nil
	}
	return j, err == nil, err
}

// skipLocked is the clause that locks the rows a SELECT returns and skips
// those another transaction holds; empty where transactions lock the
// whole database (SQLite).
func (t *Tx) skipLocked() string {
	if t.inTx && t.d.rowLocks {
		return " FOR UPDATE SKIP LOCKED"
	}
	return ""
}
