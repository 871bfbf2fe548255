//go:build unix

package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

// Each DSN is a new, empty database, reached through the socket in the
// cluster's directory only.
func TestDSN(t *testing.T) {
	ctx := context.Background()
	a, b := DSN(t), DSN(t)
	if a == b {
		t.Fatalf("two tests share %s", a)
	}
	c := Shared(t)
	if c.version < 90600 {
		t.Errorf("server version %d not read", c.version)
	}
	if !strings.Contains(a, "host="+strings.ReplaceAll(c.Dir(), "/", "%2F")) {
		t.Errorf("%s does not go through the cluster's socket directory %s", a, c.Dir())
	}
	conn, err := pgx.Connect(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var tables int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = 'public'`).Scan(&tables); err != nil || tables != 0 {
		t.Errorf("new database has %d tables (%v)", tables, err)
	}
	var listen string
	if err := conn.QueryRow(ctx, `SHOW listen_addresses`).Scan(&listen); err != nil || listen != "" {
		t.Errorf("listen_addresses %q (%v): the cluster must not listen on TCP", listen, err)
	}
	if _, err := conn.Exec(ctx, `CREATE TABLE t (id int)`); err != nil {
		t.Fatal(err)
	}
	if err := c.Exec(ctx, strings.TrimPrefix(urlPath(t, b), "/"), `CREATE TABLE t (id int)`); err != nil {
		t.Errorf("the other database already had the table: %v", err)
	}
}

func urlPath(t *testing.T, dsn string) string {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return "/" + cfg.Database
}

// A cluster of its own: Stop ends postgres and removes every file.
func TestStartStop(t *testing.T) {
	Shared(t) // skips (or fails with CI set) without PostgreSQL
	c, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		fi, err := os.Stat(filepath.Join(c.Dir(), "data"))
		if err != nil {
			t.Fatal(err)
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); !ok || st.Uid == 0 {
			t.Errorf("running as root, the data directory is owned by root: postgres ran privileged")
		}
	}
	dsn, err := c.CreateDB(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	pid := c.cmd.Process.Pid
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(c.Dir()); !os.IsNotExist(err) {
		t.Errorf("%s left behind (%v)", c.Dir(), err)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Errorf("postgres (pid %d) still runs", pid)
	}
	if conn, err := pgx.Connect(context.Background(), dsn); err == nil {
		conn.Close(context.Background())
		t.Error("the stopped cluster still answers")
	}
}

func TestSkipOnlyWithoutPostgres(t *testing.T) {
	other := errors.New("initdb: permission denied")
	tests := []struct {
		err  error
		ci   bool
		want bool
	}{
		{ErrUnavailable, false, true},
		{fmt.Errorf("start: %w", ErrUnavailable), false, true},
		{ErrUnavailable, true, false}, // CI must have PostgreSQL
		{other, false, false},         // a broken set-up is a failure
		{other, true, false},
	}
	for _, tt := range tests {
		if got := skip(tt.err, tt.ci); got != tt.want {
			t.Errorf("skip(%v, ci=%v) = %v", tt.err, tt.ci, got)
		}
	}
}

func TestNewestFirst(t *testing.T) {
	got := newestFirst([]string{"/usr/lib/postgresql/9.6/bin", "/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/10/bin", "/usr/lib/postgresql/17/bin"})
	want := []string{"/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/10/bin", "/usr/lib/postgresql/9.6/bin"}
	if !slices.Equal(got, want) {
		t.Errorf("newestFirst = %v", got)
	}
}

func TestBinaries(t *testing.T) {
	dir, err := Binaries()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	for _, b := range []string{"initdb", "postgres"} {
		if !isExec(filepath.Join(dir, b)) {
			t.Errorf("%s has no %s", dir, b)
		}
	}
}
