package pcsc

import (
	"testing"
	"time"

	"github.com/ebfe/scard"
)

func TestStateBits(t *testing.T) {
	// Event word as pcsc-lite returns it: event counter 3 in the upper half.
	present := scard.StateFlag(3<<16) | scard.StatePresent | scard.StateChanged
	empty := scard.StateFlag(4<<16) | scard.StateEmpty

	if stateBits(present) != scard.StatePresent|scard.StateChanged {
		t.Errorf("stateBits(%#x) = %#x", present, stateBits(present))
	}
	tests := []struct {
		ev            scard.StateFlag
		present, want bool
	}{
		{present, true, true},
		{present, false, false},
		{empty, true, false},
		{empty, false, true},
		// Counter bits alone never look like a card state.
		{scard.StateFlag(scard.StatePresent) << 16, true, false},
		{scard.StateFlag(scard.StateEmpty) << 16, false, false},
		{scard.StateUnaware, true, false},
		{scard.StateUnaware, false, false},
	}
	for _, tt := range tests {
		if got := cardState(tt.ev, tt.present); got != tt.want {
			t.Errorf("cardState(%#x, %v) = %v", tt.ev, tt.present, got)
		}
	}

	for _, ev := range []scard.StateFlag{
		scard.StateUnknown | scard.StateUnavailable | scard.StateChanged,
		scard.StateUnavailable,
		scard.StateFlag(7<<16) | scard.StateUnknown,
	} {
		if !readerGone(ev) {
			t.Errorf("readerGone(%#x) = false", ev)
		}
	}
	if readerGone(present) || readerGone(empty) || readerGone(scard.StateFlag(scard.StateUnknown)<<16) {
		t.Error("readerGone true for a present reader")
	}

	if got := nextState(present); got != scard.StateFlag(3<<16)|scard.StatePresent {
		t.Errorf("nextState(%#x) = %#x: want the counter kept and CHANGED cleared", present, got)
	}
}

func TestFilterReaders(t *testing.T) {
	got := filterReaders([]string{"A", pnpReader, "", "B"})
	if !sameReaders(got, []string{"A", "B"}) || len(got) != 2 {
		t.Errorf("filterReaders = %q", got)
	}
	if got := filterReaders(nil); got == nil || len(got) != 0 {
		t.Errorf("filterReaders(nil) = %#v, want an empty list", got)
	}
}

func TestSameReaders(t *testing.T) {
	tests := []struct {
		a, b []string
		want bool
	}{
		{nil, nil, true},
		{nil, []string{}, true},
		{[]string{"A", "B"}, []string{"B", "A"}, true},
		{[]string{"A"}, []string{"A", "B"}, false},
		{[]string{"A", "B"}, []string{"A", "C"}, false},
		{[]string{"A", "A"}, []string{"A", "B"}, false},
		{[]string{"A", "B"}, []string{"A", "A"}, false},
		{[]string{"A", "A", "B"}, []string{"A", "B", "A"}, true},
	}
	for _, tt := range tests {
		if got := sameReaders(tt.a, tt.b); got != tt.want {
			t.Errorf("sameReaders(%q, %q) = %v", tt.a, tt.b, got)
		}
	}
}

func TestServiceRetryAfter(t *testing.T) {
	const poll = 500 * time.Millisecond
	for _, tc := range []struct {
		name       string
		poll, down time.Duration
		want       time.Duration
	}{
		{"just gone", poll, 0, serviceRetry},
		{"restarting", poll, serviceFastFor - time.Millisecond, serviceRetry},
		{"stopped for good", poll, serviceFastFor, poll},
		{"long stopped", poll, time.Hour, poll},
		{"poll faster than the retry", 20 * time.Millisecond, 0, 20 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := serviceRetryAfter(tc.poll, tc.down); got != tc.want {
				t.Errorf("serviceRetryAfter(%v, %v) = %v, want %v", tc.poll, tc.down, got, tc.want)
			}
		})
	}
}
