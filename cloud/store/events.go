package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Event is a Seam event of a workspace. Body is the event as Seam shapes
// it, rendered once when it is recorded and sent as is.
type Event struct {
	ID          string
	WorkspaceID string
	// Seq orders a workspace's events; RecordEvent assigns it.
	Seq             int64
	Type            string
	AcsEncoderID    string
	AcsCredentialID string
	AccessMethodID  string
	Body            json.RawMessage
	OccurredAt      time.Time
	CreatedAt       time.Time
}

// Webhook is an endpoint that receives a workspace's events.
type Webhook struct {
	ID          string
	WorkspaceID string
	URL         string
	// EventTypes are the types it receives; "*" is every type.
	EventTypes []string
	// Secret signs the deliveries ("whsec_" and base64). Never logged.
	Secret    string
	CreatedAt time.Time
}

// Receives reports whether a webhook subscribed to events of type typ.
func (w Webhook) Receives(typ string) bool {
	return slices.Contains(w.EventTypes, "*") || slices.Contains(w.EventTypes, typ)
}

// Delivery is one event to post to one webhook: a row of the outbox.
type Delivery struct {
	WebhookID   string
	EventID     string
	WorkspaceID string
	Seq         int64
	// Attempts counts the posts made so far.
	Attempts   int
	NextAt     time.Time
	LeaseOwner string
	LeaseUntil time.Time
	// LastStatus is the HTTP status of the last attempt (0: no answer);
	// LastError says why it failed.
	LastStatus  int
	LastError   string
	CreatedAt   time.Time
	DeliveredAt *time.Time
	// FailedAt is when delivery was given up.
	FailedAt *time.Time
}

// LockCredential locks a credential's row until the transaction ends, so
// that what the caller reads of it (was it issued?) still holds when it
// records the event that depends on it. A no-op outside a transaction
// and on SQLite, whose transactions hold the write lock.
func (t *Tx) LockCredential(ctx context.Context, id string) error {
	return t.lockRow(ctx, "credentials", id)
}

// RecordEvent stores e with the workspace's next sequence number and puts
// one delivery in the outbox for each webhook of the workspace that
// receives its type, all in the caller's transaction: the event exists
// exactly when the change it reports does.
func (t *Tx) RecordEvent(ctx context.Context, e Event) (Event, error) {
	err := t.queryRow(ctx, `UPDATE workspaces SET next_event_seq = next_event_seq + 1
		WHERE id = ? RETURNING next_event_seq - 1`, e.WorkspaceID).Scan(&e.Seq)
	if err != nil {
		return Event{}, fmt.Errorf("store: record event: %w", notFound(err))
	}
	_, err = t.exec(ctx, `INSERT INTO events (`+eventCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		e.ID, e.WorkspaceID, e.Seq, e.Type, e.AcsEncoderID, e.AcsCredentialID, e.AccessMethodID, string(e.Body),
		ms(e.OccurredAt), ms(e.CreatedAt))
	if err != nil {
		return Event{}, fmt.Errorf("store: record event: %w", err)
	}
	hooks, err := t.Webhooks(ctx, e.WorkspaceID)
	if err != nil {
		return Event{}, fmt.Errorf("store: record event: %w", err)
	}
	for _, w := range hooks {
		if !w.Receives(e.Type) {
			continue
		}
		_, err := t.exec(ctx, `INSERT INTO deliveries (webhook_id, event_id, workspace_id, seq, next_at, created_at)
			VALUES (?, ?, ?, ?, ?, ?)`, w.ID, e.ID, e.WorkspaceID, e.Seq, ms(e.CreatedAt), ms(e.CreatedAt))
		if err != nil {
			return Event{}, fmt.Errorf("store: record event: delivery: %w", err)
		}
	}
	return e, nil
}

const eventCols = `id, workspace_id, seq, event_type, acs_encoder_id, acs_credential_id, access_method_id, body, occurred_at, created_at`

