package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/encoder-bridge/encoder-bridge/cloud/clock"
	"github.com/encoder-bridge/encoder-bridge/cloud/store"
)

// Defaults of Config.
const (
	// DefaultTimeout bounds one post, connection included.
	DefaultTimeout = 10 * time.Second
	// DefaultPollInterval is how often the outbox is read when nothing
	// kicks the deliverer (events committed by another instance).
	DefaultPollInterval = time.Second
	// DefaultConcurrency bounds the posts in flight, each to another
	// webhook.
	DefaultConcurrency = 64
	// MaxAge is how long a delivery is retried before it is given up.
	MaxAge = 24 * time.Hour
	// FirstRetry is the wait after the first failed post; each later
	// wait doubles, up to MaxBackoff.
	FirstRetry = 5 * time.Second
	MaxBackoff = 2 * time.Hour
)

// Backoff is the wait after the n-th failed post (n from 1): FirstRetry
// doubled n-1 times, at most MaxBackoff.
func Backoff(n int) time.Duration {
	d := FirstRetry
	for i := 1; i < n && d < MaxBackoff; i++ {
		d *= 2
	}
	return min(d, MaxBackoff)
}

// Config configures a Deliverer. Store is required.
type Config struct {
	Store *store.Store
	Clock clock.Clock // nil: the real clock
	Log   *zap.Logger // nil: no logging
	// AllowLoopback lets deliveries reach loopback addresses (and http
	// to them): for development and tests only.
	AllowLoopback bool
	Timeout       time.Duration
	PollInterval  time.Duration
	Concurrency   int
	// Transport replaces the HTTP transport (tests); nil builds one that
	// refuses non-public addresses unless AllowLoopback.
	Transport http.RoundTripper
	// Observer, when set, hears each post's outcome (for metrics).
	Observer Observer
}

// Observer hears webhook posts. outcome is one of the Outcome words.
type Observer interface {
	WebhookPosted(outcome string)
}

// Outcomes of a post.
const (
	OutcomeDelivered = "delivered"
	OutcomeFailed    = "failed"
	OutcomeGivenUp   = "given_up"
)

// Deliverer posts the outbox's deliveries.
type Deliverer struct {
	cfg    Config
	clk    clock.Clock
	log    *zap.Logger
	client *http.Client
	// owner names this process's leases in the store.
	owner string
	kick  chan struct{}
	sem   chan struct{}

	mu       sync.Mutex
	inFlight map[string]bool // webhook ids being posted to by this process
	wg       sync.WaitGroup
}

// New makes a Deliverer; Run starts it.
func New(cfg Config) *Deliverer {
	d := &Deliverer{cfg: cfg, clk: cfg.Clock, log: cfg.Log, owner: uuid.NewString(), kick: make(chan struct{}, 1), inFlight: map[string]bool{}}
	if d.clk == nil {
		d.clk = clock.Real{}
	}
	if d.log == nil {
		d.log = zap.NewNop()
	}
	if d.cfg.Timeout <= 0 {
		d.cfg.Timeout = DefaultTimeout
	}
	if d.cfg.PollInterval <= 0 {
		d.cfg.PollInterval = DefaultPollInterval
	}
	if d.cfg.Concurrency <= 0 {
		d.cfg.Concurrency = DefaultConcurrency
	}
	d.sem = make(chan struct{}, d.cfg.Concurrency)
	tr := cfg.Transport
	if tr == nil {
		tr = newTransport(cfg.AllowLoopback, d.cfg.Timeout)
	}
	d.client = &http.Client{
		Transport: tr,
		Timeout:   d.cfg.Timeout,
		// A redirect could lead anywhere, a private address included:
		// a 3xx is a failed delivery.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return d
}

// errNotPublic refuses a connection to an address deliveries may not reach.
var errNotPublic = errors.New("address is not public")

func newTransport(allowLoopback bool, timeout time.Duration) *http.Transport {
	dialer := &net.Dialer{Timeout: timeout}
	if !allowLoopback {
		// Checked on the address actually dialled, after name
		// resolution, so a name that resolves to a private address is
		// refused too.
		dialer.Control = func(_, address string, _ syscall.RawConn) error {
			host, _, err := net.SplitHostPort(address)
			if err != nil {
				return err
			}
			if ip := net.ParseIP(host); ip == nil || !publicIP(ip) {
				return fmt.Errorf("%w: %s", errNotPublic, host)
			}
			return nil
		}
	}
	return &http.Transport{
		Proxy:                 nil, // deliveries go straight to the receiver
		DialContext:           dialer.DialContext,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
		MaxIdleConnsPerHost:   2,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
}

// Kick makes Run read the outbox now: events were committed.
func (d *Deliverer) Kick() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// Run delivers until ctx is done, then waits for the posts in flight.
func (d *Deliverer) Run(ctx context.Context) {
	defer d.wg.Wait()
	done := make(chan struct{}, 1) // a post finished: its webhook may have more
	for {
		if _, err := d.start(ctx, done); err != nil && ctx.Err() == nil {
			d.log.Warn("webhook outbox not read", zap.Error(err))
		}
		select {
		case <-ctx.Done():
			return
		case <-d.kick:
		case <-done:
		case <-d.clk.After(d.cfg.PollInterval):
		}
	}
}

// Pass posts every delivery due now (one per webhook) and waits for the
// posts; it returns how many it made. Tests call it after moving a fake
// clock.
func (d *Deliverer) Pass(ctx context.Context) (int, error) {
	n, err := d.start(ctx, nil)
	d.wg.Wait()
	return n, err
}

// start claims the due deliveries of webhooks this process is not posting
// to already and posts each in its own goroutine.
func (d *Deliverer) start(ctx context.Context, done chan<- struct{}) (int, error) {
	now := d.clk.Now()
	due, err := d.cfg.Store.Q().DueDeliveries(ctx, now, 4*d.cfg.Concurrency)
	if err != nil {
		return 0, err
	}
	started := 0
	for _, dl := range due {
		if !d.reserve(dl.WebhookID) {
			continue
		}
		select {
		case d.sem <- struct{}{}:
		default:
			d.release(dl.WebhookID) // all slots busy: next pass
			return started, nil
		}
		// The lease outlives the post's timeout, so it runs out only if
		// this process died mid-post: another instance then posts again
		// (at least once).
		ok, err := d.cfg.Store.Q().ClaimDelivery(ctx, dl.WebhookID, dl.EventID, d.owner, now, now.Add(3*d.cfg.Timeout))
		if err != nil || !ok {
			<-d.sem
			d.release(dl.WebhookID)
			if err != nil {
				return started, err
			}
			continue
		}
		started++
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			defer func() { <-d.sem }()
			defer d.release(dl.WebhookID)
			d.post(ctx, dl)
			if done != nil {
				select {
				case done <- struct{}{}:
				default:
				}
			}
		}()
	}
	return started, nil
}

func (d *Deliverer) reserve(webhookID string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.inFlight[webhookID] {
		return false
	}
	d.inFlight[webhookID] = true
	return true
}

func (d *Deliverer) release(webhookID string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.inFlight, webhookID)
}

