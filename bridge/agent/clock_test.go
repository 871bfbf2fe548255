package agent

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/encoder-bridge/encoder-bridge/bridge/clock"
	"github.com/encoder-bridge/encoder-bridge/bridge/journal"
	"github.com/encoder-bridge/encoder-bridge/protocol"
)

// cloudT0 is the cloud's time when a clock test starts.
var cloudT0 = time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC)

// A restart with jobs in the journal and the PC's clock off: the cloud's
// time at the welcome decides which expired, not the PC's clock. (Decided
// by the PC's clock, 2 min ahead expired a job with 58 s left, and 5 min
// behind ran an expired one, writing its credential onto the card.)
func TestRestartWithSkewedPCClock(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pcSkew  time.Duration // PC's clock minus the cloud's
		left    time.Duration // job's deadline minus the cloud's time
		expired bool
	}{
		{"PC 2m ahead, 58s left", 2 * time.Minute, 58 * time.Second, false},
		{"PC 5m behind, expired 1s ago", -5 * time.Minute, -time.Second, true},
		{"PC 1h ahead, 2s left", time.Hour, 2 * time.Second, false},
		{"PC right, less than WriteMargin left", 0, 999 * time.Millisecond, true},
		{"PC 1h behind, expired 1s ago", -time.Hour, -time.Second, true},
		{"PC right, deadline now", 0, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			pc := clock.NewFake(cloudT0.Add(tc.pcSkew))
			h.clock = pc
			cloudNow := func() time.Time { return cloudT0.Add(pc.Mono()) }
			h.cloud.Now.Store(&cloudNow)

			j, err := journal.Open(h.dir, journal.Options{Now: pc.Now})
			if err != nil {
				t.Fatal(err)
			}
			enc := h.encoderID("Sim 00")
			if _, _, err := j.Receive(journal.Entry{Job: *encodeJob("j1", enc, cloudT0.Add(tc.left)), Reader: "Sim 00"}); err != nil {
				t.Fatal(err)
			}
			j.Close()

			card := newCard(t)
			h.sim.Plug("Sim 00").Insert(card)
			h.start()
			cc := h.cloud.Next(t)
			if !slices.Contains(cc.Hello.ActiveJobs, "j1") || len(cc.Hello.Results) != 0 {
				t.Fatalf("hello, before the cloud's time is known: %+v", cc.Hello)
			}
			r := cc.ExpectResult(t, "j1")
			if tc.expired {
				if r.Error == nil || r.Error.Type != protocol.ErrorActionAttemptExpired {
					t.Fatalf("result %+v / %+v, want action_attempt_expired", r.Card, r.Error)
				}
				if n := card.writes.Load(); n != 0 {
					t.Fatalf("an expired job wrote the card %d times", n)
				}
			} else {
				if r.Error != nil {
					t.Fatalf("job in time failed: %+v", r.Error)
				}
				if n := card.writes.Load(); n != writesPerEncode() {
					t.Fatalf("%d card writes, want %d", n, writesPerEncode())
				}
			}
			if !r.FinishedAt.Equal(cloudT0) {
				t.Errorf("finished_at %v, want the cloud's time %v", r.FinishedAt, cloudT0)
			}
		})
	}
}

// The PC's clock jumps while the link is up. A job that arrives after the
// jump gets its full time (a +1h jump used to fail every new job at once);
// a job waiting for a card when the jump happens still ends on time, and
// once its time ran out on the monotonic clock its card is not written
// (a -1h jump used to write a card for an attempt the cloud had already
// reported expired).
func TestPCClockJumpsMidSession(t *testing.T) {
	for _, jump := range []time.Duration{-time.Hour, time.Hour, -24 * time.Hour, 24 * time.Hour} {
		t.Run(jump.String(), func(t *testing.T) {
			h := newHarness(t)
			pc := clock.NewFake(cloudT0)
			h.clock = pc
			cloudNow := func() time.Time { return cloudT0.Add(pc.Mono()) }
			h.cloud.Now.Store(&cloudNow)
			r0 := h.sim.Plug("Sim 00")
			h.start()
			cc := h.cloud.Next(t)
			enc := h.encoderID("Sim 00")

			// In flight across the jump, its time runs out before a card comes.
			cc.Job(encodeJob("late", enc, cloudNow().Add(30*time.Second)))
			cc.Expect(t, "waiting", isStage("late", protocol.StageWaitingForCard))
			pc.Jump(jump)
			pc.Advance(31 * time.Second)
			late := newCard(t)
			r0.Insert(late)
			r := cc.ExpectResult(t, "late")
			if r.Error == nil || r.Error.Type != protocol.ErrorActionAttemptExpired {
				t.Fatalf("late: %+v / %+v, want action_attempt_expired", r.Card, r.Error)
			}
			if n := late.writes.Load(); n != 0 {
				t.Fatalf("late: the card was written %d times after the job's time ran out", n)
			}

			// New after the jump: runs with its full time.
			cc.Job(encodeJob("fresh", enc, cloudNow().Add(30*time.Second)))
			r = cc.ExpectResult(t, "fresh")
			if r.Error != nil {
				t.Fatalf("fresh: %+v", r.Error)
			}
			if n := late.writes.Load(); n != writesPerEncode() {
				t.Fatalf("fresh: %d card writes, want %d", n, writesPerEncode())
			}
		})
	}
}

