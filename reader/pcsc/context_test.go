package pcsc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ebfe/scard"

	"github.com/encoder-bridge/encoder-bridge/reader"
)

// bound is how long anything that should be prompt may take; generous so
// a loaded CI machine never flakes.
const bound = 5 * time.Second

const fakePoll = 20 * time.Millisecond

type logBuf struct {
	mu    sync.Mutex
	lines []string
}

func (l *logBuf) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

// count reports how many lines contain s.
func (l *logBuf) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range l.lines {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}

func (l *logBuf) contains(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		if strings.Contains(line, s) {
			return true
		}
	}
	return false
}

func openFake(t *testing.T, svc *fakeService) (*Context, *logBuf) {
	t.Helper()
	logs := &logBuf{}
	c := open(Options{PollInterval: fakePoll, Logf: logs.logf}, svc.establish)
	t.Cleanup(func() {
		_ = c.Close()
		// Every context this package established is released by the time
		// Close returns or its waiters have returned.
		if !svc.waitUntil(func() bool { return svc.established == svc.released }) {
			est, rel := svc.counts()
			t.Errorf("%d scard contexts established, %d released", est, rel)
		}
	})
	return c, logs
}

// blockCount counts the times a Context's waits blocked, so a test acts
// once a waiter is blocked rather than after a sleep that a loaded machine
// may outlast.
type blockCount struct {
	mu      sync.Mutex
	n       int
	changed chan struct{} // closed and replaced on every block
}

// watchBlocked counts c's blocking waits; call it before c is shared.
func watchBlocked(c *Context) *blockCount {
	b := &blockCount{changed: make(chan struct{})}
	c.blocked = func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.n++
		close(b.changed)
		b.changed = make(chan struct{})
	}
	return b
}

func (b *blockCount) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n
}

// perWait is how many blocks show that one wait is blocked: a wait's
// first GetStatusChange (from an unaware state) or first failed attempt
// answers at once; the second blocks.
const perWait = 2

// await waits until the waits have blocked n times in all.
func (b *blockCount) await(t *testing.T, n int) {
	t.Helper()
	timeout := time.After(bound)
	for {
		b.mu.Lock()
		got, changed := b.n, b.changed
		b.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-changed:
		case <-timeout:
			t.Fatalf("the wait did not block (%d blocks, want %d)", got, n)
		}
	}
}

// async runs fn and returns its result on a channel.
func async(fn func() error) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- fn() }()
	return ch
}

func await(t *testing.T, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(bound):
		t.Fatal("call still blocked")
		return nil
	}
}

func TestOpenWithoutService(t *testing.T) {
	svc := newFakeService(false)
	c, logs := openFake(t, svc)
	ctx := t.Context()

	if _, err := c.Readers(ctx); !errors.Is(err, reader.ErrNoService) {
		t.Errorf("Readers: %v, want ErrNoService", err)
	}
	if err := c.WaitCard(ctx, "A", true); !errors.Is(err, reader.ErrNoService) {
		t.Errorf("WaitCard: %v, want ErrNoService", err)
	}
	if _, err := c.Connect(ctx, "A"); !errors.Is(err, reader.ErrNoService) {
		t.Errorf("Connect: %v, want ErrNoService", err)
	}
	if !logs.contains(serviceName + " not available") {
		t.Errorf("no log line for the missing service: %q", logs.lines)
	}

	svc.start("A")
	names, err := c.Readers(ctx)
	if err != nil || !sameReaders(names, []string{"A"}) {
		t.Fatalf("Readers after the service started: %q, %v", names, err)
	}
	if !logs.contains(serviceName + " available again") {
		t.Errorf("no log line for the service coming back: %q", logs.lines)
	}
}

func TestNoReadersIsEmptyList(t *testing.T) {
	svc := newFakeService(true)
	c, _ := openFake(t, svc)
	names, err := c.Readers(t.Context())
	if err != nil || names == nil || len(names) != 0 {
		t.Fatalf("Readers = %#v, %v; want an empty list", names, err)
	}
}

func TestSharedContextReestablished(t *testing.T) {
	for _, stale := range []scard.Error{scard.ErrInvalidHandle, scard.ErrNoService, scard.ErrCommError, scard.ErrSecurityViolation} {
		t.Run(codeName(stale).Error(), func(t *testing.T) {
			testSharedContextReestablished(t, stale)
		})
	}
}

