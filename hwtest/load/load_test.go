package load_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/encoder-bridge/encoder-bridge/bridge"
	"github.com/encoder-bridge/encoder-bridge/cloud/seam"
	"github.com/encoder-bridge/encoder-bridge/hwtest"
	"github.com/encoder-bridge/encoder-bridge/hwtest/pcscd"
	"github.com/encoder-bridge/encoder-bridge/protocol"
	"github.com/encoder-bridge/encoder-bridge/reader/pcsc"
	"github.com/encoder-bridge/encoder-bridge/reader/sim/chip"
)

// plan is one load run.
type plan struct {
	encoders int
	jobs     int
	// paced is how many of the first jobs go out at rate (jobs per second
	// across the desk); the rest go as fast as the encoders take them.
	paced int
	rate  float64
	// The link is cut at job cutEvery/2 and then every cutEvery jobs.
	cutEvery int
	// pcscd is restarted when job pcscdAt goes out, the bridge killed and
	// started again when job killAt does.
	pcscdAt, killAt int
	// Every scanEvery-th job scans a card the run issued on that encoder.
	scanEvery int
	// direct is how many cards are encoded without cloud or bridge
	// process, for the card I/O alone.
	direct int
}

// loadPlan: LOAD_FULL (make load) is the run, 8 encoders and
// 1,000 jobs, 200 of them at 1 job/s across the desk: a busy check-in
// hour has a few hundred arrivals, two cards each, so 1/s is well above
// it. Without it, a small run for CI that checks correctness.
// LOAD_PLAN overrides fields for a shorter or longer run, e.g.
// LOAD_PLAN="jobs=300 paced=0 pcscd=100 kill=250".
func loadPlan(t *testing.T) plan {
	p := plan{encoders: 2, jobs: 40, paced: 10, rate: 2, cutEvery: 50, pcscdAt: 16, killAt: 30, scanEvery: 10, direct: 8}
	if os.Getenv("LOAD_FULL") != "" {
		p = plan{encoders: 8, jobs: 1000, paced: 200, rate: 1, cutEvery: 50, pcscdAt: 450, killAt: 750, scanEvery: 10, direct: 200}
	}
	fields := map[string]*int{"encoders": &p.encoders, "jobs": &p.jobs, "paced": &p.paced, "cut": &p.cutEvery,
		"pcscd": &p.pcscdAt, "kill": &p.killAt, "scan": &p.scanEvery, "direct": &p.direct}
	for _, kv := range strings.Fields(os.Getenv("LOAD_PLAN")) {
		k, v, _ := strings.Cut(kv, "=")
		if k == "rate" {
			if _, err := fmt.Sscan(v, &p.rate); err != nil || p.rate <= 0 {
				t.Fatalf("LOAD_PLAN: rate=%q: want a positive number", v)
			}
			continue
		}
		f, ok := fields[k]
		if !ok {
			t.Fatalf("LOAD_PLAN: unknown field %q (encoders, jobs, paced, rate, cut, pcscd, kill, scan, direct)", k)
		}
		if _, err := fmt.Sscan(v, f); err != nil || *f < 0 {
			t.Fatalf("LOAD_PLAN: %s=%q: want a whole number", k, v)
		}
	}
	if p.encoders < 2 || p.encoders%2 != 0 || p.encoders > 2*pcscd.MaxEntries {
		t.Fatalf("LOAD_PLAN: encoders=%d: want an even number from 2 to %d (two readers per vpcd entry)", p.encoders, 2*pcscd.MaxEntries)
	}
	return p
}

// kinds are the card types the jobs rotate through: both layouts that
// count their writes (Classic, Ultralight/NTAG).
var kinds = []string{chip.KindClassic1K, chip.KindNTAG213, chip.KindMF0UL21}

// job is one job of the run and what came of it.
type job struct {
	n       int
	phase   string
	encoder int
	op      string // encode or scan
	kind    string
	card    chip.Card
	cred    string // encode: the credential; scan: the one on the card
	status  string // success, error, or why it counts as lost
	errType string
	scanned string
	// start and end bound the job from its first SDK call to its last
	// answer; call is the last call alone.
	start, end time.Time
	call       time.Duration
	// offline counts the calls refused with encoder_not_online and
	// made again.
	offline int
	record  string // the credential the card holds afterwards, "" none
	writes  map[int]int
	putBack int
}