func scanEvent(row interface{ Scan(...any) error }) (Event, error) {
	var e Event
	var body string
	var occurred, created int64
	err := row.Scan(&e.ID, &e.WorkspaceID, &e.Seq, &e.Type, &e.AcsEncoderID, &e.AcsCredentialID, &e.AccessMethodID, &body, &occurred, &created)
	if err != nil {
		return e, notFound(err)
	}
	if !json.Valid([]byte(body)) {
		return Event{}, fmt.Errorf("%w: event %s: body is not JSON", ErrDamaged, e.ID)
	}
	e.Body = json.RawMessage(body)
	e.OccurredAt, e.CreatedAt = fromMS(occurred), fromMS(created)
	return e, nil
}

// Event returns a workspace's event.
func (t *Tx) Event(ctx context.Context, workspaceID, id string) (Event, error) {
	return scanEvent(t.queryRow(ctx, `SELECT `+eventCols+` FROM events WHERE id = ? AND workspace_id = ?`, id, workspaceID))
}

// EventFilter narrows ListEvents; empty fields do not filter.
type EventFilter struct {
	// After and Before bound created_at, both exclusive.
	After, Before   *time.Time
	Types           []string
	IDs             []string
	AcsEncoderID    string
	AcsCredentialID string
	AccessMethodIDs []string
	// WithSystem keeps only the events that name the workspace's access
	// system (all but access_method.*).
	WithSystem    bool
	Limit, Offset int
}

