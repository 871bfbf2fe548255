// Package pgtest gives tests a PostgreSQL database of their own: the first
// test that asks starts a throwaway cluster for the whole test binary
// (initdb into a temporary directory, postgres listening only on a unix
// socket in that directory, fsync off), each test gets a fresh database
// in it, and Main stops the cluster and removes the directory when the
// tests are done. No system cluster is ever used.
//
// The binaries are the newest /usr/lib/postgresql/*/bin (Debian's
// postgresql package), else initdb and postgres from PATH. PostgreSQL
// refuses to run as root: when the tests run as root (CI does), initdb and
// postgres run as the unprivileged user "postgres" (the Debian package
// creates it), and the directory is given to that user.
//
// Without the binaries, tests that ask for a database are skipped with a
// message saying so; with CI set they fail instead.
//
// A test binary that uses it runs its tests through Main:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
// Tests use it; production code must not import it.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrUnavailable means no PostgreSQL binaries were found.
var ErrUnavailable = errors.New("pgtest: no PostgreSQL binaries (install Debian's postgresql package)")

// Superuser is the cluster's superuser; it connects without a password,
// only through the socket in the cluster's directory.
const Superuser = "pgtest"

// port names the socket file (.s.PGSQL.<port>); nothing listens on TCP.
const port = 5432

// startTimeout bounds the cluster's start: a machine under load may take
// a while, a broken set-up must still end.
const startTimeout = 90 * time.Second

var (
	once    sync.Once
	shared  *Cluster
	initErr error
	seq     atomic.Int64
)

// account is the user the cluster runs as, when not the caller.
type account struct{ uid, gid int }

// Cluster is a running throwaway cluster.
type Cluster struct {
	dir  string // socket directory and parent of data
	cmd  *exec.Cmd
	exit chan error // the postgres process's end

	mu      sync.Mutex
	admin   *pgx.Conn
	version int // server_version_num, e.g. 150014
}

// mainRuns is set by Main: without it nothing would stop the cluster.
var mainRuns atomic.Bool

// Main runs the tests, then stops the cluster if one was started.
func Main(m *testing.M) int {
	mainRuns.Store(true)
	code := m.Run()
	if shared != nil {
		if err := shared.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "pgtest:", err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// DSN returns the URL of a new, empty database for t, dropped when t
// ends. Without PostgreSQL it skips t, or fails it when CI is set.
func DSN(t testing.TB) string {
	t.Helper()
	return DSNWith(t, "")
}

// DSNWith is DSN with options of CREATE DATABASE, such as a locale.
func DSNWith(t testing.TB, with string) string {
	t.Helper()
	c := Shared(t)
	dsn, err := c.CreateDB(context.Background(), with)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.dropDB(context.Background(), dsn); err != nil {
			t.Error(err)
		}
	})
	return dsn
}

// Shared returns the test binary's cluster, starting it on first use.
// Without PostgreSQL it skips t, or fails it when CI is set.
func Shared(t testing.TB) *Cluster {
	t.Helper()
	if !mainRuns.Load() {
		t.Fatal("pgtest: the test binary's TestMain must run pgtest.Main, which stops the cluster")
	}
	once.Do(func() { shared, initErr = Start() })
	if initErr != nil {
		if skip(initErr, os.Getenv("CI") != "") {
			t.Skipf("PostgreSQL half skipped: %v", initErr)
		}
		t.Fatalf("PostgreSQL test cluster: %v", initErr)
	}
	return shared
}

// skip tells whether a cluster that did not start skips the tests: only
// for want of PostgreSQL, and never in CI, where it must be installed.
func skip(err error, ci bool) bool { return errors.Is(err, ErrUnavailable) && !ci }

// Binaries returns the directory of initdb and postgres.
func Binaries() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	for _, d := range newestFirst(dirs) {
		if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("postgres"); err == nil {
		d := filepath.Dir(p)
		if isExec(filepath.Join(d, "initdb")) {
			return d, nil
		}
	}
	return "", ErrUnavailable
}

