// Package cloud is the reference cloud of encoder-bridge: a Seam-style
// HTTP API for encoders, credentials and action attempts, and the
// websocket hub that the front-desk bridges dial. It wires the parts:
//
//	store   state in SQLite or PostgreSQL (workspaces, keys, bridges, encoders, credentials, jobs, events)
//	auth    workspaces, API keys and bridge tokens
//	jobs    encode/scan jobs and their action attempts, deadlines
//	hub     bridge websocket links (protocol.Path)
//	api     the HTTP routes in Seam's dialect
//	seam    the JSON shapes of Seam's resources and events
//	bus     notices between instances sharing one database
//	webhook delivery of events to webhooks, signed as Seam signs them
//
// Start one in-process with New, serve Handler (or call Serve), and run
// Run for the deadline sweeper (and, among several instances, the
// heartbeat and the bus listener). docs/cloud.md describes the behaviour.
//
// Only commands and tests import it. No cloud package imports the bridge
// side (bridge, reader, cardfmt): the two ends share only protocol.
package cloud

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/encoder-bridge/encoder-bridge/cloud/api"
	"github.com/encoder-bridge/encoder-bridge/cloud/auth"
	"github.com/encoder-bridge/encoder-bridge/cloud/bus"
	"github.com/encoder-bridge/encoder-bridge/cloud/clock"
	"github.com/encoder-bridge/encoder-bridge/cloud/hub"
	"github.com/encoder-bridge/encoder-bridge/cloud/jobs"
	"github.com/encoder-bridge/encoder-bridge/cloud/metrics"
	"github.com/encoder-bridge/encoder-bridge/cloud/store"
	"github.com/encoder-bridge/encoder-bridge/cloud/webhook"
	"github.com/encoder-bridge/encoder-bridge/protocol"
)

// Config configures a Server. Only DB is required.
type Config struct {
	// DB is the database: a SQLite file's path (created if missing), or
	// a postgres:// or postgresql:// URL (store.Open). Its schema is
	// brought up to date when the server is made.
	DB string
	// Clock is injected by tests; nil means the system clock.
	Clock clock.Clock
	// Logger receives the server's logs; nil discards them. Keys and
	// tokens are never logged.
	Logger *zap.Logger
	// JobTimeout is how long an encode or scan job may take (default 60s).
	JobTimeout time.Duration
	// SweepInterval is how often Run expires jobs (default 1s).
	SweepInterval time.Duration
	// SettleWait is how long encode_credential and the scan routes hold
	// their answer for the action attempt to finish (default
	// api.DefaultSettleWait); negative answers pending at once, as Seam
	// does.
	SettleWait time.Duration
	// MaxSettling bounds the answers held at once (default
	// api.DefaultMaxSettling).
	MaxSettling int
	// Websocket timings; zero takes hub's defaults (ping 15s, pong 45s,
	// write 10s, hello 10s).
	PingInterval time.Duration
	PongWait     time.Duration
	WriteWait    time.Duration
	HelloWait    time.Duration
	// Limits of Serve's HTTP server; zero takes the defaults
	// (DefaultReadTimeout, DefaultWriteTimeout, DefaultIdleTimeout,
	// DefaultMaxConns, DefaultMaxConnsPerSource). MaxConnsPerSource below
	// zero sets no limit per remote address (behind a proxy).
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	MaxConns          int
	MaxConnsPerSource int
	// ShutdownGrace bounds Serve's graceful shutdown (default
	// ShutdownTimeout).
	ShutdownGrace time.Duration
	// Per-bridge limits; zero takes hub's defaults (4 links per token, 64
	// encoders).
	MaxLinksPerBridge    int
	MaxEncodersPerBridge int
	// MaxEncoderRecords bounds the encoders a bridge may ever register,
	// removed ones included (default jobs.DefaultMaxEncoderRecords).
	MaxEncoderRecords int
	// Bus joins this instance to others on the same database (package
	// bus). Nil: on PostgreSQL, LISTEN/NOTIFY on the database; on SQLite,
	// none (one instance).
	Bus bus.Bus
	// Instance names this instance among the others; default a new UUID.
	Instance string
	// HeartbeatInterval is how often an instance refreshes its row among
	// several (default jobs.DefaultHeartbeatInterval).
	HeartbeatInterval time.Duration
	// DevLoopbackWebhooks lets webhooks post to loopback addresses, over
	// plain http too. For development and tests only: without it a
	// webhook URL must be https and reach a public address.
	DevLoopbackWebhooks bool
	// WebhookTimeout bounds one webhook post (default
	// webhook.DefaultTimeout).
	WebhookTimeout time.Duration
	// WebhookTransport replaces the webhooks' HTTP transport (tests).
	WebhookTransport http.RoundTripper
	// WebhookClock is the webhook deliverer's clock (retry times and its
	// polling); nil is Clock. A test that gates Clock for another loop
	// keeps the deliverer off it.
	WebhookClock clock.Clock
}