const (
	// retryEvery and retryFor: how a desk's software retries a job the
	// cloud refused because the encoder was offline.
	retryEvery = 500 * time.Millisecond
	retryFor   = 2 * time.Minute
)

type issuedCard struct {
	card chip.Card
	cred string
}

type runner struct {
	t     *testing.T
	plan  plan
	d     *desk
	pd    *pcscd.Daemon
	slots []hwtest.Slot
	sdk   *sdk
	one   map[string]map[int]int

	faults sync.WaitGroup
	// inFlight counts the SDK calls under way, for the fault log: a
	// fault between jobs would test nothing.
	inFlight atomic.Int32
	mu       sync.Mutex
	issued   [][]issuedCard
	jobs     []*job
	events   []string
}

func (r *runner) event(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, fmt.Sprintf(format, args...)+fmt.Sprintf(" (%d jobs in flight)", r.inFlight.Load()))
}

// TestLoad runs the plan: the cards alone first, then the desk under
// the SDK's jobs with the link cut, pcscd restarted and the bridge
// killed along the way, then every job's outcome checked.
func TestLoad(t *testing.T) {
	p := loadPlan(t)
	pd := privatePcscd(t, p.encoders/2)
	var slots []hwtest.Slot
	for range pd.Readers() {
		slots = append(slots, hwtest.AcquireSlot(t))
	}
	readers := pd.Readers()
	for i, s := range slots {
		if s.Reader != readers[i].Name {
			t.Fatalf("slot %d is %v, want reader %q", i, s, readers[i].Name)
		}
	}
	d := newDesk(t, readers)
	r := &runner{t: t, plan: p, d: d, pd: pd, slots: slots, one: map[string]map[int]int{}, issued: make([][]issuedCard, p.encoders)}
	for _, k := range kinds {
		r.one[k] = oneEncode(t, k, d.keys)
	}
	direct, directWall := r.direct()

	r.sdk = startSDK(t, d)
	if err := d.startBridge(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.stopBridge(); err != nil {
			t.Error(err)
		}
	})
	d.waitEncoders(p.encoders)

	queue := make(chan *job)
	phaseStart := map[string]time.Time{}
	go func() {
		defer close(queue)
		begin := time.Now()
		for n := 1; n <= p.jobs; n++ {
			j := &job{n: n, phase: "flat out"}
			if n <= p.paced {
				j.phase = "paced"
				time.Sleep(time.Until(begin.Add(time.Duration(float64(n-1) / p.rate * float64(time.Second)))))
			}
			if _, ok := phaseStart[j.phase]; !ok {
				phaseStart[j.phase] = time.Now()
			}
			queue <- j
			r.fault(n)
		}
	}()
	var workers sync.WaitGroup
	for e := range p.encoders {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for j := range queue {
				r.run(e, j)
			}
		}()
	}
	workers.Wait()
	r.faults.Wait()

	r.check()
	r.report(phaseStart, direct, directWall)
	if f := os.Getenv("LOAD_LOG"); f != "" {
		if err := os.WriteFile(f, []byte(d.log.String()), 0o600); err != nil {
			t.Error(err)
		}
	}
	if t.Failed() {
		t.Logf("desk log (tail):\n%s", tail(d.log.String(), 8000))
		t.Logf("SDK stderr:\n%s", tail(r.sdk.stderr.String(), 4000))
		t.Logf("pcscd log:\n%s", tail(pd.Log(), 4000))
	}
}

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// fault starts the faults due when job n goes out.
func (r *runner) fault(n int) {
	p := r.plan
	if p.cutEvery > 0 && n%p.cutEvery == p.cutEvery/2 {
		r.faults.Add(1)
		go func() {
			defer r.faults.Done()
			r.whenBusy()
			r.d.proxy.cut()
			r.event("link cut at job %d", n)
		}()
	}
	if n == p.pcscdAt {
		r.faults.Add(1)
		go func() {
			defer r.faults.Done()
			r.whenBusy()
			if err := r.pd.Restart(); err != nil {
				r.t.Errorf("restart pcscd: %v", err)
			}
			r.event("pcscd restarted at job %d", n)
		}()
	}
	if n == p.killAt {
		r.faults.Add(1)
		go func() {
			defer r.faults.Done()
			r.whenBusy()
			if err := r.d.restartBridge(); err != nil {
				r.t.Errorf("restart the bridge: %v", err)
			}
			r.event("bridge SIGKILLed and started at job %d", n)
		}()
	}
}