// A new welcome re-reads the cloud's time: a job whose deadline the
// cloud's clock has passed is refused on arrival, whatever the PC says.
func TestEveryWelcomeSetsTheCloudTime(t *testing.T) {
	h := newHarness(t)
	pc := clock.NewFake(cloudT0)
	h.clock = pc
	cloudNow := func() time.Time { return cloudT0 }
	h.cloud.Now.Store(&cloudNow)
	card := newCard(t)
	h.sim.Plug("Sim 00").Insert(card)
	h.start()
	cc := h.cloud.Next(t)

	// The cloud's clock moves on by an hour while the PC's monotonic
	// clock does not (a sleep it did not count); the link drops.
	later := func() time.Time { return cloudT0.Add(time.Hour) }
	h.cloud.Now.Store(&later)
	cc.Drop()
	c2 := h.cloud.Next(t)
	c2.Job(encodeJob("j1", h.encoderID("Sim 00"), cloudT0.Add(time.Minute)))
	r := c2.ExpectResult(t, "j1")
	if r.Error == nil || r.Error.Type != protocol.ErrorActionAttemptExpired {
		t.Fatalf("result %+v / %+v, want action_attempt_expired", r.Card, r.Error)
	}
	if n := card.writes.Load(); n != 0 {
		t.Fatalf("an expired job wrote the card %d times", n)
	}
}

// A card presented when less than WriteMargin is left is not written:
// its result could not reach the cloud before the cloud expires the
// attempt.
func TestNoWriteWithinWriteMargin(t *testing.T) {
	h := newHarness(t)
	pc := clock.NewFake(cloudT0)
	h.clock = pc
	cloudNow := func() time.Time { return cloudT0.Add(pc.Mono()) }
	h.cloud.Now.Store(&cloudNow)
	r0 := h.sim.Plug("Sim 00")
	h.start()
	cc := h.cloud.Next(t)
	cc.Job(encodeJob("j1", h.encoderID("Sim 00"), cloudNow().Add(30*time.Second)))
	cc.Expect(t, "waiting", isStage("j1", protocol.StageWaitingForCard))
	pc.Advance(29*time.Second + 500*time.Millisecond) // 500 ms left, under the 1 s margin
	card := newCard(t)
	r0.Insert(card)
	r := cc.ExpectResult(t, "j1")
	if r.Error == nil || r.Error.Type != protocol.ErrorActionAttemptExpired {
		t.Fatalf("result %+v / %+v, want action_attempt_expired", r.Card, r.Error)
	}
	if n := card.writes.Load(); n != 0 {
		t.Fatalf("the card was written %d times with 500 ms left", n)
	}
}

// With the PC's clock a day or more ahead, a job delivered again after
// its result was acknowledged is still recognised, and does not run
// again: the journal ages its records on the cloud's clock.
func TestDedupSurvivesPCClockAhead(t *testing.T) {
	for _, skew := range []time.Duration{24*time.Hour + 2*time.Minute, 30 * 24 * time.Hour} {
		t.Run(skew.String(), func(t *testing.T) {
			h := newHarness(t)
			pc := clock.NewFake(cloudT0.Add(skew))
			h.clock = pc
			cloudNow := func() time.Time { return cloudT0.Add(pc.Mono()) }
			h.cloud.Now.Store(&cloudNow)
			card := newCard(t)
			h.sim.Plug("Sim 00").Insert(card)
			h.start()
			cc := h.cloud.Next(t)
			enc := h.encoderID("Sim 00")

			j1 := encodeJob("j1", enc, cloudNow().Add(time.Minute))
			cc.Job(j1)
			if r := cc.ExpectResult(t, "j1"); r.Error != nil {
				t.Fatalf("j1: %+v", r.Error)
			}
			h.quiet() // result_ack stored: j1 is a dedup record now
			cc.Job(j1)
			m := cc.Expect(t, "answer to j1 again", func(m *protocol.Message) bool { return m.JobID() == "j1" })
			if m.Type != protocol.TypeError || m.Error.Code != protocol.CodeUnexpected {
				t.Fatalf("j1 delivered again: %s %+v %+v", m.Type, m.Error, m.Result)
			}
			if n := card.writes.Load(); n != writesPerEncode() {
				t.Fatalf("%d card writes for one job, want %d", n, writesPerEncode())
			}
		})
	}
}

