// Command encoder-cloud is the reference cloud: a Seam-style HTTP API for
// card encoders and the websocket that front-desk bridges dial.
//
//	encoder-cloud serve --db DB [--listen 127.0.0.1:8080] [--job-timeout 60s] [--settle-wait 2s] [--bootstrap FILE]
//	                    [--max-conns 4096] [--max-conns-per-source 256] [--read-timeout 10s]
//	encoder-cloud init --db DB --out FILE [--endpoint URL]
//	encoder-cloud workspace create --db DB --name NAME [--sandbox]
//	encoder-cloud workspace list --db DB
//	encoder-cloud api-key create --db DB --workspace ID
//	encoder-cloud api-key revoke --db DB --key KEY_OR_ID
//	encoder-cloud bridge-token create --db DB --workspace ID --name NAME
//	encoder-cloud bridge-token revoke --db DB --bridge ID
//
// DB is a SQLite file's path or a postgres:// URL; without --db, the
// environment variable ENCODER_CLOUD_DB.
//
// Exit status is 0 on success, 1 on failure, 2 on a usage error.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/encoder-bridge/encoder-bridge/cloud"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	a := &app{stdout: os.Stdout, stderr: os.Stderr}
	code := a.run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

// app is the command with its outside world injected, so tests capture
// its output and learn the address it listens on.
type app struct {
	stdout, stderr io.Writer
	// listening, if set, is told the address serve listens on.
	listening func(net.Addr)
	// getenv reads the environment; nil is os.Getenv.
	getenv func(string) string
}

// envDB names the database when --db is not given: a URL with a password
// there is not in the process list.
const envDB = "ENCODER_CLOUD_DB"

// errUsage marks command-line mistakes (exit status 2).
var errUsage = errors.New("usage")

const usage = `encoder-cloud is the reference cloud for encoder-bridge: a Seam-style API
for card encoders and the websocket front-desk bridges connect to.

Usage:
  encoder-cloud serve --db DB [--listen 127.0.0.1:8080] [--job-timeout 60s] [--settle-wait 2s] [--bootstrap FILE]
                      [--max-conns 4096] [--max-conns-per-source 256] [--read-timeout 10s]
  encoder-cloud init --db DB --out FILE [--endpoint URL] [--workspace-name N] [--bridge-name N]
  encoder-cloud workspace create --db DB --name NAME [--sandbox] [--json]
  encoder-cloud workspace list --db DB [--json]
  encoder-cloud api-key create --db DB --workspace ID [--json]
  encoder-cloud api-key revoke --db DB --key KEY_OR_ID
  encoder-cloud bridge-token create --db DB --workspace ID --name NAME [--json]
  encoder-cloud bridge-token revoke --db DB --bridge ID
  encoder-cloud version

DB is a SQLite file's path (created if missing) or a PostgreSQL URL,
postgres://USER@HOST:PORT/DATABASE; without --db, $ENCODER_CLOUD_DB. Keep a
password out of the command line: PGPASSWORD, ~/.pgpass (PGPASSFILE) or
the variable.

Keys and tokens are printed once and stored only as hashes.
Run "encoder-cloud COMMAND --help" for a command's flags.
`

func (a *app) run(ctx context.Context, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(a.stderr, usage)
		return 2
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		err = a.cmdServe(ctx, rest)
	case "init":
		err = a.cmdInit(ctx, rest)
	case "workspace":
		err = a.sub(ctx, cmd, rest, map[string]func(context.Context, []string) error{
			"create": a.cmdWorkspaceCreate, "list": a.cmdWorkspaceList})
	case "api-key":
		err = a.sub(ctx, cmd, rest, map[string]func(context.Context, []string) error{
			"create": a.cmdAPIKeyCreate, "revoke": a.cmdAPIKeyRevoke})
	case "bridge-token":
		err = a.sub(ctx, cmd, rest, map[string]func(context.Context, []string) error{
			"create": a.cmdBridgeTokenCreate, "revoke": a.cmdBridgeTokenRevoke})
	case "version":
		fmt.Fprintln(a.stdout, "encoder-cloud", version)
	case "help", "-h", "--help":
		fmt.Fprint(a.stdout, usage)
	default:
		fmt.Fprintf(a.stderr, "encoder-cloud: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintln(a.stderr, "encoder-cloud:", strings.TrimPrefix(err.Error(), errUsage.Error()+": "))
		return 2
	default:
		fmt.Fprintln(a.stderr, "encoder-cloud:", err)
		return 1
	}
}

