// Package doctor diagnoses a front-desk installation for the person on the
// phone when "the encoder doesn't work": each check passes or fails, and
// every failure says how to fix it.
//
// It only looks: it writes no file, changes no card and holds no reader
// longer than one identification. It must not import reader/pcsc,
// reader/sim or cloud; the command hands it the reader service to use.
package doctor

import (
	"context"
	"io/fs"
	"net"
	"os"
	"runtime"
	"time"

	"github.com/encoder-bridge/encoder-bridge/bridge/config"
	"github.com/encoder-bridge/encoder-bridge/reader"
)

// Status is a check's verdict.
type Status string

const (
	Pass Status = "pass"
	// Warn: works now, but something is off that will bite later.
	Warn Status = "warn"
	Fail Status = "fail"
	// Skip: not run, because a check it depends on failed.
	Skip Status = "skip"
)

// Result is one check's outcome. Detail and Fix never hold a key, a token
// or card data.
type Result struct {
	Check  string `json:"check"`
	Status Status `json:"status"`
	Detail string `json:"detail,omitempty"`
	Fix    string `json:"fix,omitempty"`
}

// Env is what the checks look at.
type Env struct {
	// ConfigPath is the bridge's configuration file.
	ConfigPath string
	// KeysPath overrides the configuration's key file.
	KeysPath string
	// OpenReaders opens the smart-card service.
	OpenReaders func() (reader.Context, error)
	// NewLink builds the link to the cloud as "run" does.
	NewLink NewLink
	// System is the machine's file tree, for /proc/modules, /sys and
	// pcscd's socket; nil is the real one (os.DirFS("/")).
	System fs.FS
	// OS is runtime.GOOS, or another for tests.
	OS string
	// Version is this build's version, sent in the hello.
	Version string
	// Now is the clock; nil is time.Now.
	Now func() time.Time
	// LookupHost resolves names; nil is net.DefaultResolver.
	LookupHost func(ctx context.Context, host string) ([]string, error)
	// DialContext makes TCP connections; nil is a net.Dialer.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// Timeout bounds each network check; 0 is 10 s.
	Timeout time.Duration
}

func (e *Env) defaults() {
	if e.OS == "" {
		e.OS = runtime.GOOS
	}
	if e.System == nil {
		e.System = os.DirFS("/")
	}
	if e.Now == nil {
		e.Now = time.Now
	}
	if e.LookupHost == nil {
		e.LookupHost = net.DefaultResolver.LookupHost
	}
	if e.DialContext == nil {
		d := &net.Dialer{}
		e.DialContext = d.DialContext
	}
	if e.Timeout <= 0 {
		e.Timeout = 10 * time.Second
	}
}

// Failed reports whether any result failed.
func Failed(rs []Result) bool {
	for _, r := range rs {
		if r.Status == Fail {
			return true
		}
	}
	return false
}

// run carries the state one diagnosis builds up as it goes.
type run struct {
	env     Env
	cfg     *config.Config
	results []Result
}

func (r *run) add(res Result) Result {
	r.results = append(r.results, res)
	return res
}

func (r *run) pass(check, detail string) Result {
	return r.add(Result{Check: check, Status: Pass, Detail: detail})
}

func (r *run) fail(check, detail, fix string) Result {
	return r.add(Result{Check: check, Status: Fail, Detail: detail, Fix: fix})
}

func (r *run) warn(check, detail, fix string) Result {
	return r.add(Result{Check: check, Status: Warn, Detail: detail, Fix: fix})
}

func (r *run) skip(check, why string) Result {
	return r.add(Result{Check: check, Status: Skip, Detail: why})
}

// Run runs every check in order and returns their results. A check whose
// prerequisite failed is reported as skipped, never silently left out.
func Run(ctx context.Context, env Env) []Result {
	env.defaults()
	r := &run{env: env}
	cfg, ok := r.checkConfig()
	if !ok {
		for _, c := range []string{checkKeys, checkToken, checkState, checkService, checkModules, checkReaders, checkCards, checkDNS, checkTCP, checkTLS, checkHello, checkClock} {
			r.skip(c, "no valid configuration")
		}
		return r.results
	}
	r.cfg = cfg
	r.checkKeyFile()
	token, tokenOK := r.checkTokenFile()
	r.checkStateDir()
	r.checkReaders(ctx)
	r.checkCloud(ctx, token, tokenOK)
	return r.results
}