func testSharedContextReestablished(t *testing.T, stale scard.Error) {
	svc := newFakeService(true, "A")
	svc.stale = stale
	c, logs := openFake(t, svc)
	ctx := t.Context()

	if _, err := c.Readers(ctx); err != nil {
		t.Fatal(err)
	}
	if est, _ := svc.counts(); est != 1 {
		t.Fatalf("%d contexts established, want 1", est)
	}

	// A restart while idle: the old context fails, and Readers replaces
	// it and succeeds in the same call.
	svc.stop()
	svc.start("A", "B")
	names, err := c.Readers(ctx)
	if err != nil || !sameReaders(names, []string{"A", "B"}) {
		t.Fatalf("Readers after restart: %q, %v", names, err)
	}
	if est, rel := svc.counts(); est != 2 || rel != 1 {
		t.Errorf("established %d, released %d; want 2, 1", est, rel)
	}
	if !logs.contains("establishing a new one") {
		t.Errorf("no log line for the recovery: %q", logs.lines)
	}

	// Down: ErrNoService, and every later call tries again.
	svc.stop()
	for range 3 {
		if _, err := c.Readers(ctx); !errors.Is(err, reader.ErrNoService) {
			t.Fatalf("Readers while down: %v", err)
		}
	}
	svc.start("C")
	names, err = c.Readers(ctx)
	if err != nil || !sameReaders(names, []string{"C"}) {
		t.Fatalf("Readers after second restart: %q, %v", names, err)
	}
}

