package cloud_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/encoder-bridge/encoder-bridge/cloud"
	"github.com/encoder-bridge/encoder-bridge/cloud/bus"
	"github.com/encoder-bridge/encoder-bridge/cloud/clock"
	"github.com/encoder-bridge/encoder-bridge/cloud/cloudtest"
	"github.com/encoder-bridge/encoder-bridge/protocol"
)

// instances starts n instances on one database, on the real clock, with
// their sweepers and listeners running: on PostgreSQL (the postgres half
// of cloudtest.Backends) they find each other through LISTEN/NOTIFY, as
// separate processes do; on one SQLite file, through a Local bus.
func instances(t *testing.T, n int, change func(*cloud.Config)) []*cloudtest.Env {
	t.Helper()
	var b bus.Bus
	if !cloudtest.OnPostgres(t) {
		b = &bus.Local{}
	}
	first := cloudtest.New(t, cloudtest.Options{Config: func(c *cloud.Config) {
		c.Clock = clock.Real{}
		c.Bus = b
		c.SweepInterval = 50 * time.Millisecond
		c.HeartbeatInterval = 200 * time.Millisecond
		if change != nil {
			change(c)
		}
	}})
	envs := []*cloudtest.Env{first}
	for len(envs) < n {
		envs = append(envs, first.Instance())
	}
	for _, e := range envs {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			e.Server.Run(ctx)
		}()
		t.Cleanup(func() {
			cancel()
			<-done
		})
	}
	return envs
}

// validCredential is a credential valid now on the real clock.
func validCredential(e *cloudtest.Env) map[string]any {
	now := time.Now()
	return e.CreateCredential(map[string]any{
		"starts_at": now.Add(-time.Hour).UTC().Format(time.RFC3339),
		"ends_at":   now.Add(72 * time.Hour).UTC().Format(time.RFC3339),
	})
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func onlineOn(e *cloudtest.Env) bool {
	encs := e.MustCall("/acs/encoders/list", map[string]any{})["acs_encoders"].([]any)
	if len(encs) == 0 {
		return false
	}
	meta := encs[0].(map[string]any)["encoder_bridge_metadata"].(map[string]any)
	return meta["is_online"] == true
}

// An API call on one instance reaches the bridge linked to another, and
// the answer held on the first wakes when the result arrives on the second.
func TestCrossInstanceDispatch(t *testing.T) {
	cloudtest.Backends(t, func(t *testing.T) {
		envs := instances(t, 3, func(c *cloud.Config) { c.SettleWait = 20 * time.Second })
		a, b := envs[0], envs[1]
		br := b.Connect(cloudtest.Encoder("e1"))
		for i, e := range envs {
			if !onlineOn(e) {
				t.Fatalf("instance %d does not show the bridge linked to instance 1 online", i)
			}
		}
		defer func() {
			// Gone from every instance once its link closes.
			br.Conn.Close()
			for _, e := range envs {
				eventually(t, "the bridge offline on every instance", func() bool { return !onlineOn(e) })
			}
		}()
		encID := a.MustCall("/acs/encoders/list", map[string]any{})["acs_encoders"].([]any)[0].(map[string]any)["acs_encoder_id"]
		cred := validCredential(a)
		held := post(a, context.Background(), nil, "", "/acs/encoders/encode_credential",
			map[string]any{"acs_encoder_id": encID, "acs_credential_id": cred["acs_credential_id"]}, http.Header{"Prefer": {"wait=15"}})
		job := br.Expect(protocol.TypeJob).Job
		br.Ack(job.JobID)
		br.Result(cloudtest.Success(job, cloudtest.EncodedCard(job), time.Now()))
		att := attemptAnswer(t, <-held)
		if att["status"] != "success" {
			t.Fatalf("the answer held on instance 0 is %v, want success from the result on instance 1", att)
		}
		// Every instance reads the same attempt.
		for i, e := range envs {
			got := e.MustCall("/action_attempts/get", map[string]any{"action_attempt_id": att["action_attempt_id"]})["action_attempt"].(map[string]any)
			if got["status"] != "success" {
				t.Fatalf("instance %d: %v", i, got)
			}
		}
	})
}

// Revoking a bridge's token on one instance closes its link on another
// at once (not at the next revocation check).
func TestRevocationAcrossInstances(t *testing.T) {
	cloudtest.Backends(t, func(t *testing.T) {
		envs := instances(t, 2, nil)
		br := envs[1].Connect()
		start := time.Now()
		if err := envs[0].Server.RevokeBridgeToken(context.Background(), envs[0].BridgeID); err != nil {
			t.Fatal(err)
		}
		br.WaitClosed()
		if d := time.Since(start); d >= cloud.RevocationCheckInterval {
			t.Fatalf("the link closed after %v: by the periodic check, not by the revocation's notice", d)
		}
		if _, resp, err := envs[1].Dial(envs[1].BridgeID, envs[1].BridgeToken); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("a revoked token reconnects: %v", err)
		}
	})
}