// DefaultSettleWait is how long encode and scan answers are held by
// default (Config.SettleWait).
const DefaultSettleWait = api.DefaultSettleWait

// Workspace is a tenant.
type Workspace = store.Workspace

// WorkspaceOptions are optional settings of a new workspace.
type WorkspaceOptions = auth.WorkspaceOptions

// Server is a running cloud: its database, hub and API.
type Server struct {
	cfg     Config
	log     *zap.Logger
	store   *store.Store
	auth    *auth.Auth
	jobs    *jobs.Service
	hub     *hub.Hub
	metrics *metrics.Metrics
	api     *api.API
	hooks   *webhook.Deliverer
	handler http.Handler
	pgBus   *bus.Postgres // opened here, closed by Close

	closeOnce sync.Once
	closeErr  error
}

// Compile-time checks of the seams between the parts.
var (
	_ hub.Handler       = (*jobs.Service)(nil)
	_ hub.Authenticator = (*auth.Auth)(nil)
	_ jobs.Links        = (*hub.Hub)(nil)
	_ api.Dispatcher    = (*jobs.Service)(nil)
	_ api.Authenticator = (*auth.Auth)(nil)
	_ api.Presence      = (*hub.Hub)(nil)
	_ api.Presence      = (*jobs.Service)(nil)
	_ webhook.Observer  = (*metrics.Metrics)(nil)
)

// New opens the database (migrating it) and builds the server. It starts
// no goroutine: serve Handler and call Run, or call Serve.
func New(cfg Config) (*Server, error) {
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	st, err := store.Open(context.Background(), cfg.DB)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger, store: st}
	if cfg.Bus == nil && store.IsPostgres(cfg.DB) {
		if s.pgBus, err = bus.OpenPostgres(context.Background(), cfg.DB, cfg.Logger.Named("bus")); err != nil {
			st.Close()
			return nil, err
		}
		cfg.Bus = s.pgBus
		s.cfg.Bus = s.pgBus
	}
	s.auth = auth.New(st, cfg.Clock)
	// The hub is made after the jobs; the gauge reads it only when scraped.
	s.metrics = metrics.New(func() int { return s.hub.Links() })
	s.hooks = webhook.New(webhook.Config{
		Store: st, Clock: orClock(cfg.WebhookClock, cfg.Clock), Log: cfg.Logger.Named("webhook"),
		AllowLoopback: cfg.DevLoopbackWebhooks, Timeout: cfg.WebhookTimeout, Transport: cfg.WebhookTransport,
		Observer: s.metrics,
	})
	s.jobs = jobs.New(jobs.Config{
		Store: st, Clock: cfg.Clock, Log: cfg.Logger.Named("jobs"),
		Timeout: cfg.JobTimeout, SweepInterval: cfg.SweepInterval, MaxEncoderRecords: cfg.MaxEncoderRecords,
		Observer: s.metrics, Bus: cfg.Bus, Instance: cfg.Instance, HeartbeatInterval: cfg.HeartbeatInterval,
		OnEvents: s.hooks.Kick,
	})
	s.hub = hub.New(hub.Config{
		Handler: s.jobs, Auth: s.auth, Log: cfg.Logger.Named("hub"),
		PingInterval: cfg.PingInterval, PongWait: cfg.PongWait, WriteWait: cfg.WriteWait, HelloWait: cfg.HelloWait,
		MaxLinks: cfg.MaxLinksPerBridge, MaxEncoders: cfg.MaxEncodersPerBridge,
	})
	s.jobs.SetLinks(s.hub)
	settle := cfg.SettleWait
	if settle == 0 {
		settle = DefaultSettleWait
	}
	s.api = api.New(api.Config{
		Store: st, Auth: s.auth, Jobs: s.jobs, Presence: s.jobs, Clock: cfg.Clock, Log: cfg.Logger.Named("api"),
		SettleWait: settle, MaxSettling: cfg.MaxSettling,
		AllowLoopbackWebhooks: cfg.DevLoopbackWebhooks, OnEvents: s.hooks.Kick,
	})
	s.handler = http.HandlerFunc(s.route)
	return s, nil
}

func orClock(c, def clock.Clock) clock.Clock {
	if c == nil {
		return def
	}
	return c
}

// route sends a request by its exact path. Not a ServeMux: that answers
// an unclean path such as //acs/encoders/list with a bare redirect
// instead of the API's error.
func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case protocol.Path:
		s.hub.ServeHTTP(w, r)
	case "/healthz":
		s.healthz(w, r)
	default:
		s.api.ServeHTTP(w, r)
	}
}

