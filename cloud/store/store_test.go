package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/encoder-bridge/encoder-bridge/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// backends are the databases the shared suite runs on: each gives a new,
// empty database's name.
var backends = []struct {
	name  string
	fresh func(t *testing.T) string
}{
	{"sqlite", func(t *testing.T) string { return filepath.Join(t.TempDir(), "c.db") }},
	{"postgres", func(t *testing.T) string { return pgtest.DSN(t) }},
}

// both runs fn on each backend, with a fresh database.
func both(t *testing.T, fn func(t *testing.T, dsn string)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { fn(t, b.fresh(t)) })
	}
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func open(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func seed(t *testing.T, s *Store, id string) Workspace {
	t.Helper()
	ctx := context.Background()
	w := Workspace{ID: id, Name: id, AcsSystemID: "sys-" + id, ConnectedAccountID: "ca-" + id, CreatedAt: t0}
	err := s.Update(ctx, func(tx *Tx) error {
		if err := tx.CreateWorkspace(ctx, w); err != nil {
			return err
		}
		return tx.CreateBridge(ctx, Bridge{ID: "b-" + id, WorkspaceID: id, Name: "b", TokenID: "tok-" + id, TokenHash: []byte{1}, CreatedAt: t0})
	})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestPragmasAndMigrations(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.db")
	s := open(t, path)
	ctx := context.Background()
	var mode string
	var sync, fk, version int
	q := s.db
	if err := q.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode %q %v", mode, err)
	}
	if err := q.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&sync); err != nil || sync != 2 {
		t.Errorf("synchronous %d %v (want 2, FULL)", sync, err)
	}
	if err := q.QueryRowContext(ctx, "PRAGMA foreign_keys").Scan(&fk); err != nil || fk != 1 {
		t.Errorf("foreign_keys %d %v", fk, err)
	}
	if err := q.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil || version != SchemaVersion {
		t.Errorf("user_version %d %v", version, err)
	}
	s.Close()
	s = open(t, path) // migrating again is a no-op
	if _, err := s.db.ExecContext(ctx, "PRAGMA user_version = 99"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := Open(ctx, path); err == nil {
		t.Fatal("a database from a newer build was opened")
	}
	if _, err := Open(ctx, path+"?mode=ro"); err == nil {
		t.Fatal("a path with a query was accepted")
	}
}

// Everything committed is there after a reopen, and counters go on.
func TestReopenKeepsState(t *testing.T) { both(t, testReopenKeepsState) }

func testReopenKeepsState(t *testing.T, path string) {
	ctx := context.Background()
	s := open(t, path)
	w := seed(t, s, "w1")
	var seq1 uint32
	err := s.Update(ctx, func(tx *Tx) error {
		var err error
		seq1, err = tx.NextIssueSequence(ctx, w.ID)
		if err != nil {
			return err
		}
		if _, err := tx.UpsertEncoder(ctx, Encoder{ID: "e1", WorkspaceID: w.ID, BridgeID: "b-w1", ProtocolID: "p1", DisplayName: "E", ReaderName: "R", CreatedAt: t0}); err != nil {
			return err
		}
		return tx.CreateActionAttempt(ctx, ActionAttempt{ID: "a1", WorkspaceID: w.ID, ActionType: "SCAN_CREDENTIAL", Status: StatusPending, CreatedAt: t0, UpdatedAt: t0})
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Update(ctx, func(tx *Tx) error {
		return tx.CreateJob(ctx, Job{ID: "j1", ActionAttemptID: "a1", WorkspaceID: w.ID, BridgeID: "b-w1", EncoderID: "e1", Kind: "scan", Payload: []byte(`{}`), Deadline: t0.Add(time.Minute), CreatedAt: t0})
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = open(t, path)
	jobs, err := s.Q().OfferableJobs(ctx, "b-w1", t0)
	if err != nil || len(jobs) != 1 || jobs[0].ID != "j1" {
		t.Fatalf("jobs after reopen %v %v", jobs, err)
	}
	if jobs, _ := s.Q().OfferableJobs(ctx, "b-w1", t0.Add(time.Minute)); len(jobs) != 0 {
		t.Errorf("a job at its deadline is offered: %v", jobs)
	}
	if due, _ := s.Q().DueJobs(ctx, t0.Add(time.Minute)); len(due) != 1 {
		t.Errorf("due %v", due)
	}
	var seq2 uint32
	_ = s.Update(ctx, func(tx *Tx) error { seq2, err = tx.NextIssueSequence(ctx, w.ID); return err })
	if seq2 != seq1+1 {
		t.Errorf("sequence after reopen %d, want %d", seq2, seq1+1)
	}
}

// Lookups by id never cross workspaces.
func TestTenantScoping(t *testing.T) { both(t, testTenantScoping) }

func testTenantScoping(t *testing.T, dsn string) {
	s := open(t, dsn)
	ctx := context.Background()
	a, b := seed(t, s, "wa"), seed(t, s, "wb")
	err := s.Update(ctx, func(tx *Tx) error {
		if _, err := tx.UpsertEncoder(ctx, Encoder{ID: "e1", WorkspaceID: a.ID, BridgeID: "b-wa", ProtocolID: "p1", DisplayName: "E", ReaderName: "R", CreatedAt: t0}); err != nil {
			return err
		}
		if err := tx.CreateCredential(ctx, Credential{ID: "c1", WorkspaceID: a.ID, AccessMethodID: "am1", CardNumber: "1", CardFunctionType: "guest", StartsAt: t0, EndsAt: t0.Add(time.Hour), IssueSequence: 1, CreatedAt: t0}); err != nil {
			return err
		}
		return tx.CreateActionAttempt(ctx, ActionAttempt{ID: "a1", WorkspaceID: a.ID, ActionType: "SCAN_CREDENTIAL", Status: StatusPending, CreatedAt: t0, UpdatedAt: t0})
	})
	if err != nil {
		t.Fatal(err)
	}
	q := s.Q()
	if _, err := q.Encoder(ctx, b.ID, "e1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("encoder across workspaces: %v", err)
	}
	if _, err := q.Credential(ctx, b.ID, "c1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("credential across workspaces: %v", err)
	}
	if _, err := q.CredentialByAccessMethod(ctx, b.ID, "am1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("access method across workspaces: %v", err)
	}
	if _, err := q.ActionAttempt(ctx, b.ID, "a1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("attempt across workspaces: %v", err)
	}
	if l, _, _ := q.ListEncoders(ctx, b.ID, EncoderFilter{}, Page{}); len(l) != 0 {
		t.Errorf("encoders of b: %v", l)
	}
	if l, _, _ := q.ListCredentials(ctx, b.ID, CredentialFilter{}, Page{}); len(l) != 0 {
		t.Errorf("credentials of b: %v", l)
	}
	if _, err := q.Encoder(ctx, a.ID, "e1"); err != nil {
		t.Errorf("own encoder: %v", err)
	}
}

// A card with a lower sequence never replaces the recorded one.
func TestIssueCredentialKeepsNewest(t *testing.T) { both(t, testIssueCredentialKeepsNewest) }

func testIssueCredentialKeepsNewest(t *testing.T, dsn string) {
	s := open(t, dsn)
	ctx := context.Background()
	w := seed(t, s, "w")
	_ = s.Update(ctx, func(tx *Tx) error {
		return tx.CreateCredential(ctx, Credential{ID: "c1", WorkspaceID: w.ID, AccessMethodID: "am1", CardNumber: "1", CardFunctionType: "guest", StartsAt: t0, EndsAt: t0.Add(time.Hour), IssueSequence: 1, CreatedAt: t0})
	})
	for _, c := range []struct {
		seq  uint32
		uid  string
		want bool
	}{{5, "A", true}, {3, "B", false}, {5, "C", true}, {7, "D", true}} {
		changed, err := s.Q().IssueCredential(ctx, "c1", CardIssued{IssueSequence: c.seq, IssuedAt: t0, CardUID: c.uid})
		if err != nil || changed != c.want {
			t.Errorf("issue seq %d: changed %v %v, want %v", c.seq, changed, err, c.want)
		}
	}
	cr, _ := s.Q().Credential(ctx, w.ID, "c1")
	if cr.IssueSequence != 7 || cr.CardUID != "D" || !cr.IsIssued {
		t.Errorf("credential %+v", cr)
	}
}

// A row whose JSON column does not decode is an error naming the row, not
// a credential without entrances or an encoder without technologies.
func TestDamagedRows(t *testing.T) { both(t, testDamagedRows) }

func testDamagedRows(t *testing.T, dsn string) {
	s := open(t, dsn)
	ctx := context.Background()
	w := seed(t, s, "w")
	err := s.Update(ctx, func(tx *Tx) error {
		if err := tx.CreateCredential(ctx, Credential{ID: "c1", WorkspaceID: w.ID, AccessMethodID: "am1", CardNumber: "1", CardFunctionType: "guest",
			StartsAt: t0, EndsAt: t0.Add(time.Hour), EntranceIDs: []string{"room-101"}, IssueSequence: 1, CreatedAt: t0}); err != nil {
			return err
		}
		_, err := tx.UpsertEncoder(ctx, Encoder{ID: "e1", WorkspaceID: w.ID, BridgeID: "b-" + w.ID, ProtocolID: "p1", Technologies: []string{"mifare_classic"}, CreatedAt: t0})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, damage, id string
		read             func() error
	}{
		{"credential", `UPDATE credentials SET entrance_ids = '["room-1' WHERE id = 'c1'`, "c1", func() error {
			_, err := s.Q().Credential(ctx, w.ID, "c1")
			return err
		}},
		{"credential by access method", `UPDATE credentials SET entrance_ids = '' WHERE id = 'c1'`, "c1", func() error {
			_, err := s.Q().CredentialByAccessMethod(ctx, w.ID, "am1")
			return err
		}},
		{"credential list", `UPDATE credentials SET entrance_ids = '{}' WHERE id = 'c1'`, "c1", func() error {
			_, _, err := s.Q().ListCredentials(ctx, w.ID, CredentialFilter{}, Page{})
			return err
		}},
		{"encoder", `UPDATE encoders SET technologies = 'nfc' WHERE id = 'e1'`, "e1", func() error {
			_, err := s.Q().Encoder(ctx, w.ID, "e1")
			return err
		}},
		{"encoder list", `UPDATE encoders SET technologies = '[1]' WHERE id = 'e1'`, "e1", func() error {
			_, _, err := s.Q().ListEncoders(ctx, w.ID, EncoderFilter{}, Page{})
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.db.ExecContext(ctx, tt.damage); err != nil {
				t.Fatal(err)
			}
			err := tt.read()
			if !errors.Is(err, ErrDamaged) {
				t.Fatalf("read = %v, want ErrDamaged", err)
			}
			if !strings.Contains(err.Error(), tt.id) {
				t.Errorf("error %q does not name the row", err)
			}
		})
	}
}