// whenBusy returns at a random moment while an SDK call is under way
// (or after 5 s): most of a desk's time goes to changing cards, and a
// fault between calls would test little.
func (r *runner) whenBusy() {
	time.Sleep(rand.N(200 * time.Millisecond))
	for deadline := time.Now().Add(5 * time.Second); r.inFlight.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(rand.N(20 * time.Millisecond))
}

// run does job j on encoder e as a front desk does: the card goes on
// the encoder, the desk's software calls the SDK, the card comes off.
func (r *runner) run(e int, j *job) {
	t := r.t
	j.encoder, j.op = e, "encode"
	slot := r.slots[e]
	r.mu.Lock()
	if r.plan.scanEvery > 0 && j.n%r.plan.scanEvery == 0 && len(r.issued[e]) > 0 {
		ic := r.issued[e][len(r.issued[e])-1]
		j.op, j.card, j.cred = "scan", ic.card, ic.cred
	}
	r.mu.Unlock()
	if j.op == "encode" {
		j.kind = kinds[j.n%len(kinds)]
		c, err := chip.New(j.kind, nil)
		if err != nil {
			t.Error(err)
			return
		}
		j.card = c
	}
	w := countWrites(j.card)
	h := hold(slot, w)
	if err := waitCard(slot.Reader, true, j.card.ATR()); err != nil {
		t.Errorf("job %d: put the card on %q: %v", j.n, slot.Reader, err)
	}
	var a sdkAnswer
	var ok bool
	for {
		r.inFlight.Add(1)
		a, ok = r.sdk.do(j.op, r.d.encoders[e], j.cred)
		r.inFlight.Add(-1)
		if j.start.IsZero() {
			j.start = msTime(a.Start)
		}
		if j.op == "encode" && j.cred == "" {
			j.cred = a.Credential
		}
		// The desk's software sees the encoder offline (the link is
		// down, the bridge restarting) and tries again, as a clerk
		// would: the job never reached an encoder, so nothing was
		// written.
		if !ok || a.Status != "error" || protocol.ErrorType(a.Error) != protocol.ErrorEncoderNotOnline || time.Since(j.start) > retryFor {
			break
		}
		j.offline++
		time.Sleep(retryEvery)
	}
	j.end, j.call = msTime(a.End), msTime(a.End).Sub(msTime(a.Start))
	switch {
	case !ok:
		j.status = "lost: the SDK process died"
	case a.Status == "success" || a.Status == "error":
		j.status, j.errType = a.Status, a.Error
	case a.Status == "timeout":
		// The SDK stopped waiting: poll as an integrator would later.
		if att := r.d.settle(a.Attempt, msTime(a.Start)); att == nil {
			j.status = "lost: still pending after the job's deadline"
		} else {
			j.status = att["status"].(string)
			if e, ok := att["error"].(map[string]any); ok {
				j.errType, _ = e["type"].(string)
			}
		}
	default:
		j.status = "lost: " + a.Status + ": " + a.Error
	}
	if a.Scanned != nil {
		j.scanned = *a.Scanned
	}
	h.remove()
	if err := waitCard(slot.Reader, false, nil); err != nil {
		t.Errorf("job %d: take the card off %q: %v", j.n, slot.Reader, err)
	}
	j.putBack = int(h.putBack.Load())
	j.writes = w.Writes()
	rec, err := cardRecord(j.card, r.d.keys)
	if err != nil {
		t.Errorf("job %d: scan the card afterwards: %v", j.n, err)
	}
	j.record = rec
	r.mu.Lock()
	if j.op == "encode" && j.record != "" && j.record == j.cred {
		r.issued[e] = append(r.issued[e], issuedCard{card: j.card, cred: j.cred})
	}
	r.jobs = append(r.jobs, j)
	r.mu.Unlock()
}