// Handler serves the API, the bridge websocket (protocol.Path) and
// /healthz.
func (s *Server) Handler() http.Handler { return s.handler }

// MetricsHandler serves the Prometheus metrics (package cloud/metrics).
// It is not part of Handler: the API faces the internet, the metrics
// only the operator's monitoring.
func (s *Server) MetricsHandler() http.Handler { return s.metrics.Handler() }

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		http.Error(w, "database unavailable", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

// RevocationCheckInterval is how often a running server looks for bridge
// tokens revoked by another process (bridge-token revoke) and closes their
// links.
const RevocationCheckInterval = 5 * time.Second

// Run expires jobs whose deadline passed, closes the links of revoked
// bridge tokens and delivers webhooks, until ctx is done: three loops,
// each parked on the clock between rounds.
func (s *Server) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { s.watchRevocations(ctx) })
	wg.Go(func() { s.hooks.Run(ctx) })
	s.jobs.Run(ctx)
	wg.Wait()
	return nil
}

func (s *Server) watchRevocations(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.cfg.Clock.After(RevocationCheckInterval):
			if _, err := s.CloseRevoked(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("revoked bridge tokens not checked", zap.Error(err))
			}
		}
	}
}

// CloseRevoked closes every link whose bridge token has been revoked, in
// this process or another one on the same database, and reports how many
// bridges it cut off. Run calls it every RevocationCheckInterval.
func (s *Server) CloseRevoked(ctx context.Context) (int, error) {
	revoked, err := s.store.Q().RevokedBridges(ctx, s.hub.BridgeIDs())
	if err != nil {
		return 0, err
	}
	for _, id := range revoked {
		s.log.Info("bridge token revoked: closing its links", zap.String(hub.FieldBridgeID, id))
		s.hub.Disconnect(id, "bridge token revoked")
	}
	return len(revoked), nil
}

// Backend is the store's backend: "sqlite" or "postgres".
func (s *Server) Backend() string { return s.store.Backend() }

// RedactDSN returns a Config.DB fit for a log: a PostgreSQL URL without
// its password.
func RedactDSN(db string) string { return store.RedactDSN(db) }

// DeliverWebhooks posts the webhook deliveries due now and waits for
// them; tests call it after moving a fake clock.
func (s *Server) DeliverWebhooks(ctx context.Context) (int, error) { return s.hooks.Pass(ctx) }

// Sweep expires due jobs now; tests call it after moving a fake clock.
func (s *Server) Sweep(ctx context.Context) (int, error) { return s.jobs.Sweep(ctx) }

// Online reports whether a bridge is connected and has said hello.
func (s *Server) Online(bridgeID string) bool { return s.hub.Online(bridgeID) }

// JobTimeout is the configured job timeout.
func (s *Server) JobTimeout() time.Duration { return s.jobs.Timeout() }

// ShutdownTimeout bounds Serve's graceful shutdown.
const ShutdownTimeout = 10 * time.Second

// Timeouts of Serve's HTTP server. A request (body included) must arrive
// within DefaultReadTimeout: no request body here is larger than 1 MiB,
// and a client that promises one and never sends it must not hold its
// connection. DefaultWriteTimeout bounds a response, DefaultIdleTimeout a
// keep-alive connection between requests. Bridge links set their own
// deadlines once upgraded.
const (
	DefaultReadTimeout  = 10 * time.Second
	DefaultWriteTimeout = 30 * time.Second
	DefaultIdleTimeout  = 60 * time.Second
	// MaxHeaderBytes bounds a request's header block; the longest query a
	// Seam SDK sends (1000 ids) is about 50 KiB.
	MaxHeaderBytes = 128 << 10
)

