package clock

import (
	"testing"
	"time"
)

func TestFake(t *testing.T) {
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	f := NewFake(start)
	a := f.After(10 * time.Second)
	b := f.After(20 * time.Second)
	if f.Waiters() != 2 {
		t.Fatalf("waiters %d", f.Waiters())
	}
	f.Advance(9 * time.Second)
	select {
	case <-a:
		t.Fatal("fired early")
	default:
	}
	f.Advance(time.Second)
	if got := <-a; !got.Equal(start.Add(10 * time.Second)) {
		t.Fatalf("fired at %v", got)
	}
	f.Set(start) // never backwards
	if !f.Now().Equal(start.Add(10 * time.Second)) {
		t.Fatalf("now %v", f.Now())
	}
	f.Set(start.Add(time.Minute))
	<-b
	if f.Waiters() != 0 {
		t.Fatalf("waiters %d", f.Waiters())
	}
	select {
	case <-f.After(0):
	default:
		t.Fatal("After(0) did not fire at once")
	}
}

func TestFakeWaiting(t *testing.T) {
	f := NewFake(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	closed := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	if !closed(f.Waiting(0)) {
		t.Fatal("Waiting(0) not closed at once")
	}
	one, two := f.Waiting(1), f.Waiting(2)
	f.After(time.Second)
	if !closed(one) || closed(two) {
		t.Fatalf("one waiter: Waiting(1) closed %v, Waiting(2) closed %v", closed(one), closed(two))
	}
	f.Advance(time.Second) // fires it: no waiter left
	again := f.Waiting(1)
	if closed(again) || closed(two) {
		t.Fatal("Waiting closed with no waiter parked")
	}
	f.After(time.Second)
	f.After(time.Second)
	if !closed(again) || !closed(two) {
		t.Fatal("Waiting not closed with two waiters parked")
	}
}
