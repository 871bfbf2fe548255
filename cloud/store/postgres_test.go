package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/encoder-bridge/encoder-bridge/internal/pgtest"
)

// Two instances starting together on a fresh database both come up, and
// the schema is applied once (the advisory lock); a schema from a newer
// build is refused.
func TestPostgresMigrationsOnce(t *testing.T) {
	dsn := pgtest.DSN(t)
	ctx := context.Background()
	const instances = 4
	stores := make([]*Store, instances)
	errs := make([]error, instances)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range instances {
		wg.Go(func() {
			<-start
			stores[i], errs[i] = Open(ctx, dsn)
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("instance %d: %v", i, err)
		}
		t.Cleanup(func() { stores[i].Close() })
	}
	rows, err := stores[0].db.QueryContext(ctx, `SELECT version FROM schema_version ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	var versions []int
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		versions = append(versions, v)
	}
	rows.Close()
	var want []int
	for v := 1; v <= SchemaVersion; v++ {
		want = append(want, v)
	}
	if !slices.Equal(versions, want) {
		t.Errorf("schema_version rows %v, want %v", versions, want)
	}
	if _, err := stores[0].db.ExecContext(ctx, `INSERT INTO schema_version (version, applied_at) VALUES ($1, 0)`, SchemaVersion+1); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(ctx, dsn); err == nil || !strings.Contains(err.Error(), "newer than this build") {
		if s != nil {
			s.Close()
		}
		t.Errorf("a schema from a newer build: %v", err)
	}
}

// Concurrent callers on two instances never get the same card number or
// issue sequence.
func TestPostgresCountersConcurrent(t *testing.T) {
	dsn := pgtest.DSN(t)
	a, b := open(t, dsn), open(t, dsn)
	w := seed(t, a, "w")
	ctx := context.Background()
	const workers, each = 8, 20
	var mu sync.Mutex
	cards, seqs := map[int64]bool{}, map[uint32]bool{}
	var wg sync.WaitGroup
	for i := range workers {
		s := []*Store{a, b}[i%2]
		wg.Go(func() {
			for range each {
				var n int64
				var seq uint32
				err := s.Update(ctx, func(tx *Tx) error {
					var err error
					if n, err = tx.NextCardNumber(ctx, w.ID); err != nil {
						return err
					}
					seq, err = tx.NextIssueSequence(ctx, w.ID)
					return err
				})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if cards[n] || seqs[seq] {
					t.Errorf("card %d or sequence %d handed out twice", n, seq)
				}
				cards[n], seqs[seq] = true, true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(cards) != workers*each {
		t.Errorf("%d card numbers, want %d", len(cards), workers*each)
	}
	for n := int64(100001); n < 100001+workers*each; n++ {
		if !cards[n] {
			t.Errorf("card number %d skipped", n)
		}
	}
}

// The encoder cap holds when links of one bridge on two instances
// register encoders at once: EncoderRecords locks the bridge until the
// insert commits. Without the lock every worker counts the same rows.
func TestPostgresEncoderCapConcurrent(t *testing.T) {
	dsn := pgtest.DSN(t)
	a, b := open(t, dsn), open(t, dsn)
	w := seed(t, a, "w")
	ctx := context.Background()
	const limit, workers = 3, 12
	var wg sync.WaitGroup
	for i := range workers {
		s := []*Store{a, b}[i%2]
		wg.Go(func() {
			id := fmt.Sprintf("e%d", i)
			err := s.Update(ctx, func(tx *Tx) error {
				n, known, err := tx.EncoderRecords(ctx, "b-w", id)
				if err != nil || (!known && n >= limit) {
					return err
				}
				time.Sleep(20 * time.Millisecond) // the window another worker would use
				_, err = tx.UpsertEncoder(ctx, Encoder{ID: id, WorkspaceID: w.ID, BridgeID: "b-w", ProtocolID: id, CreatedAt: t0})
				return err
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	n, _, err := a.Q().EncoderRecords(ctx, "b-w", "")
	if err != nil || n != limit {
		t.Errorf("%d encoders registered (%v), the cap is %d", n, err, limit)
	}
}

// A simulated outcome is taken by one job only, when jobs on two
// instances start at once.
func TestPostgresSimulationTakenOnce(t *testing.T) {
	dsn := pgtest.DSN(t)
	a, b := open(t, dsn), open(t, dsn)
	w := seed(t, a, "w")
	ctx := context.Background()
	if _, err := a.Q().UpsertEncoder(ctx, Encoder{ID: "e1", WorkspaceID: w.ID, BridgeID: "b-w", ProtocolID: "p1", CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	mustDo(t, a.Q().SetSimulation(ctx, "e1", "scan", []byte(`{}`), t0))
	var took atomic.Int32
	var wg sync.WaitGroup
	for i := range 8 {
		s := []*Store{a, b}[i%2]
		wg.Go(func() {
			var got bool
			err := s.Update(ctx, func(tx *Tx) error {
				got = false
				_, err := tx.Simulation(ctx, "e1", "scan")
				if errors.Is(err, ErrNotFound) {
					return nil
				}
				if err != nil {
					return err
				}
				time.Sleep(20 * time.Millisecond)
				got = true
				return tx.DeleteSimulation(ctx, "e1", "scan")
			})
			if err != nil {
				t.Error(err)
			}
			if got {
				took.Add(1)
			}
		})
	}
	wg.Wait()
	if n := took.Load(); n != 1 {
		t.Errorf("the simulation was taken %d times", n)
	}
}

// Encodes finishing out of order on several instances leave the card with
// the highest sequence on record.
func TestPostgresIssueKeepsNewestConcurrent(t *testing.T) {
	dsn := pgtest.DSN(t)
	a, b := open(t, dsn), open(t, dsn)
	w := seed(t, a, "w")
	ctx := context.Background()
	mustDo(t, a.Q().CreateCredential(ctx, Credential{ID: "c1", WorkspaceID: w.ID, AccessMethodID: "am1", CardNumber: "1",
		CardFunctionType: "guest", StartsAt: t0, EndsAt: t0.Add(time.Hour), IssueSequence: 1, CreatedAt: t0}))
	var wg sync.WaitGroup
	for _, seq := range []uint32{5, 12, 3, 16, 9, 1, 14, 7, 11, 2, 15, 8, 4, 13, 6, 10} {
		s := []*Store{a, b}[seq%2]
		wg.Go(func() {
			err := s.Update(ctx, func(tx *Tx) error {
				_, err := tx.IssueCredential(ctx, "c1", CardIssued{IssueSequence: seq, IssuedAt: t0, CardUID: fmt.Sprint(seq)})
				return err
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	c, err := a.Q().Credential(ctx, w.ID, "c1")
	if err != nil || c.IssueSequence != 16 || c.CardUID != "16" {
		t.Errorf("credential on record: sequence %d card %q (%v), want 16", c.IssueSequence, c.CardUID, err)
	}
}

// Two transactions that lock two rows in opposite order deadlock;
// PostgreSQL aborts one, and Update runs it again: both commit.
func TestPostgresDeadlockRetried(t *testing.T) {
	dsn := pgtest.DSN(t)
	a, b := open(t, dsn), open(t, dsn)
	seed(t, a, "w1")
	seed(t, a, "w2")
	ctx := context.Background()
	var both sync.WaitGroup
	both.Add(2)
	var runs atomic.Int32
	var wg sync.WaitGroup
	for i, order := range [][2]string{{"w1", "w2"}, {"w2", "w1"}} {
		s := []*Store{a, b}[i]
		wg.Go(func() {
			first := true
			err := s.Update(ctx, func(tx *Tx) error {
				runs.Add(1)
				if _, err := tx.NextCardNumber(ctx, order[0]); err != nil {
					return err
				}
				if first { // both hold their first row before taking the second
					first = false
					both.Done()
					both.Wait()
				}
				_, err := tx.NextCardNumber(ctx, order[1])
				return err
			})
			if err != nil {
				t.Errorf("order %v: %v", order, err)
			}
		})
	}
	wg.Wait()
	if n := runs.Load(); n < 3 {
		t.Errorf("%d runs: no transaction was run again, so none deadlocked", n)
	}
	for _, id := range []string{"w1", "w2"} {
		if n, _ := a.Q().NextCardNumber(ctx, id); n != 100003 {
			t.Errorf("workspace %s: next card %d, want 100003 (both transactions committed)", id, n)
		}
	}
}

func TestRedactDSN(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/var/lib/encoder-cloud/cloud.db", "/var/lib/encoder-cloud/cloud.db"},
		{"postgres://cloud:s3cret@db.internal:5432/cloud", "postgres://cloud:xxxxx@db.internal:5432/cloud"},
		{"postgresql://cloud@db/cloud?sslmode=require", "postgresql://cloud@db/cloud?sslmode=require"},
		{"postgres://db/cloud?password=s3cret&user=cloud", "postgres://db/cloud?password=xxxxx&user=cloud"},
		{"postgres://db/cloud?sslpassword=s3cret", "postgres://db/cloud?sslpassword=xxxxx"},
		{"postgres://cloud:s3cret@db:bad port/x", "postgres://(unparsable URL)"},
		{"POSTGRES://cloud:s3cret@db/cloud", "postgres://cloud:xxxxx@db/cloud"},
	}
	for _, tt := range tests {
		if got := RedactDSN(tt.in); got != tt.want {
			t.Errorf("RedactDSN(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// No error of Open shows the password, whatever went wrong.
func TestOpenErrorHidesPassword(t *testing.T) {
	const pw = "Pa55-w0rd%21secret"
	ctx := context.Background()
	tests := []string{
		"postgres://cloud:" + pw + "@/cloud?host=/nonexistent&port=5432",
		"postgres://cloud@/cloud?host=/nonexistent&password=" + pw,
		"postgres://cloud:" + pw + "@/cloud?host=/nonexistent&port=notaport",
		"postgres://cloud:" + pw + "@/cloud?host=/nonexistent&connect_timeout=-5s",
		"postgres://cloud:" + pw + "@[::1/cloud",
	}
	for _, dsn := range tests {
		s, err := Open(ctx, dsn)
		if err == nil {
			s.Close()
			t.Errorf("%s opened", RedactDSN(dsn))
			continue
		}
		for _, spelling := range []string{pw, "Pa55-w0rd!secret", "w0rd"} {
			if strings.Contains(err.Error(), spelling) {
				t.Errorf("error shows the password: %v", err)
			}
		}
	}
	// A server that refuses: no such database.
	c := pgtest.Shared(t)
	dsn := c.URL("no_such_database", pgtest.Superuser, pw)
	if s, err := Open(ctx, dsn); err == nil {
		s.Close()
		t.Error("a missing database opened")
	} else if strings.Contains(err.Error(), "w0rd") || !strings.Contains(err.Error(), "no_such_database") {
		t.Errorf("error %q: must name the database, not the password", err)
	}
}

func FuzzRedactDSN(f *testing.F) {
	f.Add("cloud", "s3cret-pass", "db:5432", "sslmode=require")
	f.Add("u", "p@ss:w/rd?#", "[::1]:5432", "password=other-secret")
	f.Fuzz(func(t *testing.T, user, pw, host, query string) {
		written := escapeUserinfo(pw)
		u := "postgres://" + escapeUserinfo(user) + ":" + written + "@" + host + "/cloud?" + query
		got := RedactDSN(u)
		// A password long enough to tell apart, written once.
		if len(written) >= 6 && strings.Count(u, written) == 1 && strings.Contains(got, written) {
			t.Errorf("RedactDSN(%q) = %q shows the password", u, got)
		}
		if !strings.HasPrefix(got, "postgres://") {
			t.Errorf("RedactDSN(%q) = %q", u, got)
		}
	})
}

// escapeUserinfo percent-encodes as a user would in a URL's user part.
func escapeUserinfo(s string) string {
	return strings.NewReplacer("%", "%25", "@", "%40", ":", "%3A", "/", "%2F", "?", "%3F", "#", "%23").Replace(s)
}

func TestRebind(t *testing.T) {
	d := postgresDialect(noScrub)
	tests := []struct{ in, want string }{
		{"SELECT 1", "SELECT 1"},
		{"a = ? AND b = ?", "a = $1 AND b = $2"},
		{`x LIKE ? ESCAPE '\' OR y = '?' OR "c?" = ?`, `x LIKE $1 ESCAPE '\' OR y = '?' OR "c?" = $2`},
		{"'it''s ?' = ?", "'it''s ?' = $1"},
	}
	for _, tt := range tests {
		if got := d.rebind(tt.in); got != tt.want {
			t.Errorf("rebind(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if got := sqliteDialect().rebind(tt.in); got != tt.in {
			t.Errorf("sqlite rebind(%q) = %q", tt.in, got)
		}
	}
}

// Lists order ids byte by byte, as SQLite does, in a database whose
// locale orders text otherwise (an ICU locale sorts "a" before "B").
func TestPostgresOrderIgnoresLocale(t *testing.T) {
	dsn := pgtest.DSNWith(t, "LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'")
	s := open(t, dsn)
	w := seed(t, s, "w")
	ctx := context.Background()
	ids := []string{"a-1", "B-2", "b-1", "A-2"}
	for _, id := range ids {
		if _, err := s.Q().UpsertEncoder(ctx, Encoder{ID: id, WorkspaceID: w.ID, BridgeID: "b-w", ProtocolID: id, CreatedAt: t0}); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	p := Page{Limit: 1}
	for {
		list, more, err := s.Q().ListEncoders(ctx, w.ID, EncoderFilter{}, p)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range list {
			got = append(got, e.ID)
		}
		if !more {
			break
		}
		p.After = &Cursor{CreatedAt: ms(list[0].CreatedAt), ID: list[0].ID}
	}
	want := slices.Clone(ids)
	slices.Sort(want) // bytes: "A-2" "B-2" "a-1" "b-1"
	if !slices.Equal(got, want) {
		t.Errorf("pages in order %v, want %v", got, want)
	}
}