func (a *app) sub(ctx context.Context, cmd string, args []string, subs map[string]func(context.Context, []string) error) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: %s needs a subcommand (%s)", errUsage, cmd, names(subs))
	}
	f, ok := subs[args[0]]
	if !ok {
		return fmt.Errorf("%w: unknown subcommand %s %s (%s)", errUsage, cmd, args[0], names(subs))
	}
	return f(ctx, args[1:])
}

func names(m map[string]func(context.Context, []string) error) string {
	var out []string
	for _, n := range []string{"create", "list", "revoke"} {
		if _, ok := m[n]; ok {
			out = append(out, n)
		}
	}
	return strings.Join(out, ", ")
}

// flags is a command's flag set with the common --db flag.
type flags struct {
	*flag.FlagSet
	db string
}

func (a *app) flags(name string) *flags {
	f := &flags{FlagSet: flag.NewFlagSet("encoder-cloud "+name, flag.ContinueOnError)}
	f.SetOutput(a.stderr)
	getenv := a.getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	f.Var(dbFlag{&f.db}, "db", "`DB`: a SQLite file's path (created if missing) or a postgres:// URL (default $"+envDB+")")
	// Set after the flag is defined: --help never prints it, it may
	// hold a password.
	f.db = getenv(envDB)
	return f
}

// dbFlag is --db; its String is empty, so that usage never shows a
// default taken from the environment.
type dbFlag struct{ p *string }

func (d dbFlag) String() string {
	if d.p == nil {
		return ""
	}
	return *d.p
}
func (d dbFlag) Set(v string) error { *d.p = v; return nil }

func (f *flags) parse(args []string, required ...string) error {
	if err := f.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if f.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, f.Arg(0))
	}
	for _, name := range required {
		if fl := f.Lookup(name); fl != nil && fl.Value.String() == "" {
			return fmt.Errorf("%w: --%s is required", errUsage, name)
		}
	}
	return nil
}

// open opens the database for an administrative command.
func open(db string) (*cloud.Server, error) {
	return cloud.New(cloud.Config{DB: db})
}

// print writes fields as "key: value" lines, or as one JSON object.
func (a *app) print(asJSON bool, keys []string, values map[string]any) error {
	if asJSON {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(values)
	}
	for _, k := range keys {
		fmt.Fprintf(a.stdout, "%s: %v\n", k, values[k])
	}
	return nil
}

func (a *app) cmdWorkspaceCreate(ctx context.Context, args []string) error {
	f := a.flags("workspace create")
	name := f.String("name", "", "workspace `NAME` (the property)")
	sandbox := f.Bool("sandbox", false, "allow the /acs/encoders/simulate/* routes")
	asJSON := f.Bool("json", false, "print JSON")
	if err := f.parse(args, "db", "name"); err != nil {
		return err
	}
	srv, err := open(f.db)
	if err != nil {
		return err
	}
	defer srv.Close()
	ws, err := srv.CreateWorkspace(ctx, *name, cloud.WorkspaceOptions{Sandbox: *sandbox})
	if err != nil {
		return err
	}
	key, err := srv.CreateAPIKey(ctx, ws.ID)
	if err != nil {
		return err
	}
	return a.print(*asJSON, []string{"workspace_id", "acs_system_id", "api_key"}, map[string]any{
		"workspace_id": ws.ID, "acs_system_id": ws.AcsSystemID, "connected_account_id": ws.ConnectedAccountID,
		"sandbox": ws.IsSandbox, "api_key": key,
	})
}