func orDefault[T int | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// Serve serves on ln and runs the sweeper until ctx is done, then shuts
// the HTTP server down gracefully, closes every bridge link and waits for
// the sweeper to stop. It does not close the database (Close does), which
// is then safe. Connections beyond the limits of Config are closed as they
// are accepted.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       orDefault(s.cfg.ReadTimeout, DefaultReadTimeout),
		WriteTimeout:      orDefault(s.cfg.WriteTimeout, DefaultWriteTimeout),
		IdleTimeout:       orDefault(s.cfg.IdleTimeout, DefaultIdleTimeout),
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          zap.NewStdLog(s.log.Named("http")),
	}
	if srv.ReadHeaderTimeout > srv.ReadTimeout {
		srv.ReadHeaderTimeout = srv.ReadTimeout
	}
	srv.RegisterOnShutdown(s.api.ReleaseHeld) // held answers go out now, not at the end of their hold
	ln = limitConns(ln, orDefault(s.cfg.MaxConns, DefaultMaxConns),
		orDefault(s.cfg.MaxConnsPerSource, DefaultMaxConnsPerSource), s.log.Named("http"))
	runCtx, stopRun := context.WithCancel(ctx)
	swept := make(chan struct{})
	go func() {
		defer close(swept)
		s.Run(runCtx) // the sweeper and the revocation check
	}()
	// A sweep in progress finishes before the caller may close the database.
	defer func() {
		stopRun()
		<-swept
	}()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		s.hub.Close()
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	s.log.Info("shutting down")
	grace := orDefault(s.cfg.ShutdownGrace, ShutdownTimeout)
	shutCtx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err := srv.Shutdown(shutCtx) // stops new requests and waits for the running ones
	if errors.Is(err, context.DeadlineExceeded) {
		// Requests still running after the grace are cut: stopping
		// within the grace is what was asked, not a failure.
		s.log.Warn("requests still running after the shutdown grace: connections closed", zap.Duration("grace", grace))
		err = srv.Close()
	}
	s.hub.Close() // websockets are hijacked: Shutdown does not wait for them
	if err2 := <-errc; err == nil && !errors.Is(err2, http.ErrServerClosed) {
		err = err2
	}
	return err
}

// Close closes every bridge link and the database.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.api.ReleaseHeld()
		s.hub.Close()
		s.closeErr = s.closeStores()
	})
	return s.closeErr
}

func (s *Server) closeStores() error {
	var err error
	if s.pgBus != nil {
		err = s.pgBus.Close()
	}
	return errors.Join(s.store.Close(), err)
}

// CreateWorkspace makes a workspace (with its access control system and
// connected account).
func (s *Server) CreateWorkspace(ctx context.Context, name string, opt WorkspaceOptions) (Workspace, error) {
	return s.auth.CreateWorkspace(ctx, name, opt)
}

// Workspaces lists the workspaces.
func (s *Server) Workspaces(ctx context.Context) ([]Workspace, error) {
	return s.store.Q().Workspaces(ctx)
}

// CreateAPIKey makes an API key for a workspace. The key is returned in
// plain only here; only its hash is stored.
func (s *Server) CreateAPIKey(ctx context.Context, workspaceID string) (string, error) {
	return s.auth.CreateAPIKey(ctx, workspaceID)
}

// RevokeAPIKey revokes an API key (given in plain or by its id, the part
// after "seam_key" up to the next "_").
func (s *Server) RevokeAPIKey(ctx context.Context, keyOrID string) error {
	return s.auth.RevokeAPIKey(ctx, keyOrID)
}

// CreateBridgeToken registers a bridge in a workspace and returns its id
// and token. The token is returned in plain only here.
func (s *Server) CreateBridgeToken(ctx context.Context, workspaceID, name string) (bridgeID, token string, err error) {
	b, token, err := s.auth.CreateBridge(ctx, workspaceID, name)
	return b.ID, token, err
}

// BridgeToken is a registered bridge and its token in plain.
type BridgeToken struct {
	BridgeID string `json:"bridge_id"`
	Token    string `json:"bridge_token"`
}

// CreateBridgeTokens registers one bridge per name in one transaction and
// returns their ids and tokens, in names' order. The tokens are returned
// in plain only here.
func (s *Server) CreateBridgeTokens(ctx context.Context, workspaceID string, names []string) ([]BridgeToken, error) {
	bs, tokens, err := s.auth.CreateBridges(ctx, workspaceID, names)
	if err != nil {
		return nil, err
	}
	out := make([]BridgeToken, len(bs))
	for i, b := range bs {
		out[i] = BridgeToken{BridgeID: b.ID, Token: tokens[i]}
	}
	return out, nil
}

// RevokeBridgeToken revokes a bridge's token: its live link, on this
// instance or another, is closed and its next connection is refused with
// 401.
func (s *Server) RevokeBridgeToken(ctx context.Context, bridgeID string) error {
	if err := s.auth.RevokeBridge(ctx, bridgeID); err != nil {
		return err
	}
	s.hub.Disconnect(bridgeID, "bridge token revoked")
	s.jobs.Revoked(ctx, bridgeID) // its link may be on another instance
	return nil
}

// HandleFrameForTest runs one websocket frame from bridge bridgeID through
// the same decoding and handling as a live link (helloDone: the link has
// said hello) and returns what would be sent back and whether the link
// would be closed. For fuzzing and tests.
func (s *Server) HandleFrameForTest(ctx context.Context, bridgeID string, helloDone bool, frame []byte) ([]*protocol.Message, bool, error) {
	b, err := s.store.Q().Bridge(ctx, bridgeID)
	if err != nil {
		return nil, false, err
	}
	sent, closed := s.hub.HandleFrameForTest(b, helloDone, frame)
	return sent, closed, nil
}
