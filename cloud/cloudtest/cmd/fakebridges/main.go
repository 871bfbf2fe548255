// Command fakebridges holds many simulated bridges (package
// cloud/cloudtest/fleet) on one or more clouds, in a process of its own,
// for the cloud's scale benchmarks. It is a test tool, not shipped.
//
//	fakebridges --tokens FILE --url URL [--url URL ...] [--encoders 1] [--answer] [--jobs] [--dialers 32]
//
// Bridge i of the tokens file (one {"bridge_id","bridge_token"} JSON a
// line) dials the (i mod n)th URL. It prints JSON lines on stdout:
//
//	{"event":"ready","links":N,"setup_seconds":S}     every bridge said hello and was welcomed
//	{"event":"job","at_unix_ns":T,"bridge_id":...}    a job arrived (with --jobs)
//	{"event":"stats","links":N,"dropped":D,...}       for each "stats" line read on stdin
//	{"event":"final",...}                             the stats when it stops
//
// It stops, closing every link with a normal close frame, on SIGINT,
// SIGTERM or the end of stdin (so it never outlives the process that
// started it with a pipe there). Exit status 0 after a clean stop, 1 if a
// bridge could not connect, 2 on a usage error.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/encoder-bridge/encoder-bridge/cloud/cloudtest/fleet"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

type urls []string

func (u *urls) String() string     { return strings.Join(*u, ",") }
func (u *urls) Set(s string) error { *u = append(*u, s); return nil }

// out writes JSON lines; the job lines come from the links' readers.
type out struct {
	mu  sync.Mutex
	enc *json.Encoder
	w   *bufio.Writer
}

func (o *out) line(v any) {
	o.mu.Lock()
	defer o.mu.Unlock()
	_ = o.enc.Encode(v)
	_ = o.w.Flush()
}

type jobLine struct {
	Event           string `json:"event"`
	AtUnixNano      int64  `json:"at_unix_ns"`
	BridgeID        string `json:"bridge_id"`
	JobID           string `json:"job_id"`
	ActionAttemptID string `json:"action_attempt_id"`
	Kind            string `json:"kind"`
}

type statsLine struct {
	Event string `json:"event"`
	fleet.Stats
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("fakebridges", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var u urls
	tokensFile := fs.String("tokens", "", "tokens `FILE`: one {\"bridge_id\",\"bridge_token\"} JSON a line")
	fs.Var(&u, "url", "a cloud's base `URL` (repeat for several; bridges are dealt round-robin)")
	encoders := fs.Int("encoders", 1, "encoders per bridge")
	answer := fs.Bool("answer", false, "answer every job at once with an ack and a valid result")
	jobs := fs.Bool("jobs", false, "print a line for every job received")
	dialers := fs.Int("dialers", fleet.DefaultDialers, "links connecting at once")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *tokensFile == "" || len(u) == 0 || fs.NArg() > 0 || *encoders <= 0 || *dialers <= 0 {
		fmt.Fprintln(stderr, "fakebridges: --tokens and --url are required; --encoders and --dialers must be positive")
		return 2
	}
	f, err := os.Open(*tokensFile)
	if err != nil {
		fmt.Fprintln(stderr, "fakebridges:", err)
		return 1
	}
	tokens, err := fleet.ReadTokens(f)
	f.Close()
	if err != nil {
		fmt.Fprintln(stderr, "fakebridges:", err)
		return 1
	}
	bw := bufio.NewWriter(stdout)
	o := &out{enc: json.NewEncoder(bw), w: bw}
	cfg := fleet.Config{Tokens: tokens, URLs: u, Encoders: *encoders, Answer: *answer, Dialers: *dialers}
	if *jobs {
		cfg.OnJob = func(j fleet.Job) {
			o.line(jobLine{Event: "job", AtUnixNano: j.At.UnixNano(), BridgeID: j.BridgeID, JobID: j.JobID,
				ActionAttemptID: j.ActionAttemptID, Kind: string(j.Kind)})
		}
	}
	// stdin: "stats" lines ask for the counters; its end stops the fleet.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	asks := make(chan struct{}, 16)
	go func() {
		defer cancel()
		sc := bufio.NewScanner(stdin)
		for sc.Scan() {
			if strings.TrimSpace(sc.Text()) == "stats" {
				asks <- struct{}{}
			}
		}
	}()
	start := time.Now()
	fl, err := fleet.Start(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "fakebridges:", err)
		return 1
	}
	o.line(map[string]any{"event": "ready", "links": len(tokens), "setup_seconds": time.Since(start).Seconds()})
	for {
		select {
		case <-asks:
			o.line(statsLine{Event: "stats", Stats: fl.Stats()})
		case <-ctx.Done():
			fl.Close()
			o.line(statsLine{Event: "final", Stats: fl.Stats()})
			return 0
		}
	}
}
