package store

import (
	"context"
	"database/sql"
	"strconv"
	"strings"
	"sync"
)

// dialect is what differs between the backends; every query is written
// once, with ? placeholders, and rebound here.
type dialect struct {
	name string
	// numbered: placeholders are $1, $2, ... instead of ?.
	numbered bool
	// rowLocks: SELECT ... FOR UPDATE locks rows (PostgreSQL). SQLite
	// has no row locks: its immediate transactions hold the database's
	// write lock from the start.
	rowLocks bool
	// like is the case-insensitive LIKE (SQLite's LIKE ignores ASCII
	// case; PostgreSQL's does not, its ILIKE does).
	like string
	// jsonTextArray is a table of the strings in the JSON array bound to
	// its one parameter, with a column named value.
	jsonTextArray string
	txOptions     *sql.TxOptions
	migration     func(migration) string
	// lockSchema takes the migration lock for the transaction and reads
	// the schema version.
	lockSchema       func(context.Context, *Tx) (int, error)
	setSchemaVersion func(context.Context, *Tx, int) error
	// retryable: the transaction was aborted to break a conflict with
	// another one, and may run again.
	retryable func(error) bool
	// scrub keeps secrets of the database name (a password) out of an
	// error's text.
	scrub func(error) error

	bound sync.Map // query -> rebound query
}

// rebind turns ? placeholders into the dialect's. A ? inside a quoted
// string or identifier is left alone.
func (d *dialect) rebind(query string) string {
	if !d.numbered {
		return query
	}
	if q, ok := d.bound.Load(query); ok {
		return q.(string)
	}
	var b strings.Builder
	b.Grow(len(query) + 16)
	n := 0
	var quote byte
	for i := 0; i < len(query); i++ {
		c := query[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '?':
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(c)
	}
	q := b.String()
	// Queries are constants, or built from a bounded set of fragments
	// (lists of up to 1000 ids): the cache stays small. An IN list is
	// the exception; it is not cached past a size.
	if len(query) < 4096 {
		d.bound.Store(query, q)
	}
	return q
}

func noScrub(err error) error { return err }