// post makes one attempt of a claimed delivery and records it.
func (d *Deliverer) post(ctx context.Context, dl store.Delivery) {
	log := d.log.With(zap.String("webhook_id", dl.WebhookID), zap.String("event_id", dl.EventID), zap.Int("attempt", dl.Attempts+1))
	w, ev, err := d.cfg.Store.Q().DeliveryTarget(ctx, dl.WebhookID, dl.EventID)
	var status int
	if err == nil {
		status, err = d.send(ctx, w, ev)
	}
	now := d.clk.Now()
	a := store.Attempt{Status: status, At: now}
	switch {
	case err == nil:
		a.Delivered = true
	case errors.Is(err, store.ErrDamaged) || errors.Is(err, ErrBadSecret):
		a.Error, a.GiveUp = err.Error(), true // no retry can succeed
	case !now.Before(dl.CreatedAt.Add(MaxAge)):
		a.Error, a.GiveUp = err.Error(), true
	default:
		a.Error = err.Error()
		a.NextAt = now.Add(Backoff(dl.Attempts + 1))
		if last := dl.CreatedAt.Add(MaxAge); a.NextAt.After(last) {
			a.NextAt = last // one last try when the day is up
		}
	}
	if ctx.Err() != nil && !a.Delivered {
		// Shutting down: leave the lease to run out; the next instance or
		// start posts it again.
		return
	}
	ok, rerr := d.cfg.Store.Q().RecordAttempt(context.WithoutCancel(ctx), dl.WebhookID, dl.EventID, d.owner, a)
	switch {
	case rerr != nil:
		log.Warn("webhook delivery attempt not recorded", zap.Error(rerr))
	case !ok:
		log.Warn("webhook delivery lease lost: another instance took it over")
	case a.Delivered:
		log.Debug("webhook delivered", zap.Int("status", status))
		d.observe(OutcomeDelivered)
	case a.GiveUp:
		log.Warn("webhook delivery given up", zap.Int("status", status), zap.String("error", a.Error))
		d.observe(OutcomeGivenUp)
	default:
		log.Info("webhook delivery failed; will retry", zap.Int("status", status), zap.String("error", a.Error), zap.Time("next_at", a.NextAt))
		d.observe(OutcomeFailed)
	}
}

func (d *Deliverer) observe(outcome string) {
	if d.cfg.Observer != nil {
		d.cfg.Observer.WebhookPosted(outcome)
	}
}

// MaxErrorBody bounds what is read of a receiver's answer.
const MaxErrorBody = 4 << 10

// send posts the event, signed, and returns the HTTP status; an error
// unless the receiver answered 2xx. Its text names neither the secret nor
// the URL's query (which may carry a token of the receiver's).
func (d *Deliverer) send(ctx context.Context, w store.Webhook, ev store.Event) (int, error) {
	// The event id is the message id: the same on every retry, so a
	// receiver can drop duplicates; the timestamp is each attempt's.
	ts := d.clk.Now()
	sig, err := Sign(w.Secret, ev.ID, ts, ev.Body)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(ev.Body))
	if err != nil {
		return 0, fmt.Errorf("bad webhook URL")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "encoder-bridge-webhooks")
	req.Header.Set(HeaderID, ev.ID)
	req.Header.Set(HeaderTimestamp, fmt.Sprint(ts.Unix()))
	req.Header.Set(HeaderSignature, sig)
	resp, err := d.client.Do(req)
	if err != nil {
		var ue interface{ Unwrap() error }
		if errors.As(err, &ue) && ue.Unwrap() != nil {
			err = ue.Unwrap() // *url.Error repeats the URL
		}
		if errors.Is(err, errNotPublic) {
			return 0, fmt.Errorf("refused: %w", errNotPublic)
		}
		return 0, fmt.Errorf("post: %v", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, MaxErrorBody))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, fmt.Errorf("receiver answered %d", resp.StatusCode)
	}
	return resp.StatusCode, nil
}
