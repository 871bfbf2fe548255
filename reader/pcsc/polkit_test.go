package pcsc

import (
	"context"
	"errors"
	"testing"

	"github.com/ebfe/scard"

	"github.com/encoder-bridge/encoder-bridge/reader"
)

// pcscd 2.x refusing the bridge through polkit (pcsc-lite built with
// polkit; Debian bookworm's 1.9.9 is not, so only the fake can): every
// call says so, and the log says it once, with the fix.
func TestPolkitRefusalLoggedOnce(t *testing.T) {
	for _, tt := range []struct {
		name      string
		raceEvery int
	}{
		{name: "security violation"},
		// Some refused clients see their socket closed before their first
		// write, which pcsc-lite reports as NO_SERVICE.
		{name: "racing the close", raceEvery: 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			svc := newFakeService(true, "A")
			svc.setRefuse(true, tt.raceEvery)
			c, logs := openFake(t, svc)
			ctx := t.Context()

			for range 5 {
				_, err := c.Readers(ctx)
				if tt.raceEvery == 0 && !errors.Is(err, reader.ErrNotAuthorized) {
					t.Fatalf("Readers: %v, want ErrNotAuthorized", err)
				}
				if !errors.Is(err, reader.ErrNoService) {
					t.Fatalf("Readers: %v, want ErrNoService too", err)
				}
			}
			if err := c.WaitCard(ctx, "A", true); !errors.Is(err, reader.ErrNoService) {
				t.Errorf("WaitCard: %v", err)
			}
			if _, err := c.Connect(ctx, "A"); !errors.Is(err, reader.ErrNoService) {
				t.Errorf("Connect: %v", err)
			}
			// The reader watch keeps waiting through the refusal, as through
			// an outage, without a line per attempt.
			wctx, cancel := context.WithCancel(ctx)
			done := async(func() error { _, err := c.WaitReadersChange(wctx, nil); return err })
			if !svc.waitUntil(func() bool { return svc.attempts >= 20 }) {
				t.Fatal("the reader watch stopped trying to establish a context")
			}
			cancel()
			if err := await(t, done); !errors.Is(err, context.Canceled) {
				t.Errorf("WaitReadersChange: %v", err)
			}

			if n := logs.count("NOT authorized for action: access_pcsc"); n != 1 {
				t.Errorf("%d refusal lines, want 1: %q", n, logs.lines)
			}
			for _, want := range []string{"pcscd refused this process (", "uid ", "org.debian.pcsc-lite.access_pcsc", "org.debian.pcsc-lite.access_card", "60-encoder-bridge.rules"} {
				if !logs.contains(want) {
					t.Errorf("the refusal does not say %q: %q", want, logs.lines)
				}
			}
			if logs.contains("not available") {
				t.Errorf("a refusal logged as an outage: %q", logs.lines)
			}

			// The admin installs the rule: the next call gets in.
			svc.setRefuse(false, 0)
			if names, err := c.Readers(ctx); err != nil || len(names) != 1 {
				t.Fatalf("Readers once allowed: %q, %v", names, err)
			}
			if n := logs.count("available again"); n != 1 {
				t.Errorf("%d lines for getting in, want 1: %q", n, logs.lines)
			}
		})
	}
}

// polkit may allow pcscd and refuse a reader (access_card): Connect says
// so, the log says it once per reader, and the context stays usable.
func TestPolkitCardRefusal(t *testing.T) {
	svc := newFakeService(true, "A", "B")
	svc.setCard("A", true)
	svc.setCard("B", true)
	c, logs := openFake(t, svc)
	ctx := t.Context()

	// A pooled context first: its SECURITY_VIOLATION is retried on a
	// fresh one, as for a pcscd that went away, before it counts.
	k, err := c.Connect(ctx, "B")
	if err != nil {
		t.Fatal(err)
	}
	k.Close()

	svc.setRefuseCard("A", true)
	for range 3 {
		_, err := c.Connect(ctx, "A")
		if !errors.Is(err, reader.ErrNotAuthorized) || !errors.Is(err, scard.ErrSecurityViolation) {
			t.Fatalf("Connect: %v, want ErrNotAuthorized", err)
		}
	}
	if n := logs.count("NOT authorized for action: access_card"); n != 1 {
		t.Errorf("%d access_card lines, want 1: %q", n, logs.lines)
	}
	if !logs.contains(`the reader "A"`) {
		t.Errorf("the refusal does not name the reader: %q", logs.lines)
	}
	if names, err := c.Readers(ctx); err != nil || len(names) != 2 {
		t.Fatalf("Readers: %q, %v", names, err)
	}
	if k, err := c.Connect(ctx, "B"); err != nil {
		t.Fatalf("Connect B: %v", err)
	} else {
		k.Close()
	}

	svc.setRefuseCard("A", false)
	k, err = c.Connect(ctx, "A")
	if err != nil {
		t.Fatalf("Connect once allowed: %v", err)
	}
	k.Close()
	if n := logs.count(`lets this process use "A" again`); n != 1 {
		t.Errorf("%d lines for the reader allowed again, want 1: %q", n, logs.lines)
	}
}

// A refusal needs an admin: it goes to Warnf when there is one, the
// service's other lines to Logf.
func TestPolkitRefusalIsAWarning(t *testing.T) {
	svc := newFakeService(true, "A")
	svc.setRefuse(true, 0)
	logs, warns := &logBuf{}, &logBuf{}
	c := open(Options{PollInterval: fakePoll, Logf: logs.logf, Warnf: warns.logf}, svc.establish)
	defer c.Close()
	if _, err := c.Readers(t.Context()); !errors.Is(err, reader.ErrNotAuthorized) {
		t.Fatalf("Readers: %v", err)
	}
	svc.setRefuse(false, 0)
	if _, err := c.Readers(t.Context()); err != nil {
		t.Fatalf("Readers once allowed: %v", err)
	}
	if warns.count("NOT authorized for action: access_pcsc") != 1 || logs.count("NOT authorized") != 0 {
		t.Errorf("warnings %q, other lines %q", warns.lines, logs.lines)
	}
	if logs.count("available again") != 1 {
		t.Errorf("getting in is not an ordinary line: %q", logs.lines)
	}
}
