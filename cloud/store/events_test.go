package store

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

func event(ws, id, typ string, at time.Time) Event {
	return Event{ID: id, WorkspaceID: ws, Type: typ, AcsEncoderID: "enc-" + id, Body: json.RawMessage(`{"event_id":"` + id + `"}`),
		OccurredAt: at, CreatedAt: at}
}

func record(t *testing.T, s *Store, evs ...Event) []Event {
	t.Helper()
	ctx := context.Background()
	var out []Event
	err := s.Update(ctx, func(tx *Tx) error {
		out = out[:0]
		for _, e := range evs {
			got, err := tx.RecordEvent(ctx, e)
			if err != nil {
				return err
			}
			out = append(out, got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// An event and its deliveries are written in the caller's transaction:
// rolled back with it, and fanned out only to the webhooks that receive
// its type.
func TestRecordEventFansOutInTransaction(t *testing.T) { both(t, testRecordEventFansOutInTransaction) }

func testRecordEventFansOutInTransaction(t *testing.T, dsn string) {
	s := open(t, dsn)
	ctx := context.Background()
	seed(t, s, "w1")
	seed(t, s, "w2")
	hooks := []Webhook{
		{ID: "h-all", WorkspaceID: "w1", URL: "https://a.example/", EventTypes: []string{"*"}, Secret: "whsec_AAAA", CreatedAt: t0},
		{ID: "h-enc", WorkspaceID: "w1", URL: "https://b.example/", EventTypes: []string{"acs_encoder.added"}, Secret: "whsec_AAAA", CreatedAt: t0},
		{ID: "h-other", WorkspaceID: "w2", URL: "https://c.example/", EventTypes: []string{"*"}, Secret: "whsec_AAAA", CreatedAt: t0},
	}
	err := s.Update(ctx, func(tx *Tx) error {
		for _, h := range hooks {
			if err := tx.CreateWebhook(ctx, h); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	boom := fmt.Errorf("boom")
	err = s.Update(ctx, func(tx *Tx) error {
		if _, err := tx.RecordEvent(ctx, event("w1", "e0", "acs_encoder.added", t0)); err != nil {
			return err
		}
		return boom
	})
	if err != boom {
		t.Fatalf("update: %v", err)
	}
	got := record(t, s, event("w1", "e1", "acs_encoder.added", t0), event("w1", "e2", "acs_credential.issued", t0.Add(time.Second)))
	if got[0].Seq != 1 || got[1].Seq != 2 {
		t.Errorf("sequence after a rolled back event: %d %d, want 1 2", got[0].Seq, got[1].Seq)
	}
	for _, c := range []struct {
		hook string
		want []string
	}{{"h-all", []string{"e1", "e2"}}, {"h-enc", []string{"e1"}}, {"h-other", nil}} {
		ds, err := s.Q().Deliveries(ctx, c.hook)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, d := range ds {
			ids = append(ids, d.EventID)
		}
		if fmt.Sprint(ids) != fmt.Sprint(c.want) {
			t.Errorf("%s deliveries %v, want %v", c.hook, ids, c.want)
		}
	}
	if _, err := s.Q().Event(ctx, "w2", "e1"); err != ErrNotFound {
		t.Errorf("another workspace's event: %v", err)
	}
}

func TestListEventsFilters(t *testing.T) { both(t, testListEventsFilters) }

func testListEventsFilters(t *testing.T, dsn string) {
	s := open(t, dsn)
	ctx := context.Background()
	seed(t, s, "w1")
	cred := event("w1", "e3", "acs_credential.issued", t0.Add(2*time.Second))
	cred.AcsEncoderID, cred.AcsCredentialID, cred.AccessMethodID = "", "c1", "am1"
	method := event("w1", "e4", "access_method.issued", t0.Add(2*time.Second))
	method.AcsEncoderID, method.AcsCredentialID, method.AccessMethodID = "", "c1", "am1"
	record(t, s, event("w1", "e1", "acs_encoder.added", t0), event("w1", "e2", "acs_encoder.removed", t0.Add(time.Second)), cred, method)
	after, before := t0, t0.Add(2*time.Second)
	cases := []struct {
		name string
		f    EventFilter
		want string
	}{
		{"all, newest first", EventFilter{}, "[e4 e3 e2 e1]"},
		{"since, exclusive", EventFilter{After: &after}, "[e4 e3 e2]"},
		{"between, exclusive", EventFilter{After: &after, Before: &before}, "[e2]"},
		{"types", EventFilter{Types: []string{"acs_encoder.added", "acs_credential.issued"}}, "[e3 e1]"},
		{"ids", EventFilter{IDs: []string{"e2"}}, "[e2]"},
		{"encoder", EventFilter{AcsEncoderID: "enc-e1"}, "[e1]"},
		{"credential", EventFilter{AcsCredentialID: "c1"}, "[e4 e3]"},
		{"access method", EventFilter{AccessMethodIDs: []string{"am1"}}, "[e4 e3]"},
		{"with system", EventFilter{WithSystem: true}, "[e3 e2 e1]"},
		{"limit and offset", EventFilter{Limit: 2, Offset: 1}, "[e3 e2]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			list, err := s.Q().ListEvents(ctx, "w1", c.f)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, e := range list {
				ids = append(ids, e.ID)
			}
			if got := fmt.Sprint(ids); got != c.want {
				t.Errorf("got %s, want %s", got, c.want)
			}
		})
	}
}

// Only the oldest open delivery of each webhook is due, and of two owners
// claiming it one wins until the lease runs out.
func TestOutboxOrderAndLeases(t *testing.T) { both(t, testOutboxOrderAndLeases) }

func testOutboxOrderAndLeases(t *testing.T, dsn string) {
	s := open(t, dsn)
	ctx := context.Background()
	seed(t, s, "w1")
	if err := s.Update(ctx, func(tx *Tx) error {
		return tx.CreateWebhook(ctx, Webhook{ID: "h1", WorkspaceID: "w1", URL: "https://a.example/", EventTypes: []string{"*"}, Secret: "whsec_AAAA", CreatedAt: t0})
	}); err != nil {
		t.Fatal(err)
	}
	record(t, s, event("w1", "e1", "acs_encoder.added", t0), event("w1", "e2", "acs_encoder.added", t0))
	q := s.Q()
	due, err := q.DueDeliveries(ctx, t0, 10)
	if err != nil || len(due) != 1 || due[0].EventID != "e1" {
		t.Fatalf("due %v %v, want e1 alone", due, err)
	}
	if ok, err := q.ClaimDelivery(ctx, "h1", "e1", "A", t0, t0.Add(30*time.Second)); !ok || err != nil {
		t.Fatalf("A's claim: %v %v", ok, err)
	}
	if ok, _ := q.ClaimDelivery(ctx, "h1", "e1", "B", t0.Add(time.Second), t0.Add(31*time.Second)); ok {
		t.Fatal("B claimed a delivery A holds")
	}
	if due, _ := q.DueDeliveries(ctx, t0.Add(time.Second), 10); len(due) != 0 {
		t.Fatalf("leased head still due, or e2 overtook it: %v", due)
	}
	// A's lease runs out (A died): B takes over; A's late record is refused.
	if ok, _ := q.ClaimDelivery(ctx, "h1", "e1", "B", t0.Add(30*time.Second), t0.Add(60*time.Second)); !ok {
		t.Fatal("B could not take over an expired lease")
	}
	if ok, _ := q.RecordAttempt(ctx, "h1", "e1", "A", Attempt{Delivered: true, Status: 200, At: t0.Add(31 * time.Second)}); ok {
		t.Fatal("A recorded an attempt on a delivery it no longer holds")
	}
	next := t0.Add(40 * time.Second)
	if ok, err := q.RecordAttempt(ctx, "h1", "e1", "B", Attempt{Status: 500, Error: "receiver answered 500", At: t0.Add(31 * time.Second), NextAt: next}); !ok || err != nil {
		t.Fatalf("B's failed attempt: %v %v", ok, err)
	}
	if due, _ := q.DueDeliveries(ctx, next.Add(-time.Millisecond), 10); len(due) != 0 {
		t.Fatalf("due before its retry time: %v", due)
	}
	due, _ = q.DueDeliveries(ctx, next, 10)
	if len(due) != 1 || due[0].EventID != "e1" || due[0].Attempts != 1 || due[0].LastStatus != 500 {
		t.Fatalf("retry: %+v", due)
	}
	q.ClaimDelivery(ctx, "h1", "e1", "B", next, next.Add(30*time.Second))
	q.RecordAttempt(ctx, "h1", "e1", "B", Attempt{Delivered: true, Status: 204, At: next})
	due, _ = q.DueDeliveries(ctx, next, 10)
	if len(due) != 1 || due[0].EventID != "e2" {
		t.Fatalf("after e1 was delivered: %+v, want e2", due)
	}
	// Deleting the webhook gives up what it still had.
	if err := s.Update(ctx, func(tx *Tx) error { return tx.DeleteWebhook(ctx, "w1", "h1", next) }); err != nil {
		t.Fatal(err)
	}
	if due, _ := q.DueDeliveries(ctx, next, 10); len(due) != 0 {
		t.Errorf("deliveries of a deleted webhook still due: %v", due)
	}
	ds, _ := q.Deliveries(ctx, "h1")
	if len(ds) != 2 || ds[0].DeliveredAt == nil || ds[1].FailedAt == nil || ds[1].LastError != "webhook deleted" {
		t.Errorf("deliveries after delete: %+v", ds)
	}
	if _, err := q.Webhook(ctx, "w1", "h1"); err != ErrNotFound {
		t.Errorf("deleted webhook: %v", err)
	}
}
