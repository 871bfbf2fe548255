package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/encoder-bridge/encoder-bridge/bridge"
	"github.com/encoder-bridge/encoder-bridge/bridge/agent"
	"github.com/encoder-bridge/encoder-bridge/bridge/config"
	"github.com/encoder-bridge/encoder-bridge/bridge/health"
	"github.com/encoder-bridge/encoder-bridge/bridge/journal"
	"github.com/encoder-bridge/encoder-bridge/bridge/link"
	"github.com/encoder-bridge/encoder-bridge/bridge/status"
	"github.com/encoder-bridge/encoder-bridge/cardfmt"
	"github.com/encoder-bridge/encoder-bridge/internal/logfile"
	"github.com/encoder-bridge/encoder-bridge/service"
)

// defaultShutdownTimeout bounds a stop on SIGINT or SIGTERM: a card
// being written gets agent.Options.WriteGrace (10s) of it.
const defaultShutdownTimeout = 15 * time.Second

// errStoppedNow: a second stop signal cut the graceful stop short.
var errStoppedNow = errors.New("stopped at once by a second signal")

// underServiceManager reports whether the service manager started this
// process; run then hands control to it.
var underServiceManager = func() bool { return !service.Interactive() }

func (a *app) cmdRun(ctx context.Context, args []string) error {
	var configPath, keysPath string
	var shutdown time.Duration
	var asService bool
	fs := newFlags("run", a.stderr)
	fs.StringVar(&configPath, "config", "", "configuration `file` (YAML) with the cloud section")
	fs.StringVar(&keysPath, "keys", "", "site key `file`; overrides the configuration's keys")
	fs.DurationVar(&shutdown, "shutdown-timeout", defaultShutdownTimeout, "how long a stop may take (`duration`) before the process exits anyway")
	fs.BoolVar(&asService, "service", false, "the service manager started this process (the installed service passes it)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if configPath == "" {
		return fmt.Errorf("%w: --config PATH is required", errUsage)
	}
	cfg, err := loadRunConfig(configPath)
	if err != nil {
		return err
	}
	sink := zapcore.Lock(zapcore.AddSync(a.stderr))
	lf, fileErr := openLogFile(cfg)
	if fileErr != nil && cfg.Log.File.Path != "" {
		// A file the administrator named must work.
		return fileErr
	}
	if lf != nil {
		defer lf.Close()
		sink = zapcore.NewMultiWriteSyncer(sink, lf)
	}
	log, err := newLogger(cfg.Log, sink)
	if err != nil {
		return err
	}
	defer log.Sync()
	start := func(ctx context.Context, log *zap.Logger, shutdown time.Duration) error {
		if fileErr != nil {
			// The default file: jobs matter more than the log file, and
			// the Event Log still gets the warnings.
			log.Warn("log file off: cannot open the default log file; set log.file.path", zap.Error(fileErr))
		}
		return a.runAgent(ctx, cfg, keysPath, log, shutdown)
	}

	if asService || underServiceManager() {
		return service.RunService(service.Options{ConfigPath: configPath}, func(ctx context.Context, log *zap.Logger) error {
			return start(ctx, log, 0)
		}, log)
	}
	return start(ctx, log, shutdown)
}

// openLogFile opens the size-rotated log file the configuration asks for;
// nil when there is none (the default off Windows).
func openLogFile(cfg *config.Config) (*logfile.File, error) {
	path := cfg.LogFilePath()
	if path == "" {
		return nil, nil
	}
	f, err := logfile.Open(logfile.Options{Path: path, MaxSize: int64(cfg.Log.File.MaxSize), MaxFiles: cfg.Log.File.MaxFiles})
	if err != nil {
		return nil, fmt.Errorf("log.file.path: %w", err)
	}
	return f, nil
}