// check holds every job to what the issue asks: each attempt ended in
// success or one of Seam's error types, no card written twice for one
// job or holding another job's credential, is_issued as the card says.
func (r *runner) check() {
	t := r.t
	if len(r.jobs) != r.plan.jobs {
		t.Errorf("%d jobs ran, the plan has %d", len(r.jobs), r.plan.jobs)
	}
	// A result can reach the cloud after its attempt ended (it then still
	// marks the credential issued): let the bridge finish.
	time.Sleep(2 * time.Second)
	var lost, dup int
	for _, j := range r.jobs {
		action := seam.ActionEncodeCredential
		if j.op == "scan" {
			action = seam.ActionScanCredential
		}
		switch j.status {
		case "success":
		case "error":
			if !slices.Contains(seam.ErrorTypes(action), protocol.ErrorType(j.errType)) {
				lost++
				t.Errorf("job %d (%s): failed with %q, not one of Seam's error types for it", j.n, j.op, j.errType)
			}
		default:
			lost++
			t.Errorf("job %d (%s): %s", j.n, j.op, j.status)
		}
		if j.op == "scan" {
			if n := total(j.writes); n > 0 {
				dup++
				t.Errorf("job %d: a scan wrote the card %d times", j.n, n)
			}
			if j.record != j.cred {
				t.Errorf("job %d: the scanned card holds %q afterwards, not its credential", j.n, j.record)
			}
			if j.status == "success" && j.scanned != j.cred {
				t.Errorf("job %d: the scan found credential %q, the card holds %q", j.n, j.scanned, j.cred)
			}
			continue
		}
		if b := overwritten(j.writes, r.one[j.kind]); len(b) > 0 {
			dup++
			t.Errorf("job %d: blocks %v written more often than one encode writes them (%v; one encode: %v)", j.n, b, j.writes, r.one[j.kind])
		}
		if j.record != "" && j.record != j.cred {
			dup++
			t.Errorf("job %d: its card holds another job's credential %s", j.n, j.record)
		}
		if j.status == "success" && j.record != j.cred {
			lost++
			t.Errorf("job %d: success, but its card holds %q", j.n, j.record)
		}
		if j.cred == "" {
			continue // the credential was never made: the SDK call failed
		}
		issued, ok := false, false
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			issued, ok = r.d.isIssued(j.cred)
			if ok && issued == (j.record == j.cred) || time.Now().After(deadline) {
				break
			}
		}
		switch {
		case !ok:
			t.Errorf("job %d: the cloud did not answer for credential %s", j.n, j.cred)
		case issued == (j.record == j.cred):
		default:
			// A bridge cut short after its last write reads the card
			// back before it reports (docs/reliability.md), so a card
			// holding the job's record with the credential not issued
			// is a lost result, whatever error the attempt ended with.
			lost++
			t.Errorf("job %d: is_issued %v, but the card holds %q (its credential %s)", j.n, issued, j.record, j.cred)
		}
	}
	t.Logf("lost %d, duplicated %d", lost, dup)
}

