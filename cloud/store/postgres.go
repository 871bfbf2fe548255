package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// schemaLockKey is the pg_advisory_xact_lock key that migrations hold:
// "encoderb" in ASCII. Another application on the same database would
// have to pick the same 64-bit key to be held up by it.
const schemaLockKey int64 = 0x656e636f64657262

// Pool size of one instance. Requests hold a connection only for a
// statement or a short transaction.
const (
	pgMaxConns    = 20
	pgMaxIdleTime = 5 * time.Minute
)

// secretParams are the query parameters of a PostgreSQL URL that hold a
// secret.
var secretParams = []string{"password", "sslpassword"}

// RedactDSN returns dsn fit for a log or an error: a PostgreSQL URL with
// its passwords replaced by "xxxxx"; a path as it is.
func RedactDSN(dsn string) string {
	if !IsPostgres(dsn) {
		return dsn
	}
	u, err := url.Parse(dsn)
	if err != nil {
		// Cannot tell where a password would be: show none of it.
		return dsn[:strings.Index(dsn, "://")+3] + "(unparsable URL)"
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	// A PostgreSQL URL has no fragment: one is text after a stray '#',
	// which may be part of a password, so none of it is shown.
	u.Fragment, u.RawFragment = "", ""
	q := u.Query()
	changed := false
	for _, p := range secretParams {
		if q.Has(p) {
			q.Set(p, "xxxxx")
			changed = true
		}
	}
	if changed {
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// dsnSecrets returns the secrets written in a PostgreSQL URL, as written
// and decoded.
func dsnSecrets(dsn string) []string {
	u, err := url.Parse(dsn)
	if err != nil {
		return nil
	}
	var out []string
	add := func(s string) {
		if s == "" {
			return
		}
		out = append(out, s)
		if e := url.QueryEscape(s); e != s {
			out = append(out, e)
		}
		if e := url.PathEscape(s); e != s {
			out = append(out, e)
		}
	}
	if p, ok := u.User.Password(); ok {
		add(p)
	}
	q := u.Query()
	for _, p := range secretParams {
		add(q.Get(p))
	}
	return out
}

// scrubbedError is an error whose text had a secret removed. Unwrap still
// reaches the cause, for errors.Is and errors.As.
type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }

func scrubber(secrets []string) func(error) error {
	if len(secrets) == 0 {
		return noScrub
	}
	return func(err error) error {
		if err == nil {
			return nil
		}
		msg := err.Error()
		clean := msg
		for _, s := range secrets {
			clean = strings.ReplaceAll(clean, s, "xxxxx")
		}
		if clean == msg {
			return err
		}
		return &scrubbedError{msg: clean, err: err}
	}
}

func postgresDialect(scrub func(error) error) *dialect {
	return &dialect{
		name:          "postgres",
		numbered:      true,
		rowLocks:      true,
		like:          "ILIKE",
		jsonTextArray: "json_array_elements_text(CAST(? AS json))",
		// READ COMMITTED, PostgreSQL's default, said explicitly: the
		// package doc explains why no transaction here needs more.
		txOptions: &sql.TxOptions{Isolation: sql.LevelReadCommitted},
		migration: func(m migration) string { return m.postgres },
		// The advisory lock is held until the migration transaction
		// ends: instances starting together migrate one after the other,
		// and the later ones find the schema current.
		lockSchema: func(ctx context.Context, tx *Tx) (int, error) {
			if _, err := tx.exec(ctx, `SELECT pg_advisory_xact_lock(?)`, schemaLockKey); err != nil {
				return 0, fmt.Errorf("migration lock: %w", err)
			}
			if _, err := tx.exec(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
				version    INTEGER PRIMARY KEY,
				applied_at BIGINT NOT NULL
			)`); err != nil {
				return 0, err
			}
			var v int
			err := tx.queryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&v)
			return v, err
		},
		setSchemaVersion: func(ctx context.Context, tx *Tx, v int) error {
			_, err := tx.exec(ctx, `INSERT INTO schema_version (version, applied_at) VALUES (?, ?)`, v, ms(time.Now()))
			return err
		},
		retryable: func(err error) bool {
			var pe *pgconn.PgError
			// serialization_failure, deadlock_detected
			return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
		},
		scrub: scrub,
	}
}

// openPostgres opens the PostgreSQL database named by the URL dsn.
func openPostgres(ctx context.Context, dsn string) (*Store, error) {
	name := RedactDSN(dsn)
	scrub := scrubber(dsnSecrets(dsn))
	if _, err := url.Parse(dsn); err != nil {
		return nil, fmt.Errorf("%w: %s: not a URL", ErrBadDSN, name)
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrBadDSN, name, scrub(err))
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(pgMaxConns)
	db.SetMaxIdleConns(pgMaxConns)
	db.SetConnMaxIdleTime(pgMaxIdleTime)
	s := &Store{db: db, d: postgresDialect(scrub)}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: %s: %w", name, scrub(err))
	}
	return s, nil
}
