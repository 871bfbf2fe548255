package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

func sqliteDialect() *dialect {
	return &dialect{
		name:          "sqlite",
		like:          "LIKE",
		jsonTextArray: "json_each(?)",
		migration:     func(m migration) string { return m.sqlite },
		// The transaction (immediate) already holds the write lock: no
		// other process migrates at the same time.
		lockSchema: func(ctx context.Context, tx *Tx) (int, error) {
			var v int
			err := tx.queryRow(ctx, "PRAGMA user_version").Scan(&v)
			return v, err
		},
		setSchemaVersion: func(ctx context.Context, tx *Tx, v int) error {
			// PRAGMA takes no bound parameters; the value is ours.
			_, err := tx.exec(ctx, fmt.Sprintf("PRAGMA user_version = %d", v))
			return err
		},
		retryable: func(error) bool { return false },
		scrub:     noScrub,
	}
}

// openSQLite opens or creates the SQLite database at path.
//
// The schema version is SQLite's own PRAGMA user_version, as it was
// before PostgreSQL came: files written by earlier builds open unchanged.
func openSQLite(ctx context.Context, path string) (*Store, error) {
	if strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("%w: database path %q must not contain '?' or '#'", ErrBadDSN, path)
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
	s := &Store{db: db, d: sqliteDialect()}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: %s: %w", path, err)
	}
	return s, nil
}