func (a *app) cmdWorkspaceList(ctx context.Context, args []string) error {
	f := a.flags("workspace list")
	asJSON := f.Bool("json", false, "print JSON")
	if err := f.parse(args, "db"); err != nil {
		return err
	}
	srv, err := open(f.db)
	if err != nil {
		return err
	}
	defer srv.Close()
	list, err := srv.Workspaces(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		out := []map[string]any{}
		for _, w := range list {
			out = append(out, map[string]any{"workspace_id": w.ID, "name": w.Name, "acs_system_id": w.AcsSystemID, "sandbox": w.IsSandbox})
		}
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	for _, w := range list {
		fmt.Fprintf(a.stdout, "%s\t%s\n", w.ID, w.Name)
	}
	return nil
}

func (a *app) cmdAPIKeyCreate(ctx context.Context, args []string) error {
	f := a.flags("api-key create")
	wsID := f.String("workspace", "", "workspace `ID`")
	asJSON := f.Bool("json", false, "print JSON")
	if err := f.parse(args, "db", "workspace"); err != nil {
		return err
	}
	srv, err := open(f.db)
	if err != nil {
		return err
	}
	defer srv.Close()
	key, err := srv.CreateAPIKey(ctx, *wsID)
	if err != nil {
		return err
	}
	return a.print(*asJSON, []string{"api_key"}, map[string]any{"workspace_id": *wsID, "api_key": key})
}

func (a *app) cmdAPIKeyRevoke(ctx context.Context, args []string) error {
	f := a.flags("api-key revoke")
	key := f.String("key", "", "the API `KEY`, or its id")
	if err := f.parse(args, "db", "key"); err != nil {
		return err
	}
	srv, err := open(f.db)
	if err != nil {
		return err
	}
	defer srv.Close()
	if err := srv.RevokeAPIKey(ctx, *key); err != nil {
		return fmt.Errorf("revoke API key: %w", err)
	}
	fmt.Fprintln(a.stdout, "revoked")
	return nil
}

func (a *app) cmdBridgeTokenCreate(ctx context.Context, args []string) error {
	f := a.flags("bridge-token create")
	wsID := f.String("workspace", "", "workspace `ID`")
	name := f.String("name", "", "bridge `NAME`, e.g. the front-desk PC")
	asJSON := f.Bool("json", false, "print JSON")
	if err := f.parse(args, "db", "workspace", "name"); err != nil {
		return err
	}
	srv, err := open(f.db)
	if err != nil {
		return err
	}
	defer srv.Close()
	id, token, err := srv.CreateBridgeToken(ctx, *wsID, *name)
	if err != nil {
		return err
	}
	return a.print(*asJSON, []string{"bridge_id", "bridge_token"}, map[string]any{
		"workspace_id": *wsID, "bridge_id": id, "bridge_name": *name, "bridge_token": token})
}

func (a *app) cmdBridgeTokenRevoke(ctx context.Context, args []string) error {
	f := a.flags("bridge-token revoke")
	id := f.String("bridge", "", "bridge `ID`")
	if err := f.parse(args, "db", "bridge"); err != nil {
		return err
	}
	srv, err := open(f.db)
	if err != nil {
		return err
	}
	defer srv.Close()
	if err := srv.RevokeBridgeToken(ctx, *id); err != nil {
		return fmt.Errorf("revoke bridge token: %w", err)
	}
	fmt.Fprintln(a.stdout, "revoked")
	return nil
}

func (a *app) cmdInit(ctx context.Context, args []string) error {
	f := a.flags("init")
	out := f.String("out", "", "bootstrap JSON `FILE` to write (mode 0600)")
	endpoint := f.String("endpoint", "http://127.0.0.1:8080", "API base `URL` to record in the file")
	wsName := f.String("workspace-name", "Demo hotel", "workspace `NAME`")
	bridgeName := f.String("bridge-name", "Front desk", "bridge `NAME`")
	sandbox := f.Bool("sandbox", true, "make the workspace a sandbox (simulate routes allowed)")
	force := f.Bool("force", false, "overwrite an existing --out file")
	if err := f.parse(args, "db", "out"); err != nil {
		return err
	}
	if _, err := os.Stat(*out); err == nil && !*force {
		return fmt.Errorf("%s exists; use --force to make a new workspace and overwrite it", *out)
	}
	srv, err := open(f.db)
	if err != nil {
		return err
	}
	defer srv.Close()
	b, err := srv.Bootstrap(ctx, cloud.BootstrapOptions{WorkspaceName: *wsName, BridgeName: *bridgeName, Sandbox: *sandbox, Endpoint: *endpoint})
	if err != nil {
		return err
	}
	if err := cloud.WriteBootstrap(*out, b); err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "workspace_id: %s\nbridge_id: %s\nwrote %s (API key and bridge token inside)\n", b.WorkspaceID, b.BridgeID, *out)
	return nil
}

