package pcsc

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ebfe/scard"

	"github.com/encoder-bridge/encoder-bridge/reader"
)

var (
	_ reader.Context = (*Context)(nil)
	_ reader.Card    = (*Card)(nil)
)

// DefaultPollInterval is the GetStatusChange timeout when
// Options.PollInterval is zero.
const DefaultPollInterval = 500 * time.Millisecond

// serviceRetry bounds how often a reader wait asks again for a service
// that is down: it comes back with its readers, which the cloud must hear
// of within 2 s, and a starting pcscd may drop a first client, costing one
// more retry. Asking costs a failed connect, so the fast pace lasts
// serviceFastFor after the service was last seen: a restart is over by
// then, and Windows' Smart Card service, which stops while no reader is
// attached, is then asked at the poll interval rather than ten times a
// second for as long as the desk has no reader.
const (
	serviceRetry   = 100 * time.Millisecond
	serviceFastFor = 10 * time.Second
)

// serviceRetryAfter is how long a wait sleeps before asking again for a
// service that has been down for down.
func serviceRetryAfter(poll, down time.Duration) time.Duration {
	if down < serviceFastFor {
		return min(poll, serviceRetry)
	}
	return poll
}

// Options configures a Context.
type Options struct {
	// PollInterval is the timeout of each GetStatusChange call, and so the
	// longest a blocked wait takes to notice its ctx or Close when the
	// service cannot interrupt it. Zero means DefaultPollInterval.
	PollInterval time.Duration
	// Logf receives service transitions and recoveries, never APDUs. Nil
	// means silent.
	Logf func(format string, args ...any)
	// Warnf receives what needs an admin: the service refusing this
	// process (polkit). Nil means Logf.
	Warnf func(format string, args ...any)
}

// Context is a reader.Context on the system's smart-card service. It is
// safe for concurrent use.
type Context struct {
	poll      time.Duration
	logf      func(format string, args ...any)
	warnf     func(format string, args ...any)
	establish func() (scardContext, error)
	done      chan struct{} // closed by Close

	sharedMu sync.Mutex  // serializes establishing the shared context
	noPnP    atomic.Bool // the platform has no usable PnP notification

	mu        sync.Mutex
	closed    bool
	shared    scardContext // for Readers; nil until established
	sharedGen uint64       // bumped on every establish, so a stale failure drops nothing newer
	service   serviceState // only to log transitions once
	// cardRefused holds the readers pcscd refused (polkit's access_card),
	// so that is logged once per reader, not on every job.
	cardRefused map[string]bool
	waits       map[scardContext]struct{}
	cards       map[*Card]struct{}
	// blocked, set only by tests before use, is called each time a wait
	// is about to block (GetStatusChange or a poll interval), so a test
	// can act once a waiter blocked instead of sleeping and hoping.
	blocked func()
	// idle keeps the contexts of closed card connections for the next
	// Connect: establishing one opens a new socket to pcscd and costs more
	// than a short card job's APDUs together (docs/benchmarks.md).
	idle []scardContext
}

// maxIdle bounds the pooled contexts: one per encoder is plenty.
const maxIdle = 8

// Open returns a Context on the system's smart-card service. It does not
// fail when the service is down: a front-desk service can start before
// pcscd, and Windows stops SCardSvr when the last reader is unplugged.
// Calls then return reader.ErrNoService until the service is back.
func Open(opts Options) (*Context, error) {
	return open(opts, establishReal), nil
}

func open(opts Options, establish func() (scardContext, error)) *Context {
	c := &Context{
		poll:      opts.PollInterval,
		logf:      opts.Logf,
		warnf:     opts.Warnf,
		establish: establish,
		done:      make(chan struct{}),
		waits:     make(map[scardContext]struct{}),
		cards:     make(map[*Card]struct{}),

		cardRefused: make(map[string]bool),
	}
	if c.poll <= 0 {
		c.poll = DefaultPollInterval
	}
	if c.logf == nil {
		c.logf = func(string, ...any) {}
	}
	if c.warnf == nil {
		c.warnf = c.logf
	}
	// Establish now so a missing service shows in the log at startup.
	_, _, _ = c.sharedContext()
	return c
}

