// Package link is the bridge's one outbound connection to the cloud: it
// dials the cloud's websocket (protocol.Path) over TLS with a bearer
// token, keeps the connection alive with pings, and redials with capped,
// jittered exponential backoff. It moves frames; what they mean is the
// agent's business.
//
// Security: wss:// with the system roots plus an optional CA file and an
// optional SPKI pin; plain ws:// is refused unless the host is loopback.
// The bridge never listens.
//
// It must not import bridge/agent, bridge/journal, cardfmt or reader: it
// knows nothing of jobs or cards. It imports protocol only for the
// endpoint path and the frame size limit.
package link

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"

	"github.com/encoder-bridge/encoder-bridge/protocol"
)

// Defaults for the zero values of Options.
const (
	DefaultHandshakeTimeout = 15 * time.Second
	DefaultWriteTimeout     = 10 * time.Second
	DefaultPingInterval     = 25 * time.Second
	DefaultPongTimeout      = 15 * time.Second
	DefaultBackoffBase      = time.Second
	DefaultBackoffMax       = 60 * time.Second
	DefaultGracePeriod      = 30 * time.Second
)

// Sentinel errors, matched with errors.Is.
var (
	// ErrAuthRevoked: the cloud refused the bridge's token at the upgrade
	// (HTTP 401 or 403). Run stops retrying: a revoked token stays
	// revoked, and hammering the cloud with it helps nobody.
	ErrAuthRevoked = errors.New("auth revoked: the cloud refused the bridge token")
	// ErrPinMismatch: the server's key is not the pinned one.
	ErrPinMismatch = errors.New("server key does not match the SPKI pin")
	// ErrInsecureURL: a ws:// URL to a host that is not loopback.
	ErrInsecureURL = errors.New("unencrypted ws:// is only allowed to a loopback host")
	// ErrClosed: the connection is closed.
	ErrClosed = errors.New("link closed")
)

// PermanentError is an error Run does not retry.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent marks err so that Run returns it instead of redialling. A
// serve function returns Permanent(err) to stop the link for good.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// Clock is the time source of the backoff. Connection deadlines always use
// the real time: the network does.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Backoff is the redial policy: attempt n waits a uniformly random time in
// [0, min(Max, Base·2ⁿ)) ("full jitter"). n counts no further than steps,
// the doublings from Base to Max. A connection that stayed up for d after
// the cloud's first message takes floor(d / (Grace/steps)) off n before
// the next redial, so Grace of up-time forgives all of it (with the
// defaults, 1 s to 60 s is 6 steps and each 5 s up forgives one). A cloud
// that accepts and at once drops the bridge forgives nothing and is not
// hammered; a link that works for 15 s between cuts stays near Base
// instead of climbing to Max.
type Backoff struct {
	Base  time.Duration
	Max   time.Duration
	Grace time.Duration
}

// steps is the number of doublings from Base until the delay's ceiling
// reaches Max: the highest attempt count that still changes the delay.
func (b Backoff) steps() int {
	n := 0
	for d := b.Base; d > 0 && d < b.Max && n < 62; d <<= 1 {
		n++
	}
	return n
}

// forgive is the attempt count after a connection that stayed up for d
// past the cloud's first message, from attempt count n.
func (b Backoff) forgive(n int, d time.Duration) int {
	steps := b.steps()
	n = min(n, steps)
	if d <= 0 || steps == 0 {
		return n
	}
	if d >= b.Grace {
		return 0
	}
	per := max(b.Grace/time.Duration(steps), 1)
	return max(n-int(d/per), 0)
}

