//go:build linux

package scale

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/encoder-bridge/encoder-bridge/cloud"
	"github.com/encoder-bridge/encoder-bridge/cloud/cloudtest/fleet"
	"github.com/encoder-bridge/encoder-bridge/internal/syncbuf"
)

// Sentinel errors, matched with errors.Is.
var (
	// ErrExited: a process ended before it was asked to.
	ErrExited = errors.New("scale: process exited")
	// ErrTimeout: a process did not say what was expected in time.
	ErrTimeout = errors.New("scale: timed out")
	// ErrAPI: the cloud's API answered with an error.
	ErrAPI = errors.New("scale: API error")
)

const module = "github.com/encoder-bridge/encoder-bridge"

// Bins are the built binaries.
type Bins struct{ Cloud, Fleet string }

// Build builds encoder-cloud and fakebridges into dir. It runs the go
// command, so it must run inside the module (a test's directory is).
func Build(dir string) (Bins, error) {
	b := Bins{Cloud: filepath.Join(dir, "encoder-cloud"), Fleet: filepath.Join(dir, "fakebridges")}
	for _, p := range [][2]string{{b.Cloud, module + "/cmd/encoder-cloud"}, {b.Fleet, module + "/cloud/cloudtest/cmd/fakebridges"}} {
		if out, err := exec.Command("go", "build", "-o", p[0], p[1]).CombinedOutput(); err != nil {
			return Bins{}, fmt.Errorf("go build %s: %w\n%s", p[1], err, out)
		}
	}
	return b, nil
}

// Workspace is a provisioned workspace: its API key and its bridges.
type Workspace struct {
	ID     string
	APIKey string
	Tokens []fleet.Token
}

// Provision makes a workspace with an API key and n bridges in the
// database db, through the cloud's own code and not its CLI: one
// transaction for all the bridges instead of a process and a commit each.
func Provision(ctx context.Context, db string, n int) (Workspace, error) {
	srv, err := cloud.New(cloud.Config{DB: db})
	if err != nil {
		return Workspace{}, err
	}
	defer srv.Close()
	ws, err := srv.CreateWorkspace(ctx, "Scale", cloud.WorkspaceOptions{})
	if err != nil {
		return Workspace{}, err
	}
	key, err := srv.CreateAPIKey(ctx, ws.ID)
	if err != nil {
		return Workspace{}, err
	}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("Front desk %d", i+1)
	}
	bts, err := srv.CreateBridgeTokens(ctx, ws.ID, names)
	if err != nil {
		return Workspace{}, err
	}
	out := Workspace{ID: ws.ID, APIKey: key, Tokens: make([]fleet.Token, n)}
	for i, bt := range bts {
		out.Tokens[i] = fleet.Token{BridgeID: bt.BridgeID, Token: bt.Token}
	}
	return out, nil
}

// proc is a child process that is killed if this process dies first
// (PR_SET_PDEATHSIG), so that no run leaves one behind.
type proc struct {
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
	stderr  *syncbuf.Buffer // the tail a failure reports
}

func startProc(cmd *exec.Cmd) (*proc, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// Pid is the process id.
func (p *proc) Pid() int { return p.cmd.Process.Pid }

// stop sends SIGINT and waits up to grace, then kills.
func (p *proc) stop(grace time.Duration) error {
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.exited:
		return p.waitErr
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("%w: %s did not stop within %s of SIGINT: killed", ErrTimeout, filepath.Base(p.cmd.Path), grace)
	}
}

// exitErr is how the process ended, once it has (within 5 s).
func (p *proc) exitErr() error {
	select {
	case <-p.exited:
		return p.waitErr
	case <-time.After(5 * time.Second):
		return errors.New("still running")
	}
}

func (p *proc) tail() string {
	if p.stderr == nil {
		return ""
	}
	s := p.stderr.String()
	if len(s) > 2000 {
		s = "…" + s[len(s)-2000:]
	}
	return s
}

// Cloud is a running encoder-cloud serve.
type Cloud struct {
	*proc
	// URL is the API's and the bridges' base URL; MetricsURL its /metrics.
	URL, MetricsURL string
	logPath         string
}

// Complaints returns the last n lines the cloud logged at warn level or
// above, for a failure's message.
func (c *Cloud) Complaints(n int) string {
	b, err := os.ReadFile(c.logPath)
	if err != nil {
		return err.Error()
	}
	var out []string
	for line := range strings.Lines(string(b)) {
		if strings.Contains(line, `"level":"warn"`) || strings.Contains(line, `"level":"error"`) {
			out = append(out, line)
		}
	}
	return strings.Join(out[max(0, len(out)-n):], "")
}

