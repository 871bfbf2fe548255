package bus

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestEventCoding(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Event
		wantErr string
	}{
		{name: "job", in: "job|i1|desk-1|j1", want: Event{Kind: JobReady, Origin: "i1", Bridge: "desk-1", ID: "j1"}},
		{name: "settled", in: "settled|i1||a1", want: Event{Kind: AttemptSettled, Origin: "i1", ID: "a1"}},
		{name: "revoked", in: "revoked|i1|desk-1|", want: Event{Kind: BridgeRevoked, Origin: "i1", Bridge: "desk-1"}},
		{name: "resync is never sent", in: "resync|i1||", wantErr: "unknown kind"},
		{name: "unknown kind", in: "boom|i1|b|j", wantErr: `unknown kind "boom"`},
		{name: "too few fields", in: "job|i1|b", wantErr: "3 fields, want 4"},
		{name: "too many fields", in: "job|i1|b|j|x", wantErr: "5 fields"},
		{name: "job without id", in: "job|i1|b|", wantErr: "without bridge or job id"},
		{name: "settled without id", in: "settled|i1||", wantErr: "without attempt id"},
		{name: "revoked without bridge", in: "revoked|i1||", wantErr: "without bridge id"},
		{name: "no origin", in: "settled|||a1", wantErr: "no origin"},
		{name: "too long", in: "settled|i1||" + strings.Repeat("a", maxEventLen), wantErr: "bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decode(tt.in)
			if tt.wantErr != "" {
				if !errors.Is(err, ErrBadEvent) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("decode(%q) = %v, want ErrBadEvent naming %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("decode(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
			back, err := encode(got)
			if err != nil || back != tt.in {
				t.Fatalf("encode(%+v) = %q, %v; want %q", got, back, err, tt.in)
			}
		})
	}
	if _, err := encode(Event{Kind: JobReady, Origin: "i|1", Bridge: "b", ID: "j"}); !errors.Is(err, ErrBadEvent) {
		t.Fatalf("an id with '|' encoded: %v", err)
	}
}

// Notifications come from the database: whatever their payload, decode
// either refuses it or returns an event that encodes back to it.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{"job|i1|desk-1|j1", "settled|i1||a1", "revoked|i1|b|", "|||", "job|||", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := decode(s)
		if err != nil {
			if !errors.Is(err, ErrBadEvent) {
				t.Fatalf("decode error %v is not ErrBadEvent", err)
			}
			return
		}
		back, err := encode(e)
		if err != nil || back != s {
			t.Fatalf("decode(%q) = %+v, encodes to %q, %v", s, e, back, err)
		}
	})
}

func TestLocal(t *testing.T) {
	var l Local
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	heard := map[string]chan Event{"a": make(chan Event, 8), "b": make(chan Event, 8)}
	done := make(chan struct{}, 2)
	for name, ch := range heard {
		go func() {
			l.Listen(ctx, name, func(e Event) { ch <- e })
			done <- struct{}{}
		}()
	}
	for l.listeners() != 2 {
		time.Sleep(time.Millisecond)
	}
	e := Event{Kind: AttemptSettled, Origin: "a", ID: "att-1"}
	if err := l.Publish(ctx, e); err != nil {
		t.Fatal(err)
	}
	if got := <-heard["b"]; got != e {
		t.Fatalf("b heard %+v, want %+v", got, e)
	}
	select {
	case got := <-heard["a"]:
		t.Fatalf("the publisher heard its own event %+v", got)
	case <-time.After(50 * time.Millisecond):
	}
	if err := l.Publish(ctx, Event{Kind: JobReady, Origin: "a", Bridge: "b|x", ID: "j"}); !errors.Is(err, ErrBadEvent) {
		t.Fatalf("a malformed event was published: %v", err)
	}
	cancel()
	<-done
	<-done
	if n := l.listeners(); n != 0 {
		t.Fatalf("%d listeners left after Listen returned", n)
	}
}

// A listener that falls behind loses events and hears Resync instead.
func TestLocalOverflowResyncs(t *testing.T) {
	var l Local
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	block := make(chan struct{})
	heard := make(chan Event, 2*localQueue)
	go l.Listen(ctx, "slow", func(e Event) {
		<-block
		heard <- e
	})
	for l.listeners() != 1 {
		time.Sleep(time.Millisecond)
	}
	for range localQueue + 10 {
		if err := l.Publish(ctx, Event{Kind: AttemptSettled, Origin: "fast", ID: "a"}); err != nil {
			t.Fatal(err)
		}
	}
	close(block)
	var resync bool
	for !resync {
		select {
		case e := <-heard:
			resync = e.Kind == Resync
		case <-time.After(5 * time.Second):
			t.Fatal("no Resync after events were dropped")
		}
	}
}
