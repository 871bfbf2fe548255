package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"
)

// Workspace is a tenant: one property (hotel) with one access control
// system and one connected account, as Seam models them.
type Workspace struct {
	ID                 string
	Name               string
	AcsSystemID        string
	ConnectedAccountID string
	IsSandbox          bool
	CreatedAt          time.Time
}

// APIKey is a stored API key: only its hash.
type APIKey struct {
	ID          string
	WorkspaceID string
	Hash        []byte
	CreatedAt   time.Time
	RevokedAt   *time.Time
}

// Bridge is a front-desk bridge and its token's hash.
type Bridge struct {
	ID              string
	WorkspaceID     string
	Name            string
	TokenID         string
	TokenHash       []byte
	CreatedAt       time.Time
	RevokedAt       *time.Time
	LastSeenAt      *time.Time
	SoftwareVersion string
	// JournalResetAt is when the bridge last reported (hello.journal_reset)
	// that its job journal was damaged and started over, on the cloud's
	// clock; JournalResetReason is the bridge's reason.
	JournalResetAt     *time.Time
	JournalResetReason string
}

// CreateWorkspace inserts w.
func (t *Tx) CreateWorkspace(ctx context.Context, w Workspace) error {
	_, err := t.exec(ctx, `INSERT INTO workspaces (id, name, acs_system_id, connected_account_id, is_sandbox, created_at)
		VALUES (?, ?, ?, ?, ?, ?)`, w.ID, w.Name, w.AcsSystemID, w.ConnectedAccountID, w.IsSandbox, ms(w.CreatedAt))
	if err != nil {
		return fmt.Errorf("store: create workspace: %w", err)
	}
	return nil
}

const workspaceCols = `id, name, acs_system_id, connected_account_id, is_sandbox, created_at`

func scanWorkspace(row interface{ Scan(...any) error }) (Workspace, error) {
	var w Workspace
	var created int64
	err := row.Scan(&w.ID, &w.Name, &w.AcsSystemID, &w.ConnectedAccountID, &w.IsSandbox, &created)
	w.CreatedAt = fromMS(created)
	return w, notFound(err)
}

// Workspace returns a workspace by id.
func (t *Tx) Workspace(ctx context.Context, id string) (Workspace, error) {
	return scanWorkspace(t.queryRow(ctx, `SELECT `+workspaceCols+` FROM workspaces WHERE id = ?`, id))
}