// StartCloud runs encoder-cloud serve on db, listening on loopback ports
// of its own, with the connection limits off, and logs to logPath. extra
// are more serve flags. It returns when the cloud serves.
func StartCloud(ctx context.Context, bin, db, logPath string, extra ...string) (*Cloud, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	args := append([]string{"serve", "--db", db, "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
		"--max-conns", "30000", "--max-conns-per-source", "0"}, extra...)
	cmd := exec.Command(bin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	p, err := startProc(cmd)
	if err != nil {
		logf.Close()
		return nil, err
	}
	p.stderr = &syncbuf.Buffer{}
	c := &Cloud{proc: p, logPath: logPath}
	found := make(chan struct{})
	go func() {
		defer logf.Close()
		var once sync.Once
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			line := sc.Bytes()
			logf.Write(append(line, '\n'))
			if c.URL != "" && c.MetricsURL != "" {
				continue
			}
			p.stderr.Write(append(line, '\n'))
			var l struct{ Msg, Endpoint, Address string }
			if json.Unmarshal(line, &l) != nil {
				continue
			}
			switch l.Msg {
			case "serving":
				c.URL = l.Endpoint
			case "metrics":
				c.MetricsURL = l.Address
			}
			if c.URL != "" && c.MetricsURL != "" {
				once.Do(func() { close(found) })
			}
		}
	}()
	select {
	case <-found:
		return c, nil
	case <-p.exited:
		return nil, fmt.Errorf("%w: encoder-cloud serve: %v\n%s", ErrExited, p.waitErr, p.tail())
	case <-ctx.Done():
	case <-time.After(60 * time.Second):
	}
	_ = p.stop(10 * time.Second)
	return nil, fmt.Errorf("%w: encoder-cloud serve did not report its addresses\n%s", ErrTimeout, p.tail())
}

// Stop stops the cloud (SIGINT), killing it after 30 s.
func (c *Cloud) Stop() error {
	if err := c.stop(30 * time.Second); err != nil {
		return fmt.Errorf("encoder-cloud serve: %w", err)
	}
	return nil
}

// Sample is a process's resources at one moment.
type Sample struct {
	At  time.Time
	RSS int64         // resident memory, bytes
	CPU time.Duration // user plus system CPU time since the start
	// From the cloud's /metrics (zero for a fleet): the Go heap in use,
	// goroutine stacks, goroutines and bridge links.
	HeapInuse, StackInuse int64
	Goroutines, Links     int
}

// GoBytes is the Go runtime's view of the memory in use: heap spans in
// use (live objects and garbage not yet swept) plus goroutine stacks.
func (s Sample) GoBytes() int64 { return s.HeapInuse + s.StackInuse }

// clockTicks is USER_HZ, the unit of /proc/PID/stat's CPU times: 100 on
// every Linux architecture this runs on.
const clockTicks = 100

// ProcSample reads a process's resident memory and CPU time from /proc.
func ProcSample(pid int) (Sample, error) {
	s := Sample{At: time.Now()}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for line := range strings.Lines(string(status)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return s, fmt.Errorf("/proc/%d/status: VmRSS %q: %w", pid, rest, err)
			}
			s.RSS = kb << 10
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// The command name, in parentheses, may hold spaces: the fields that
	// follow its closing parenthesis start at field 3 (state).
	i := bytes.LastIndexByte(stat, ')')
	f := strings.Fields(string(stat[i+1:]))
	if i < 0 || len(f) < 13 {
		return s, fmt.Errorf("/proc/%d/stat: %q unexpected", pid, stat)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return s, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	s.CPU = time.Duration(utime+stime) * time.Second / clockTicks
	return s, nil
}

// Sample reads the cloud's resident memory, CPU time and Go memory.
func (c *Cloud) Sample(ctx context.Context) (Sample, error) {
	s, err := ProcSample(c.Pid())
	if err != nil {
		return s, err
	}
	m, err := scrape(ctx, c.MetricsURL)
	if err != nil {
		return s, err
	}
	s.HeapInuse = int64(m["go_memstats_heap_inuse_bytes"])
	s.StackInuse = int64(m["go_memstats_stack_inuse_bytes"])
	s.Goroutines = int(m["go_goroutines"])
	s.Links = int(m["encoder_cloud_bridges_connected"])
	return s, nil
}

// scrape reads the unlabelled samples of a Prometheus text page.
func scrape(ctx context.Context, url string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") || strings.Contains(name, "{") {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
			out[name] = v
		}
	}
	return out, sc.Err()
}

// Job is a job line of a fleet: when the job reached its bridge, on the
// wall clock.
type Job struct {
	AtUnixNano      int64  `json:"at_unix_ns"`
	BridgeID        string `json:"bridge_id"`
	JobID           string `json:"job_id"`
	ActionAttemptID string `json:"action_attempt_id"`
	Kind            string `json:"kind"`
}

