package cloud_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/encoder-bridge/encoder-bridge/cloud"
	"github.com/encoder-bridge/encoder-bridge/cloud/cloudtest"
	"github.com/encoder-bridge/encoder-bridge/cloud/webhook"
	"github.com/encoder-bridge/encoder-bridge/protocol"
)

// hookReceiver verifies each delivery with the webhook's secret, as a
// Seam integrator's endpoint does, and keeps the events in order.
type hookReceiver struct {
	t      *testing.T
	env    *cloudtest.Env
	secret string
	mu     sync.Mutex
	events []map[string]any
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	secret := h.secret
	h.mu.Unlock()
	if err := webhook.Verify(secret, r.Header, body, h.env.Clock.Now()); err != nil {
		h.t.Errorf("delivery does not verify: %v", err)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var ev map[string]any
	if err := json.Unmarshal(body, &ev); err != nil {
		h.t.Errorf("delivery body: %v", err)
	}
	h.mu.Lock()
	h.events = append(h.events, ev)
	h.mu.Unlock()
}

func (h *hookReceiver) types() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, e := range h.events {
		out = append(out, e["event_type"].(string))
	}
	return out
}

func deliver(t *testing.T, env *cloudtest.Env) {
	t.Helper()
	for i := 0; i < 20; i++ {
		n, err := env.Server.DeliverWebhooks(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
	}
}

func devWebhooks(c *cloud.Config) { c.DevLoopbackWebhooks = true }

// TestEventsAndWebhooks goes through the webhook routes and the events
// an encoder and an encode make, checking every answer and every
// delivered event against Seam's schemas.
func TestEventsAndWebhooks(t *testing.T) { cloudtest.Backends(t, testEventsAndWebhooks) }

func testEventsAndWebhooks(t *testing.T) {
	sc := newSchema(t)
	env := cloudtest.New(t, cloudtest.Options{Config: devWebhooks})
	recv := &hookReceiver{t: t, env: env}
	srv := httptest.NewServer(recv)
	t.Cleanup(srv.Close)

	out := env.MustCall("/webhooks/create", map[string]any{"url": srv.URL + "/seam", "event_types": []string{"acs_encoder.added"}})
	sc.response("/webhooks/create", out)
	hook := obj(out["webhook"])
	hookID, secret := hook["webhook_id"].(string), hook["secret"].(string)
	if !strings.HasPrefix(secret, webhook.SecretPrefix) || hook["url"] != srv.URL+"/seam" {
		t.Fatalf("created webhook: %v", hook)
	}
	recv.secret = secret
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		var body any = map[string]any{"webhook_id": hookID}
		if method == http.MethodGet {
			body = "webhook_id=" + hookID
		}
		status, out := env.Call(method, "/webhooks/get", body)
		if status != 200 {
			t.Fatalf("%s get webhook: %d %v", method, status, out)
		}
		sc.response("/webhooks/get", out)
		if _, shown := obj(out["webhook"])["secret"]; shown {
			t.Errorf("the secret is shown after create: %v", out)
		}
		status, out = env.Call(method, "/webhooks/list", nil)
		if status != 200 || len(arr(out["webhooks"])) != 1 {
			t.Fatalf("%s list webhooks: %d %v", method, status, out)
		}
		sc.response("/webhooks/list", out)
	}
	// Seam's SDK updates with PUT; POST works too.
	for _, method := range []string{http.MethodPost, http.MethodPut} {
		status, out := env.Call(method, "/webhooks/update", map[string]any{"webhook_id": hookID, "event_types": []string{"*"}})
		if status != 200 {
			t.Fatalf("%s update webhook: %d %v", method, status, out)
		}
		sc.response("/webhooks/update", out)
	}

	// An encoder arrives, a credential is made and encoded twice, the
	// encoder goes.
	b, encID := connect(t, env)
	cred := env.CreateCredential(nil)
	credID := cred["acs_credential_id"].(string)
	accessMethodID := obj(cred["encoder_bridge_metadata"])["access_method_id"].(string)
	for range 2 {
		env.MustCall("/acs/encoders/encode_credential", map[string]any{"acs_encoder_id": encID, "acs_credential_id": credID})
		job := b.Expect(protocol.TypeJob).Job
		env.Clock.Advance(time.Second)
		b.Result(cloudtest.Success(job, nil, env.Clock.Now()))
	}
	b.Send(&protocol.Message{V: 1, Type: protocol.TypeEncoderRemoved, EncoderID: "e1"})
	b.Sync()

	want := []string{"acs_encoder.added", "access_method.created", "acs_credential.issued", "access_method.issued",
		"acs_credential.reissued", "access_method.reissued", "acs_encoder.removed"}
	deliver(t, env)
	if got := recv.types(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("delivered %v\nwant      %v", got, want)
	}
	if m := scrape(t, env); !strings.Contains(m, `encoder_cloud_webhook_posts_total{outcome="delivered"} 7`) {
		t.Errorf("metrics do not count the 7 posts:\n%s", m)
	}
	for _, ev := range recv.events {
		sc.resource("event", ev)
		if ev["workspace_id"] != env.Workspace.ID {
			t.Errorf("event of another workspace: %v", ev)
		}
	}
	if e := recv.events[0]; e["acs_encoder_id"] != encID || e["acs_system_id"] != env.Workspace.AcsSystemID {
		t.Errorf("acs_encoder.added: %v", e)
	}
	if e := recv.events[2]; e["acs_credential_id"] != credID || e["connected_account_id"] != env.Workspace.ConnectedAccountID {
		t.Errorf("acs_credential.issued: %v", e)
	}
	if e := recv.events[3]; e["access_method_id"] != accessMethodID || len(arr(e["access_grant_ids"])) != 0 {
		t.Errorf("access_method.issued: %v", e)
	}

	// The same events through /events/list, newest first, and its filters.
	since := cloudtest.Start.Add(-time.Minute).Format(time.RFC3339)
	status, out := env.Call(http.MethodGet, "/events/list", "since="+since)
	if status != 200 {
		t.Fatalf("list events: %d %v", status, out)
	}
	sc.response("/events/list", out)
	listed := arr(out["events"])
	if len(listed) != len(want) || obj(listed[0])["event_type"] != "acs_encoder.removed" {
		t.Fatalf("listed %v", out)
	}
	// Exclusive: the reissue and the removal happened at now.
	lastIssued := env.Clock.Now().Format(time.RFC3339)
	count := func(body any) int {
		t.Helper()
		status, out := env.Call(http.MethodPost, "/events/list", body)
		if status != 200 {
			t.Fatalf("list events %v: %d %v", body, status, out)
		}
		sc.response("/events/list", out)
		return len(arr(out["events"]))
	}
	for _, c := range []struct {
		body map[string]any
		want int
	}{
		{map[string]any{"since": since, "event_type": "acs_credential.issued"}, 1},
		{map[string]any{"since": since, "event_types": []string{"acs_credential.issued", "acs_credential.reissued"}}, 2},
		{map[string]any{"acs_encoder_id": encID}, 2},
		{map[string]any{"acs_credential_id": credID}, 2},
		{map[string]any{"access_method_id": accessMethodID}, 3},
		{map[string]any{"since": since, "acs_system_id": env.Workspace.AcsSystemID}, 4},
		{map[string]any{"since": since, "acs_system_id": "0b7e4f2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b"}, 0},
		{map[string]any{"since": since, "device_id": "0b7e4f2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b"}, 0},
		{map[string]any{"between": []string{since, lastIssued}}, 4},
		{map[string]any{"since": since, "limit": 2}, 2},
		{map[string]any{"since": since, "limit": 2, "unstable_offset": 6}, 1},
		{map[string]any{"event_ids": []string{listed[0].(map[string]any)["event_id"].(string)}}, 1},
	} {
		if got := count(c.body); got != c.want {
			t.Errorf("events/list %v: %d events, want %d", c.body, got, c.want)
		}
	}
	for _, c := range []struct {
		body map[string]any
		bad  string
	}{
		{map[string]any{}, "since"},
		{map[string]any{"since": "yesterday"}, "since"},
		{map[string]any{"between": []string{since}}, "between"},
		{map[string]any{"since": since, "limit": 0}, "limit"},
		{map[string]any{"since": since, "event_types": []string{"Not A Type"}}, "event_types[0]"},
	} {
		status, out := env.Call(http.MethodPost, "/events/list", c.body)
		if status != 400 || errType(out) != "invalid_input" || obj(obj(out["error"])["validation_errors"])[c.bad] == nil {
			t.Errorf("events/list %v: %d %v, want invalid_input on %s", c.body, status, out, c.bad)
		}
	}

	eventID := obj(listed[1])["event_id"].(string)
	status, out = env.Call(http.MethodGet, "/events/get", "event_id="+eventID)
	if status != 200 || obj(out["event"])["event_id"] != eventID {
		t.Fatalf("get event: %d %v", status, out)
	}
	sc.response("/events/get", out)
	out = env.MustCall("/events/get", map[string]any{"event_type": "acs_credential.issued"})
	if obj(out["event"])["acs_credential_id"] != credID {
		t.Errorf("latest acs_credential.issued: %v", out)
	}
	if status, out := env.Call(http.MethodPost, "/events/get", map[string]any{"event_id": "0b7e4f2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b"}); status != 404 || errType(out) != "event_not_found" {
		t.Errorf("unknown event: %d %v", status, out)
	}

	// Seam's SDK deletes with DELETE and query parameters.
	status, out = env.Call(http.MethodDelete, "/webhooks/delete", "webhook_id="+hookID)
	if status != 200 {
		t.Fatalf("delete webhook: %d %v", status, out)
	}
	sc.response("/webhooks/delete", out)
	if status, out := env.Call(http.MethodPost, "/webhooks/get", map[string]any{"webhook_id": hookID}); status != 404 || errType(out) != "webhook_not_found" {
		t.Errorf("deleted webhook: %d %v", status, out)
	}
	if out := env.MustCall("/webhooks/list", nil); len(arr(out["webhooks"])) != 0 {
		t.Errorf("webhooks after delete: %v", out)
	}
}

