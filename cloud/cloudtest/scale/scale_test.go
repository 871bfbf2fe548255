//go:build linux

package scale_test

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/encoder-bridge/encoder-bridge/cloud/cloudtest/fleet"
	"github.com/encoder-bridge/encoder-bridge/cloud/cloudtest/scale"
	"github.com/encoder-bridge/encoder-bridge/internal/pgtest"
)

// newDB is a new, empty database on backend: a SQLite file in dir, or a
// database in the PostgreSQL test cluster of internal/pgtest, dropped
// when tb ends (fsync off there: its commits are not durable, so it shows
// the cloud's own cost, not a durable commit's).
func newDB(tb testing.TB, backend, dir, name string) string {
	tb.Helper()
	switch backend {
	case "sqlite":
		return filepath.Join(dir, name+".db")
	case "postgres":
		return pgtest.DSN(tb)
	}
	tb.Fatalf("unknown backend %q (SCALE_DB: sqlite or postgres)", backend)
	return ""
}

var (
	binsOnce sync.Once
	bins     scale.Bins
	binsErr  error
	binsDir  string
)

// TestMain runs the tests through pgtest.Main, which stops the
// PostgreSQL test cluster if one was started, and removes the binaries
// built for them.
func TestMain(m *testing.M) {
	code := pgtest.Main(m)
	if binsDir != "" {
		os.RemoveAll(binsDir)
	}
	os.Exit(code)
}

func build(tb testing.TB) scale.Bins {
	tb.Helper()
	binsOnce.Do(func() {
		if binsDir, binsErr = os.MkdirTemp("", "encoder-cloud-scale"); binsErr == nil {
			bins, binsErr = scale.Build(binsDir)
		}
	})
	if binsErr != nil {
		tb.Fatal(binsErr)
	}
	return bins
}

// env reads a positive whole number or a duration from the environment.
func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(name)); err == nil && d > 0 {
		return d
	}
	return def
}

// idleConfig is a run of idle bridges.
type idleConfig struct {
	Backend   string // sqlite or postgres
	Bridges   int
	Instances int // encoder-cloud serve processes: a SQLite file each, or one PostgreSQL database
	Fleets    int // fakebridges processes, dealt round-robin to the instances
	Window    time.Duration
	// Active bridges (in a workspace of their own on instance 0) answer
	// jobs after the idle measurement: Encodes encodes one at a time,
	// then one client per active bridge for Busy.
	Active  int
	Encodes int
	Busy    time.Duration
}

type instanceResult struct {
	Links                int
	Base, Before, After  scale.Sample // no links, links up, links up after Window
	Goroutines           int
	BytesRSS, BytesGo    float64 // per link
	CPUPerSecond         float64 // CPU seconds per second over Window
	Pings, Pongs, Setups int
}

type idleResult struct {
	Instances []instanceResult
	Setup     time.Duration // starting the fleets until every bridge was welcomed
	FleetRSS  int64         // the fakebridges processes' resident memory, together
	Links     int
	// Across instances: per link, and CPU seconds per second.
	BytesRSS, BytesGo, CPU float64
	// With Active set: dispatch latencies and encodes finished in Busy.
	Latencies []scale.Latency
	Finished  int
	BusyTook  time.Duration
}