// At is when the job arrived.
func (j Job) At() time.Time { return time.Unix(0, j.AtUnixNano) }

// Fleet is a running fakebridges process.
type Fleet struct {
	*proc
	stdin io.WriteCloser
	// Links is how many bridges it holds; Setup how long connecting them
	// took, as it measured.
	Links int
	Setup time.Duration
	// Jobs receives the job lines (with Jobs set in FleetOptions) and is
	// closed when the fleet's output ends; read it, or the fleet's links
	// stall.
	Jobs  chan Job
	stats chan fleet.Stats
	final chan fleet.Stats
}

// FleetOptions are the fakebridges flags.
type FleetOptions struct {
	Answer bool // answer jobs at once
	Jobs   bool // report each job
}

// StartFleet writes tokens to a file in dir and runs fakebridges on them,
// bridge i dialling urls[i % len(urls)]; it returns when every bridge was
// welcomed.
func StartFleet(ctx context.Context, bin, dir string, tokens []fleet.Token, urls []string, opt FleetOptions) (*Fleet, error) {
	file, err := os.CreateTemp(dir, "tokens-*.jsonl")
	if err != nil {
		return nil, err
	}
	file.Close()
	if err := fleet.WriteTokensFile(file.Name(), tokens); err != nil {
		return nil, err
	}
	args := []string{"--tokens", file.Name()}
	for _, u := range urls {
		args = append(args, "--url", u)
	}
	if opt.Answer {
		args = append(args, "--answer")
	}
	if opt.Jobs {
		args = append(args, "--jobs")
	}
	cmd := exec.Command(bin, args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	errBuf := &syncbuf.Buffer{}
	cmd.Stderr = errBuf
	p, err := startProc(cmd)
	if err != nil {
		return nil, err
	}
	p.stderr = errBuf
	f := &Fleet{proc: p, stdin: stdin, Jobs: make(chan Job, 1024), stats: make(chan fleet.Stats, 1), final: make(chan fleet.Stats, 1)}
	ready := make(chan struct{})
	go f.read(stdout, ready)
	select {
	case <-ready:
		return f, nil
	case <-p.exited:
		return nil, fmt.Errorf("%w: fakebridges: %v\n%s", ErrExited, p.waitErr, p.tail())
	case <-ctx.Done():
		_, _ = f.Stop()
		return nil, ctx.Err()
	}
}

func (f *Fleet) read(stdout io.Reader, ready chan struct{}) {
	defer close(f.Jobs)
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		var l struct {
			Event        string  `json:"event"`
			Links        int     `json:"links"`
			SetupSeconds float64 `json:"setup_seconds"`
		}
		if json.Unmarshal(sc.Bytes(), &l) != nil {
			continue
		}
		switch l.Event {
		case "ready":
			f.Links, f.Setup = l.Links, time.Duration(l.SetupSeconds*float64(time.Second))
			close(ready)
		case "job":
			var j Job
			if json.Unmarshal(sc.Bytes(), &j) == nil {
				f.Jobs <- j
			}
		case "stats", "final":
			var s fleet.Stats
			if json.Unmarshal(sc.Bytes(), &s) != nil {
				continue
			}
			if l.Event == "stats" {
				f.stats <- s
			} else {
				f.final <- s
			}
		}
	}
}

// Stats asks the fleet for its counters.
func (f *Fleet) Stats() (fleet.Stats, error) {
	if _, err := io.WriteString(f.stdin, "stats\n"); err != nil {
		return fleet.Stats{}, err
	}
	select {
	case s := <-f.stats:
		return s, nil
	case <-f.exited:
		return fleet.Stats{}, fmt.Errorf("%w: fakebridges: %v\n%s", ErrExited, f.waitErr, f.tail())
	case <-time.After(30 * time.Second):
		return fleet.Stats{}, fmt.Errorf("%w: no stats from fakebridges", ErrTimeout)
	}
}

// Stop ends the fleet (its stdin closes: every link says goodbye) and
// returns its final counters.
func (f *Fleet) Stop() (fleet.Stats, error) {
	f.stdin.Close()
	var s fleet.Stats
	select {
	case s = <-f.final:
	case <-f.exited:
	case <-time.After(60 * time.Second):
	}
	select {
	case <-f.exited:
		if f.waitErr != nil {
			return s, fmt.Errorf("fakebridges: %w\n%s", f.waitErr, f.tail())
		}
		return s, nil
	case <-time.After(30 * time.Second):
		return s, f.stop(10 * time.Second)
	}
}

// API calls a cloud's HTTP API with a workspace's key.
type API struct {
	URL, Key string
	HTTP     *http.Client
}