// direct encodes cards of the same kinds without the cloud or the bridge
// process: Station.Encode through reader/pcsc on the same private pcscd,
// every encoder at once, a fresh card each time, put on and taken off as
// in the run. It returns each encode's time and the wall time.
func (r *runner) direct() ([]time.Duration, time.Duration) {
	t := r.t
	rc, err := pcsc.Open(pcsc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	st := &bridge.Station{Readers: rc, Keys: r.d.keys}
	var mu sync.Mutex
	var times []time.Duration
	var next atomic.Int64
	var wg sync.WaitGroup
	begin := time.Now()
	for _, slot := range r.slots {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n := int(next.Add(1))
				if n > r.plan.direct {
					return
				}
				card, err := chip.New(kinds[n%len(kinds)], nil)
				if err != nil {
					t.Error(err)
					return
				}
				h := hold(slot, card)
				if err := waitCard(slot.Reader, true, card.ATR()); err != nil {
					t.Errorf("direct %d: %v", n, err)
				}
				start := time.Now()
				_, err = st.Encode(context.Background(), slot.Reader, newCredential(t), 5*time.Second)
				took := time.Since(start)
				h.remove()
				if err != nil {
					t.Errorf("direct encode %d on %q: %v", n, slot.Reader, err)
				}
				if err := waitCard(slot.Reader, false, nil); err != nil {
					t.Errorf("direct %d: %v", n, err)
				}
				mu.Lock()
				times = append(times, took)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return times, time.Since(begin)
}

func percentile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

// report logs the run's numbers: per phase, the jobs, their outcomes,
// throughput and the SDK's time per job; then the cards alone.
func (r *runner) report(phaseStart map[string]time.Time, direct []time.Duration, directWall time.Duration) {
	t := r.t
	p := r.plan
	t.Logf("load: %d encoders, %d jobs (%d paced at %.1f/s, then flat out), link cut every %d jobs, pcscd restarted at job %d, bridge killed at job %d",
		p.encoders, p.jobs, p.paced, p.rate, p.cutEvery, p.pcscdAt, p.killAt)
	for _, phase := range []string{"paced", "flat out"} {
		var job, call, scan []time.Duration
		var end time.Time
		outcomes := map[string]int{}
		n, offline, delayed := 0, 0, 0
		for _, j := range r.jobs {
			if j.phase != phase {
				continue
			}
			n++
			offline += j.offline
			if j.offline > 0 {
				delayed++
			}
			if j.end.After(end) {
				end = j.end
			}
			o := j.op + " " + j.status
			if j.errType != "" {
				o += " " + j.errType
			}
			outcomes[o]++
			if j.status != "success" {
				continue
			}
			if j.op == "encode" {
				job = append(job, j.end.Sub(j.start))
				call = append(call, j.call)
			} else {
				scan = append(scan, j.end.Sub(j.start))
			}
		}
		if n == 0 {
			continue
		}
		wall := end.Sub(phaseStart[phase])
		var keys []string
		for k := range outcomes {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s: %d", k, outcomes[k]))
		}
		t.Logf("%s: %d jobs in %v, %.2f jobs/s; %s", phase, n, wall.Round(time.Millisecond), float64(n)/wall.Seconds(), strings.Join(parts, ", "))
		t.Logf("%s: encode per job (first call to its answer, retries included) p50 %s p99 %s, the answering call alone p50 %s p99 %s (n=%d); scan per job p50 %s p99 %s (n=%d); %d jobs met the encoder offline (%d calls refused encoder_not_online, made again every %v)",
			phase, ms(percentile(job, 50)), ms(percentile(job, 99)), ms(percentile(call, 50)), ms(percentile(call, 99)), len(job),
			ms(percentile(scan, 50)), ms(percentile(scan, 99)), len(scan), delayed, offline, retryEvery)
	}
	failed := map[string][]int{}
	putBack := 0
	for _, j := range r.jobs {
		putBack += j.putBack
		if j.status != "success" {
			failed[j.status+" "+j.errType] = append(failed[j.status+" "+j.errType], j.n)
		}
	}
	for k, ns := range failed {
		t.Logf("%s: jobs %s", k, ranges(ns))
	}
	t.Logf("card I/O alone: %d encodes in %v, %.2f cards/s; encode p50 %s p99 %s", len(direct), directWall.Round(time.Millisecond),
		float64(len(direct))/directWall.Seconds(), ms(percentile(direct, 50)), ms(percentile(direct, 99)))
	events := strings.Join(r.events, "; ")
	if events == "" {
		events = "none"
	}
	t.Logf("faults: %s; cards put back after pcscd lost them: %d", events, putBack)
}

// ranges writes sorted job numbers as runs: "3, 7–9, 12".
func ranges(ns []int) string {
	ns = slices.Sorted(slices.Values(ns))
	var parts []string
	for i := 0; i < len(ns); {
		j := i
		for j+1 < len(ns) && ns[j+1] == ns[j]+1 {
			j++
		}
		if i == j {
			parts = append(parts, fmt.Sprint(ns[i]))
		} else {
			parts = append(parts, fmt.Sprintf("%d–%d", ns[i], ns[j]))
		}
		i = j + 1
	}
	return strings.Join(parts, ", ")
}
