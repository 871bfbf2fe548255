// Package store keeps the cloud's state: workspaces, API keys, bridges,
// encoders, credentials, action attempts and the jobs behind them,
// events, webhooks and the outbox of webhook deliveries (events.go), in
// SQLite (modernc.org/sqlite, pure Go; one file, one process, the
// default) or in PostgreSQL (github.com/jackc/pgx/v5, shared by several
// instances). Open picks the backend from what it is given: a
// postgres:// or postgresql:// URL, or a file path.
//
// Both backends run the same code: every Tx method is one code path over
// database/sql, and a small dialect covers what differs (placeholders,
// the schema's types, schema versioning and its lock, row locks, case-
// insensitive LIKE, JSON lists). One shared test suite runs against both.
// An interface with a type per backend was the alternative; it would
// have doubled every query for differences that fit in a few fields.
//
// On SQLite every change is committed with synchronous=FULL in WAL mode,
// so a cloud that stops, crashes or loses power restarts with every
// acknowledged request; writers are serialised (one connection,
// immediate transactions). On PostgreSQL transactions run at READ
// COMMITTED, and every read-modify-write is made safe against other
// instances where it happens: counters and conditional changes are one
// UPDATE (... RETURNING) that waits for the row lock and re-checks its
// condition, and a read that decides a later write locks its row first
// (EncoderRecords, Simulation). A transaction that PostgreSQL aborts as a
// deadlock or serialisation failure is run again by Update.
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
)

// ErrNotFound is returned when a row does not exist (in that workspace).
var ErrNotFound = errors.New("store: not found")

// ErrDamaged is a row whose stored JSON does not decode: it is reported,
// never read as empty.
var ErrDamaged = errors.New("store: damaged row")

// ErrBadDSN is a database name Open cannot use.
var ErrBadDSN = errors.New("store: bad database name")

// Store is an open database.
type Store struct {
	db *sql.DB
	d  *dialect
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
	q    dbtx
	d    *dialect
	inTx bool
}

// Open opens the database named by dsn and brings its schema up to date:
// a postgres:// or postgresql:// URL is a PostgreSQL database (which must
// exist); anything else is the path of a SQLite file, created if missing.
func Open(ctx context.Context, dsn string) (*Store, error) {
	if dsn == "" {
		return nil, fmt.Errorf("%w: none given", ErrBadDSN)
	}
	if IsPostgres(dsn) {
		return openPostgres(ctx, dsn)
	}
	return openSQLite(ctx, dsn)
}

// IsPostgres reports whether dsn names a PostgreSQL database.
func IsPostgres(dsn string) bool {
	lower := strings.ToLower(dsn)
	return strings.HasPrefix(lower, "postgres://") || strings.HasPrefix(lower, "postgresql://")
}

// Backend is "sqlite" or "postgres".
func (s *Store) Backend() string { return s.d.name }

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	return s.d.scrub(s.db.QueryRowContext(ctx, "SELECT 1").Scan(&one))
}

// Q runs statements outside a transaction, each on its own.
func (s *Store) Q() *Tx { return &Tx{q: s.db, d: s.d} }

// maxAttempts bounds how often Update runs a transaction that PostgreSQL
// aborted to break a deadlock or a serialisation conflict.
const maxAttempts = 5

// Update runs fn in a transaction and commits it if fn returns nil.
//
// fn may run more than once (PostgreSQL aborts one of two transactions
// that deadlock; Update runs it again): it must set everything it
// reports on each run, and do nothing outside the transaction.
func (s *Store) Update(ctx context.Context, fn func(*Tx) error) error {
	var err error
	for attempt := 1; ; attempt++ {
		err = s.update(ctx, fn)
		if err == nil || attempt == maxAttempts || !s.d.retryable(err) || ctx.Err() != nil {
			return err
		}
		// Apart, so the two that collided do not collide again.
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(attempt) * 5 * time.Millisecond):
		}
	}
}

func (s *Store) update(ctx context.Context, fn func(*Tx) error) error {
	tx, err := s.db.BeginTx(ctx, s.d.txOptions)
	if err != nil {
		return fmt.Errorf("store: begin transaction: %w", s.d.scrub(err))
	}
	if err := fn(&Tx{q: tx, d: s.d, inTx: true}); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: commit: %w", s.d.scrub(err))
	}
	return nil
}

// exec, query and queryRow run a statement written with ? placeholders in
// the backend's dialect.
func (t *Tx) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	res, err := t.q.ExecContext(ctx, t.d.rebind(query), args...)
	return res, t.d.scrub(err)
}

func (t *Tx) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	rows, err := t.q.QueryContext(ctx, t.d.rebind(query), args...)
	return rows, t.d.scrub(err)
}

func (t *Tx) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	return t.q.QueryRowContext(ctx, t.d.rebind(query), args...)
}

// forUpdate is the suffix that locks the rows a SELECT reads until the
// transaction ends, where the backend has row locks.
func (t *Tx) forUpdate() string {
	if t.inTx && t.d.rowLocks {
		return " FOR UPDATE"
	}
	return ""
}

// lockRow locks one row of table by id until the transaction ends (on
// SQLite the transaction already holds the database's write lock). The
// lock is the one an UPDATE takes (NO KEY UPDATE): it waits for other
// writers of the row, not for inserts whose foreign key points to it.
func (t *Tx) lockRow(ctx context.Context, table, id string) error {
	if !t.inTx || !t.d.rowLocks {
		return nil
	}
	var one int
	err := t.queryRow(ctx, `SELECT 1 FROM `+table+` WHERE id = ? FOR NO KEY UPDATE`, id).Scan(&one)
	return notFound(t.d.scrub(err))
}

// migrate applies the migrations this database lacks, in one transaction
// that holds the backend's migration lock.
func (s *Store) migrate(ctx context.Context) error {
	sqlTx, err := s.db.BeginTx(ctx, s.d.txOptions)
	if err != nil {
		return err // the first connection: its error says it all
	}
	defer func() { _ = sqlTx.Rollback() }() // after Commit, a no-op
	tx := &Tx{q: sqlTx, d: s.d, inTx: true}
	v, err := s.d.lockSchema(ctx, tx)
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if v > len(migrations) {
		return fmt.Errorf("schema version %d is newer than this build (%d): refusing to touch it", v, len(migrations))
	}
	for i := v; i < len(migrations); i++ {
		if _, err := tx.exec(ctx, s.d.migration(migrations[i])); err != nil {
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
		if err := s.d.setSchemaVersion(ctx, tx, i+1); err != nil {
			return fmt.Errorf("write schema version: %w", err)
		}
	}
	if err := sqlTx.Commit(); err != nil {
		return fmt.Errorf("commit migrations: %w", err)
	}
	return nil
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