func (a *app) cmdServe(ctx context.Context, args []string) error {
	f := a.flags("serve")
	listen := f.String("listen", "127.0.0.1:8080", "`ADDRESS` to listen on (loopback by default)")
	jobTimeout := f.Duration("job-timeout", 60*time.Second, "how long an encode or scan job may take")
	settleWait := f.Duration("settle-wait", cloud.DefaultSettleWait, "how long encode_credential and the scan routes hold their answer for the action attempt to finish; 0 answers pending at once, as Seam does")
	bootstrap := f.String("bootstrap", "", "bootstrap JSON `FILE`: created with a new workspace, API key and bridge token if missing, kept (endpoint updated) if present")
	logLevel := f.String("log-level", "info", "log `LEVEL`: debug, info, warn, error")
	maxConns := f.Int("max-conns", cloud.DefaultMaxConns, "open connections at most, bridge links included; more are closed as they arrive")
	maxPerSource := f.Int("max-conns-per-source", cloud.DefaultMaxConnsPerSource, "open connections at most from one remote address; 0: no limit (behind a proxy)")
	readTimeout := f.Duration("read-timeout", cloud.DefaultReadTimeout, "time a client has to send a whole request, body included")
	devWebhooks := f.Bool("dev-loopback-webhooks", false, "development and tests only: let webhooks post to loopback addresses, over plain http too (otherwise https to public addresses only)")
	metricsListen := f.String("metrics-listen", defaultMetricsListen, "`ADDRESS` of Prometheus' /metrics, apart from the API; off: none")
	if err := f.parse(args, "db"); err != nil {
		return err
	}
	if *jobTimeout <= 0 {
		return fmt.Errorf("%w: --job-timeout must be positive", errUsage)
	}
	if *maxConns <= 0 || *maxPerSource < 0 || *readTimeout <= 0 {
		return fmt.Errorf("%w: --max-conns and --read-timeout must be positive, --max-conns-per-source not negative", errUsage)
	}
	if *maxPerSource == 0 {
		*maxPerSource = -1 // cloud.Config: below zero is no limit
	}
	if *settleWait < 0 {
		return fmt.Errorf("%w: --settle-wait must not be negative", errUsage)
	}
	if *settleWait == 0 {
		*settleWait = -1 // cloud.Config: negative turns holding off
	}
	var level zapcore.Level
	if err := level.Set(*logLevel); err != nil {
		return fmt.Errorf("%w: --log-level: %v", errUsage, err)
	}
	log := newLogger(a.stderr, level)
	defer log.Sync()

	srv, err := cloud.New(cloud.Config{DB: f.db, JobTimeout: *jobTimeout, SettleWait: *settleWait, Logger: log,
		MaxConns: *maxConns, MaxConnsPerSource: *maxPerSource, ReadTimeout: *readTimeout, DevLoopbackWebhooks: *devWebhooks})
	if err != nil {
		return err
	}
	defer srv.Close()
	if *devWebhooks {
		log.Warn("--dev-loopback-webhooks: webhooks may post to loopback addresses over plain http; never use it in production")
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	endpoint := "http://" + ln.Addr().String()
	if host, _, _ := net.SplitHostPort(ln.Addr().String()); !isLoopback(host) {
		log.Warn("listening beyond loopback without TLS: put a TLS-terminating proxy in front", zap.String("address", ln.Addr().String()))
	}
	if *bootstrap != "" {
		if err := a.bootstrap(ctx, srv, *bootstrap, endpoint); err != nil {
			ln.Close()
			return err
		}
	}
	if *metricsListen != "off" {
		stop, err := serveMetrics(*metricsListen, srv.MetricsHandler(), log)
		switch {
		case err == nil:
			defer stop()
		case *metricsListen == defaultMetricsListen:
			log.Warn("metrics off: cannot listen on the default address; set --metrics-listen", zap.Error(err))
		default:
			ln.Close()
			return err
		}
	}
	log.Info("serving", zap.String("endpoint", endpoint), zap.String("version", version),
		zap.String("store", srv.Backend()), zap.String("database", cloud.RedactDSN(f.db)), zap.Duration("job_timeout", *jobTimeout), zap.Duration("settle_wait", max(*settleWait, 0)))
	if a.listening != nil {
		a.listening(ln.Addr())
	}
	return srv.Serve(ctx, ln)
}

// defaultMetricsListen is where the cloud serves /metrics by default:
// loopback, for a Prometheus on the same host or a tunnel.
const defaultMetricsListen = "127.0.0.1:9478"

// serveMetrics serves h at /metrics on addr until stop is called.
func serveMetrics(addr string, h http.Handler, log *zap.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	log.Info("metrics", zap.String("address", "http://"+ln.Addr().String()+"/metrics"))
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// bootstrap makes the bootstrap file if missing, or checks it and updates
// its endpoint if present.
func (a *app) bootstrap(ctx context.Context, srv *cloud.Server, path, endpoint string) error {
	b, err := cloud.ReadBootstrap(path)
	switch {
	case err == nil:
		if err := srv.Check(ctx, b); err != nil {
			return fmt.Errorf("bootstrap file %s does not match the database: %w", path, err)
		}
		if b.Endpoint == endpoint {
			return nil
		}
		b.SetEndpoint(endpoint)
	case errors.Is(err, os.ErrNotExist):
		if b, err = srv.Bootstrap(ctx, cloud.BootstrapOptions{Sandbox: true, Endpoint: endpoint}); err != nil {
			return err
		}
	default:
		return err
	}
	return cloud.WriteBootstrap(path, b)
}

func newLogger(w io.Writer, level zapcore.Level) *zap.Logger {
	cfg := zap.NewProductionEncoderConfig()
	cfg.EncodeTime = zapcore.ISO8601TimeEncoder
	core := zapcore.NewCore(zapcore.NewJSONEncoder(cfg), zapcore.AddSync(w), level)
	return zap.New(core)
}
