package bus

import (
	"context"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/encoder-bridge/encoder-bridge/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// listener listens as instance on p and hands every event over a channel.
func listener(t *testing.T, p *Postgres, instance string) <-chan Event {
	t.Helper()
	ch := make(chan Event, 64)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Listen(ctx, instance, func(e Event) { ch <- e }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Listen returned %v after its context ended, want nil", err)
		}
	})
	return ch
}

func next(t *testing.T, ch <-chan Event) Event {
	t.Helper()
	select {
	case e := <-ch:
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10 s")
		return Event{}
	}
}

// publishUntilHeard publishes e until the listener hears it: LISTEN takes
// effect some time after Listen starts.
func publishUntilHeard(t *testing.T, p *Postgres, ch <-chan Event, e Event) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		if err := p.Publish(context.Background(), e); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-ch:
			if got.Kind == Resync {
				continue // LISTEN took effect
			}
			if got != e {
				t.Fatalf("heard %+v, want %+v", got, e)
			}
			return
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("the listener never heard the event")
		}
	}
}

func TestPostgresDeliversToOthers(t *testing.T) {
	dsn := pgtest.DSN(t)
	a, err := OpenPostgres(context.Background(), dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := OpenPostgres(context.Background(), dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	heardA, heardB := listener(t, a, "a"), listener(t, b, "b")
	publishUntilHeard(t, a, heardB, Event{Kind: AttemptSettled, Origin: "a", ID: "warm-up"})
	publishUntilHeard(t, b, heardA, Event{Kind: AttemptSettled, Origin: "b", ID: "warm-up"})
	for len(heardA) > 0 {
		<-heardA // the warm-up's repeats
	}
	// In order, and never back to the publisher.
	want := []Event{
		{Kind: JobReady, Origin: "a", Bridge: "desk-1", ID: "j1"},
		{Kind: AttemptSettled, Origin: "a", ID: "att-1"},
		{Kind: BridgeRevoked, Origin: "a", Bridge: "desk-2"},
	}
	for _, e := range want {
		if err := a.Publish(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	for _, w := range want {
		for {
			got := next(t, heardB)
			if got.ID == "warm-up" {
				continue
			}
			if got != w {
				t.Fatalf("b heard %+v, want %+v", got, w)
			}
			break
		}
	}
	select {
	case e := <-heardA:
		if e.ID != "warm-up" {
			t.Fatalf("the publisher heard its own event %+v", e)
		}
	case <-time.After(200 * time.Millisecond):
	}
}

// A listening connection that dies is dialled again; the listener hears
// Resync (it may have missed events) and then events again.
func TestPostgresResyncAfterLostConnection(t *testing.T) {
	dsn := pgtest.DSN(t)
	p, err := OpenPostgres(context.Background(), dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	heard := listener(t, p, "b")
	publishUntilHeard(t, p, heard, Event{Kind: AttemptSettled, Origin: "a", ID: "before"})
	for len(heard) > 0 {
		<-heard
	}
	// The administrator (or a failover) ends the listening session.
	admin, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	var n int
	if err := admin.QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE 'LISTEN%'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("terminated %d listening sessions (%v), want 1", n, err)
	}
	for {
		e := next(t, heard)
		if e.Kind == Resync {
			break
		}
		if e.ID != "before" {
			t.Fatalf("heard %+v before Resync", e)
		}
	}
	// The publishing connection was ended too if it shared nothing: it
	// is redialled on use either way.
	publishUntilHeard(t, p, heard, Event{Kind: AttemptSettled, Origin: "a", ID: "after"})
}

func TestOpenPostgresErrors(t *testing.T) {
	c := pgtest.Shared(t)
	const pw = "s3cret-pw"
	tests := []struct {
		name, dsn, want string
	}{
		{name: "does not parse", dsn: "postgres://u:" + pw + "@%zz/db", want: "does not parse"},
		{name: "no such database", dsn: c.URL("no_such_database", pgtest.Superuser, pw), want: "bus: connect"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := OpenPostgres(context.Background(), tt.dsn, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("OpenPostgres = %v, want an error naming %q", err, tt.want)
			}
			if strings.Contains(err.Error(), pw) || strings.Contains(err.Error(), url.QueryEscape(pw)) {
				t.Fatalf("the error shows the password: %v", err)
			}
		})
	}
}

// Notices sent while an instance starts, before its LISTEN takes effect,
// are lost: the listener hears Resync first, so it reads the rows.
func TestPostgresFirstListenResyncs(t *testing.T) {
	p, err := OpenPostgres(context.Background(), pgtest.DSN(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if e := next(t, listener(t, p, "a")); e.Kind != Resync {
		t.Fatalf("first heard %+v, want Resync", e)
	}
}