// Readers lists the attached readers; none is an empty list.
func (c *Context) Readers(ctx context.Context) ([]string, error) {
	if err := c.check(ctx, opList); err != nil {
		return nil, err
	}
	var names []string
	err := c.withShared(opList, func(sc scardContext) error {
		var err error
		names, err = listReaders(sc)
		return err
	})
	if err != nil {
		return nil, err
	}
	return names, nil
}

// listReaders is ListReaders with "no readers" as an empty list.
func listReaders(sc scardContext) ([]string, error) {
	names, err := sc.ListReaders()
	if isCode(err, scard.ErrNoReadersAvailable) {
		return []string{}, nil
	}
	if err != nil {
		return nil, err
	}
	return filterReaders(names), nil
}

// WaitReadersChange blocks until the attached readers differ from known,
// in any order, and returns them. While the service is down the list is
// empty rather than an error: that is how Windows reports the last reader
// leaving, and the wait goes on until the service and a reader are back.
func (c *Context) WaitReadersChange(ctx context.Context, known []string) ([]string, error) {
	const op = opWaitReaders
	var w *waitCtx
	defer func() {
		if w != nil {
			c.closeWait(w)
		}
	}()
	pnp := []scard.ReaderState{{Reader: pnpReader}}
	idleWakes := 0
	// downSince is when this wait last found the service gone; a wait
	// that starts with it gone counts from its start.
	var downSince time.Time
	retry := func() time.Duration {
		if downSince.IsZero() {
			downSince = time.Now()
		}
		return serviceRetryAfter(c.poll, time.Since(downSince))
	}
	for {
		if err := c.check(ctx, op); err != nil {
			return nil, err
		}
		if w == nil {
			var err error
			w, err = c.openWait(ctx, op)
			switch {
			case err == nil:
				pnp[0].CurrentState = scard.StateUnaware
				downSince = time.Time{}
			case isNoService(err):
				if len(known) > 0 {
					return []string{}, nil
				}
				if err := c.sleepFor(ctx, op, retry()); err != nil {
					return nil, err
				}
				continue
			default:
				return nil, err
			}
		}

		names, err := listReaders(w.sc)
		if isDeadContext(err) {
			c.logf("pcsc: %s: %s went away (%v); waiting for it", op, serviceName, codeNameOf(err))
			c.closeWait(w)
			w, names, err = nil, []string{}, nil
		}
		if err != nil {
			return nil, c.closedOr(op, mapErr(op, err))
		}
		if !sameReaders(names, known) {
			return names, nil
		}
		if w == nil {
			// The service went away: ask for it again soon.
			downSince = time.Now()
			if err := c.sleepFor(ctx, op, retry()); err != nil {
				return nil, err
			}
			continue
		}
		if c.noPnP.Load() {
			// No PnP notification here: compare the list every interval.
			if err := c.sleep(ctx, op); err != nil {
				return nil, err
			}
			continue
		}

		err = c.statusChange(ctx, w.sc, pnp)
		switch {
		case err == nil:
			// The list is compared again at the top. A wake that brings no
			// change would spin if a platform kept reporting one, so a few
			// in a row switch to comparing the list every interval.
			pnp[0].CurrentState = nextState(pnp[0].EventState)
			idleWakes++
			if idleWakes >= 3 && !c.noPnP.Swap(true) {
				c.logf("pcsc: %s: PnP notification keeps waking without a change; polling the reader list", op)
			}
			continue
		case isCode(err, scard.ErrTimeout):
			// A reader added between ListReaders and the wait is caught by
			// the next comparison, one interval later at most.
		case isCode(err, scard.ErrCancelled), errStopped(err):
			// The loop head reports ctx or Close.
		case isCode(err, scard.ErrUnknownReader), isCode(err, scard.ErrUnsupportedFeature):
			if !c.noPnP.Swap(true) {
				c.logf("pcsc: %s: no PnP notification (%v); polling the reader list", op, codeNameOf(err))
			}
		case isDeadContext(err):
			c.closeWait(w)
			w = nil
		default:
			return nil, c.closedOr(op, mapErr(op, err))
		}
		idleWakes = 0
	}
}