// ListEvents lists a workspace's events, newest first.
func (t *Tx) ListEvents(ctx context.Context, workspaceID string, f EventFilter) ([]Event, error) {
	var b strings.Builder
	args := []any{workspaceID}
	b.WriteString(`SELECT ` + eventCols + ` FROM events WHERE workspace_id = ?`)
	if f.After != nil {
		b.WriteString(` AND created_at > ?`)
		args = append(args, ms(*f.After))
	}
	if f.Before != nil {
		b.WriteString(` AND created_at < ?`)
		args = append(args, ms(*f.Before))
	}
	in := func(col string, vals []string) {
		if len(vals) == 0 {
			return
		}
		b.WriteString(` AND ` + inList(col, len(vals)))
		for _, v := range vals {
			args = append(args, v)
		}
	}
	in("event_type", f.Types)
	in("id", f.IDs)
	in("access_method_id", f.AccessMethodIDs)
	if f.WithSystem {
		b.WriteString(` AND event_type NOT LIKE 'access\_method.%' ESCAPE '\'`)
	}
	if f.AcsEncoderID != "" {
		b.WriteString(` AND acs_encoder_id = ?`)
		args = append(args, f.AcsEncoderID)
	}
	if f.AcsCredentialID != "" {
		b.WriteString(` AND acs_credential_id = ?`)
		args = append(args, f.AcsCredentialID)
	}
	limit := f.Limit
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	b.WriteString(` ORDER BY created_at DESC, seq DESC LIMIT ? OFFSET ?`)
	args = append(args, limit, max(f.Offset, 0))
	rows, err := t.query(ctx, b.String(), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// CreateWebhook inserts w.
func (t *Tx) CreateWebhook(ctx context.Context, w Webhook) error {
	types, _ := json.Marshal(nonNil(w.EventTypes))
	_, err := t.exec(ctx, `INSERT INTO webhooks (id, workspace_id, url, event_types, secret, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
		w.ID, w.WorkspaceID, w.URL, string(types), w.Secret, ms(w.CreatedAt))
	if err != nil {
		return fmt.Errorf("store: create webhook: %w", err)
	}
	return nil
}

const webhookCols = `id, workspace_id, url, event_types, secret, created_at`

func scanWebhook(row interface{ Scan(...any) error }) (Webhook, error) {
	var w Webhook
	var types string
	var created int64
	if err := row.Scan(&w.ID, &w.WorkspaceID, &w.URL, &types, &w.Secret, &created); err != nil {
		return w, notFound(err)
	}
	w.CreatedAt = fromMS(created)
	if err := json.Unmarshal([]byte(types), &w.EventTypes); err != nil {
		return Webhook{}, fmt.Errorf("%w: webhook %s: event_types: %v", ErrDamaged, w.ID, err)
	}
	return w, nil
}

// Webhook returns a workspace's webhook (not a deleted one).
func (t *Tx) Webhook(ctx context.Context, workspaceID, id string) (Webhook, error) {
	return scanWebhook(t.queryRow(ctx, `SELECT `+webhookCols+` FROM webhooks
		WHERE id = ? AND workspace_id = ? AND deleted_at IS NULL`, id, workspaceID))
}

// Webhooks lists a workspace's webhooks, oldest first.
func (t *Tx) Webhooks(ctx context.Context, workspaceID string) ([]Webhook, error) {
	rows, err := t.query(ctx, `SELECT `+webhookCols+` FROM webhooks WHERE workspace_id = ? AND deleted_at IS NULL
		ORDER BY created_at, id`, workspaceID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Webhook
	for rows.Next() {
		w, err := scanWebhook(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	return out, rows.Err()
}

// CountWebhooks counts a workspace's webhooks.
func (t *Tx) CountWebhooks(ctx context.Context, workspaceID string) (int, error) {
	var n int
	err := t.queryRow(ctx, `SELECT COUNT(*) FROM webhooks WHERE workspace_id = ? AND deleted_at IS NULL`, workspaceID).Scan(&n)
	return n, err
}

// UpdateWebhookTypes sets the event types a webhook receives, from the
// next event on.
func (t *Tx) UpdateWebhookTypes(ctx context.Context, workspaceID, id string, types []string) error {
	b, _ := json.Marshal(nonNil(types))
	return t.expectOne(t.exec(ctx, `UPDATE webhooks SET event_types = ? WHERE id = ? AND workspace_id = ? AND deleted_at IS NULL`,
		string(b), id, workspaceID))
}

// DeleteWebhook deletes a webhook; the deliveries it still had are given
// up. The row stays (deleted_at) for the deliveries' history.
func (t *Tx) DeleteWebhook(ctx context.Context, workspaceID, id string, at time.Time) error {
	err := t.expectOne(t.exec(ctx, `UPDATE webhooks SET deleted_at = ? WHERE id = ? AND workspace_id = ? AND deleted_at IS NULL`,
		ms(at), id, workspaceID))
	if err != nil {
		return err
	}
	_, err = t.exec(ctx, `UPDATE deliveries SET failed_at = ?, last_error = 'webhook deleted'
		WHERE webhook_id = ? AND delivered_at IS NULL AND failed_at IS NULL`, ms(at), id)
	return err
}

const deliveryCols = `webhook_id, event_id, workspace_id, seq, attempts, next_at, lease_owner, lease_until, last_status, last_error,
	created_at, delivered_at, failed_at`

// deliveryColsD is deliveryCols of the table named d in a join.
const deliveryColsD = `d.webhook_id, d.event_id, d.workspace_id, d.seq, d.attempts, d.next_at, d.lease_owner, d.lease_until,
	d.last_status, d.last_error, d.created_at, d.delivered_at, d.failed_at`

func scanDelivery(row interface{ Scan(...any) error }) (Delivery, error) {
	var d Delivery
	var next, until, created int64
	var delivered, failed sql.NullInt64
	err := row.Scan(&d.WebhookID, &d.EventID, &d.WorkspaceID, &d.Seq, &d.Attempts, &next, &d.LeaseOwner, &until, &d.LastStatus, &d.LastError,
		&created, &delivered, &failed)
	if err != nil {
		return d, notFound(err)
	}
	d.NextAt, d.LeaseUntil, d.CreatedAt = fromMS(next), fromMS(until), fromMS(created)
	d.DeliveredAt, d.FailedAt = fromNullMS(delivered), fromNullMS(failed)
	return d, nil
}

func (t *Tx) deliveries(ctx context.Context, where string, args ...any) ([]Delivery, error) {
	rows, err := t.query(ctx, `SELECT `+deliveryCols+` FROM deliveries d WHERE `+where, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Delivery
	for rows.Next() {
		d, err := scanDelivery(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// Deliveries lists a webhook's deliveries in event order.
func (t *Tx) Deliveries(ctx context.Context, webhookID string) ([]Delivery, error) {
	return t.deliveries(ctx, `webhook_id = ? ORDER BY seq`, webhookID)
}

// DueDeliveries lists up to limit deliveries that may be posted now: for
// each webhook only the oldest open one (events reach a webhook in order),
// and only if its time has come and no instance holds its lease.
func (t *Tx) DueDeliveries(ctx context.Context, now time.Time, limit int) ([]Delivery, error) {
	// Per live webhook, its head is found in the partial index
	// deliveries_open (webhook_id, seq): a long backlog behind a dead
	// receiver costs a lookup, not a scan.
	rows, err := t.query(ctx, `SELECT `+deliveryColsD+` FROM webhooks w CROSS JOIN deliveries d
		WHERE w.deleted_at IS NULL AND d.webhook_id = w.id AND d.delivered_at IS NULL AND d.failed_at IS NULL
		AND d.seq = (SELECT MIN(o.seq) FROM deliveries o WHERE o.webhook_id = w.id AND o.delivered_at IS NULL AND o.failed_at IS NULL)
		AND d.next_at <= ? AND d.lease_until <= ? ORDER BY d.next_at, d.seq LIMIT ?`, ms(now), ms(now), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Delivery
	for rows.Next() {
		d, err := scanDelivery(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// ClaimDelivery leases a due delivery to owner until until. It reports
// false if the delivery is done or another owner's lease still runs: of
// several instances claiming the same row, one wins.
func (t *Tx) ClaimDelivery(ctx context.Context, webhookID, eventID, owner string, now, until time.Time) (bool, error) {
	res, err := t.exec(ctx, `UPDATE deliveries SET lease_owner = ?, lease_until = ?
		WHERE webhook_id = ? AND event_id = ? AND delivered_at IS NULL AND failed_at IS NULL AND lease_until <= ?`,
		owner, ms(until), webhookID, eventID, ms(now))
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// DeliveryTarget returns what a claimed delivery posts: the webhook (even
// if deleted since) and the event.
func (t *Tx) DeliveryTarget(ctx context.Context, webhookID, eventID string) (Webhook, Event, error) {
	w, err := scanWebhook(t.queryRow(ctx, `SELECT `+webhookCols+` FROM webhooks WHERE id = ?`, webhookID))
	if err != nil {
		return Webhook{}, Event{}, err
	}
	e, err := scanEvent(t.queryRow(ctx, `SELECT `+eventCols+` FROM events WHERE id = ?`, eventID))
	return w, e, err
}

// Attempt is the outcome of one post of a delivery.
type Attempt struct {
	Status int
	Error  string
	At     time.Time
	// Delivered: the receiver answered 2xx. Otherwise NextAt is the next
	// try, or GiveUp ends the delivery.
	Delivered bool
	GiveUp    bool
	NextAt    time.Time
}

// RecordAttempt records a post of a delivery leased to owner and releases
// the lease. It reports false if owner no longer holds it (the lease ran
// out and another instance took the delivery): nothing is changed then.
func (t *Tx) RecordAttempt(ctx context.Context, webhookID, eventID, owner string, a Attempt) (bool, error) {
	var delivered, failed sql.NullInt64
	next := ms(a.NextAt)
	switch {
	case a.Delivered:
		delivered, next = sql.NullInt64{Int64: ms(a.At), Valid: true}, ms(a.At)
	case a.GiveUp:
		failed, next = sql.NullInt64{Int64: ms(a.At), Valid: true}, ms(a.At)
	}
	res, err := t.exec(ctx, `UPDATE deliveries SET attempts = attempts + 1, last_status = ?, last_error = ?, next_at = ?,
		delivered_at = ?, failed_at = ?, lease_owner = '', lease_until = 0
		WHERE webhook_id = ? AND event_id = ? AND lease_owner = ? AND delivered_at IS NULL AND failed_at IS NULL`,
		a.Status, a.Error, next, delivered, failed, webhookID, eventID, owner)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}