// runIdle provisions the bridges, starts the instances, samples them with
// no link, connects the fleets, samples again, waits Window, samples a
// third time and stops everything.
func runIdle(tb testing.TB, cfg idleConfig) idleResult {
	tb.Helper()
	b := build(tb)
	ctx := context.Background()
	dir := tb.TempDir()
	cfg.Fleets = max(cfg.Fleets, cfg.Instances)
	clouds := make([]*scale.Cloud, cfg.Instances)
	shares := make([][]fleet.Token, cfg.Instances)
	var active scale.Workspace
	// On PostgreSQL the instances share one database, as they would in
	// production; SQLite gives each its own file.
	var shared scale.Workspace
	var sharedDB string
	if cfg.Backend == "postgres" {
		sharedDB = newDB(tb, cfg.Backend, dir, "cloud")
		var err error
		if shared, err = scale.Provision(ctx, sharedDB, cfg.Bridges); err != nil {
			tb.Fatal(err)
		}
	}
	for i := range clouds {
		lo, hi := cfg.Bridges*i/cfg.Instances, cfg.Bridges*(i+1)/cfg.Instances
		db := sharedDB
		if db == "" {
			db = newDB(tb, cfg.Backend, dir, fmt.Sprintf("cloud-%d", i))
			ws, err := scale.Provision(ctx, db, hi-lo)
			if err != nil {
				tb.Fatal(err)
			}
			shares[i] = ws.Tokens
		} else {
			shares[i] = shared.Tokens[lo:hi]
		}
		var err error
		if i == 0 && cfg.Active > 0 {
			if active, err = scale.Provision(ctx, db, cfg.Active); err != nil {
				tb.Fatal(err)
			}
		}
		c, err := scale.StartCloud(ctx, b.Cloud, db, filepath.Join(dir, fmt.Sprintf("cloud-%d.log", i)), "--settle-wait", "30s")
		if err != nil {
			tb.Fatal(err)
		}
		clouds[i] = c
		tb.Cleanup(func() {
			if err := c.Stop(); err != nil {
				tb.Error(err)
			}
		})
	}
	// Fleet k serves instance k % Instances, with its part of that share.
	type plan struct {
		tokens []fleet.Token
		url    string
	}
	var plans []plan
	for i := range clouds {
		var mine []int
		for k := range cfg.Fleets {
			if k%cfg.Instances == i {
				mine = append(mine, k)
			}
		}
		toks := shares[i]
		for j := range mine {
			lo, hi := len(toks)*j/len(mine), len(toks)*(j+1)/len(mine)
			plans = append(plans, plan{tokens: toks[lo:hi], url: clouds[i].URL})
		}
	}
	time.Sleep(2 * time.Second) // the instances' start-up garbage collected or not, alike
	res := idleResult{Instances: make([]instanceResult, len(clouds)), Links: cfg.Bridges}
	for i, c := range clouds {
		s, err := c.Sample(ctx)
		if err != nil {
			tb.Fatal(err)
		}
		res.Instances[i].Base = s
		res.Instances[i].Links = len(shares[i])
	}
	fleets := make([]*scale.Fleet, len(plans))
	errs := make([]error, len(plans))
	start := time.Now()
	var wg sync.WaitGroup
	for k, p := range plans {
		wg.Go(func() {
			fleets[k], errs[k] = scale.StartFleet(ctx, b.Fleet, dir, p.tokens, []string{p.url}, scale.FleetOptions{})
		})
	}
	wg.Wait()
	res.Setup = time.Since(start)
	for k, f := range fleets {
		if f != nil {
			tb.Cleanup(func() { f.Stop() })
		}
		if errs[k] != nil {
			tb.Fatalf("fleet %d: %v", k, errs[k])
		}
	}
	// Every link counted by its instance.
	for i, c := range clouds {
		deadline := time.Now().Add(time.Minute)
		for {
			s, err := c.Sample(ctx)
			if err != nil {
				tb.Fatal(err)
			}
			if s.Links == res.Instances[i].Links {
				break
			}
			if time.Now().After(deadline) {
				var fs strings.Builder
				for k, f := range fleets {
					st, err := f.Stats()
					fmt.Fprintf(&fs, "fleet %d: %+v %v\n", k, st, err)
				}
				tb.Fatalf("instance %d holds %d links, want %d\n%sthe clouds' last warnings:\n%s", i, s.Links, res.Instances[i].Links, fs.String(), complaints(clouds))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	time.Sleep(min(5*time.Second, cfg.Window))
	for i, c := range clouds {
		s, err := c.Sample(ctx)
		if err != nil {
			tb.Fatal(err)
		}
		res.Instances[i].Before = s
	}
	time.Sleep(cfg.Window)
	var dRSS, dGo, cpu float64
	for i, c := range clouds {
		s, err := c.Sample(ctx)
		if err != nil {
			tb.Fatal(err)
		}
		r := &res.Instances[i]
		r.After = s
		n := float64(r.Links)
		r.BytesRSS = float64(s.RSS-r.Base.RSS) / n
		r.BytesGo = float64(s.GoBytes()-r.Base.GoBytes()) / n
		r.CPUPerSecond = (s.CPU - r.Before.CPU).Seconds() / s.At.Sub(r.Before.At).Seconds()
		r.Goroutines = s.Goroutines - r.Base.Goroutines
		dRSS += float64(s.RSS - r.Base.RSS)
		dGo += float64(s.GoBytes() - r.Base.GoBytes())
		cpu += r.CPUPerSecond
	}
	res.BytesRSS, res.BytesGo, res.CPU = dRSS/float64(cfg.Bridges), dGo/float64(cfg.Bridges), cpu
	for k, f := range fleets {
		s, err := scale.ProcSample(f.Pid())
		if err != nil {
			tb.Fatal(err)
		}
		res.FleetRSS += s.RSS
		st, err := f.Stats()
		if err != nil {
			tb.Fatal(err)
		}
		if st.Links != len(plans[k].tokens) || st.Dropped != 0 {
			tb.Fatalf("fleet %d: %+v, want %d links and none dropped; the clouds' last warnings:\n%s", k, st, len(plans[k].tokens), complaints(clouds))
		}
	}
	if cfg.Active > 0 {
		f, err := scale.StartFleet(ctx, b.Fleet, dir, active.Tokens, []string{clouds[0].URL}, scale.FleetOptions{Answer: true, Jobs: true})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { f.Stop() })
		api := scale.NewAPI(clouds[0].URL, active.APIKey, cfg.Active)
		pairs, err := api.Pairs(ctx, cfg.Active)
		if err != nil {
			tb.Fatal(err)
		}
		if _, err := scale.Dispatch(ctx, api, f, pairs[0], 10); err != nil { // warm up
			tb.Fatal(err)
		}
		if res.Latencies, err = scale.Dispatch(ctx, api, f, pairs[0], cfg.Encodes); err != nil {
			tb.Fatal(err)
		}
		go func() {
			for range f.Jobs { // the busy clients' job lines, not timed
			}
		}()
		if res.Finished, res.BusyTook, err = scale.Throughput(ctx, api, pairs, cfg.Busy); err != nil {
			tb.Fatal(err)
		}
	}
	for k, f := range fleets {
		st, err := f.Stop()
		if err != nil {
			tb.Fatalf("fleet %d: %v", k, err)
		}
		if st.Dropped != 0 {
			tb.Fatalf("fleet %d dropped %d links (last: %s); the clouds' last warnings:\n%s", k, st.Dropped, st.LastDrop, complaints(clouds))
		}
	}
	return res
}

func complaints(clouds []*scale.Cloud) string {
	var b strings.Builder
	for i, c := range clouds {
		fmt.Fprintf(&b, "instance %d:\n%s", i, c.Complaints(10))
	}
	return b.String()
}

func logIdle(tb testing.TB, cfg idleConfig, r idleResult) {
	tb.Helper()
	tb.Logf("%d bridges on %d instances (%s) from %d fleet processes, connected in %.1f s; window %s",
		cfg.Bridges, cfg.Instances, cfg.Backend, max(cfg.Fleets, cfg.Instances), r.Setup.Seconds(), cfg.Window)
	for i, in := range r.Instances {
		tb.Logf("instance %d: %d links; RSS %.1f → %.1f MiB (%.0f B/link); Go heap+stacks %.1f → %.1f MiB (%.0f B/link); %+d goroutines (%.2f/link); CPU %.2f %% of a core",
			i, in.Links, mib(in.Base.RSS), mib(in.After.RSS), in.BytesRSS, mib(in.Base.GoBytes()), mib(in.After.GoBytes()), in.BytesGo,
			in.Goroutines, float64(in.Goroutines)/float64(in.Links), 100*in.CPUPerSecond)
	}
	tb.Logf("fakebridges processes: %.1f MiB RSS together", mib(r.FleetRSS))
	if len(r.Latencies) > 0 {
		job, answer := split(r.Latencies)
		tb.Logf("with every idle link attached, on instance 0: %d encodes one at a time: job p50 %s p99 %s, answer p50 %s p99 %s; %d clients finished %d encodes in %s (%.0f/s)",
			len(r.Latencies), percentile(job, 50), percentile(job, 99), percentile(answer, 50), percentile(answer, 99),
			cfg.Active, r.Finished, r.BusyTook.Round(time.Millisecond), float64(r.Finished)/r.BusyTook.Seconds())
	}
}

func split(lat []scale.Latency) (job, answer []time.Duration) {
	for _, l := range lat {
		job, answer = append(job, l.Job), append(answer, l.Answer)
	}
	return job, answer
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// TestScaleSmall runs every measurement of this package with a few
// bridges, so that the benchmarks' code cannot rot unnoticed. It checks
// what was measured, never how fast.
func TestScaleSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the cloud and fleet binaries")
	}
	for _, cfg := range []idleConfig{
		{Backend: "sqlite", Bridges: 40, Instances: 2, Fleets: 3, Window: time.Second, Active: 3, Encodes: 3, Busy: 200 * time.Millisecond},
		{Backend: "postgres", Bridges: 40, Instances: 2, Fleets: 2, Window: time.Second, Active: 3, Encodes: 3, Busy: 200 * time.Millisecond},
	} {
		t.Run("idle/"+cfg.Backend, func(t *testing.T) {
			r := runIdle(t, cfg)
			logIdle(t, cfg, r)
			for i, in := range r.Instances {
				if in.After.Links != in.Links || in.Links != 20 || in.After.RSS <= 0 || in.After.GoBytes() <= 0 || in.After.CPU <= 0 {
					t.Errorf("instance %d: %+v", i, in)
				}
			}
			if r.FleetRSS <= 0 {
				t.Errorf("fleet RSS %d", r.FleetRSS)
			}
			if len(r.Latencies) != 3 || r.Finished < 3 {
				t.Errorf("%d encodes timed, %d finished by 3 busy clients", len(r.Latencies), r.Finished)
			}
		})
	}
	for _, topo := range topologies {
		t.Run("dispatch/"+topo.Name, func(t *testing.T) {
			lat := runDispatch(t, topo, 5)
			for i, l := range lat {
				if l.Job <= 0 || l.Answer < l.Job {
					t.Errorf("encode %d: job after %s, answer after %s", i, l.Job, l.Answer)
				}
			}
		})
		t.Run("throughput/"+topo.Name, func(t *testing.T) {
			n, d := runThroughput(t, topo, 4, 300*time.Millisecond)
			// Each client finishes the encode it started before the end.
			if n < 4 || d <= 0 {
				t.Errorf("%d encodes in %s", n, d)
			}
		})
	}
}

// BenchmarkIdle holds SCALE_BRIDGES idle bridges (10,000) on
// SCALE_INSTANCES encoder-cloud processes (1), each with its own SQLite
// file or all on one PostgreSQL database (SCALE_DB: sqlite, the default,
// or postgres), from SCALE_FLEETS fakebridges processes (2), and reports per link
// the instances' resident memory and Go heap plus stacks over their
// baseline, and their CPU at idle over SCALE_WINDOW (60s). Then, with
// every idle link still attached, SCALE_CLIENTS answering bridges (32) on
// the first instance take SCALE_ENCODES encodes one at a time (300, the
// dispatch latencies) and then one client each for SCALE_BUSY (10s, the
// throughput). Run it with -benchtime 1x: each round sets everything up.
func BenchmarkIdle(b *testing.B) {
	cfg := idleConfig{
		Backend:   cmp.Or(os.Getenv("SCALE_DB"), "sqlite"),
		Bridges:   envInt("SCALE_BRIDGES", 10000),
		Instances: envInt("SCALE_INSTANCES", 1),
		Fleets:    envInt("SCALE_FLEETS", 2),
		Window:    envDuration("SCALE_WINDOW", time.Minute),
		Active:    envInt("SCALE_CLIENTS", 32),
		Encodes:   envInt("SCALE_ENCODES", 300),
		Busy:      envDuration("SCALE_BUSY", 10*time.Second),
	}
	for range b.N {
		r := runIdle(b, cfg)
		logIdle(b, cfg, r)
		reportLatencies(b, r.Latencies)
		b.ReportMetric(float64(r.Finished)/r.BusyTook.Seconds(), "jobs/s")
		b.ReportMetric(float64(r.Links), "links")
		b.ReportMetric(r.BytesRSS, "rss-B/link")
		b.ReportMetric(r.BytesGo, "go-B/link")
		b.ReportMetric(100*r.CPU, "cpu-%core")
		b.ReportMetric(r.Setup.Seconds(), "setup-s")
	}
}

// single is one instance on SQLite with a fleet of n answering bridges
// that report their jobs.
type single struct {
	api   *scale.API
	fleet *scale.Fleet
	pairs []scale.Pair
}

// topology is where the jobs run: Instances encoder-cloud processes on
// one database of Backend, the answering bridges on the last instance,
// the API calls to instance API.
type topology struct {
	Name      string
	Backend   string
	Instances int
	API       int
}

// topologies are compared within one run of BenchmarkDispatch and
// BenchmarkThroughput: one instance on each store, then two on one
// PostgreSQL database with the API call on the bridge's instance (same)
// or on the other one (cross: the job and its result travel through
// PostgreSQL's notifications).
var topologies = []topology{
	{"sqlite", "sqlite", 1, 0},
	{"postgres", "postgres", 1, 0},
	{"postgres-2-same", "postgres", 2, 1},
	{"postgres-2-cross", "postgres", 2, 0},
}

func startSingle(tb testing.TB, topo topology, bridges int, jobs bool) single {
	tb.Helper()
	b := build(tb)
	ctx := context.Background()
	dir := tb.TempDir()
	db := newDB(tb, topo.Backend, dir, "cloud")
	ws, err := scale.Provision(ctx, db, bridges)
	if err != nil {
		tb.Fatal(err)
	}
	clouds := make([]*scale.Cloud, topo.Instances)
	for i := range clouds {
		c, err := scale.StartCloud(ctx, b.Cloud, db, filepath.Join(dir, fmt.Sprintf("cloud-%d.log", i)), "--settle-wait", "30s")
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() {
			if err := c.Stop(); err != nil {
				tb.Error(err)
			}
		})
		clouds[i] = c
	}
	f, err := scale.StartFleet(ctx, b.Fleet, dir, ws.Tokens, []string{clouds[len(clouds)-1].URL}, scale.FleetOptions{Answer: true, Jobs: jobs})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Stop() })
	api := scale.NewAPI(clouds[topo.API].URL, ws.APIKey, bridges)
	pairs, err := api.Pairs(ctx, bridges)
	if err != nil {
		tb.Fatal(err)
	}
	return single{api: api, fleet: f, pairs: pairs}
}