// N instances sweep the same due jobs at once: each attempt is finished
// once, and one instance's observer counts it.
func TestSweepOnceAcrossInstances(t *testing.T) {
	const jobs = 12
	cloudtest.Backends(t, func(t *testing.T) {
		fake := clock.NewFake(time.Now())
		envs := instances(t, 3, func(c *cloud.Config) {
			c.Clock = fake
			c.SweepInterval = time.Hour // swept by hand below
			c.JobTimeout = time.Minute
		})
		br := envs[0].Connect(cloudtest.Encoder("e1"))
		encID := envs[0].MustCall("/acs/encoders/list", map[string]any{})["acs_encoders"].([]any)[0].(map[string]any)["acs_encoder_id"]
		var ids []string
		for range jobs {
			att := envs[0].MustCall("/acs/encoders/scan_credential", map[string]any{"acs_encoder_id": encID})["action_attempt"].(map[string]any)
			ids = append(ids, att["action_attempt_id"].(string))
			br.Expect(protocol.TypeJob)
		}
		fake.Advance(2 * time.Minute)
		var wg sync.WaitGroup
		counts := make([]int, len(envs))
		errs := make([]error, len(envs))
		for i, e := range envs {
			wg.Go(func() { counts[i], errs[i] = e.Server.Sweep(context.Background()) })
		}
		wg.Wait()
		total := 0
		for i := range envs {
			if errs[i] != nil {
				t.Fatalf("instance %d sweep: %v", i, errs[i])
			}
			total += counts[i]
		}
		// Sweep counts exactly the attempts whose expiry its observer
		// heard: one event per attempt in all.
		if total != jobs {
			t.Fatalf("the instances finished %v attempts, %d in all; want %d in all (each once)", counts, total, jobs)
		}
		for _, id := range ids {
			got := envs[2].MustCall("/action_attempts/get", map[string]any{"action_attempt_id": id})["action_attempt"].(map[string]any)
			if got["status"] != "error" {
				t.Fatalf("attempt %s: %v", id, got)
			}
		}
	})
}

// A bridge that moved to another instance before the first noticed its
// old link die still gets a job asked of the first: the job is announced
// even when the first could send it on the link it still holds.
func TestJobReachesTheNewerLink(t *testing.T) {
	cloudtest.Backends(t, func(t *testing.T) {
		envs := instances(t, 2, nil)
		a, b := envs[0], envs[1]
		stale := a.Connect(cloudtest.Encoder("e1"))
		moved := b.Connect(cloudtest.Encoder("e1"))
		encID := a.MustCall("/acs/encoders/list", map[string]any{})["acs_encoders"].([]any)[0].(map[string]any)["acs_encoder_id"]
		att := a.MustCall("/acs/encoders/scan_credential", map[string]any{"acs_encoder_id": encID})["action_attempt"].(map[string]any)
		job := moved.Expect(protocol.TypeJob).Job
		if job.ActionAttemptID != att["action_attempt_id"] {
			t.Fatalf("the newer link got job %+v, want the attempt's %v", job, att["action_attempt_id"])
		}
		stale.Expect(protocol.TypeJob) // the old link, still open here, got it too
	})
}