// WaitCard blocks until a card is present in the named reader (present)
// or the reader is empty (!present).
func (c *Context) WaitCard(ctx context.Context, name string, present bool) error {
	op := readerOp(opWaitCard, name)
	if err := c.check(ctx, op); err != nil {
		return err
	}
	w, err := c.openWait(ctx, op)
	if err != nil {
		return err
	}
	defer c.closeWait(w)

	rs := []scard.ReaderState{{Reader: name, CurrentState: scard.StateUnaware}}
	for first := true; ; first = false {
		if err := c.check(ctx, op); err != nil {
			return err
		}
		err := c.statusChange(ctx, w.sc, rs)
		switch {
		case err == nil:
		case isCode(err, scard.ErrTimeout), isCode(err, scard.ErrCancelled), errStopped(err):
			continue
		case isCode(err, scard.ErrUnknownReader) && !first:
			// It was there on an earlier round: unplugged between two calls.
			return fmt.Errorf("pcsc: %s: %w (%w)", op, reader.ErrReaderGone, codeName(scard.ErrUnknownReader))
		default:
			return c.closedOr(op, mapErr(op, err))
		}
		ev := rs[0].EventState
		if readerGone(ev) {
			return fmt.Errorf("pcsc: %s: %w (state 0x%04X)", op, reader.ErrReaderGone, uint32(stateBits(ev)))
		}
		if cardState(ev, present) {
			return nil
		}
		rs[0].CurrentState = nextState(ev)
	}
}

// Connect opens an exclusive connection to the card in the named reader,
// on a scard context of its own so its APDUs never queue behind another
// call's GetStatusChange.
func (c *Context) Connect(ctx context.Context, name string) (reader.Card, error) {
	op := readerOp(opConnect, name)
	if err := c.check(ctx, op); err != nil {
		return nil, err
	}
	sc, pooled, err := c.cardContext(op)
	if err != nil {
		return nil, err
	}
	first := sc
	// Contactless readers present storage cards as T=1; T=0|T=1 lets the
	// reader pick.
	h, err := sc.Connect(name, scard.ShareExclusive, scard.ProtocolAny)
	if err != nil && pooled && isDeadContext(err) {
		// The pooled context died with its pcscd: start afresh.
		_ = sc.Release()
		if sc, err = c.newContext(op); err != nil {
			return nil, err
		}
		h, err = sc.Connect(name, scard.ShareExclusive, scard.ProtocolAny)
	}
	if err != nil && isCode(err, scard.ErrSecurityViolation) && (!pooled || sc != first) {
		// A context established just now was let in, so this is no dead
		// socket: pcscd asked polkit about access_card for this reader,
		// and the answer was no. The context itself is fine.
		c.putIdle(sc)
		c.noteCardRefused(name, true)
		return nil, c.closedOr(op, fmt.Errorf("pcsc: %s: %w (%w)", op, reader.ErrNotAuthorized, codeName(scard.ErrSecurityViolation)))
	}
	if err != nil {
		if isDeadContext(err) {
			_ = sc.Release()
		} else {
			c.putIdle(sc)
		}
		return nil, c.closedOr(op, mapErr(op, err))
	}
	c.noteCardRefused(name, false)
	k := &Card{owner: c, name: name, sc: sc, h: h}
	if err := k.refresh(op); err != nil {
		_ = h.Disconnect(scard.LeaveCard)
		_ = sc.Release()
		return nil, err
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		_ = h.Disconnect(scard.LeaveCard)
		_ = sc.Release()
		return nil, fmt.Errorf("pcsc: %s: %w", op, reader.ErrClosed)
	}
	c.cards[k] = struct{}{}
	c.mu.Unlock()
	return k, nil
}

