// Package store keeps the cloud's state in SQLite (modernc.org/sqlite, pure
// Go): workspaces, API keys, bridges, encoders, credentials, action
// attempts and the jobs behind them. Every change is committed with
// synchronous=FULL in WAL mode, so a cloud that stops, crashes or loses
// power restarts with every acknowledged request.
//
// Every lookup that serves the HTTP API takes the workspace id, so a query
// can never return another workspace's row.
//
// It must not import api, hub, jobs or the cloud package: they use it.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// ErrNotFound is returned when a row does not exist (in that workspace).
var ErrNotFound = errors.New("store: not found")

// ErrDamaged is a row whose stored JSON does not decode: it is reported,
// never read as empty.
var ErrDamaged = errors.New("store: damaged row")

// Store is an open database.
type Store struct {
	db *sql.DB
}

// dbtx is what *sql.DB and *sql.Tx have in common.
type dbtx interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Tx runs queries, inside a transaction (Update) or one statement at a
// time (Q).
type Tx struct {
	q dbtx
}

// Open opens or creates the database at path and brings its schema up to
// date.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("store: no database path")
	}
	if strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("store: database path %q must not contain '?' or '#'", path)
	}
	// busy_timeout first so the pragmas that write wait for another
	// process (the CLI beside a running server) instead of failing.
	// txlock=immediate: every transaction takes the write lock when it
	// starts, so two writers never deadlock upgrading a read lock.
	dsn := path + "?_busy_timeout=10000&_journal_mode=WAL&_synchronous=FULL&_foreign_keys=1&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	// One connection: SQLite serialises writers anyway, and one
	// connection cannot deadlock against itself or see SQLITE_BUSY from
	// its own process.
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	s := &Store{db: db}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: %s: %w", path, err)
	}
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	return s.db.QueryRowContext(ctx, "SELECT 1").Scan(&one)
}

// Q runs statements outside a transaction, each on its own.
func (s *Store) Q() *Tx { return &Tx{q: s.db} }

// Update runs fn in a transaction and commits it if fn returns nil.
func (s *Store) Update(ctx context.Context, fn func(*Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: begin: %w", err)
	}
	if err := fn(&Tx{q: tx}); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	return nil
}

