package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Encoder is a card encoder (a reader) on a bridge. Its ID is derived from
// the bridge id and the bridge's own encoder id, so it survives reconnects.
type Encoder struct {
	ID           string
	WorkspaceID  string
	BridgeID     string
	ProtocolID   string // the bridge's id for it
	DisplayName  string
	ReaderName   string
	Technologies []string
	CreatedAt    time.Time
	// RemovedAt is set while the bridge reports the reader gone.
	RemovedAt *time.Time
}

// Credential is a card credential.
type Credential struct {
	ID               string
	WorkspaceID      string
	AccessMethodID   string
	AcsUserID        string
	UserIdentityID   string
	CardNumber       string
	CardFunctionType string
	StartsAt         time.Time
	EndsAt           time.Time
	EntranceIDs      []string
	// IssueSequence is the sequence of the card the credential is on
	// (IsIssued), or the one its first card will get.
	IssueSequence  uint32
	IsIssued       bool
	IssuedAt       *time.Time
	CardUID        string
	CardTechnology string
	KeyVersion     int
	// EncodeJobs counts the encode jobs started for it.
	EncodeJobs int
	CreatedAt  time.Time
}

// Page selects a page of a list ordered by creation time then id.
type Page struct {
	Limit int
	// After is the last row of the previous page; nil for the first.
	After *Cursor
}

// Cursor is a position in a list.
type Cursor struct {
	CreatedAt int64  `json:"t"`
	ID        string `json:"i"`
}

// queryPage finishes a list query whose WHERE clause is in b: it adds the
// page's cursor, orders, fetches one row more than the page to learn
// whether another follows, and scans the rows.
func queryPage[T any](ctx context.Context, t *Tx, b *strings.Builder, args []any, p Page, scan func(interface{ Scan(...any) error }) (T, error)) (out []T, more bool, err error) {
	p.where(b, &args)
	b.WriteString(` ORDER BY created_at, id LIMIT ?`)
	args = append(args, p.limit()+1)
	rows, err := t.query(ctx, b.String(), args...)
	if err != nil {
		return nil, false, err
	}
	defer rows.Close()
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, false, err
		}
		out = append(out, v)
	}
	if len(out) > p.limit() {
		return out[:p.limit()], true, rows.Err()
	}
	return out, false, rows.Err()
}

func (p Page) where(b *strings.Builder, args *[]any) {
	if p.After != nil {
		b.WriteString(` AND (created_at > ? OR (created_at = ? AND id > ?))`)
		*args = append(*args, p.After.CreatedAt, p.After.CreatedAt, p.After.ID)
	}
}

func (p Page) limit() int {
	if p.Limit <= 0 || p.Limit > 1000 {
		return 1000
	}
	return p.Limit
}

func inList(col string, n int) string {
	return col + " IN (" + strings.TrimSuffix(strings.Repeat("?,", n), ",") + ")"
}

const encoderCols = `id, workspace_id, bridge_id, protocol_id, display_name, reader_name, technologies, created_at, removed_at`

func scanEncoder(row interface{ Scan(...any) error }) (Encoder, error) {
	var e Encoder
	var techs string
	var created int64
	var removed sql.NullInt64
	err := row.Scan(&e.ID, &e.WorkspaceID, &e.BridgeID, &e.ProtocolID, &e.DisplayName, &e.ReaderName, &techs, &created, &removed)
	if err != nil {
		return e, notFound(err)
	}
	e.CreatedAt, e.RemovedAt = fromMS(created), fromNullMS(removed)
	if err := json.Unmarshal([]byte(techs), &e.Technologies); err != nil {
		return Encoder{}, fmt.Errorf("%w: encoder %s: technologies: %v", ErrDamaged, e.ID, err)
	}
	return e, nil
}