// Options configure a Link.
type Options struct {
	// URL is the cloud's base URL, wss://host[:port][/prefix]; Path is
	// appended unless the URL already ends with it. ws:// is accepted only
	// for loopback hosts (tests, a local development cloud).
	URL string
	// URLs are the base URLs of several cloud instances, tried in turn:
	// after a dial that fails or a connection that ends, Run dials the
	// next one (with the usual backoff). Set URL or URLs, not both.
	URLs []string
	// Token is sent as "Authorization: Bearer <token>". It is never logged.
	Token string
	// CAFile names PEM certificates trusted in addition to the system
	// roots. RootCAs, when set, replaces both.
	CAFile  string
	RootCAs *x509.CertPool
	// SPKIPin, when set, is the base64 SHA-256 of the server certificate's
	// SubjectPublicKeyInfo (an optional "sha256/" prefix is allowed). The
	// connection is refused unless the server's key matches, in addition
	// to the usual certificate verification.
	SPKIPin string
	// UserAgent is sent with the upgrade request.
	UserAgent string

	HandshakeTimeout time.Duration
	// WriteTimeout bounds every frame write.
	WriteTimeout time.Duration
	// PingInterval is how often the link pings; without any frame or pong
	// from the cloud for PingInterval+PongTimeout the connection is dead.
	PingInterval time.Duration
	PongTimeout  time.Duration
	Backoff      Backoff

	Log *zap.Logger
	// Down, when set, hears every failed dial and every connection that
	// ended, with the reason, as it is logged (for the status page).
	Down func(err error)
	// Heard, when set, is called on every pong from the cloud, so that
	// an idle link still shows when the cloud last answered.
	Heard func()
	// Dialed, when set, hears the endpoint of every connection made,
	// before its serve function runs (for the status page).
	Dialed func(url string)
	// Clock drives the backoff; nil is the real clock.
	Clock Clock
	// Jitter returns a random duration in [0, n); nil uses math/rand/v2.
	Jitter func(n time.Duration) time.Duration
	// NetDialContext dials the TCP connection; nil uses net.Dialer.
	NetDialContext func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Link dials the cloud and keeps a connection up.
type Link struct {
	opts   Options
	urls   []string // endpoints, tried in turn
	cur    atomic.Int32
	tls    *tls.Config
	log    *zap.Logger
	clock  Clock
	jitter func(time.Duration) time.Duration
}

// ErrURLs: Options set both URL and URLs, or a URL twice.
var ErrURLs = errors.New("link: cloud URLs")

// New checks opts and builds a Link. It reads CAFile but dials nothing.
func New(opts Options) (*Link, error) {
	raw := opts.URLs
	switch {
	case opts.URL != "" && len(opts.URLs) > 0:
		return nil, fmt.Errorf("%w: set URL or URLs, not both", ErrURLs)
	case len(opts.URLs) == 0:
		raw = []string{opts.URL}
	}
	urls := make([]string, 0, len(raw))
	var secure, plain *url.URL
	for _, r := range raw {
		u, err := Endpoint(r)
		if err != nil {
			return nil, err
		}
		if slices.Contains(urls, u.String()) {
			return nil, fmt.Errorf("%w: %s is listed twice", ErrURLs, u.Redacted())
		}
		urls = append(urls, u.String())
		if u.Scheme == "wss" {
			secure = u
		} else {
			plain = u
		}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&opts.HandshakeTimeout, DefaultHandshakeTimeout)
	def(&opts.WriteTimeout, DefaultWriteTimeout)
	def(&opts.PingInterval, DefaultPingInterval)
	def(&opts.PongTimeout, DefaultPongTimeout)
	def(&opts.Backoff.Base, DefaultBackoffBase)
	def(&opts.Backoff.Max, DefaultBackoffMax)
	def(&opts.Backoff.Grace, DefaultGracePeriod)
	if opts.Backoff.Max < opts.Backoff.Base {
		opts.Backoff.Max = opts.Backoff.Base
	}
	l := &Link{opts: opts, urls: urls, log: opts.Log, clock: opts.Clock, jitter: opts.Jitter}
	if l.log == nil {
		l.log = zap.NewNop()
	}
	if l.clock == nil {
		l.clock = realClock{}
	}
	if l.jitter == nil {
		l.jitter = func(n time.Duration) time.Duration { return rand.N(n) }
	}
	if plain != nil && opts.SPKIPin != "" {
		return nil, fmt.Errorf("link: a SPKI pin needs a wss:// URL, not %s", plain.Redacted())
	}
	if secure != nil {
		var err error
		if l.tls, err = tlsConfig(opts); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// URL is the endpoint the link dials now (or is connected to).
func (l *Link) URL() string { return l.urls[l.cur.Load()] }

// URLs lists the endpoints in the order they are tried.
func (l *Link) URLs() []string { return slices.Clone(l.urls) }

// next makes the following endpoint the one dialled next.
func (l *Link) next() {
	if len(l.urls) > 1 {
		l.cur.Store((l.cur.Load() + 1) % int32(len(l.urls)))
	}
}

// TLSConfig is a copy of what the link verifies the cloud with (roots, CA
// file, pin), for diagnostics; nil when every URL is ws://.
func (l *Link) TLSConfig() *tls.Config {
	if l.tls == nil {
		return nil
	}
	return l.tls.Clone()
}

// Endpoint checks a cloud URL and returns the websocket endpoint it names.
func Endpoint(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New("link: no cloud URL")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("link: cloud URL: %w", err)
	}
	switch {
	case u.Scheme != "wss" && u.Scheme != "ws":
		return nil, fmt.Errorf("link: cloud URL %q: scheme must be wss:// (or ws:// to a loopback host)", raw)
	case u.Host == "" || u.Hostname() == "":
		return nil, fmt.Errorf("link: cloud URL %q has no host", raw)
	case u.User != nil:
		return nil, errors.New("link: cloud URL must not hold credentials: put the token in the token file")
	case u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("link: cloud URL %q: no query or fragment allowed", u.Redacted())
	case u.Scheme == "ws" && !IsLoopback(u.Hostname()):
		return nil, fmt.Errorf("link: cloud URL %q: %w; use wss://", raw, ErrInsecureURL)
	}
	p := strings.TrimRight(u.Path, "/")
	if !strings.HasSuffix(p, protocol.Path) {
		p += protocol.Path
	}
	u.Path, u.RawPath = p, ""
	return u, nil
}

// IsLoopback reports whether host (a name or an IP literal) is this
// machine: "localhost" or a loopback address.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ParsePin decodes an SPKI pin: base64 (standard alphabet) of 32 bytes,
// optionally prefixed "sha256/".
func ParsePin(s string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, "sha256/"))
	if err != nil || len(b) != sha256.Size {
		return nil, errors.New("must be the base64 SHA-256 of the server's SubjectPublicKeyInfo (44 characters)")
	}
	return b, nil
}

