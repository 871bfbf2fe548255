package store

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"
)

// The statements whose SQL differs between the backends (LIKE, JSON
// lists, booleans, upserts, RETURNING, NULL times), on both.
func TestQueries(t *testing.T) { both(t, testQueries) }

func testQueries(t *testing.T, dsn string) {
	s := open(t, dsn)
	ctx := context.Background()
	w := seed(t, s, "w")
	q := s.Q()
	mustDo(t, s.Update(ctx, func(tx *Tx) error {
		for i, c := range []struct{ id, number, user string }{
			{"c-1", "100001", "Alice_Smith"},
			{"c-2", "100002", "bob%jones"},
			{"c-3", "200003", `back\slash`},
		} {
			if err := tx.CreateCredential(ctx, Credential{ID: c.id, WorkspaceID: w.ID, AccessMethodID: "am" + c.id, AcsUserID: c.user,
				CardNumber: c.number, CardFunctionType: "guest", StartsAt: t0, EndsAt: t0.Add(time.Hour),
				IssueSequence: uint32(i + 1), CreatedAt: t0.Add(time.Duration(i) * time.Second)}); err != nil {
				return err
			}
		}
		return nil
	}))

	t.Run("search", func(t *testing.T) {
		tests := []struct {
			search string
			want   []string
		}{
			{"10000", []string{"c-1", "c-2"}},
			{"card 2000", []string{"c-3"}}, // the display name, any case
			{"ALICE", []string{"c-1"}},     // case-insensitive on both
			{"_", []string{"c-1"}},         // a literal underscore, not any character
			{"%", []string{"c-2"}},         // a literal percent sign
			{`\`, []string{"c-3"}},         // a literal backslash
			{"c-2", []string{"c-2"}},
			{"nobody", nil},
		}
		for _, tt := range tests {
			list, _, err := q.ListCredentials(ctx, w.ID, CredentialFilter{Search: tt.search}, Page{})
			if err != nil {
				t.Fatalf("search %q: %v", tt.search, err)
			}
			var got []string
			for _, c := range list {
				got = append(got, c.ID)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("search %q = %v, want %v", tt.search, got, tt.want)
			}
		}
	})

	t.Run("pages", func(t *testing.T) {
		var got []string
		p := Page{Limit: 2}
		for {
			list, more, err := q.ListCredentials(ctx, w.ID, CredentialFilter{}, p)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range list {
				got = append(got, c.ID)
			}
			if !more {
				break
			}
			last := list[len(list)-1]
			p.After = &Cursor{CreatedAt: ms(last.CreatedAt), ID: last.ID}
		}
		if !slices.Equal(got, []string{"c-1", "c-2", "c-3"}) {
			t.Errorf("pages %v", got)
		}
		before := t0.Add(1500 * time.Millisecond)
		list, _, err := q.ListCredentials(ctx, w.ID, CredentialFilter{CreatedBefore: &before, AcsUserID: "bob%jones"}, Page{})
		if err != nil || len(list) != 1 || list[0].ID != "c-2" {
			t.Errorf("filtered %v %v", list, err)
		}
	})

	t.Run("counters", func(t *testing.T) {
		n1, err1 := q.NextCardNumber(ctx, w.ID)
		n2, err2 := q.NextCardNumber(ctx, w.ID)
		if err1 != nil || err2 != nil || n1 != 100001 || n2 != 100002 {
			t.Errorf("card numbers %d %d %v %v", n1, n2, err1, err2)
		}
		if _, err := q.NextCardNumber(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("card number of no workspace: %v", err)
		}
		b1, _ := q.CountEncodeJob(ctx, "c-1")
		b2, _ := q.CountEncodeJob(ctx, "c-1")
		if b1 != 0 || b2 != 1 {
			t.Errorf("encode jobs before %d %d", b1, b2)
		}
		cr, _ := q.Credential(ctx, w.ID, "c-1")
		if cr.EncodeJobs != 2 || cr.IsIssued || cr.IssuedAt != nil {
			t.Errorf("credential %+v", cr)
		}
	})

	t.Run("bridges", func(t *testing.T) {
		mustDo(t, s.Update(ctx, func(tx *Tx) error {
			return tx.CreateBridge(ctx, Bridge{ID: "b2", WorkspaceID: w.ID, Name: "b2", TokenID: "tok2", TokenHash: []byte{0, 1, 255}, CreatedAt: t0})
		}))
		mustDo(t, q.RevokeBridge(ctx, "b2", t0))
		if err := q.RevokeBridge(ctx, "b2", t0); !errors.Is(err, ErrNotFound) {
			t.Errorf("second revoke: %v", err)
		}
		revoked, err := q.RevokedBridges(ctx, []string{"b-w", "b2", "unknown"})
		if err != nil || !slices.Equal(revoked, []string{"b2"}) {
			t.Errorf("revoked %v %v", revoked, err)
		}
		mustDo(t, q.TouchBridge(ctx, "b2", t0.Add(time.Second), "1.2.3"))
		mustDo(t, q.RecordJournalReset(ctx, "b2", t0.Add(2*time.Second), "bad crc"))
		b, err := q.BridgeByToken(ctx, "tok2")
		if err != nil || !slices.Equal(b.TokenHash, []byte{0, 1, 255}) || b.SoftwareVersion != "1.2.3" || b.RevokedAt == nil ||
			!b.LastSeenAt.Equal(t0.Add(time.Second)) || !b.JournalResetAt.Equal(t0.Add(2*time.Second)) || b.JournalResetReason != "bad crc" {
			t.Errorf("bridge %+v %v", b, err)
		}
		ws, err := q.Workspaces(ctx)
		if err != nil || len(ws) != 1 || ws[0].IsSandbox {
			t.Errorf("workspaces %+v %v", ws, err)
		}
	})

	t.Run("encoders", func(t *testing.T) {
		for _, id := range []string{"e1", "e2", "e3"} {
			if _, err := q.UpsertEncoder(ctx, Encoder{ID: id, WorkspaceID: w.ID, BridgeID: "b-w", ProtocolID: "p" + id, DisplayName: id, CreatedAt: t0}); err != nil {
				t.Fatal(err)
			}
		}
		removed, err := q.RemoveEncodersExcept(ctx, "b-w", []string{"pe1"}, t0)
		if err != nil || len(removed) != 2 || removed[0].RemovedAt == nil {
			t.Errorf("removed except pe1: %+v %v", removed, err)
		}
		e, err := q.UpsertEncoder(ctx, Encoder{ID: "e2", WorkspaceID: w.ID, BridgeID: "b-w", ProtocolID: "pe2", DisplayName: "renamed",
			Technologies: []string{"nfc"}, CreatedAt: t0.Add(time.Hour)})
		if err != nil || e.RemovedAt != nil || e.DisplayName != "renamed" || !e.CreatedAt.Equal(t0) || !slices.Equal(e.Technologies, []string{"nfc"}) {
			t.Errorf("upserted %+v %v", e, err)
		}
		n, known, err := q.EncoderRecords(ctx, "b-w", "e3")
		if err != nil || n != 3 || !known {
			t.Errorf("records %d %v %v", n, known, err)
		}
		if _, known, _ := q.EncoderRecords(ctx, "b-w", "e9"); known {
			t.Error("e9 is known")
		}
		list, _, err := q.ListEncoders(ctx, w.ID, EncoderFilter{IDs: []string{"e1", "e3"}}, Page{})
		if err != nil || len(list) != 2 || list[0].RemovedAt != nil || list[1].RemovedAt == nil {
			t.Errorf("listed %+v %v", list, err)
		}
		if _, _, err := q.RemoveEncoder(ctx, "b-w", "nope", t0); !errors.Is(err, ErrNotFound) {
			t.Errorf("remove unknown: %v", err)
		}
		if e, changed, err := q.RemoveEncoder(ctx, "b-w", "pe1", t0); err != nil || !changed || e.ID != "e1" || e.RemovedAt == nil {
			t.Errorf("remove e1: %+v %v %v", e, changed, err)
		}
		if _, changed, err := q.RemoveEncoder(ctx, "b-w", "pe1", t0); err != nil || changed {
			t.Errorf("remove e1 again: %v %v", changed, err)
		}
		if _, err := q.UpsertEncoder(ctx, Encoder{ID: "e1", WorkspaceID: w.ID, BridgeID: "b-w", ProtocolID: "pe1", DisplayName: "e1", CreatedAt: t0}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("simulations", func(t *testing.T) {
		mustDo(t, q.SetSimulation(ctx, "e1", "scan", json.RawMessage(`{"a":1}`), t0))
		mustDo(t, q.SetSimulation(ctx, "e1", "scan", json.RawMessage(`{"a":2}`), t0))
		mustDo(t, s.Update(ctx, func(tx *Tx) error {
			got, err := tx.Simulation(ctx, "e1", "scan")
			if err != nil || string(got) != `{"a":2}` {
				t.Errorf("simulation %s %v", got, err)
			}
			return tx.DeleteSimulation(ctx, "e1", "scan")
		}))
		if _, err := q.Simulation(ctx, "e1", "scan"); !errors.Is(err, ErrNotFound) {
			t.Errorf("after delete: %v", err)
		}
	})

	t.Run("jobs", func(t *testing.T) {
		mustDo(t, s.Update(ctx, func(tx *Tx) error {
			if err := tx.CreateActionAttempt(ctx, ActionAttempt{ID: "a1", WorkspaceID: w.ID, ActionType: "ENCODE_CREDENTIAL", Status: StatusPending, CreatedAt: t0, UpdatedAt: t0}); err != nil {
				return err
			}
			return tx.CreateJob(ctx, Job{ID: "j1", ActionAttemptID: "a1", WorkspaceID: w.ID, BridgeID: "b-w", EncoderID: "e1", Kind: "encode",
				CredentialID: "c-1", IssueSequence: 1<<32 - 1, Payload: []byte(`{"x":1}`), Deadline: t0.Add(time.Minute), CreatedAt: t0, SentAt: &t0})
		}))
		if un, _ := q.UnackedJobs(ctx, t0, t0); len(un) != 1 {
			t.Errorf("unacked %v", un)
		}
		mustDo(t, q.MarkJobAcked(ctx, "j1", t0.Add(time.Second)))
		mustDo(t, q.MarkJobAcked(ctx, "j1", t0.Add(2*time.Second))) // the first ack stays
		mustDo(t, q.SetJobStage(ctx, "j1", "writing", t0.Add(time.Second)))
		first, err := q.SetJobResult(ctx, "j1", json.RawMessage(`{"ok":true}`), t0.Add(3*time.Second))
		again, _ := q.SetJobResult(ctx, "j1", json.RawMessage(`{"ok":false}`), t0.Add(4*time.Second))
		if err != nil || !first || again {
			t.Errorf("results %v %v %v", first, again, err)
		}
		done, err := q.FinishActionAttempt(ctx, "a1", StatusSuccess, json.RawMessage(`{"r":1}`), "", "", t0.Add(3*time.Second))
		twice, _ := q.FinishActionAttempt(ctx, "a1", StatusError, nil, "x", "y", t0.Add(4*time.Second))
		if err != nil || !done || twice {
			t.Errorf("finish %v %v %v", done, twice, err)
		}
		mustDo(t, q.CloseJob(ctx, "j1", t0.Add(3*time.Second)))
		j, err := q.JobOfAttempt(ctx, "a1")
		if err != nil || j.IssueSequence != 1<<32-1 || !j.AckedAt.Equal(t0.Add(time.Second)) || j.Stage != "writing" ||
			string(j.Result) != `{"ok":true}` || j.ClosedAt == nil || string(j.Payload) != `{"x":1}` {
			t.Errorf("job %+v %v", j, err)
		}
		a, err := q.ActionAttempt(ctx, w.ID, "a1")
		if err != nil || a.Status != StatusSuccess || string(a.Result) != `{"r":1}` {
			t.Errorf("attempt %+v %v", a, err)
		}
		if due, _ := q.DueJobs(ctx, t0.Add(time.Hour)); len(due) != 0 {
			t.Errorf("a closed job is due: %v", due)
		}
	})
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
