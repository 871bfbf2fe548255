package pcsc

import (
	"context"
	"sync"

	"github.com/ebfe/scard"
)

// pnpReader is the pseudo reader whose GetStatusChange returns when readers
// come or go, on pcsc-lite and on Windows alike. ListReaders never lists
// it, but Readers filters it anyway in case a platform does.
const pnpReader = `\\?PnP?\Notification`

// stateBits strips the event counter that pcsc-lite and WinSCard keep in
// the upper 16 bits of the event state (PCSC-TESTING.md): it changes on
// every insertion and removal, so it never equals an earlier word even
// when the card state it describes does.
func stateBits(f scard.StateFlag) scard.StateFlag {
	return f & 0xFFFF
}

// cardState reports whether the event state shows the card state WaitCard
// waits for.
func cardState(ev scard.StateFlag, present bool) bool {
	if present {
		return stateBits(ev)&scard.StatePresent != 0
	}
	return stateBits(ev)&scard.StateEmpty != 0
}

// readerGone reports whether the event state says the reader went away:
// pcsc-lite sets UNKNOWN|UNAVAILABLE for an unplugged reader, and
// UNAVAILABLE alone for a reader its driver lost.
func readerGone(ev scard.StateFlag) bool {
	return stateBits(ev)&(scard.StateUnknown|scard.StateUnavailable) != 0
}

// nextState is the current state for the next GetStatusChange: the whole
// event word, counter included, so a card swapped between two calls still
// wakes the next one; CHANGED only describes the previous call.
func nextState(ev scard.StateFlag) scard.StateFlag {
	return ev &^ scard.StateChanged
}

// filterReaders drops the PnP pseudo reader and empty names, and never
// returns nil, so "no reader" is an empty list.
func filterReaders(names []string) []string {
	out := make([]string, 0, len(names))
	for _, n := range names {
		if n == "" || n == pnpReader {
			continue
		}
		out = append(out, n)
	}
	return out
}

// sameReaders compares two reader lists as multisets: ListReaders does not
// promise an order.
func sameReaders(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	count := make(map[string]int, len(a))
	for _, n := range a {
		count[n]++
	}
	for _, n := range b {
		if count[n] == 0 {
			return false
		}
		count[n]--
	}
	return true
}

// statusGates serializes GetStatusChange calls naming the same reader,
// process-wide. ebfe/scard on Unix keeps each call's C copy of a reader
// name alive in a package-global map keyed by the name; a second
// concurrent call for that name replaces the entry, so the GC may free the
// first call's copy while pcsc-lite still rereads it after every wake-up.
// The map being global is why this is too.
var statusGates sync.Map // reader name → chan struct{} with capacity 1

// acquireGate takes the gate for name. It returns nil when ctx is done or
// the context closed first.
func acquireGate(ctx context.Context, done <-chan struct{}, name string) (release func()) {
	g, _ := statusGates.LoadOrStore(name, make(chan struct{}, 1))
	gate := g.(chan struct{})
	select {
	case gate <- struct{}{}:
		return func() { <-gate }
	case <-ctx.Done():
		return nil
	case <-done:
		return nil
	}
}