// Webhook URLs are https only; http (and loopback) only with the
// development flag. Bad input names its field.
func TestWebhookURLRules(t *testing.T) {
	for _, c := range []struct {
		dev  bool
		url  string
		want int
	}{
		{false, "https://hooks.example.com/seam", 200},
		{false, "http://hooks.example.com/seam", 400},
		{false, "http://127.0.0.1:9/seam", 400},
		{false, "https://127.0.0.1:9/seam", 400},
		{true, "http://127.0.0.1:9/seam", 200},
		{true, "http://hooks.example.com/seam", 400},
		{false, "not a url", 400},
		{false, "https://hooks.example.com/" + strings.Repeat("a", 2100), 400},
	} {
		opt := cloudtest.Options{}
		if c.dev {
			opt.Config = devWebhooks
		}
		env := cloudtest.New(t, opt)
		status, out := env.Call(http.MethodPost, "/webhooks/create", map[string]any{"url": c.url})
		if status != c.want {
			t.Errorf("dev %v, %.60s: %d %v, want %d", c.dev, c.url, status, out, c.want)
		}
		if status == 400 && obj(obj(out["error"])["validation_errors"])["url"] == nil {
			t.Errorf("%.60s: error does not name url: %v", c.url, out)
		}
		if status == 200 && arr(obj(out["webhook"])["event_types"])[0] != "*" {
			t.Errorf("default event types: %v", out)
		}
	}
	env := cloudtest.New(t, cloudtest.Options{})
	for i := 0; i < 20; i++ {
		env.MustCall("/webhooks/create", map[string]any{"url": "https://hooks.example.com/seam"})
	}
	if status, out := env.Call(http.MethodPost, "/webhooks/create", map[string]any{"url": "https://hooks.example.com/seam"}); status != 400 || errType(out) != "max_webhooks_reached" {
		t.Errorf("21st webhook: %d %v", status, out)
	}
}