// Workspaces lists every workspace, oldest first.
func (t *Tx) Workspaces(ctx context.Context) ([]Workspace, error) {
	rows, err := t.query(ctx, `SELECT `+workspaceCols+` FROM workspaces ORDER BY created_at, id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Workspace
	for rows.Next() {
		w, err := scanWorkspace(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	return out, rows.Err()
}

// NextCardNumber hands out the workspace's next card number.
//
// One UPDATE ... RETURNING: the row lock it takes makes concurrent callers,
// on any instance, wait for each other's commit and get distinct numbers.
func (t *Tx) NextCardNumber(ctx context.Context, workspaceID string) (int64, error) {
	var n int64
	err := t.queryRow(ctx, `UPDATE workspaces SET next_card_number = next_card_number + 1
		WHERE id = ? RETURNING next_card_number - 1`, workspaceID).Scan(&n)
	return n, notFound(err)
}

// NextIssueSequence hands out the workspace's next issue sequence. The
// sequence grows across the whole workspace, so a new card always carries a
// higher sequence than every card issued before it for any entrance.
func (t *Tx) NextIssueSequence(ctx context.Context, workspaceID string) (uint32, error) {
	var n int64
	err := t.queryRow(ctx, `UPDATE workspaces SET next_issue_sequence = next_issue_sequence + 1
		WHERE id = ? RETURNING next_issue_sequence - 1`, workspaceID).Scan(&n)
	if err != nil {
		return 0, notFound(err)
	}
	if n <= 0 || n > 1<<32-1 {
		return 0, fmt.Errorf("store: workspace %s has used every issue sequence", workspaceID)
	}
	return uint32(n), nil
}

// CreateAPIKey inserts k.
func (t *Tx) CreateAPIKey(ctx context.Context, k APIKey) error {
	_, err := t.exec(ctx, `INSERT INTO api_keys (id, workspace_id, hash, created_at) VALUES (?, ?, ?, ?)`,
		k.ID, k.WorkspaceID, k.Hash, ms(k.CreatedAt))
	if err != nil {
		return fmt.Errorf("store: create api key: %w", err)
	}
	return nil
}

// APIKey returns a key by its public id.
func (t *Tx) APIKey(ctx context.Context, id string) (APIKey, error) {
	var k APIKey
	var created int64
	var revoked sql.NullInt64
	err := t.queryRow(ctx, `SELECT id, workspace_id, hash, created_at, revoked_at FROM api_keys WHERE id = ?`, id).
		Scan(&k.ID, &k.WorkspaceID, &k.Hash, &created, &revoked)
	k.CreatedAt, k.RevokedAt = fromMS(created), fromNullMS(revoked)
	return k, notFound(err)
}

// RevokeAPIKey revokes a key.
func (t *Tx) RevokeAPIKey(ctx context.Context, id string, at time.Time) error {
	return t.expectOne(t.exec(ctx, `UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL`, ms(at), id))
}

// CreateBridge inserts b.
func (t *Tx) CreateBridge(ctx context.Context, b Bridge) error {
	_, err := t.exec(ctx, `INSERT INTO bridges (id, workspace_id, name, token_id, token_hash, created_at)
		VALUES (?, ?, ?, ?, ?, ?)`, b.ID, b.WorkspaceID, b.Name, b.TokenID, b.TokenHash, ms(b.CreatedAt))
	if err != nil {
		return fmt.Errorf("store: create bridge: %w", err)
	}
	return nil
}

const bridgeCols = `id, workspace_id, name, token_id, token_hash, created_at, revoked_at, last_seen_at, software_version,
	journal_reset_at, journal_reset_reason`

func scanBridge(row interface{ Scan(...any) error }) (Bridge, error) {
	var b Bridge
	var created int64
	var revoked, seen, reset sql.NullInt64
	err := row.Scan(&b.ID, &b.WorkspaceID, &b.Name, &b.TokenID, &b.TokenHash, &created, &revoked, &seen, &b.SoftwareVersion,
		&reset, &b.JournalResetReason)
	b.CreatedAt, b.RevokedAt, b.LastSeenAt, b.JournalResetAt = fromMS(created), fromNullMS(revoked), fromNullMS(seen), fromNullMS(reset)
	return b, notFound(err)
}

// Bridge returns a bridge by id.
func (t *Tx) Bridge(ctx context.Context, id string) (Bridge, error) {
	return scanBridge(t.queryRow(ctx, `SELECT `+bridgeCols+` FROM bridges WHERE id = ?`, id))
}

// BridgeByToken returns the bridge whose token has the public id tokenID.
func (t *Tx) BridgeByToken(ctx context.Context, tokenID string) (Bridge, error) {
	return scanBridge(t.queryRow(ctx, `SELECT `+bridgeCols+` FROM bridges WHERE token_id = ?`, tokenID))
}

// Bridges lists a workspace's bridges, oldest first.
func (t *Tx) Bridges(ctx context.Context, workspaceID string) ([]Bridge, error) {
	rows, err := t.query(ctx, `SELECT `+bridgeCols+` FROM bridges WHERE workspace_id = ? ORDER BY created_at, id`, workspaceID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Bridge
	for rows.Next() {
		b, err := scanBridge(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

// RevokeBridge revokes a bridge's token.
func (t *Tx) RevokeBridge(ctx context.Context, id string, at time.Time) error {
	return t.expectOne(t.exec(ctx, `UPDATE bridges SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL`, ms(at), id))
}

// RevokedBridges returns those of the bridges ids whose token is revoked.
func (t *Tx) RevokedBridges(ctx context.Context, ids []string) ([]string, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	list, err := json.Marshal(ids)
	if err != nil {
		return nil, err
	}
	// One JSON parameter, not one per id: a server holds thousands.
	rows, err := t.query(ctx, `SELECT id FROM bridges WHERE revoked_at IS NOT NULL AND id IN (SELECT value FROM `+t.d.jsonTextArray+`)`, string(list))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

// EncoderRecords counts the encoders a bridge has on record, removed ones
// included, and tells whether the encoder id is one of them.
//
// In a transaction (Update) it first locks the bridge's row, so that the
// count still holds when the caller inserts: two links of one bridge, on
// this instance or another, never both take the last place.
func (t *Tx) EncoderRecords(ctx context.Context, bridgeID, id string) (n int, known bool, err error) {
	if t.inTx {
		if err := t.lockRow(ctx, "bridges", bridgeID); err != nil {
			return 0, false, err
		}
	}
	err = t.queryRow(ctx, `SELECT COUNT(*), COUNT(CASE WHEN id = ? THEN 1 END) > 0 FROM encoders WHERE bridge_id = ?`, id, bridgeID).Scan(&n, &known)
	return n, known, err
}

// TouchBridge records that a bridge said hello.
func (t *Tx) TouchBridge(ctx context.Context, id string, at time.Time, softwareVersion string) error {
	_, err := t.exec(ctx, `UPDATE bridges SET last_seen_at = ?, software_version = ? WHERE id = ?`, ms(at), softwareVersion, id)
	return err
}

// RecordJournalReset records that a bridge reported its job journal
// damaged and started over.
func (t *Tx) RecordJournalReset(ctx context.Context, id string, at time.Time, reason string) error {
	_, err := t.exec(ctx, `UPDATE bridges SET journal_reset_at = ?, journal_reset_reason = ? WHERE id = ?`, ms(at), reason, id)
	return err
}

// SeenBridge records when a bridge was last heard from.
func (t *Tx) SeenBridge(ctx context.Context, id string, at time.Time) error {
	_, err := t.exec(ctx, `UPDATE bridges SET last_seen_at = ? WHERE id = ?`, ms(at), id)
	return err
}

func (t *Tx) expectOne(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}
