package cloud_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/encoder-bridge/encoder-bridge/cloud"
	"github.com/encoder-bridge/encoder-bridge/cloud/cloudtest"
	"github.com/encoder-bridge/encoder-bridge/protocol"
)

const settleWait = 2 * time.Second

type answer struct {
	status int
	body   map[string]any
	err    error
}

// post calls the API in the background through client (nil: the env's)
// with ctx and extra headers.
func post(env *cloudtest.Env, ctx context.Context, client *http.Client, base, path string, body any, header http.Header) <-chan answer {
	if client == nil {
		client = env.HTTP.Client()
	}
	if base == "" {
		base = env.URL()
	}
	out := make(chan answer, 1)
	j, _ := json.Marshal(body)
	go func() {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+path, bytes.NewReader(j))
		if err != nil {
			out <- answer{err: err}
			return
		}
		for k, v := range header {
			req.Header[k] = v
		}
		req.Header.Set("Authorization", "Bearer "+env.APIKey)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			out <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		a := answer{status: resp.StatusCode, err: err}
		if err == nil {
			a.err = json.Unmarshal(raw, &a.body)
		}
		out <- a
	}()
	return out
}

func attemptAnswer(t *testing.T, a answer) map[string]any {
	t.Helper()
	if a.err != nil || a.status != http.StatusOK {
		t.Fatalf("answer %d %v: %v", a.status, a.err, a.body)
	}
	return obj(a.body["action_attempt"])
}

// waitHeld yields until n answers are held on the fake clock.
func waitHeld(t *testing.T, env *cloudtest.Env, n int) {
	t.Helper()
	for i := 0; env.Clock.Waiters() != n; i++ {
		if i > 10_000_000 {
			t.Fatalf("%d answers held, want %d", env.Clock.Waiters(), n)
		}
		runtime.Gosched()
	}
}

// The first answer of encode_credential, scan_credential and
// scan_to_assign_credential is the settled attempt when the job finishes
// within the hold, whichever way it finishes.
func TestSettledAnswer(t *testing.T) { cloudtest.Backends(t, testSettledAnswer) }

func testSettledAnswer(t *testing.T) {
	cases := []struct {
		name   string
		path   string
		body   func(encID, credID string) map[string]any
		finish func(env *cloudtest.Env, b *cloudtest.Bridge, j *protocol.Job)
		check  func(t *testing.T, att map[string]any, credID string)
	}{
		{"encode succeeds", "/acs/encoders/encode_credential",
			func(encID, credID string) map[string]any {
				return map[string]any{"acs_encoder_id": encID, "acs_credential_id": credID}
			},
			func(env *cloudtest.Env, b *cloudtest.Bridge, j *protocol.Job) {
				b.Ack(j.JobID)
				b.Result(cloudtest.Success(j, nil, env.Clock.Now()))
			},
			func(t *testing.T, att map[string]any, credID string) {
				res := obj(att["result"])
				if att["status"] != "success" || att["action_type"] != "ENCODE_CREDENTIAL" || res["acs_credential_id"] != credID || res["is_issued"] != true {
					t.Fatalf("attempt %v", att)
				}
			}},
		{"encode fails on the card", "/acs/encoders/encode_credential",
			func(encID, credID string) map[string]any {
				return map[string]any{"acs_encoder_id": encID, "acs_credential_id": credID}
			},
			func(_ *cloudtest.Env, b *cloudtest.Bridge, j *protocol.Job) {
				b.Result(cloudtest.Failure(j, protocol.ErrorEncodingInterrupted))
			},
			func(t *testing.T, att map[string]any, _ string) { wantError(t, att, protocol.ErrorEncodingInterrupted) }},
		{"scan succeeds", "/acs/encoders/scan_credential",
			func(encID, _ string) map[string]any { return map[string]any{"acs_encoder_id": encID} },
			func(env *cloudtest.Env, b *cloudtest.Bridge, j *protocol.Job) {
				b.Result(cloudtest.Success(j, &protocol.Card{UID: "04A1B2C3D4E5F6", Technology: "ntag213", Reason: "blank"}, env.Clock.Now()))
			},
			func(t *testing.T, att map[string]any, _ string) {
				md := obj(obj(att["result"])["encoder_bridge_metadata"])
				if att["status"] != "success" || att["action_type"] != "SCAN_CREDENTIAL" || md["reason"] != "blank" {
					t.Fatalf("attempt %v", att)
				}
			}},
		{"scan to assign finds no credential", "/acs/encoders/scan_to_assign_credential",
			func(encID, _ string) map[string]any {
				return map[string]any{"acs_encoder_id": encID, "acs_user_id": "0b7e4f2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b"}
			},
			func(env *cloudtest.Env, b *cloudtest.Bridge, j *protocol.Job) {
				b.Result(cloudtest.Success(j, &protocol.Card{UID: "04A1B2C3D4E5F6", Technology: "ntag213", Reason: "blank"}, env.Clock.Now()))
			},
			func(t *testing.T, att map[string]any, _ string) {
				wantError(t, att, protocol.ErrorNoCredentialOnEncoder)
			}},
		{"the bridge refuses the job", "/acs/encoders/scan_credential",
			func(encID, _ string) map[string]any { return map[string]any{"acs_encoder_id": encID} },
			func(_ *cloudtest.Env, b *cloudtest.Bridge, j *protocol.Job) {
				b.Send(&protocol.Message{V: 1, Type: protocol.TypeError, Error: &protocol.Error{Code: protocol.CodeUnknownEncoder, Message: "no", JobID: j.JobID}})
			},
			func(t *testing.T, att map[string]any, _ string) { wantError(t, att, protocol.ErrorEncoderNotOnline) }},
		{"the job expires within the hold", "/acs/encoders/scan_credential",
			func(encID, _ string) map[string]any { return map[string]any{"acs_encoder_id": encID} },
			func(env *cloudtest.Env, _ *cloudtest.Bridge, _ *protocol.Job) {
				env.Clock.Advance(time.Second) // the job's deadline, not yet the hold's end
				if n, err := env.Server.Sweep(context.Background()); err != nil || n != 1 {
					env.T.Fatalf("sweep: %d %v", n, err)
				}
			},
			func(t *testing.T, att map[string]any, _ string) {
				wantError(t, att, protocol.ErrorActionAttemptExpired)
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sch := newSchema(t)
			env := cloudtest.New(t, cloudtest.Options{SettleWait: settleWait, JobTimeout: time.Second})
			b, encID := connect(t, env)
			credID := env.CreateCredential(nil)["acs_credential_id"].(string)
			got := post(env, context.Background(), nil, "", tc.path, tc.body(encID, credID), nil)
			j := b.Expect(protocol.TypeJob).Job
			waitHeld(t, env, 1)
			tc.finish(env, b, j)
			a := <-got
			att := attemptAnswer(t, a)
			sch.response(tc.path, a.body) // Seam's schema allows a settled attempt here
			tc.check(t, att, credID)
			if again := getAttempt(t, env, att["action_attempt_id"]); again["status"] != att["status"] {
				t.Errorf("polled attempt %v differs from the answer %v", again, att)
			}
		})
	}
}