// loadRunConfig loads a configuration that can connect to the cloud.
func loadRunConfig(path string) (*config.Config, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	if err := cfg.RequireCloud(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// newLogger builds the logger the configuration asks for, writing to w.
func newLogger(c config.Log, w zapcore.WriteSyncer) (*zap.Logger, error) {
	level, err := zapcore.ParseLevel(c.Level)
	if err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	ec := zap.NewProductionEncoderConfig()
	ec.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	if c.Format == "json" {
		enc = zapcore.NewJSONEncoder(ec)
	} else {
		ec.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(ec)
	}
	return zap.New(zapcore.NewCore(enc, w, level)), nil
}

// newLink builds the link the configuration describes; its errors name
// the configuration key at fault.
func newLink(cfg *config.Config, token string, log *zap.Logger) (*link.Link, error) {
	return newLinkWith(cfg, token, log, nil)
}

// newLinkWith is newLink with the options tune sets besides.
func newLinkWith(cfg *config.Config, token string, log *zap.Logger, tune func(*link.Options)) (*link.Link, error) {
	opts := link.Options{
		URLs:      cfg.Cloud.Endpoints(),
		Token:     token,
		SPKIPin:   cfg.Cloud.SPKIPin,
		UserAgent: "encoder-bridge/" + version,
		Log:       log.Named("link"),
	}
	if tune != nil {
		tune(&opts)
	}
	if cfg.Cloud.CAFile != "" {
		pool, err := link.LoadCAFile(cfg.Cloud.CAFile)
		if err != nil {
			return nil, fmt.Errorf("cloud.ca_file: %w", err)
		}
		opts.RootCAs = pool
	}
	l, err := link.New(opts)
	if err != nil {
		return nil, fmt.Errorf("cloud: %w", err)
	}
	return l, nil
}

// runAgent opens everything the agent needs, runs it until ctx ends and
// closes it all. With shutdown > 0, a stop that takes longer than that
// returns an error without waiting further (the process then exits and
// the journal recovers at the next start).
func (a *app) runAgent(ctx context.Context, cfg *config.Config, keysPath string, log *zap.Logger, shutdown time.Duration) error {
	if keysPath == "" {
		keysPath = cfg.Keys
	}
	if keysPath == "" {
		return errors.New("keys: no key file: set keys: in the configuration or pass --keys PATH")
	}
	ks, err := cardfmt.LoadKeySet(keysPath)
	if err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	token, err := link.ReadTokenFile(cfg.Cloud.TokenFile)
	if err != nil {
		return fmt.Errorf("cloud.token_file: %w", err)
	}
	keyID := ks.ID()
	rec := status.New(status.Options{
		Version: version, BridgeID: cfg.Cloud.BridgeID,
		KeyID: fmt.Sprintf("%s v%d", hex.EncodeToString(keyID[:]), ks.Current().Version),
	})
	l, err := newLinkWith(cfg, token, log, func(o *link.Options) {
		o.Down = func(err error) { rec.LinkDown(err, link.Remedy(err)) }
		o.Heard = rec.Contact
		o.Dialed = rec.LinkURL
	})
	if err != nil {
		return err
	}
	j, err := journal.Open(cfg.StatePath(), journal.Options{Log: log.Named("journal")})
	if err != nil {
		return fmt.Errorf("state_dir: %w", err)
	}
	rc, err := a.openReaders(log)
	if err != nil {
		j.Close()
		return err
	}
	ag, err := agent.New(agent.Options{
		BridgeID:        cfg.Cloud.BridgeID,
		SoftwareVersion: version,
		Encoders:        cfg.Encoders,
		ExcludeReaders:  cfg.ExcludeReaders,
		Link:            l,
		Store:           j,
		Station:         &bridge.Station{Readers: rc, Keys: ks, Log: log.Named("station")},
		Log:             log,
		Observer:        rec,
	})
	if err != nil {
		rc.Close()
		j.Close()
		return err
	}
	log.Info("encoder-bridge starting", zap.String("version", version), zap.String("bridge_id", cfg.Cloud.BridgeID),
		zap.Strings("urls", l.URLs()), zap.String("journal", j.Path()))

	if addr := cfg.Health.Address(); addr != "" {
		stop, err := serveHealth(addr, ag, rec, log)
		switch {
		case err == nil:
			defer stop()
		case cfg.Health.Listen == "":
			// The default address: another program (or bridge) may hold
			// it, and jobs matter more than the status page.
			log.Warn("status page and metrics off: cannot listen on the default address; set health.listen", zap.Error(err))
		default:
			rc.Close()
			j.Close()
			return err
		}
	}

	done := make(chan error, 1)
	go func() {
		err := ag.Run(ctx)
		rc.Close()
		if cerr := j.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("journal: %w", cerr)
		}
		done <- err
	}()
	var runErr error
	select {
	case runErr = <-done:
	case <-ctx.Done():
		log.Info("stopping; a second signal stops at once")
		var timeout <-chan time.Time
		if shutdown > 0 {
			t := time.NewTimer(shutdown)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case runErr = <-done:
		case <-timeout:
			return fmt.Errorf("did not stop within %s; exiting anyway (unfinished jobs resume at the next start)", shutdown)
		case <-a.stopNow:
			// The journal commits every change with fsync before it
			// counts, so exiting mid-job leaves it as a power cut would:
			// a card being written is reported encoding_interrupted at
			// the next start.
			log.Warn("stopped at once by a second signal; a card being written is reported encoding_interrupted at the next start")
			return errStoppedNow
		}
	}
	if runErr != nil {
		log.Error("encoder-bridge stopped", zap.Error(runErr))
		return runErr
	}
	log.Info("encoder-bridge stopped")
	return nil
}

// serveHealth serves /healthz, /readyz, /metrics and the status page on
// the loopback address addr (the configuration refuses any other) until
// stop is called.
func serveHealth(addr string, ag *agent.Agent, rec *status.Recorder, log *zap.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("health.listen: %w", err)
	}
	rec.Registerer().MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv := &http.Server{
		Handler: health.Endpoints{
			Report: func() health.Report {
				s := ag.Status()
				return health.Report{Connected: s.Connected, Encoders: s.Encoders, Jobs: s.Jobs}
			},
			Status:  rec.Snapshot,
			Metrics: rec.Gatherer(),
		}.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go srv.Serve(ln)
	log.Info("health endpoints", zap.String("address", ln.Addr().String()))
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}