// The outbox is durable: a delivery that failed before the cloud stopped
// is made after it starts again, once.
func TestDeliveryOutlivesRestart(t *testing.T) { cloudtest.Backends(t, testDeliveryOutlivesRestart) }

func testDeliveryOutlivesRestart(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{Config: devWebhooks})
	recv := &hookReceiver{t: t, env: env}
	var mu sync.Mutex
	up := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		ok := up
		mu.Unlock()
		if !ok {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		recv.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	out := env.MustCall("/webhooks/create", map[string]any{"url": srv.URL, "event_types": []string{"access_method.created"}})
	recv.secret = obj(out["webhook"])["secret"].(string)
	env.CreateCredential(nil)
	deliver(t, env)
	if m := scrape(t, env); !strings.Contains(m, `encoder_cloud_webhook_posts_total{outcome="failed"} 1`) {
		t.Errorf("metrics do not count the failed post:\n%s", m)
	}
	env.Restart()
	mu.Lock()
	up = true
	mu.Unlock()
	deliver(t, env)
	if got := recv.types(); len(got) != 0 {
		t.Fatalf("delivered before its retry time: %v", got)
	}
	env.Clock.Advance(webhook.FirstRetry)
	deliver(t, env)
	deliver(t, env)
	if m := scrape(t, env); !strings.Contains(m, `encoder_cloud_webhook_posts_total{outcome="delivered"} 1`) {
		t.Errorf("metrics after restart:\n%s", m)
	}
	if got := recv.types(); strings.Join(got, " ") != "access_method.created" {
		t.Errorf("after restart: %v", got)
	}
}