// PinOf computes the pin of a certificate's key, for operators and tests.
func PinOf(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

func tlsConfig(opts Options) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	switch {
	case opts.RootCAs != nil:
		tc.RootCAs = opts.RootCAs
	case opts.CAFile != "":
		pool, err := LoadCAFile(opts.CAFile)
		if err != nil {
			return nil, fmt.Errorf("link: %w", err)
		}
		tc.RootCAs = pool
	}
	if opts.SPKIPin != "" {
		pin, err := ParsePin(opts.SPKIPin)
		if err != nil {
			return nil, fmt.Errorf("link: SPKI pin: %w", err)
		}
		// VerifyConnection runs after the usual chain and name checks, so
		// the pin narrows what is trusted and never widens it.
		tc.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return fmt.Errorf("%w: no server certificate", ErrPinMismatch)
			}
			sum := sha256.Sum256(cs.PeerCertificates[0].RawSubjectPublicKeyInfo)
			if !bytes.Equal(sum[:], pin) {
				return fmt.Errorf("%w: the server presented key sha256/%s", ErrPinMismatch, base64.StdEncoding.EncodeToString(sum[:]))
			}
			return nil
		}
	}
	return tc, nil
}

// LoadCAFile returns the system's roots plus the PEM certificates in path.
func LoadCAFile(path string) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", path)
	}
	return pool, nil
}

// StatusError is an upgrade the cloud answered with an HTTP status.
type StatusError struct{ Code int }

func (e *StatusError) Error() string {
	return fmt.Sprintf("the cloud answered HTTP %d %s", e.Code, http.StatusText(e.Code))
}