// NewAPI makes an API client keeping up to conns connections open.
func NewAPI(url, key string, conns int) *API {
	return &API{URL: url, Key: key, HTTP: &http.Client{
		Timeout:   60 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns},
	}}
}

// Call POSTs body to path and returns the decoded answer; any status but
// 200 is an error wrapping ErrAPI.
func (a *API) Call(ctx context.Context, path string, body any) (map[string]any, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.URL+path, bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+a.Key)
	resp, err := a.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: %s: %s: %.300s", ErrAPI, path, resp.Status, raw)
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("%w: %s: body not JSON: %.300s", ErrAPI, path, raw)
	}
	return out, nil
}

// Pair is an encoder and a credential to encode on it.
type Pair struct{ Encoder, Credential string }

// Pairs lists the workspace's encoders (at most n) and makes a credential
// for each.
func (a *API) Pairs(ctx context.Context, n int) ([]Pair, error) {
	list, err := a.Call(ctx, "/acs/encoders/list", map[string]any{"limit": n})
	if err != nil {
		return nil, err
	}
	encs, _ := list["acs_encoders"].([]any)
	var out []Pair
	for _, e := range encs {
		id, _ := e.(map[string]any)["acs_encoder_id"].(string)
		now := time.Now().UTC()
		c, err := a.Call(ctx, "/acs/credentials/create", map[string]any{
			"access_method":            "card",
			"acs_user_id":              "6f1c2d8e-3a4b-4c5d-9e6f-708192a3b4c5",
			"starts_at":                now.Format(time.RFC3339),
			"ends_at":                  now.Add(48 * time.Hour).Format(time.RFC3339),
			"allowed_acs_entrance_ids": []string{"0b7e4f2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b"},
		})
		if err != nil {
			return nil, err
		}
		cred, _ := c["acs_credential"].(map[string]any)["acs_credential_id"].(string)
		out = append(out, Pair{Encoder: id, Credential: cred})
	}
	if len(out) < n {
		return nil, fmt.Errorf("%w: %d encoders listed, want %d", ErrAPI, len(out), n)
	}
	return out, nil
}

// Encode calls encode_credential and returns the action attempt, which a
// held answer (serve --settle-wait) gives already finished.
func (a *API) Encode(ctx context.Context, p Pair) (id, status string, err error) {
	out, err := a.Call(ctx, "/acs/encoders/encode_credential", map[string]any{"acs_encoder_id": p.Encoder, "acs_credential_id": p.Credential})
	if err != nil {
		return "", "", err
	}
	att, _ := out["action_attempt"].(map[string]any)
	id, _ = att["action_attempt_id"].(string)
	status, _ = att["status"].(string)
	return id, status, nil
}

// Latency is one encode's timing.
type Latency struct {
	Job    time.Duration // the API call's start to the job frame read at the bridge
	Answer time.Duration // the API call's start to its held answer (success)
}

// Dispatch encodes n times, one at a time, on p's encoder, whose bridge
// is in f (started with Jobs and Answer).
func Dispatch(ctx context.Context, a *API, f *Fleet, p Pair, n int) ([]Latency, error) {
	out := make([]Latency, 0, n)
	for range n {
		start := time.Now()
		id, status, err := a.Encode(ctx, p)
		answered := time.Since(start)
		if err != nil {
			return out, err
		}
		if status != "success" {
			return out, fmt.Errorf("%w: action attempt %s is %s, want success (is the answer held?)", ErrAPI, id, status)
		}
		var job Job
	wait:
		for {
			select {
			case j, ok := <-f.Jobs:
				if !ok {
					return out, fmt.Errorf("%w: fakebridges' output ended: %v\n%s", ErrExited, f.exitErr(), f.tail())
				}
				if j.ActionAttemptID == id {
					job = j
					break wait
				}
			case <-time.After(30 * time.Second):
				return out, fmt.Errorf("%w: no job line for action attempt %s", ErrTimeout, id)
			}
		}
		// Wall clock on both sides: the fleet is another process.
		out = append(out, Latency{Job: job.At().Sub(start.Round(0)), Answer: answered})
	}
	return out, nil
}

// Throughput runs one client per pair, each encoding on its own encoder
// again as soon as its held answer arrives, for d, and returns the
// encodes that succeeded and the time they took.
func Throughput(ctx context.Context, a *API, pairs []Pair, d time.Duration) (int, time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex
	var done int
	var firstErr error
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(d)
	for _, p := range pairs {
		wg.Go(func() {
			for time.Now().Before(end) {
				id, status, err := a.Encode(ctx, p)
				if err == nil && status != "success" {
					err = fmt.Errorf("%w: action attempt %s is %s, want success", ErrAPI, id, status)
				}
				mu.Lock()
				if err != nil {
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					cancel()
					return
				}
				done++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return done, time.Since(start), firstErr
}