// newestFirst orders /usr/lib/postgresql/VERSION/bin directories by
// version, newest first: 9.6 < 10 < 15.
func newestFirst(dirs []string) []string {
	version := func(d string) float64 {
		v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(d)), 64)
		return v
	}
	out := slices.Clone(dirs)
	sort.SliceStable(out, func(i, j int) bool { return version(out[i]) > version(out[j]) })
	return out
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// Start starts a cluster in a new temporary directory. Stop it.
func Start() (*Cluster, error) {
	bin, err := Binaries()
	if err != nil {
		return nil, err
	}
	var cred *account
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("pgtest: running as root, PostgreSQL needs an unprivileged user \"postgres\" to run as: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &account{uid: uid, gid: gid}
	}
	dir, err := os.MkdirTemp(tempRoot(cred != nil), "pgtest-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir, exit: make(chan error, 1)}
	if err := c.start(bin, cred); err != nil {
		c.remove()
		return nil, err
	}
	return c, nil
}

// tempRoot is where the cluster's directory goes: a unix socket's path
// must stay under 108 bytes, and the user postgres must be able to reach
// it (root's TMPDIR may be under /root), so /tmp unless TMPDIR is short
// and the cluster runs as the caller.
func tempRoot(asOther bool) string {
	if d := os.TempDir(); len(d) < 40 && !asOther {
		return d
	}
	return "/tmp"
}

func (c *Cluster) start(bin string, cred *account) error {
	if cred != nil {
		if err := os.Chown(c.dir, cred.uid, cred.gid); err != nil {
			return fmt.Errorf("pgtest: give %s to user postgres: %w", c.dir, err)
		}
	}
	data := filepath.Join(c.dir, "data")
	logPath := filepath.Join(c.dir, "postgres.log")
	initdb := c.command(filepath.Join(bin, "initdb"), cred, "-D", data, "--username="+Superuser, "--auth=trust",
		"--encoding=UTF8", "--locale=C", "--no-sync")
	if out, err := initdb.CombinedOutput(); err != nil {
		return fmt.Errorf("pgtest: initdb: %w\n%s", err, out)
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	if cred != nil {
		_ = logf.Chown(cred.uid, cred.gid)
	}
	c.cmd = c.command(filepath.Join(bin, "postgres"), cred, "-D", data, "-k", c.dir, "-p", strconv.Itoa(port),
		"-c", "listen_addresses=", "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=300", "-c", "shared_buffers=32MB")
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	if err := c.cmd.Start(); err != nil {
		return fmt.Errorf("pgtest: start postgres: %w", err)
	}
	go func() { c.exit <- c.cmd.Wait() }()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	for {
		conn, err := pgx.Connect(ctx, c.url("postgres"))
		if err == nil {
			c.admin = conn
			v, err := strconv.Atoi(conn.PgConn().ParameterStatus("server_version_num"))
			if err != nil {
				// Older servers do not report it: take the major version.
				v, _ = strconv.Atoi(strings.SplitN(conn.PgConn().ParameterStatus("server_version"), ".", 2)[0])
				v *= 10000
			}
			c.version = v
			return nil
		}
		select {
		case werr := <-c.exit:
			c.exit <- werr
			return fmt.Errorf("pgtest: postgres exited (%v):\n%s", werr, tail(logPath))
		case <-ctx.Done():
			_ = c.cmd.Process.Kill()
			return fmt.Errorf("pgtest: postgres not answering after %s: %v\n%s", startTimeout, err, tail(logPath))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// command runs a PostgreSQL binary in the cluster's directory, as cred
// when set, with no PG* variable of the caller's leading it elsewhere.
func (c *Cluster) command(path string, cred *account, args ...string) *exec.Cmd {
	cmd := exec.Command(path, args...)
	cmd.Dir = c.dir
	env := []string{"LC_ALL=C", "HOME=" + c.dir}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PATH=") || strings.HasPrefix(kv, "TZ=") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	cmd.SysProcAttr = sysProcAttr(cred)
	return cmd
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// url is the URL of database db through the cluster's socket.
func (c *Cluster) url(db string) string {
	q := url.Values{"host": {c.dir}, "port": {strconv.Itoa(port)}, "sslmode": {"disable"}}
	return (&url.URL{Scheme: "postgres", User: url.User(Superuser), Path: "/" + db, RawQuery: q.Encode()}).String()
}

// Dir is the cluster's directory (its socket is there).
func (c *Cluster) Dir() string { return c.dir }

// CreateDB creates a new empty database and returns its URL; with holds
// more options of CREATE DATABASE (or is empty).
func (c *Cluster) CreateDB(ctx context.Context, with string) (string, error) {
	name := fmt.Sprintf("t%d", seq.Add(1))
	c.mu.Lock()
	defer c.mu.Unlock()
	// From template0 by file copy: a third of the default's time.
	create := "CREATE DATABASE " + name + " TEMPLATE template0"
	if c.version >= 150000 {
		create += " STRATEGY = FILE_COPY"
	}
	if with != "" {
		create += " " + with
	}
	if _, err := c.admin.Exec(ctx, create); err != nil {
		return "", fmt.Errorf("pgtest: create database %s: %w", name, err)
	}
	return c.url(name), nil
}

// Exec runs a statement as the superuser on database db (tests that set
// up roles or damage rows).
func (c *Cluster) Exec(ctx context.Context, db, stmt string, args ...any) error {
	conn, err := pgx.Connect(ctx, c.url(db))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, stmt, args...)
	return err
}

// URL is the URL of database db as user (with password, if not empty).
func (c *Cluster) URL(db, user, password string) string {
	u, _ := url.Parse(c.url(db))
	if password != "" {
		u.User = url.UserPassword(user, password)
	} else {
		u.User = url.User(user)
	}
	return u.String()
}

func (c *Cluster) dropDB(ctx context.Context, dsn string) error {
	u, err := url.Parse(dsn)
	if err != nil {
		return err
	}
	name := strings.TrimPrefix(u.Path, "/")
	c.mu.Lock()
	defer c.mu.Unlock()
	// FORCE: a store a failed test left open does not keep it.
	if _, err := c.admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("pgtest: drop database %s: %w", name, err)
	}
	return nil
}

// Stop stops postgres (fast shutdown) and removes the directory.
func (c *Cluster) Stop() error {
	if c.admin != nil {
		_ = c.admin.Close(context.Background())
	}
	var err error
	if c.cmd != nil && c.cmd.Process != nil {
		_ = c.cmd.Process.Signal(os.Interrupt)
		select {
		case <-c.exit:
		case <-time.After(60 * time.Second):
			_ = c.cmd.Process.Kill()
			<-c.exit
			err = fmt.Errorf("pgtest: postgres did not stop on SIGINT; killed:\n%s", tail(filepath.Join(c.dir, "postgres.log")))
		}
	}
	return errors.Join(err, c.remove())
}

func (c *Cluster) remove() error {
	if err := os.RemoveAll(c.dir); err != nil {
		return fmt.Errorf("pgtest: remove %s: %w", c.dir, err)
	}
	return nil
}