// UpsertEncoder inserts e, or updates the encoder with e's id (its names
// and technologies) and clears its removal. It returns the stored row.
func (t *Tx) UpsertEncoder(ctx context.Context, e Encoder) (Encoder, error) {
	techs, _ := json.Marshal(nonNil(e.Technologies))
	_, err := t.exec(ctx, `INSERT INTO encoders (`+encoderCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)
		ON CONFLICT (id) DO UPDATE SET display_name = excluded.display_name, reader_name = excluded.reader_name,
			technologies = excluded.technologies, removed_at = NULL`,
		e.ID, e.WorkspaceID, e.BridgeID, e.ProtocolID, e.DisplayName, e.ReaderName, string(techs), ms(e.CreatedAt))
	if err != nil {
		return Encoder{}, fmt.Errorf("store: upsert encoder: %w", err)
	}
	return scanEncoder(t.queryRow(ctx, `SELECT `+encoderCols+` FROM encoders WHERE id = ?`, e.ID))
}

// RemoveEncoder marks a bridge's encoder as removed (unplugged). It
// returns the encoder and whether this call removed it (false: it was
// removed already). Of two instances removing it at once, one does.
func (t *Tx) RemoveEncoder(ctx context.Context, bridgeID, protocolID string, at time.Time) (Encoder, bool, error) {
	e, err := scanEncoder(t.queryRow(ctx, `UPDATE encoders SET removed_at = ? WHERE bridge_id = ? AND protocol_id = ? AND removed_at IS NULL
		RETURNING `+encoderCols, ms(at), bridgeID, protocolID))
	if errors.Is(err, ErrNotFound) {
		e, err = scanEncoder(t.queryRow(ctx, `SELECT `+encoderCols+` FROM encoders WHERE bridge_id = ? AND protocol_id = ?`, bridgeID, protocolID))
		return e, false, err
	}
	return e, err == nil, err
}

// RemoveEncodersExcept marks every encoder of the bridge not in keep as
// removed (the bridge said hello without them) and returns those it
// marked.
func (t *Tx) RemoveEncodersExcept(ctx context.Context, bridgeID string, keep []string, at time.Time) ([]Encoder, error) {
	q := `UPDATE encoders SET removed_at = ? WHERE bridge_id = ? AND removed_at IS NULL`
	args := []any{ms(at), bridgeID}
	if len(keep) > 0 {
		q += ` AND NOT ` + inList("protocol_id", len(keep))
		for _, k := range keep {
			args = append(args, k)
		}
	}
	rows, err := t.query(ctx, q+` RETURNING `+encoderCols, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Encoder
	for rows.Next() {
		e, err := scanEncoder(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// Encoder returns a workspace's encoder.
func (t *Tx) Encoder(ctx context.Context, workspaceID, id string) (Encoder, error) {
	return scanEncoder(t.queryRow(ctx, `SELECT `+encoderCols+` FROM encoders WHERE id = ? AND workspace_id = ?`, id, workspaceID))
}

// EncoderFilter narrows ListEncoders; empty fields do not filter.
type EncoderFilter struct {
	IDs []string
}

// ListEncoders lists a workspace's encoders, oldest first. more reports
// whether another page follows.
func (t *Tx) ListEncoders(ctx context.Context, workspaceID string, f EncoderFilter, p Page) (out []Encoder, more bool, err error) {
	var b strings.Builder
	args := []any{workspaceID}
	b.WriteString(`SELECT ` + encoderCols + ` FROM encoders WHERE workspace_id = ?`)
	if f.IDs != nil {
		if len(f.IDs) == 0 {
			return nil, false, nil
		}
		b.WriteString(` AND ` + inList("id", len(f.IDs)))
		for _, id := range f.IDs {
			args = append(args, id)
		}
	}
	return queryPage(ctx, t, &b, args, p, scanEncoder)
}

// CreateCredential inserts c.
func (t *Tx) CreateCredential(ctx context.Context, c Credential) error {
	ents, _ := json.Marshal(nonNil(c.EntranceIDs))
	_, err := t.exec(ctx, `INSERT INTO credentials (id, workspace_id, access_method_id, acs_user_id, user_identity_id,
		card_number, card_function_type, starts_at, ends_at, entrance_ids, issue_sequence, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		c.ID, c.WorkspaceID, c.AccessMethodID, c.AcsUserID, c.UserIdentityID, c.CardNumber, c.CardFunctionType,
		ms(c.StartsAt), ms(c.EndsAt), string(ents), int64(c.IssueSequence), ms(c.CreatedAt))
	if err != nil {
		return fmt.Errorf("store: create credential: %w", err)
	}
	return nil
}

const credentialCols = `id, workspace_id, access_method_id, acs_user_id, user_identity_id, card_number, card_function_type,
	starts_at, ends_at, entrance_ids, issue_sequence, is_issued, issued_at, card_uid, card_technology, key_version, encode_jobs, created_at`

func scanCredential(row interface{ Scan(...any) error }) (Credential, error) {
	var c Credential
	var starts, ends, created, seq int64
	var ents string
	var issued sql.NullInt64
	err := row.Scan(&c.ID, &c.WorkspaceID, &c.AccessMethodID, &c.AcsUserID, &c.UserIdentityID, &c.CardNumber, &c.CardFunctionType,
		&starts, &ends, &ents, &seq, &c.IsIssued, &issued, &c.CardUID, &c.CardTechnology, &c.KeyVersion, &c.EncodeJobs, &created)
	if err != nil {
		return c, notFound(err)
	}
	c.StartsAt, c.EndsAt, c.CreatedAt, c.IssuedAt = fromMS(starts), fromMS(ends), fromMS(created), fromNullMS(issued)
	c.IssueSequence = uint32(seq)
	// A credential read without its entrances would be encoded as a card
	// that opens nothing, or worse, nothing the desk meant.
	if err := json.Unmarshal([]byte(ents), &c.EntranceIDs); err != nil {
		return Credential{}, fmt.Errorf("%w: credential %s: entrance_ids: %v", ErrDamaged, c.ID, err)
	}
	return c, nil
}