// Past the hold, or when the client asks not to wait, or when too many
// answers are held, the answer is pending, as Seam's.
func TestPendingAnswer(t *testing.T) { cloudtest.Backends(t, testPendingAnswer) }

func testPendingAnswer(t *testing.T) {
	t.Run("the hold ends", func(t *testing.T) {
		env := cloudtest.New(t, cloudtest.Options{SettleWait: settleWait})
		b, encID := connect(t, env)
		got := post(env, context.Background(), nil, "", "/acs/encoders/scan_credential", map[string]any{"acs_encoder_id": encID}, nil)
		j := b.Expect(protocol.TypeJob).Job
		waitHeld(t, env, 1)
		env.Clock.Advance(settleWait)
		att := attemptAnswer(t, <-got)
		if att["status"] != "pending" {
			t.Fatalf("attempt %v", att)
		}
		b.Result(cloudtest.Success(j, &protocol.Card{Reason: "blank"}, env.Clock.Now()))
		if a := getAttempt(t, env, att["action_attempt_id"]); a["status"] != "success" {
			t.Fatalf("polled %v", a)
		}
	})
	t.Run("the request's deadline comes first", func(t *testing.T) {
		env := cloudtest.New(t, cloudtest.Options{SettleWait: 2 * time.Hour})
		b, encID := connect(t, env)
		// A deadline on the request's context, as a proxy or middleware
		// sets it: an hour, against a two-hour bound.
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := context.WithTimeout(r.Context(), time.Hour)
			defer cancel()
			env.Server.Handler().ServeHTTP(w, r.WithContext(ctx))
		}))
		defer srv.Close()
		got := post(env, context.Background(), nil, srv.URL, "/acs/encoders/scan_credential", map[string]any{"acs_encoder_id": encID}, nil)
		b.Expect(protocol.TypeJob)
		waitHeld(t, env, 1)
		env.Clock.Advance(time.Hour)
		if att := attemptAnswer(t, <-got); att["status"] != "pending" {
			t.Fatalf("attempt %v", att)
		}
	})
	t.Run("Prefer: wait=0", func(t *testing.T) {
		env := cloudtest.New(t, cloudtest.Options{SettleWait: settleWait})
		b, encID := connect(t, env)
		got := post(env, context.Background(), nil, "", "/acs/encoders/scan_credential", map[string]any{"acs_encoder_id": encID},
			http.Header{"Prefer": {"wait=0"}})
		att := attemptAnswer(t, <-got)
		if att["status"] != "pending" || env.Clock.Waiters() != 0 {
			t.Fatalf("attempt %v, %d held", att, env.Clock.Waiters())
		}
		b.Expect(protocol.TypeJob)
	})
	t.Run("turned off", func(t *testing.T) {
		env := cloudtest.New(t, cloudtest.Options{SettleWait: -1})
		_, encID := connect(t, env)
		if att := scan(t, env, encID); att["status"] != "pending" || env.Clock.Waiters() != 0 {
			t.Fatalf("attempt %v, %d held", att, env.Clock.Waiters())
		}
	})
	t.Run("too many held", func(t *testing.T) {
		env := cloudtest.New(t, cloudtest.Options{SettleWait: settleWait, Config: func(c *cloud.Config) { c.MaxSettling = 1 }})
		b, encID := connect(t, env)
		first := post(env, context.Background(), nil, "", "/acs/encoders/scan_credential", map[string]any{"acs_encoder_id": encID}, nil)
		j := b.Expect(protocol.TypeJob).Job
		waitHeld(t, env, 1)
		if att := scan(t, env, encID); att["status"] != "pending" || env.Clock.Waiters() != 1 {
			t.Fatalf("second attempt %v, %d held", att, env.Clock.Waiters())
		}
		b.Expect(protocol.TypeJob)
		b.Result(cloudtest.Success(j, &protocol.Card{Reason: "blank"}, env.Clock.Now()))
		if att := attemptAnswer(t, <-first); att["status"] != "success" {
			t.Fatalf("first attempt %v", att)
		}
	})
	t.Run("the server closes", func(t *testing.T) {
		env := cloudtest.New(t, cloudtest.Options{SettleWait: settleWait})
		b, encID := connect(t, env)
		got := post(env, context.Background(), nil, "", "/acs/encoders/scan_credential", map[string]any{"acs_encoder_id": encID}, nil)
		b.Expect(protocol.TypeJob)
		waitHeld(t, env, 1)
		env.Server.Close()
		if att := attemptAnswer(t, <-got); att["status"] != "pending" {
			t.Fatalf("attempt %v", att)
		}
	})
}