// Dial makes one connection attempt. A 401 or 403 answer is a
// PermanentError wrapping ErrAuthRevoked.
func (l *Link) Dial(ctx context.Context) (*Conn, error) {
	d := websocket.Dialer{
		NetDialContext:   l.opts.NetDialContext,
		TLSClientConfig:  l.tls,
		HandshakeTimeout: l.opts.HandshakeTimeout,
		// Hotel networks often force a proxy; loopback is never proxied.
		Proxy: http.ProxyFromEnvironment,
	}
	h := http.Header{}
	if l.opts.Token != "" {
		h.Set("Authorization", "Bearer "+l.opts.Token)
	}
	if l.opts.UserAgent != "" {
		h.Set("User-Agent", l.opts.UserAgent)
	}
	target := l.URL()
	if strings.HasPrefix(target, "ws:") {
		d.TLSClientConfig = nil
	}
	ws, resp, err := d.DialContext(ctx, target, h)
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			se := &StatusError{Code: resp.StatusCode}
			if se.Code == http.StatusUnauthorized || se.Code == http.StatusForbidden {
				return nil, Permanent(fmt.Errorf("link: %w (%v): replace the token file or re-enrol the bridge", ErrAuthRevoked, se))
			}
			return nil, fmt.Errorf("link: dial %s: %w", target, se)
		}
		return nil, fmt.Errorf("link: dial %s: %w", target, err)
	}
	ws.SetReadLimit(protocol.MaxMessageSize)
	return newConn(ws, l, target), nil
}

// Session is one connection as the serve function of Run sees it.
type Session interface {
	// Send writes one text frame.
	Send(ctx context.Context, frame []byte) error
	// Recv returns the next frame from the cloud.
	Recv(ctx context.Context) ([]byte, error)
}

var _ Session = (*Conn)(nil)

// Run dials, calls serve with each connection until it ends, and redials
// with backoff, the next of several URLs each time, until ctx ends (nil)
// or an error is permanent: an auth
// refusal, or a serve error marked with Permanent. serve's context ends
// when the connection dies. When ctx ends, the connection closes with a
// going-away frame (1001); any other end of a connection sends a normal
// close (1000) if it can.
func (l *Link) Run(ctx context.Context, serve func(context.Context, Session) error) error {
	attempt := 0
	for {
		c, err := l.Dial(ctx)
		if err == nil {
			l.log.Info("link up", zap.String("url", c.url))
			if l.opts.Dialed != nil {
				l.opts.Dialed(c.url)
			}
			err = l.serve(ctx, c, serve)
			if first, ok := c.FirstMessageAt(); ok {
				attempt = l.opts.Backoff.forgive(attempt, l.clock.Now().Sub(first))
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		if l.opts.Down != nil {
			l.opts.Down(err)
		}
		if pe := (*PermanentError)(nil); errors.As(err, &pe) {
			l.log.Error("link stopped", zap.Error(err))
			return err
		}
		// Another instance may be up where this one refused or dropped.
		l.next()
		wait := l.Delay(attempt)
		// Past steps the delay is Max anyway; a bounded count lets up-time
		// forgive a long outage as quickly as a short one.
		attempt = min(attempt+1, l.opts.Backoff.steps())
		l.log.Warn("link down", zap.Error(err), zap.Duration("retry_in", wait), zap.Int("attempt", attempt), zap.String("next_url", l.URL()))
		select {
		case <-ctx.Done():
			return nil
		case <-l.clock.After(wait):
		}
	}
}

// Delay is the wait before redial number attempt (0-based).
func (l *Link) Delay(attempt int) time.Duration {
	b := l.opts.Backoff
	ceiling := b.Max
	if attempt < 62 {
		if d := b.Base << attempt; d > 0 && d < b.Max && d>>attempt == b.Base {
			ceiling = d
		}
	}
	return l.jitter(ceiling)
}

func (l *Link) serve(ctx context.Context, c *Conn, serve func(context.Context, Session) error) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-c.done:
			cancel()
		case <-sctx.Done():
		}
	}()
	err := serve(sctx, c)
	if ctx.Err() != nil {
		// Run's context ended: the bridge is stopping, not failing.
		c.GoAway()
	} else {
		c.Close()
	}
	if err == nil || errors.Is(err, context.Canceled) {
		if rerr := c.Err(); rerr != nil {
			err = rerr
		}
	}
	if err == nil {
		err = errors.New("link: session ended")
	}
	return err
}