func TestConcurrentRecovery(t *testing.T) {
	svc := newFakeService(true, "A")
	c, _ := openFake(t, svc)
	ctx := t.Context()
	svc.stop()
	svc.start("A")
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := c.Readers(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	// One replacement, however many callers saw the dead context.
	if est, _ := svc.counts(); est != 2 {
		t.Errorf("%d contexts established, want 2", est)
	}
}

func TestCardFromDeadContext(t *testing.T) {
	svc := newFakeService(true, "A")
	svc.setCard("A", true)
	c, _ := openFake(t, svc)
	ctx := t.Context()

	card, err := c.Connect(ctx, "A")
	if err != nil {
		t.Fatal(err)
	}
	svc.stop()
	if _, err := card.Transmit(ctx, []byte{0xFF, 0xCA, 0, 0, 0}); !errors.Is(err, reader.ErrNoService) {
		t.Errorf("Transmit with the service down: %v, want ErrNoService", err)
	}
	svc.start("A")
	_, err = card.Transmit(ctx, []byte{0xFF, 0xCA, 0, 0, 0})
	if !errors.Is(err, reader.ErrCardRemoved) || !strings.Contains(err.Error(), "SCARD_E_INVALID_HANDLE") {
		t.Errorf("Transmit on a handle from before the restart: %v, want ErrCardRemoved naming SCARD_E_INVALID_HANDLE", err)
	}
	if err := card.Reset(ctx); !errors.Is(err, reader.ErrCardRemoved) {
		t.Errorf("Reset on a handle from before the restart: %v", err)
	}
	if err := card.Close(); err != nil {
		t.Errorf("Close on a dead handle: %v", err)
	}

	// The same reader works again through a new connection.
	card, err = c.Connect(ctx, "A")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := card.Transmit(ctx, []byte{0xFF, 0xCA, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	_ = card.Close()
}

func TestWaitReadersChange(t *testing.T) {
	for _, pnp := range []bool{true, false} {
		t.Run(fmt.Sprintf("pnp=%v", pnp), func(t *testing.T) {
			svc := newFakeService(true, "A")
			svc.pnpUnsupported = !pnp
			c, logs := openFake(t, svc)
			blocks := watchBlocked(c)
			ctx := t.Context()

			// Differs already: returns at once, order-insensitive.
			names, err := c.WaitReadersChange(ctx, []string{"B"})
			if err != nil || !sameReaders(names, []string{"A"}) {
				t.Fatalf("WaitReadersChange = %q, %v", names, err)
			}

			var got []string
			n := blocks.count()
			done := async(func() error {
				var err error
				got, err = c.WaitReadersChange(ctx, []string{"A"})
				return err
			})
			// Without PnP it blocks between two comparisons of the list.
			blocks.await(t, n+perWait)
			svc.setReaders("B", "A")
			if err := await(t, done); err != nil || !sameReaders(got, []string{"A", "B"}) {
				t.Fatalf("WaitReadersChange = %q, %v", got, err)
			}
			if !pnp && !logs.contains("no PnP notification") {
				t.Errorf("no log line for the fallback: %q", logs.lines)
			}
		})
	}
}

func TestWaitReadersChangeAcrossOutage(t *testing.T) {
	svc := newFakeService(true, "A")
	c, _ := openFake(t, svc)
	blocks := watchBlocked(c)
	ctx := t.Context()

	// The service stopping is the reader list becoming empty, as when
	// Windows stops SCardSvr with the last reader.
	var got []string
	n := blocks.count()
	done := async(func() error {
		var err error
		got, err = c.WaitReadersChange(ctx, []string{"A"})
		return err
	})
	blocks.await(t, n+perWait)
	svc.stop()
	if err := await(t, done); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("WaitReadersChange = %#v, %v; want an empty list", got, err)
	}

	// With nothing known, it waits through the outage for a reader.
	n = blocks.count()
	done = async(func() error {
		var err error
		got, err = c.WaitReadersChange(ctx, nil)
		return err
	})
	blocks.await(t, n+perWait)
	svc.start("B")
	if err := await(t, done); err != nil || !sameReaders(got, []string{"B"}) {
		t.Fatalf("WaitReadersChange = %q, %v", got, err)
	}
}

func TestWaitCardFake(t *testing.T) {
	svc := newFakeService(true, "A")
	c, _ := openFake(t, svc)
	blocks := watchBlocked(c)
	ctx := t.Context()

	err := c.WaitCard(ctx, "nope", true)
	if !errors.Is(err, reader.ErrUnknownReader) || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("WaitCard on an unknown reader: %v, want ErrUnknownReader naming it", err)
	}

	if err := c.WaitCard(ctx, "A", false); err != nil {
		t.Errorf("WaitCard(absent) on an empty reader: %v", err)
	}
	n := blocks.count()
	done := async(func() error { return c.WaitCard(ctx, "A", true) })
	blocks.await(t, n+perWait)
	svc.setCard("A", true)
	if err := await(t, done); err != nil {
		t.Errorf("WaitCard(present): %v", err)
	}

	n = blocks.count()
	done = async(func() error { return c.WaitCard(ctx, "A", false) })
	blocks.await(t, n+perWait)
	svc.setCard("A", false)
	if err := await(t, done); err != nil {
		t.Errorf("WaitCard(absent): %v", err)
	}

	// Unplugged during the wait.
	n = blocks.count()
	done = async(func() error { return c.WaitCard(ctx, "A", true) })
	blocks.await(t, n+perWait)
	svc.setReaders()
	if err := await(t, done); !errors.Is(err, reader.ErrReaderGone) {
		t.Errorf("WaitCard with the reader unplugged: %v, want ErrReaderGone", err)
	}

	// The service stops during the wait.
	svc.setReaders("A")
	n = blocks.count()
	done = async(func() error { return c.WaitCard(ctx, "A", true) })
	blocks.await(t, n+perWait)
	svc.stop()
	if err := await(t, done); !errors.Is(err, reader.ErrNoService) {
		t.Errorf("WaitCard with the service stopped: %v, want ErrNoService", err)
	}
}

func TestWaitCancel(t *testing.T) {
	svc := newFakeService(true, "A")
	// A long poll interval: only SCardCancel can end the wait promptly.
	c := open(Options{PollInterval: time.Hour}, svc.establish)
	defer c.Close()

	ctx, cancel := context.WithCancel(t.Context())
	done := async(func() error { return c.WaitCard(ctx, "A", true) })
	waitForWaiters(t, svc, 1)
	cancel()
	if err := await(t, done); !errors.Is(err, context.Canceled) {
		t.Errorf("WaitCard after cancel: %v, want context.Canceled", err)
	}

	ctx, cancel = context.WithCancel(t.Context())
	defer cancel()
	done = async(func() error { return c.WaitCard(ctx, "A", true) })
	readers := async(func() error {
		_, err := c.WaitReadersChange(ctx, []string{"A"})
		return err
	})
	waitForWaiters(t, svc, 2)
	_ = c.Close()
	for _, ch := range []<-chan error{done, readers} {
		if err := await(t, ch); !errors.Is(err, reader.ErrClosed) {
			t.Errorf("wait after Close: %v, want ErrClosed", err)
		}
	}
	if _, err := c.Readers(t.Context()); !errors.Is(err, reader.ErrClosed) {
		t.Errorf("Readers after Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// waitForWaiters waits until n calls are inside GetStatusChange's wait,
// since SCardCancel reaches only a call already waiting.
func waitForWaiters(t *testing.T, svc *fakeService, n int) {
	t.Helper()
	if !svc.waitUntil(func() bool { return svc.inWait >= n }) {
		t.Fatalf("fewer than %d waiters", n)
	}
}

func TestCloseWhileWaitingRace(t *testing.T) {
	// Close races waiters at every point of their loop; each must still
	// return ErrClosed within a poll interval or so.
	for range 20 {
		svc := newFakeService(true, "A")
		c := open(Options{PollInterval: fakePoll}, svc.establish)
		var chans []<-chan error
		for range 4 {
			chans = append(chans, async(func() error { return c.WaitCard(t.Context(), "A", true) }))
		}
		_ = c.Close()
		for _, ch := range chans {
			if err := await(t, ch); !errors.Is(err, reader.ErrClosed) && !errors.Is(err, reader.ErrNoService) {
				t.Fatalf("wait racing Close: %v", err)
			}
		}
	}
}

func TestCardFake(t *testing.T) {
	svc := newFakeService(true, "A", "B")
	c, _ := openFake(t, svc)
	ctx := t.Context()

	if _, err := c.Connect(ctx, "A"); !errors.Is(err, reader.ErrNoCard) {
		t.Errorf("Connect with no card: %v, want ErrNoCard", err)
	}
	if _, err := c.Connect(ctx, "nope"); !errors.Is(err, reader.ErrUnknownReader) || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("Connect to an unknown reader: %v", err)
	}

	svc.setCard("A", true)
	card, err := c.Connect(ctx, "A")
	if err != nil {
		t.Fatal(err)
	}
	if card.Reader() != "A" || !bytes.Equal(card.ATR(), fakeATR) {
		t.Errorf("Reader %q, ATR % X", card.Reader(), card.ATR())
	}
	if _, err := c.Connect(ctx, "A"); !errors.Is(err, reader.ErrSharingViolation) {
		t.Errorf("second Connect: %v, want ErrSharingViolation", err)
	}

	if _, err := card.Transmit(ctx, nil); err == nil {
		t.Error("Transmit(nil) succeeded")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := card.Transmit(cctx, []byte{0xFF, 0xCA, 0, 0, 0}); !errors.Is(err, context.Canceled) {
		t.Errorf("Transmit with a done ctx: %v", err)
	}

	if err := card.Reset(ctx); err != nil {
		t.Errorf("Reset: %v", err)
	}
	if svc.resets != 1 {
		t.Errorf("%d resets", svc.resets)
	}

	// A card pulled mid-transmit comes back as success with no status
	// word; the error must not echo the APDU, which can carry a key.
	key := []byte{0xFF, 0x82, 0x00, 0x00, 0x06, 0xA1, 0xB2, 0xC3, 0xD4, 0xE5, 0xF6}
	for _, short := range [][]byte{{}, {0x90}} {
		svc.setCard("A", false)
		svc.setCard("A", true)
		card, err := c.Connect(ctx, "A")
		if err != nil {
			t.Fatal(err)
		}
		calls := 0
		svc.mu.Lock()
		svc.transmit = func([]byte) []byte { calls++; return short }
		svc.mu.Unlock()
		_, err = card.Transmit(ctx, key)
		if !errors.Is(err, reader.ErrCardRemoved) {
			t.Errorf("%d-byte response: %v, want ErrCardRemoved", len(short), err)
		}
		for _, leak := range []string{"a1b2c3", "A1B2C3", "A1 B2 C3", "a1 b2 c3", "161 178"} {
			if err != nil && strings.Contains(err.Error(), leak) {
				t.Errorf("error text carries APDU bytes: %v", err)
			}
		}
		// Removal is final for the connection: neither call reaches pcscd,
		// whose SCardReconnect on a removed card would upset its slot state.
		if _, err := card.Transmit(ctx, key); !errors.Is(err, reader.ErrCardRemoved) {
			t.Errorf("Transmit after removal: %v", err)
		}
		if err := card.Reset(ctx); !errors.Is(err, reader.ErrCardRemoved) {
			t.Errorf("Reset after removal: %v", err)
		}
		if calls != 1 || svc.resets != 1 {
			t.Errorf("%d transmits and %d resets reached the card after removal", calls-1, svc.resets-1)
		}
		_ = card.Close()
	}
	svc.mu.Lock()
	svc.transmit = nil
	svc.mu.Unlock()

	card, err = c.Connect(ctx, "A")
	if err != nil {
		t.Fatal(err)
	}
	svc.setCard("A", false)
	if _, err := card.Transmit(ctx, []byte{0xFF, 0xCA, 0, 0, 0}); !errors.Is(err, reader.ErrCardRemoved) {
		t.Errorf("Transmit after removal: %v, want ErrCardRemoved", err)
	}
	if err := card.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := card.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := card.Transmit(ctx, []byte{0xFF, 0xCA, 0, 0, 0}); !errors.Is(err, reader.ErrClosed) {
		t.Errorf("Transmit after Close: %v, want ErrClosed", err)
	}

	// Context.Close closes the cards still connected.
	svc.setCard("B", true)
	card, err = c.Connect(ctx, "B")
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	if _, err := card.Transmit(ctx, []byte{0xFF, 0xCA, 0, 0, 0}); !errors.Is(err, reader.ErrClosed) {
		t.Errorf("Transmit after Context.Close: %v, want ErrClosed", err)
	}
}

func TestConcurrentUse(t *testing.T) {
	svc := newFakeService(true, "A", "B")
	svc.setCard("A", true)
	c, _ := openFake(t, svc)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()

	card, err := c.Connect(ctx, "A")
	if err != nil {
		t.Fatal(err)
	}
	defer card.Close()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 50 {
				if _, err := card.Transmit(ctx, []byte{0xFF, 0xCA, 0, 0, 0}); err != nil {
					t.Error(err)
					return
				}
			}
		})
		wg.Go(func() {
			for range 20 {
				if _, err := c.Readers(ctx); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	// Waiters on the same reader and on PnP, concurrently with the rest.
	waits := []<-chan error{
		async(func() error { return c.WaitCard(ctx, "B", true) }),
		async(func() error { return c.WaitCard(ctx, "B", true) }),
		async(func() error { _, err := c.WaitReadersChange(ctx, []string{"A", "B"}); return err }),
		async(func() error { _, err := c.WaitReadersChange(ctx, []string{"A", "B"}); return err }),
	}
	wg.Wait()
	svc.setCard("B", true)
	for _, ch := range waits[:2] {
		if err := await(t, ch); err != nil {
			t.Errorf("WaitCard: %v", err)
		}
	}
	svc.setReaders("A")
	for _, ch := range waits[2:] {
		if err := await(t, ch); err != nil {
			t.Errorf("WaitReadersChange: %v", err)
		}
	}
}

// An outage is logged once when it starts, once when the shared context is
// found dead and once when the service is back, however many calls and
// waits run through it: the operator's log shows each transition, not a
// line per poll.
func TestOutageLoggedOnce(t *testing.T) {
	svc := newFakeService(true, "A")
	c, logs := openFake(t, svc)
	blocks := watchBlocked(c)
	ctx := t.Context()
	if _, err := c.Readers(ctx); err != nil {
		t.Fatal(err)
	}
	svc.stop()
	svc.start("A")
	svc.stop()
	for range 5 {
		if _, err := c.Readers(ctx); !errors.Is(err, reader.ErrNoService) {
			t.Fatalf("Readers while down: %v", err)
		}
	}
	// A wait that knows nothing polls through the outage.
	var got []string
	n := blocks.count()
	done := async(func() error {
		var err error
		got, err = c.WaitReadersChange(ctx, nil)
		return err
	})
	blocks.await(t, n+3*perWait) // several polls while down
	svc.start("A")
	if err := await(t, done); err != nil || !sameReaders(got, []string{"A"}) {
		t.Fatalf("WaitReadersChange = %q, %v", got, err)
	}
	for range 3 {
		if _, err := c.Readers(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, line := range []string{"scard context died", serviceName + " not available", serviceName + " available again"} {
		if n := logs.count(line); n != 1 {
			t.Errorf("%d lines with %q, want 1: %q", n, line, logs.lines)
		}
	}
}
