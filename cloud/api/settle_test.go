package api

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/encoder-bridge/encoder-bridge/cloud/store"
)

func TestHoldFor(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		name       string
		bound      time.Duration
		deadline   time.Duration // from now; 0: none
		wait       time.Duration
		hasWait    bool
		want       time.Duration
		wantAtOnce bool
	}{
		{name: "the bound", bound: 2 * time.Second, want: 2 * time.Second},
		{name: "off", bound: 0, wantAtOnce: true},
		{name: "off, negative", bound: -1, wantAtOnce: true},
		{name: "a far deadline", bound: 2 * time.Second, deadline: time.Minute, want: 2 * time.Second},
		{name: "a near deadline", bound: 2 * time.Second, deadline: time.Second, want: time.Second - settleMargin},
		{name: "a deadline within the margin", bound: 2 * time.Second, deadline: settleMargin, wantAtOnce: true},
		{name: "a deadline passed", bound: 2 * time.Second, deadline: -time.Second, wantAtOnce: true},
		{name: "Prefer: wait=1", bound: 2 * time.Second, wait: time.Second, hasWait: true, want: time.Second - settleMargin},
		{name: "Prefer: wait=60", bound: 2 * time.Second, wait: time.Minute, hasWait: true, want: 2 * time.Second},
		{name: "Prefer: wait=0", bound: 2 * time.Second, hasWait: true, wantAtOnce: true},
		{name: "Prefer: wait and a nearer deadline", bound: 2 * time.Second, deadline: 500 * time.Millisecond, wait: time.Second, hasWait: true,
			want: 400 * time.Millisecond},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := holdFor(tc.bound, now, now.Add(tc.deadline), tc.deadline != 0, tc.wait, tc.hasWait)
			if tc.wantAtOnce {
				if got > 0 {
					t.Fatalf("holdFor = %v, want no hold", got)
				}
				return
			}
			if got != tc.want {
				t.Fatalf("holdFor = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPreferWait(t *testing.T) {
	cases := []struct {
		header []string
		want   time.Duration
		ok     bool
	}{
		{nil, 0, false},
		{[]string{"wait=0"}, 0, true},
		{[]string{"wait=5"}, 5 * time.Second, true},
		{[]string{"WAIT = 3"}, 3 * time.Second, true},
		{[]string{`wait="2"`}, 2 * time.Second, true},
		{[]string{"respond-async, wait=10"}, 10 * time.Second, true},
		{[]string{"return=minimal", "wait=1"}, time.Second, true},
		{[]string{"wait=1; foo=bar"}, time.Second, true},
		{[]string{"wait=1, wait=9"}, time.Second, true}, // the first counts
		{[]string{"wait"}, 0, false},
		{[]string{"wait=-1"}, 0, false},
		{[]string{"wait=1.5"}, 0, false},
		{[]string{"wait=99999999999999999999"}, 0, false},
		{[]string{"waiting=1"}, 0, false},
	}
	for _, tc := range cases {
		h := http.Header{}
		for _, v := range tc.header {
			h.Add("Prefer", v)
		}
		got, ok := preferWait(h)
		if got != tc.want || ok != tc.ok {
			t.Errorf("preferWait(%q) = %v, %v; want %v, %v", tc.header, got, ok, tc.want, tc.ok)
		}
	}
}

// The Prefer header comes from any client.
func FuzzPreferWait(f *testing.F) {
	for _, s := range []string{"wait=5", "respond-async, wait=10", `wait="2"; x`, "wait=", "=,;", "wait=4294967295"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		d, ok := preferWait(http.Header{"Prefer": {v}})
		if d < 0 || (!ok && d != 0) {
			t.Fatalf("preferWait(%q) = %v, %v", v, d, ok)
		}
	})
}

// awaitCounter is a Dispatcher that only counts Await calls.
type awaitCounter struct {
	Dispatcher
	calls int
}

func (d *awaitCounter) Await(_ context.Context, _, _ string, _ time.Duration) (store.ActionAttempt, error) {
	d.calls++
	return store.ActionAttempt{Status: store.StatusSuccess}, nil
}

// After ReleaseHeld (shutdown) no answer is held, not even briefly.
func TestNoHoldAfterRelease(t *testing.T) {
	d := &awaitCounter{}
	a := New(Config{Jobs: d, SettleWait: time.Second})
	r := &request{ws: store.Workspace{ID: "w1"}}
	pending := store.ActionAttempt{ID: "a1", Status: store.StatusPending}
	if got := a.settle(context.Background(), r, pending); got.Status != store.StatusSuccess || d.calls != 1 {
		t.Fatalf("before release: %s after %d awaits", got.Status, d.calls)
	}
	a.ReleaseHeld()
	if got := a.settle(context.Background(), r, pending); got.Status != store.StatusPending || d.calls != 1 {
		t.Fatalf("after release: %s after %d awaits", got.Status, d.calls)
	}
	if n := a.held.Load(); n != 0 {
		t.Errorf("%d answers counted as held", n)
	}
}