// SerialNumber asks the named reader for its serial number
// (SCARD_ATTR_VENDOR_IFD_SERIAL_NO) through a direct connection, which
// needs no card. Drivers that do not report one, vpcd among them, give
// reader.ErrNoSerial.
func (c *Context) SerialNumber(ctx context.Context, name string) (string, error) {
	op := readerOp(opSerial, name)
	if err := c.check(ctx, op); err != nil {
		return "", err
	}
	sc, pooled, err := c.cardContext(op)
	if err != nil {
		return "", err
	}
	h, err := sc.Connect(name, scard.ShareDirect, scard.ProtocolUndefined)
	if err != nil && pooled && isDeadContext(err) {
		_ = sc.Release()
		if sc, err = c.newContext(op); err != nil {
			return "", err
		}
		h, err = sc.Connect(name, scard.ShareDirect, scard.ProtocolUndefined)
	}
	if err != nil {
		if isDeadContext(err) {
			_ = sc.Release()
		} else {
			c.putIdle(sc)
		}
		return "", c.closedOr(op, mapErr(op, err))
	}
	raw, err := h.GetAttrib(scard.AttrVendorIfdSerialNo)
	_ = h.Disconnect(scard.LeaveCard)
	c.putIdle(sc)
	if err != nil {
		return "", fmt.Errorf("pcsc: %s: %w (%v)", op, reader.ErrNoSerial, err)
	}
	serial := cleanSerial(raw)
	if serial == "" {
		return "", fmt.Errorf("pcsc: %s: %w (empty)", op, reader.ErrNoSerial)
	}
	return serial, nil
}

// cleanSerial turns the attribute's bytes into text: drivers return ASCII,
// often NUL-terminated or space-padded; anything else is shown in hex.
func cleanSerial(raw []byte) string {
	s := strings.TrimRight(string(raw), "\x00")
	s = strings.TrimSpace(s)
	for _, r := range s {
		if r < 0x20 || r > 0x7e {
			return hex.EncodeToString(raw)
		}
	}
	return s
}

// Close releases the context and every card connected through it. Blocked
// waits return reader.ErrClosed: they are cancelled at once when inside
// GetStatusChange, and within one PollInterval otherwise, because
// SCardCancel does nothing to a context not waiting yet.
func (c *Context) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	close(c.done)
	waits := make([]scardContext, 0, len(c.waits))
	for sc := range c.waits {
		waits = append(waits, sc)
	}
	cards := make([]*Card, 0, len(c.cards))
	for k := range c.cards {
		cards = append(cards, k)
	}
	shared := c.shared
	c.shared = nil
	idle := c.idle
	c.idle = nil
	c.mu.Unlock()

	for _, sc := range idle {
		_ = sc.Release()
	}

	// Waiters release their own contexts: pcsc-lite's SCardReleaseContext
	// would block on the context's mutex until their call returned anyway.
	for _, sc := range waits {
		_ = sc.Cancel()
	}
	for _, k := range cards {
		_ = k.Close()
	}
	if shared != nil {
		_ = shared.Release()
	}
	return nil
}

// check reports Close and ctx before a call into the service.
func (c *Context) check(ctx context.Context, op string) error {
	select {
	case <-c.done:
		return fmt.Errorf("pcsc: %s: %w", op, reader.ErrClosed)
	default:
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("pcsc: %s: %w", op, err)
	}
	return nil
}

// closedOr prefers ErrClosed to whatever a call on a context released by
// Close returned (SCARD_E_INVALID_HANDLE, mostly).
func (c *Context) closedOr(op string, err error) error {
	select {
	case <-c.done:
		return fmt.Errorf("pcsc: %s: %w", op, reader.ErrClosed)
	default:
		return err
	}
}

// sleep waits one PollInterval, ctx and Close permitting.
func (c *Context) sleep(ctx context.Context, op string) error {
	return c.sleepFor(ctx, op, c.poll)
}

