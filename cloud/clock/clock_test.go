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
