package store

import (
	"context"
	"testing"
	"time"
)

func TestBridgeLinks(t *testing.T) { both(t, testBridgeLinks) }

// A bridge is online while the instance holding its link is fresh: a
// crashed instance's row stops counting by itself, a newer link on
// another instance takes the row over, and the old instance's late
// disconnect does not remove the new link.
func testBridgeLinks(t *testing.T, dsn string) {
	s := open(t, dsn)
	seed(t, s, "w1")
	ctx := context.Background()
	q := s.Q()
	const b = "b-w1"
	linked := func(now time.Time) bool {
		t.Helper()
		ok, err := q.BridgeLinked(ctx, b, now.Add(-6*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		do   func()
		at   time.Time
		want bool
	}{
		{name: "never linked", do: func() {}, at: t0, want: false},
		{name: "linked to a live instance", do: func() {
			must(q.HeartbeatInstance(ctx, "i1", t0))
			must(q.SetBridgeLink(ctx, b, "i1", t0))
		}, at: t0.Add(time.Second), want: true},
		{name: "its instance stopped beating", do: func() {}, at: t0.Add(7 * time.Second), want: false},
		{name: "relinked to another instance", do: func() {
			must(q.HeartbeatInstance(ctx, "i2", t0.Add(7*time.Second)))
			must(q.SetBridgeLink(ctx, b, "i2", t0.Add(7*time.Second)))
		}, at: t0.Add(8 * time.Second), want: true},
		{name: "the old instance's late disconnect", do: func() { must(q.DropBridgeLink(ctx, b, "i1")) }, at: t0.Add(8 * time.Second), want: true},
		{name: "an instance row for a link nobody holds", do: func() { must(q.HeartbeatInstance(ctx, "i1", t0.Add(8*time.Second))) }, at: t0.Add(8 * time.Second), want: true},
		{name: "its own disconnect", do: func() { must(q.DropBridgeLink(ctx, b, "i2")) }, at: t0.Add(8 * time.Second), want: false},
		{name: "a clean stop removes the instance and its links", do: func() {
			must(q.SetBridgeLink(ctx, b, "i1", t0.Add(9*time.Second)))
			must(s.Update(ctx, func(tx *Tx) error { return tx.RemoveInstance(ctx, "i1") }))
		}, at: t0.Add(9 * time.Second), want: false},
	}
	for _, tt := range tests {
		tt.do()
		if got := linked(tt.at); got != tt.want {
			t.Fatalf("%s: linked = %v, want %v", tt.name, got, tt.want)
		}
	}
}