// A scan judges the card's validity window on the cloud's clock: the
// PC's clock years off either way does not make a valid card read as
// expired or not yet valid.
func TestScanWarningsOnCloudTime(t *testing.T) {
	for _, skew := range []time.Duration{11 * 365 * 24 * time.Hour, -365 * 24 * time.Hour} {
		t.Run(skew.String(), func(t *testing.T) {
			h := newHarness(t)
			pc := clock.NewFake(cloudT0.Add(time.Hour).Add(skew))
			h.clock = pc
			cloudNow := func() time.Time { return cloudT0.Add(time.Hour).Add(pc.Mono()) }
			h.cloud.Now.Store(&cloudNow)
			h.sim.Plug("Sim 00").Insert(newCard(t))
			h.start()
			cc := h.cloud.Next(t)
			enc := h.encoderID("Sim 00")
			cc.Job(encodeJob("enc", enc, cloudNow().Add(30*time.Second)))
			if r := cc.ExpectResult(t, "enc"); r.Error != nil {
				t.Fatalf("encode: %+v", r.Error)
			}
			cc.Job(scanJob("scan", enc, cloudNow().Add(30*time.Second)))
			r := cc.ExpectResult(t, "scan")
			if r.Error != nil || !r.Card.Valid {
				t.Fatalf("scan: %+v / %+v", r.Card, r.Error)
			}
			if len(r.Card.Warnings) != 0 {
				t.Fatalf("scan warnings %v for a card valid %s to %s at the cloud's time %s",
					r.Card.Warnings, r.Card.Credential.StartsAt, r.Card.Credential.EndsAt, cloudNow().Format(time.RFC3339))
			}
		})
	}
}

// A job stops waiting for a card CardMargin (2 s) before its deadline, or
// a tenth of the time it had left if that is less, so that its "no card"
// reaches the cloud before the cloud expires the attempt at the deadline.
// An encode stops by WriteMargin (1 s) if that is earlier.
func TestCardWaitEndsBeforeDeadline(t *testing.T) {
	h := newHarness(t)
	pc := clock.NewFake(cloudT0)
	h.clock = pc
	cloudNow := func() time.Time { return cloudT0.Add(pc.Mono()) }
	h.cloud.Now.Store(&cloudNow)
	h.sim.Plug("Sim 00") // no card on it
	h.start()
	enc := h.encoderID("Sim 00")
	ms := time.Millisecond
	for _, tc := range []struct {
		kind protocol.JobKind
		left time.Duration // the job's deadline minus now
		want time.Duration // how long it waits for a card
	}{
		{protocol.JobScan, time.Minute, 58 * time.Second},
		{protocol.JobScan, 30 * time.Second, 28 * time.Second},
		{protocol.JobScan, 20 * time.Second, 18 * time.Second},
		{protocol.JobScan, 6 * time.Second, 5400 * ms},
		{protocol.JobScan, time.Second, 900 * ms},
		{protocol.JobScan, 50 * ms, 45 * ms},
		{protocol.JobEncode, 30 * time.Second, 28 * time.Second},
		{protocol.JobEncode, 10 * time.Second, 9 * time.Second},
		{protocol.JobEncode, 6 * time.Second, 5 * time.Second},
		{protocol.JobEncode, 1500 * ms, 500 * ms},
	} {
		now := cloudNow()
		job := protocol.Job{Kind: tc.kind, Deadline: now.Add(tc.left)}
		if got := h.agent.cardWaitEnd(job, now).Sub(now); got != tc.want {
			t.Errorf("%s with %v left waits %v for a card, want %v", tc.kind, tc.left, got, tc.want)
		}
	}

	// Through the station: with no card, the job ends with
	// no_credential_on_encoder after waiting the shortened time.
	cc := h.cloud.Next(t)
	for _, tc := range []struct {
		job  *protocol.Job
		wait string
	}{
		{scanJob("s1", enc, cloudNow().Add(time.Second)), "within 900ms"},
		{encodeJob("e1", enc, cloudNow().Add(1500*ms)), "within 500ms"},
	} {
		cc.Job(tc.job)
		r := cc.ExpectResult(t, tc.job.JobID)
		if r.Error == nil || r.Error.Type != protocol.ErrorNoCredentialOnEncoder || !strings.Contains(r.Error.Message, tc.wait) {
			t.Fatalf("%s: %+v / %+v, want no_credential_on_encoder %s", tc.job.JobID, r.Card, r.Error, tc.wait)
		}
	}
}