// A client that goes away while its answer is held leaves no goroutine
// and no connection behind, and the job goes on: its result is stored.
func TestHeldAnswerClientGone(t *testing.T) { cloudtest.Backends(t, testHeldAnswerClientGone) }

func testHeldAnswerClientGone(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{SettleWait: settleWait})
	b, encID := connect(t, env)
	closed := make(chan struct{}, 1)
	srv := httptest.NewUnstartedServer(env.Server.Handler())
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			closed <- struct{}{}
		}
	}
	srv.Start()
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	base := runtime.NumGoroutine()

	ctx, cancel := context.WithCancel(context.Background())
	got := post(env, ctx, client, srv.URL, "/acs/encoders/encode_credential",
		map[string]any{"acs_encoder_id": encID, "acs_credential_id": env.CreateCredential(nil)["acs_credential_id"]}, nil)
	j := b.Expect(protocol.TypeJob).Job
	waitHeld(t, env, 1)
	cancel()
	if a := <-got; a.err == nil {
		t.Fatalf("the cancelled call answered %d %v", a.status, a.body)
	}
	<-closed // the handler returned and the server closed the connection
	for i := 0; runtime.NumGoroutine() > base; i++ {
		if i > 10_000_000 {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before the call:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		runtime.Gosched()
	}

	b.Result(cloudtest.Success(j, nil, env.Clock.Now()))
	list := env.MustCall("/acs/credentials/list", map[string]any{})
	for _, c := range arr(list["acs_credentials"]) {
		if obj(c)["is_issued"] != true {
			t.Errorf("credential not issued after the job finished unwatched: %v", c)
		}
	}
}

// A held answer is the request's own goroutine parked in Await: holding
// starts no goroutine of its own.
func TestHeldAnswersAddNoGoroutine(t *testing.T) {
	cloudtest.Backends(t, testHeldAnswersAddNoGoroutine)
}

func testHeldAnswersAddNoGoroutine(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{SettleWait: time.Hour})
	b, encID := connect(t, env)
	const n = 20
	answers := make([]<-chan answer, n)
	for i := range answers {
		answers[i] = post(env, context.Background(), nil, "", "/acs/encoders/scan_credential", map[string]any{"acs_encoder_id": encID}, nil)
	}
	for range n {
		b.Expect(protocol.TypeJob)
	}
	waitHeld(t, env, n)
	buf := make([]byte, 8<<20)
	stacks := string(buf[:runtime.Stack(buf, true)])
	if got := strings.Count(stacks, "cloud/jobs.(*Service).Await("); got != n {
		t.Errorf("%d goroutines in Await, want %d", got, n)
	}
	for _, pkg := range []string{"cloud/api", "cloud/jobs"} {
		if strings.Contains(stacks, "created by github.com/encoder-bridge/encoder-bridge/"+pkg+".") {
			t.Errorf("%s started goroutines while answers were held:\n%s", pkg, stacks)
		}
	}
	env.Clock.Advance(time.Hour)
	for _, a := range answers {
		if att := attemptAnswer(t, <-a); att["status"] != "pending" {
			t.Fatalf("attempt %v", att)
		}
	}
}
