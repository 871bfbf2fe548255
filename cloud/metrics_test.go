package cloud_test

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/encoder-bridge/encoder-bridge/cloud/cloudtest"
	"github.com/encoder-bridge/encoder-bridge/protocol"
)

func scrape(t *testing.T, env *cloudtest.Env) string {
	t.Helper()
	rec := httptest.NewRecorder()
	env.Server.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, _ := io.ReadAll(rec.Result().Body)
	return string(b)
}

// TestMetrics: bridges connected, jobs by type and outcome, dispatch
// latency and expired attempts, with no id among the labels.
func TestMetrics(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{JobTimeout: 30 * time.Second})
	if m := scrape(t, env); !strings.Contains(m, "encoder_cloud_bridges_connected 0") {
		t.Fatalf("before any bridge:\n%s", m)
	}
	b, encID := connect(t, env)
	cred := env.CreateCredential(nil)
	encode(t, env, encID, cred["acs_credential_id"].(string))
	j := b.Expect(protocol.TypeJob).Job
	env.Clock.Advance(250 * time.Millisecond)
	b.Ack(j.JobID)
	b.Ack(j.JobID) // again: observed once
	b.Sync()
	b.Result(cloudtest.Success(j, nil, env.Clock.Now()))

	scan(t, env, encID)
	sj := b.Expect(protocol.TypeJob).Job
	b.Result(cloudtest.Failure(sj, protocol.ErrorNoCredentialOnEncoder))

	// A job the bridge refuses is finished too.
	scan(t, env, encID)
	rj := b.Expect(protocol.TypeJob).Job
	b.Send(&protocol.Message{V: 1, Type: protocol.TypeError, Error: &protocol.Error{Code: protocol.CodeUnknownEncoder, Message: "no", JobID: rj.JobID}})
	b.Sync()

	scan(t, env, encID)
	b.Expect(protocol.TypeJob)
	env.Clock.Advance(31 * time.Second)
	if _, err := env.Server.Sweep(t.Context()); err != nil {
		t.Fatal(err)
	}

	m := scrape(t, env)
	for _, want := range []string{
		"encoder_cloud_bridges_connected 1",
		`encoder_cloud_jobs_total{outcome="success",type="encode"} 1`,
		`encoder_cloud_jobs_total{outcome="no_credential_on_encoder",type="scan"} 1`,
		`encoder_cloud_jobs_total{outcome="action_attempt_expired",type="scan"} 1`,
		`encoder_cloud_jobs_total{outcome="encoder_not_online",type="scan"} 1`,
		`encoder_cloud_action_attempts_expired_total{reason="action_attempt_expired"} 1`,
		`encoder_cloud_job_dispatch_seconds_count{type="encode"} 1`,
		`encoder_cloud_job_dispatch_seconds_bucket{type="encode",le="0.25"} 1`,
		`encoder_cloud_job_dispatch_seconds_bucket{type="encode",le="0.1"} 0`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	for _, id := range []string{encID, j.JobID, env.BridgeID, cred["acs_credential_id"].(string), env.BridgeToken} {
		if strings.Contains(m, id) {
			t.Errorf("metrics show %q", id)
		}
	}
	if t.Failed() {
		t.Log(m)
	}
}