// sleepFor waits d, ctx and Close permitting.
func (c *Context) sleepFor(ctx context.Context, op string, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	if c.blocked != nil {
		c.blocked()
	}
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
	case <-c.done:
	}
	return c.check(ctx, op)
}

// errStop is returned by statusChange when ctx or Close ended the wait for
// the reader's gate; the loop head turns it into the right error.
var errStop = errors.New("pcsc: wait stopped")

func errStopped(err error) bool { return err == errStop }

// statusChange is one GetStatusChange of at most PollInterval.
func (c *Context) statusChange(ctx context.Context, sc scardContext, rs []scard.ReaderState) error {
	release := acquireGate(ctx, c.done, rs[0].Reader)
	if release == nil {
		return errStop
	}
	defer release()
	if c.blocked != nil {
		c.blocked()
	}
	return sc.GetStatusChange(rs, c.poll)
}

// serviceState is what establishing a context last said about the
// service; the zero value is up.
type serviceState int

const (
	serviceUp serviceState = iota
	serviceDown
	serviceRefused
)

// noteServiceLocked logs when the service goes away, refuses this
// process, or comes back: once per change, never once per retry.
func (c *Context) noteServiceLocked(err error) {
	state := serviceUp
	switch {
	case isCode(err, scard.ErrSecurityViolation):
		state = serviceRefused
	case err != nil:
		state = serviceDown
	}
	if state == c.service || state == serviceDown && c.service == serviceRefused {
		// A refused client that loses the race to pcscd closing its
		// socket sees the service gone instead: still the same refusal,
		// and pcscd --auto-exit stops and starts it all the time.
		return
	}
	c.service = state
	switch state {
	case serviceRefused:
		c.warnf("pcsc: %s", refusal("access_pcsc", ""))
	case serviceDown:
		c.logf("pcsc: %s not available: %v", serviceName, mapErr(opEstablish, err))
	case serviceUp:
		c.logf("pcsc: %s available again", serviceName)
	}
}

// noteCardRefused logs the first refusal of a reader, and its end.
func (c *Context) noteCardRefused(name string, refused bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cardRefused[name] == refused {
		return
	}
	if refused {
		c.cardRefused[name] = true
		c.warnf("pcsc: %s", refusal("access_card", name))
		return
	}
	delete(c.cardRefused, name)
	c.logf("pcsc: %s lets this process use %q again", serviceName, name)
}

// establishErr maps a failure to establish a context for op. pcsc-lite's
// client says SCARD_W_SECURITY_VIOLATION when pcscd closed the connection
// before its first answer, which is what pcscd does to a client polkit
// refuses access_pcsc (pcsc-lite 1.9.9 and later).
func establishErr(op string, err error) error {
	if isCode(err, scard.ErrSecurityViolation) {
		return fmt.Errorf("pcsc: %s: %w (%w)", op, reader.ErrNotAuthorized, codeName(scard.ErrSecurityViolation))
	}
	return mapErr(op, err)
}

// cardContext returns a pooled context, or a new one, for a card
// connection; pooled reports which.
func (c *Context) cardContext(op string) (sc scardContext, pooled bool, err error) {
	c.mu.Lock()
	if n := len(c.idle); n > 0 && !c.closed {
		sc = c.idle[n-1]
		c.idle = c.idle[:n-1]
		c.mu.Unlock()
		return sc, true, nil
	}
	c.mu.Unlock()
	sc, err = c.newContext(op)
	return sc, false, err
}