// migrations are applied in order; PRAGMA user_version counts the applied
// ones. Never edit a released migration: append a new one.
var migrations = []string{
	// 1: the first schema. Times are Unix milliseconds, UTC.
	`
CREATE TABLE workspaces (
	id                   TEXT PRIMARY KEY,
	name                 TEXT NOT NULL,
	acs_system_id        TEXT NOT NULL UNIQUE,
	connected_account_id TEXT NOT NULL UNIQUE,
	is_sandbox           INTEGER NOT NULL DEFAULT 0,
	created_at           INTEGER NOT NULL,
	next_card_number     INTEGER NOT NULL DEFAULT 100001,
	next_issue_sequence  INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE api_keys (
	id           TEXT PRIMARY KEY,
	workspace_id TEXT NOT NULL REFERENCES workspaces(id),
	hash         BLOB NOT NULL,
	created_at   INTEGER NOT NULL,
	revoked_at   INTEGER
);
CREATE TABLE bridges (
	id               TEXT PRIMARY KEY,
	workspace_id     TEXT NOT NULL REFERENCES workspaces(id),
	name             TEXT NOT NULL,
	token_id         TEXT NOT NULL UNIQUE,
	token_hash       BLOB NOT NULL,
	created_at       INTEGER NOT NULL,
	revoked_at       INTEGER,
	last_seen_at     INTEGER,
	software_version TEXT NOT NULL DEFAULT ''
);
CREATE TABLE encoders (
	id           TEXT PRIMARY KEY,
	workspace_id TEXT NOT NULL REFERENCES workspaces(id),
	bridge_id    TEXT NOT NULL REFERENCES bridges(id),
	protocol_id  TEXT NOT NULL,
	display_name TEXT NOT NULL,
	reader_name  TEXT NOT NULL,
	technologies TEXT NOT NULL DEFAULT '[]',
	created_at   INTEGER NOT NULL,
	removed_at   INTEGER,
	UNIQUE (bridge_id, protocol_id)
);
CREATE INDEX encoders_by_workspace ON encoders(workspace_id, created_at, id);
CREATE TABLE credentials (
	id                 TEXT PRIMARY KEY,
	workspace_id       TEXT NOT NULL REFERENCES workspaces(id),
	access_method_id   TEXT NOT NULL UNIQUE,
	acs_user_id        TEXT NOT NULL DEFAULT '',
	user_identity_id   TEXT NOT NULL DEFAULT '',
	card_number        TEXT NOT NULL,
	card_function_type TEXT NOT NULL,
	starts_at          INTEGER NOT NULL,
	ends_at            INTEGER NOT NULL,
	entrance_ids       TEXT NOT NULL DEFAULT '[]',
	issue_sequence     INTEGER NOT NULL,
	is_issued          INTEGER NOT NULL DEFAULT 0,
	issued_at          INTEGER,
	card_uid           TEXT NOT NULL DEFAULT '',
	card_technology    TEXT NOT NULL DEFAULT '',
	key_version        INTEGER NOT NULL DEFAULT 0,
	encode_jobs        INTEGER NOT NULL DEFAULT 0,
	created_at         INTEGER NOT NULL
);
CREATE INDEX credentials_by_workspace ON credentials(workspace_id, created_at, id);
CREATE TABLE action_attempts (
	id            TEXT PRIMARY KEY,
	workspace_id  TEXT NOT NULL REFERENCES workspaces(id),
	action_type   TEXT NOT NULL,
	status        TEXT NOT NULL,
	result        TEXT,
	error_type    TEXT NOT NULL DEFAULT '',
	error_message TEXT NOT NULL DEFAULT '',
	created_at    INTEGER NOT NULL,
	updated_at    INTEGER NOT NULL
);
CREATE TABLE jobs (
	id                TEXT PRIMARY KEY,
	action_attempt_id TEXT NOT NULL UNIQUE REFERENCES action_attempts(id),
	workspace_id      TEXT NOT NULL REFERENCES workspaces(id),
	bridge_id         TEXT NOT NULL REFERENCES bridges(id),
	encoder_id        TEXT NOT NULL REFERENCES encoders(id),
	kind              TEXT NOT NULL,
	credential_id     TEXT NOT NULL DEFAULT '',
	issue_sequence    INTEGER NOT NULL DEFAULT 0,
	assign_to         TEXT NOT NULL DEFAULT '',
	payload           TEXT NOT NULL,
	deadline          INTEGER NOT NULL,
	created_at        INTEGER NOT NULL,
	sent_at           INTEGER,
	acked_at          INTEGER,
	stage             TEXT NOT NULL DEFAULT '',
	stage_at          INTEGER,
	result            TEXT,
	result_at         INTEGER,
	closed_at         INTEGER
);
CREATE INDEX jobs_open_by_bridge ON jobs(bridge_id) WHERE closed_at IS NULL;
CREATE INDEX jobs_open_by_deadline ON jobs(deadline) WHERE closed_at IS NULL;
CREATE TABLE simulations (
	encoder_id TEXT NOT NULL REFERENCES encoders(id),
	kind       TEXT NOT NULL,
	outcome    TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	PRIMARY KEY (encoder_id, kind)
);
`,
	// 2: when a bridge last reported its job journal damaged and reset.
	`
ALTER TABLE bridges ADD COLUMN journal_reset_at INTEGER;
ALTER TABLE bridges ADD COLUMN journal_reset_reason TEXT NOT NULL DEFAULT '';
`,
}

// SchemaVersion is the schema version this build writes.
var SchemaVersion = len(migrations)

func (s *Store) migrate(ctx context.Context) error {
	return s.Update(ctx, func(tx *Tx) error {
		var v int
		if err := tx.q.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		if v > len(migrations) {
			return fmt.Errorf("schema version %d is newer than this build (%d): refusing to touch it", v, len(migrations))
		}
		for i := v; i < len(migrations); i++ {
			if _, err := tx.q.ExecContext(ctx, migrations[i]); err != nil {
				return fmt.Errorf("migration %d: %w", i+1, err)
			}
		}
		if v != len(migrations) {
			// PRAGMA takes no bound parameters; the value is ours.
			if _, err := tx.q.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", len(migrations))); err != nil {
				return fmt.Errorf("write schema version: %w", err)
			}
		}
		return nil
	})
}

// ms stores a time as Unix milliseconds.
func ms(t time.Time) int64 { return t.UnixMilli() }

// fromMS reads a stored time.
func fromMS(v int64) time.Time { return time.UnixMilli(v).UTC() }

func nullMS(t *time.Time) sql.NullInt64 {
	if t == nil {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: ms(*t), Valid: true}
}

func fromNullMS(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMS(v.Int64)
	return &t
}

func notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	return err
}