// Credential returns a workspace's credential.
func (t *Tx) Credential(ctx context.Context, workspaceID, id string) (Credential, error) {
	return scanCredential(t.queryRow(ctx, `SELECT `+credentialCols+` FROM credentials WHERE id = ? AND workspace_id = ?`, id, workspaceID))
}

// CredentialByAccessMethod returns the credential of a workspace's card
// access method.
func (t *Tx) CredentialByAccessMethod(ctx context.Context, workspaceID, accessMethodID string) (Credential, error) {
	return scanCredential(t.queryRow(ctx, `SELECT `+credentialCols+` FROM credentials WHERE access_method_id = ? AND workspace_id = ?`,
		accessMethodID, workspaceID))
}

// LatestCredential returns the workspace's most recently issued credential,
// or the most recently created one if none is issued.
func (t *Tx) LatestCredential(ctx context.Context, workspaceID string) (Credential, error) {
	return scanCredential(t.queryRow(ctx, `SELECT `+credentialCols+` FROM credentials WHERE workspace_id = ?
		ORDER BY is_issued DESC, COALESCE(issued_at, created_at) DESC, id DESC LIMIT 1`, workspaceID))
}

// CredentialFilter narrows ListCredentials; empty fields do not filter.
type CredentialFilter struct {
	AcsUserID      string
	UserIdentityID string
	CreatedBefore  *time.Time
	// Search matches part of the card number, display name ("Card " and
	// the number), user id or credential id.
	Search string
}

// ListCredentials lists a workspace's credentials, oldest first.
func (t *Tx) ListCredentials(ctx context.Context, workspaceID string, f CredentialFilter, p Page) (out []Credential, more bool, err error) {
	var b strings.Builder
	args := []any{workspaceID}
	b.WriteString(`SELECT ` + credentialCols + ` FROM credentials WHERE workspace_id = ?`)
	if f.AcsUserID != "" {
		b.WriteString(` AND acs_user_id = ?`)
		args = append(args, f.AcsUserID)
	}
	if f.UserIdentityID != "" {
		b.WriteString(` AND user_identity_id = ?`)
		args = append(args, f.UserIdentityID)
	}
	if f.CreatedBefore != nil {
		b.WriteString(` AND created_at < ?`)
		args = append(args, ms(*f.CreatedBefore))
	}
	if f.Search != "" {
		pattern := "%" + strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(f.Search) + "%"
		// SQLite's LIKE ignores ASCII case; PostgreSQL's ILIKE does the same.
		like := t.d.like
		b.WriteString(` AND (card_number ` + like + ` ? ESCAPE '\' OR ('Card ' || card_number) ` + like + ` ? ESCAPE '\'
			OR acs_user_id ` + like + ` ? ESCAPE '\' OR id ` + like + ` ? ESCAPE '\')`)
		args = append(args, pattern, pattern, pattern, pattern)
	}
	return queryPage(ctx, t, &b, args, p, scanCredential)
}

// CountEncodeJob counts one more encode job for a credential and returns
// how many were started before it.
func (t *Tx) CountEncodeJob(ctx context.Context, credentialID string) (before int, err error) {
	err = t.queryRow(ctx, `UPDATE credentials SET encode_jobs = encode_jobs + 1 WHERE id = ? RETURNING encode_jobs - 1`,
		credentialID).Scan(&before)
	return before, notFound(err)
}

// CardIssued is what a successful encode wrote.
type CardIssued struct {
	IssueSequence  uint32
	IssuedAt       time.Time
	CardUID        string
	CardTechnology string
	KeyVersion     int
}

// IssueCredential records that a card was written for a credential. A card
// with a lower sequence than the card already recorded (two encodes that
// finished out of order) does not replace it: locks honour the higher one.
// It reports whether the record changed.
func (t *Tx) IssueCredential(ctx context.Context, credentialID string, c CardIssued) (bool, error) {
	// One conditional UPDATE: on PostgreSQL a concurrent one waits for the
	// row lock and re-checks the condition against the committed row.
	res, err := t.exec(ctx, `UPDATE credentials SET is_issued = TRUE, issued_at = ?, issue_sequence = ?,
		card_uid = ?, card_technology = ?, key_version = ?
		WHERE id = ? AND (is_issued = FALSE OR issue_sequence <= ?)`,
		ms(c.IssuedAt), int64(c.IssueSequence), c.CardUID, c.CardTechnology, c.KeyVersion, credentialID, int64(c.IssueSequence))
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// AssignCredential sets the user a credential belongs to.
func (t *Tx) AssignCredential(ctx context.Context, credentialID, acsUserID, userIdentityID string) error {
	res, err := t.exec(ctx, `UPDATE credentials SET acs_user_id = ?, user_identity_id = ? WHERE id = ?`,
		acsUserID, userIdentityID, credentialID)
	return t.expectOne(res, err)
}