// putIdle returns a card connection's context to the pool, or releases it.
func (c *Context) putIdle(sc scardContext) {
	c.mu.Lock()
	if !c.closed && len(c.idle) < maxIdle {
		c.idle = append(c.idle, sc)
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	_ = sc.Release()
}

// newContext establishes a scard context for one caller's own use.
func (c *Context) newContext(op string) (scardContext, error) {
	sc, err := c.establish()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.noteServiceLocked(err)
	if err != nil {
		return nil, establishErr(op, err)
	}
	if c.closed {
		_ = sc.Release()
		return nil, fmt.Errorf("pcsc: %s: %w", op, reader.ErrClosed)
	}
	return sc, nil
}

// waitCtx is the private scard context of one blocking wait. Having its
// own context lets ctx cancellation call SCardCancel without disturbing
// anyone else, and keeps pcsc-lite's per-context mutex, held for the whole
// GetStatusChange, off every other call.
type waitCtx struct {
	sc   scardContext
	stop func() bool
}

func (c *Context) openWait(ctx context.Context, op string) (*waitCtx, error) {
	sc, err := c.establish()
	c.mu.Lock()
	c.noteServiceLocked(err)
	if err != nil {
		c.mu.Unlock()
		return nil, establishErr(op, err)
	}
	if c.closed {
		c.mu.Unlock()
		_ = sc.Release()
		return nil, fmt.Errorf("pcsc: %s: %w", op, reader.ErrClosed)
	}
	c.waits[sc] = struct{}{}
	c.mu.Unlock()
	return &waitCtx{sc: sc, stop: context.AfterFunc(ctx, func() { _ = sc.Cancel() })}, nil
}

func (c *Context) closeWait(w *waitCtx) {
	w.stop()
	c.mu.Lock()
	delete(c.waits, w.sc)
	c.mu.Unlock()
	_ = w.sc.Release()
}

// sharedContext returns the shared context, establishing it if there is
// none: at first use, and after a failure dropped the previous one.
func (c *Context) sharedContext() (scardContext, uint64, error) {
	c.sharedMu.Lock()
	defer c.sharedMu.Unlock()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, 0, reader.ErrClosed
	}
	if c.shared != nil {
		sc, gen := c.shared, c.sharedGen
		c.mu.Unlock()
		return sc, gen, nil
	}
	c.mu.Unlock()

	// Not under mu: on Windows, establishing while SCardSvr starts can take
	// a while, and Close must not wait for it.
	sc, err := c.establish()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.noteServiceLocked(err)
	if err != nil {
		return nil, 0, err
	}
	if c.closed {
		_ = sc.Release()
		return nil, 0, reader.ErrClosed
	}
	c.shared = sc
	c.sharedGen++
	return sc, c.sharedGen, nil
}

// dropShared releases the shared context if it is still generation gen, so
// the next call establishes a new one.
func (c *Context) dropShared(gen uint64, cause error) {
	c.mu.Lock()
	var old scardContext
	if c.shared != nil && c.sharedGen == gen {
		old = c.shared
		c.shared = nil
	}
	c.mu.Unlock()
	if old != nil {
		c.logf("pcsc: scard context died (%v); establishing a new one", codeNameOf(cause))
		_ = old.Release()
	}
}

// withShared runs fn on the shared context. When the context died with the
// service (pcscd restarted, SCardSvr stopped and started again), it is
// replaced and fn runs once more, so a restart is invisible to the caller
// when the service is already back.
func (c *Context) withShared(op string, fn func(scardContext) error) error {
	var err error
	for range 2 {
		var sc scardContext
		var gen uint64
		sc, gen, err = c.sharedContext()
		if err == reader.ErrClosed {
			return fmt.Errorf("pcsc: %s: %w", op, err)
		}
		if err != nil {
			return c.closedOr(op, establishErr(op, err))
		}
		if err = fn(sc); err == nil || !isDeadContext(err) {
			break
		}
		c.dropShared(gen, err)
	}
	if err == nil {
		return nil
	}
	return c.closedOr(op, mapErr(op, err))
}

// isNoService reports a mapped error meaning the service is down.
func isNoService(err error) bool {
	return errors.Is(err, reader.ErrNoService)
}

// codeNameOf is err's SCARD_* name for log lines, or err itself.
func codeNameOf(err error) error {
	if code, ok := scardCode(err); ok {
		return codeName(code)
	}
	return err
}