func runDispatch(tb testing.TB, topo topology, n int) []scale.Latency {
	tb.Helper()
	s := startSingle(tb, topo, 4, true)
	lat, err := scale.Dispatch(context.Background(), s.api, s.fleet, s.pairs[0], n)
	if err != nil {
		tb.Fatal(err)
	}
	return lat
}

func runThroughput(tb testing.TB, topo topology, clients int, d time.Duration) (int, time.Duration) {
	tb.Helper()
	s := startSingle(tb, topo, clients, false)
	n, took, err := scale.Throughput(context.Background(), s.api, s.pairs, d)
	if err != nil {
		tb.Fatal(err)
	}
	return n, took
}

func percentile(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

// BenchmarkDispatch measures one encode at a time, from the
// encode_credential call to the job frame read by the fake bridge in
// another process, and to the call's held answer (success), in each of
// the topologies.
func BenchmarkDispatch(b *testing.B) {
	for _, topo := range topologies {
		b.Run(topo.Name, func(b *testing.B) { benchDispatch(b, topo) })
	}
}

func benchDispatch(b *testing.B, topo topology) {
	{
		s := startSingle(b, topo, 4, true)
		ctx := context.Background()
		if _, err := scale.Dispatch(ctx, s.api, s.fleet, s.pairs[0], 10); err != nil { // warm up
			b.Fatal(err)
		}
		b.ResetTimer()
		lat, err := scale.Dispatch(ctx, s.api, s.fleet, s.pairs[0], b.N)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		reportLatencies(b, lat)
	}
}

func reportLatencies(b *testing.B, lat []scale.Latency) {
	jobs, answers := split(lat)
	b.ReportMetric(float64(percentile(jobs, 50).Microseconds()), "job-p50-µs")
	b.ReportMetric(float64(percentile(jobs, 99).Microseconds()), "job-p99-µs")
	b.ReportMetric(float64(percentile(answers, 50).Microseconds()), "answer-p50-µs")
	b.ReportMetric(float64(percentile(answers, 99).Microseconds()), "answer-p99-µs")
}

// BenchmarkThroughput runs SCALE_CLIENTS (32) API clients, each encoding
// on its own fake bridge again as soon as its held answer arrives, for
// SCALE_WINDOW (10s), and reports the encodes per second the cloud
// finished, in each of the topologies. Run it with -benchtime 1x.
func BenchmarkThroughput(b *testing.B) {
	clients := envInt("SCALE_CLIENTS", 32)
	d := envDuration("SCALE_WINDOW", 10*time.Second)
	for _, topo := range topologies {
		b.Run(topo.Name, func(b *testing.B) {
			for range b.N {
				n, took := runThroughput(b, topo, clients, d)
				b.ReportMetric(float64(n)/took.Seconds(), "jobs/s")
				b.ReportMetric(float64(clients), "clients")
			}
		})
	}
}
