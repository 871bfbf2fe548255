package main

import (
	"errors"
	"net"
	"strconv"
	"testing"

	"github.com/encoder-bridge/encoder-bridge/hwtest/vpcd"
)

// takeSlot with the real slot lock: a slot held by someone else is used
// only when ENCODER_BRIDGE_VPCD_HELD names it; a free one is locked.
func TestTakeSlot(t *testing.T) {
	// A port no vpcd slot uses, so the lock is this test's alone.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	addr := "127.0.0.1:" + strconv.Itoa(port)
	other := "127.0.0.1:" + strconv.Itoa(port+1)
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == heldEnv {
				return v
			}
			return ""
		}
	}
	for _, tc := range []struct {
		name    string
		held    bool // the caller holds the slot's lock
		env     string
		wantErr error
	}{
		{"free, no claim", false, "", nil},
		{"free, claimed", false, addr, nil},
		{"held, no claim", true, "", vpcd.ErrSlotBusy},
		{"held, another slot claimed", true, other, vpcd.ErrSlotBusy},
		{"held, claimed", true, addr, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.held {
				unlock, err := vpcd.LockSlot(addr)
				if err != nil {
					t.Fatal(err)
				}
				defer unlock()
			}
			unlock, err := takeSlot(addr, env(tc.env))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("takeSlot = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if !tc.held {
				// A free slot is really locked while virtual-encoder runs.
				if _, err := vpcd.LockSlot(addr); !errors.Is(err, vpcd.ErrSlotBusy) {
					t.Fatalf("slot taken, yet LockSlot = %v", err)
				}
			}
			unlock()
		})
	}
	if unlock, err := vpcd.LockSlot(addr); err != nil {
		t.Fatalf("slot still locked after the cases: %v", err)
	} else {
		unlock()
	}
}
