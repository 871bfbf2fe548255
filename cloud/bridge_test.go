package cloud_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap/zapcore"

	"github.com/encoder-bridge/encoder-bridge/cloud/cloudtest"
	"github.com/encoder-bridge/encoder-bridge/cloud/hub"
	"github.com/encoder-bridge/encoder-bridge/cloud/seam"
	"github.com/encoder-bridge/encoder-bridge/protocol"
)

func attemptOf(t *testing.T, env *cloudtest.Env, out map[string]any) map[string]any {
	t.Helper()
	a := obj(out["action_attempt"])
	if a == nil {
		t.Fatalf("no action_attempt in %v", out)
	}
	return a
}

func getAttempt(t *testing.T, env *cloudtest.Env, id any) map[string]any {
	t.Helper()
	return attemptOf(t, env, env.MustCall("/action_attempts/get", map[string]any{"action_attempt_id": id}))
}

func encode(t *testing.T, env *cloudtest.Env, encID, credID string) map[string]any {
	t.Helper()
	return attemptOf(t, env, env.MustCall("/acs/encoders/encode_credential", map[string]any{"acs_encoder_id": encID, "acs_credential_id": credID}))
}

func scan(t *testing.T, env *cloudtest.Env, encID string) map[string]any {
	t.Helper()
	return attemptOf(t, env, env.MustCall("/acs/encoders/scan_credential", map[string]any{"acs_encoder_id": encID}))
}

func wantError(t *testing.T, a map[string]any, typ protocol.ErrorType) {
	t.Helper()
	if a["status"] != "error" || obj(a["error"])["type"] != string(typ) {
		t.Fatalf("attempt %v, want error %s", a, typ)
	}
	if msg, _ := obj(a["error"])["message"].(string); msg == "" {
		t.Errorf("error %s has no message", typ)
	}
}

func TestEncodeSuccess(t *testing.T) { cloudtest.Backends(t, testEncodeSuccess) }

func testEncodeSuccess(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{})
	b, encID := connect(t, env)
	cred := env.CreateCredential(nil)
	credID := cred["acs_credential_id"].(string)
	att := encode(t, env, encID, credID)

	m := b.Expect(protocol.TypeJob)
	j := m.Job
	if j.Kind != protocol.JobEncode || j.EncoderID != "e1" || j.ActionAttemptID != att["action_attempt_id"] ||
		!j.Deadline.Equal(env.Clock.Now().Add(60*time.Second).Truncate(time.Millisecond)) {
		t.Fatalf("job %+v", j)
	}
	c := j.Credential
	if c.CredentialID != credID || c.CardNumber != cred["card_number"] || c.CardFunctionType != "guest" || *c.IssueSequence != 1 ||
		len(c.EntranceIDs) != 1 || c.StartsAt != env.Clock.Now().UTC().Format(time.RFC3339) {
		t.Fatalf("job credential %+v", c)
	}
	b.Ack(j.JobID)
	b.Send(&protocol.Message{V: 1, Type: protocol.TypeProgress, Progress: &protocol.Progress{JobID: j.JobID, Stage: protocol.StageWriting}})
	if a := getAttempt(t, env, att["action_attempt_id"]); a["status"] != "pending" {
		t.Fatalf("attempt before the result: %v", a)
	}
	env.Clock.Advance(3 * time.Second)
	b.Result(cloudtest.Success(j, nil, env.Clock.Now()))

	a := getAttempt(t, env, att["action_attempt_id"])
	res := obj(a["result"])
	md := obj(res["encoder_bridge_metadata"])
	if a["status"] != "success" || a["error"] != nil || res["acs_credential_id"] != credID || res["is_issued"] != true ||
		res["issued_at"] != seam.Time(env.Clock.Now()) || res["card_number"] != cred["card_number"] || res["access_method"] != "card" ||
		md["card_uid"] != "04A1B2C3D4E5F6" || md["card_technology"] != "ntag213" || md["key_version"] != float64(1) || md["issue_sequence"] != float64(1) {
		t.Fatalf("attempt %v", a)
	}
	got := obj(env.MustCall("/acs/credentials/get", map[string]any{"acs_credential_id": credID})["acs_credential"])
	if got["is_issued"] != true || len(arr(got["warnings"])) != 0 {
		t.Errorf("credential after encoding: %v", got)
	}
}

// The bridge's error types reach the client unchanged; types Seam does not
// define for the action become uncategorized_error.
func TestErrorTypesPassThrough(t *testing.T) { cloudtest.Backends(t, testErrorTypesPassThrough) }

func testErrorTypesPassThrough(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{})
	b, encID := connect(t, env)
	types := append(seam.ErrorTypes(seam.ActionEncodeCredential), "paper_jam", "")
	for _, typ := range types {
		credID := env.CreateCredential(nil)["acs_credential_id"].(string)
		att := encode(t, env, encID, credID)
		j := b.Expect(protocol.TypeJob).Job
		if typ == "" {
			// A result without a type is malformed: refused, not stored.
			b.Send(&protocol.Message{V: 1, Type: protocol.TypeResult, Result: &protocol.Result{JobID: j.JobID, Error: &protocol.JobError{}}})
			if e := b.Expect(protocol.TypeError).Error; e.Code != protocol.CodeMalformed {
				t.Errorf("typeless error: %+v", e)
			}
			continue
		}
		b.Result(cloudtest.Failure(j, typ))
		want := typ
		if typ == "paper_jam" {
			want = protocol.ErrorUncategorized
		}
		wantError(t, getAttempt(t, env, att["action_attempt_id"]), want)
	}
	for _, typ := range []protocol.ErrorType{protocol.ErrorIncompatibleCardFormat, protocol.ErrorEncoderCommunicationTimeout, protocol.ErrorNoCredentialOnEncoder} {
		att := scan(t, env, encID)
		j := b.Expect(protocol.TypeJob).Job
		b.Result(cloudtest.Failure(j, typ))
		want := typ
		if typ == protocol.ErrorIncompatibleCardFormat { // not a SCAN_CREDENTIAL error type
			want = protocol.ErrorUncategorized
		}
		wantError(t, getAttempt(t, env, att["action_attempt_id"]), want)
	}
}

func TestEncoderNotOnline(t *testing.T) { cloudtest.Backends(t, testEncoderNotOnline) }

func testEncoderNotOnline(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{})
	b, encID := connect(t, env)
	credID := env.CreateCredential(nil)["acs_credential_id"].(string)
	b.Conn.Close()
	waitOffline(t, env)
	wantError(t, encode(t, env, encID, credID), protocol.ErrorEncoderNotOnline)
	wantError(t, scan(t, env, encID), protocol.ErrorEncoderNotOnline)
	enc := obj(env.MustCall("/acs/encoders/get", map[string]any{"acs_encoder_id": encID})["acs_encoder"])
	if obj(enc["encoder_bridge_metadata"])["is_online"] != false {
		t.Errorf("encoder of an offline bridge: %v", enc)
	}
	// The failed attempt did not use the credential's first sequence.
	b = env.Connect(cloudtest.Encoder("e1"))
	encode(t, env, encID, credID)
	if seq := *b.Expect(protocol.TypeJob).Job.Credential.IssueSequence; seq != 1 {
		t.Errorf("first real job has sequence %d, want 1", seq)
	}
}

func waitOffline(t *testing.T, env *cloudtest.Env) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for env.Server.Online(env.BridgeID) {
		if time.Now().After(deadline) {
			t.Fatal("bridge still online")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestBridgeDisconnectedAtDeadline(t *testing.T) {
	cloudtest.Backends(t, testBridgeDisconnectedAtDeadline)
}

func testBridgeDisconnectedAtDeadline(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{})
	b, encID := connect(t, env)
	credID := env.CreateCredential(nil)["acs_credential_id"].(string)
	att := encode(t, env, encID, credID)
	b.Ack(b.Expect(protocol.TypeJob).Job.JobID)
	b.Conn.Close()
	waitOffline(t, env)
	env.Clock.Advance(59 * time.Second)
	if n, err := env.Server.Sweep(t.Context()); err != nil || n != 0 {
		t.Fatalf("sweep before the deadline: %d %v", n, err)
	}
	env.Clock.Advance(time.Second)
	if n, err := env.Server.Sweep(t.Context()); err != nil || n != 1 {
		t.Fatalf("sweep at the deadline: %d %v", n, err)
	}
	wantError(t, getAttempt(t, env, att["action_attempt_id"]), protocol.ErrorBridgeDisconnected)
	// A reconnect after the deadline is not offered the job.
	b = env.Connect(cloudtest.Encoder("e1"))
	b.ExpectNone(100 * time.Millisecond)
}

func TestActionAttemptExpired(t *testing.T) { cloudtest.Backends(t, testActionAttemptExpired) }

func testActionAttemptExpired(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{JobTimeout: 30 * time.Second})
	b, encID := connect(t, env)
	att := scan(t, env, encID)
	j := b.Expect(protocol.TypeJob).Job
	if !j.Deadline.Equal(env.Clock.Now().Add(30 * time.Second)) {
		t.Errorf("deadline %v with a 30s timeout", j.Deadline)
	}
	env.Clock.Advance(31 * time.Second)
	if _, err := env.Server.Sweep(t.Context()); err != nil {
		t.Fatal(err)
	}
	wantError(t, getAttempt(t, env, att["action_attempt_id"]), protocol.ErrorActionAttemptExpired)
	// A result after expiry is acknowledged but changes nothing.
	b.Result(cloudtest.Failure(j, protocol.ErrorNoCredentialOnEncoder))
	wantError(t, getAttempt(t, env, att["action_attempt_id"]), protocol.ErrorActionAttemptExpired)
}

// The sweeper runs by itself on the injected clock.
func TestSweeperRunsOnClock(t *testing.T) { cloudtest.Backends(t, testSweeperRunsOnClock) }

func testSweeperRunsOnClock(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{})
	b, encID := connect(t, env)
	att := scan(t, env, encID)
	b.Expect(protocol.TypeJob)
	go env.Server.Run(t.Context())
	// Run parks three loops on the clock: the sweeper, the revocation
	// check and the webhook deliverer.
	<-env.Clock.Waiting(3)
	env.Clock.Advance(61 * time.Second)
	// All park again only after the work the advance woke them for.
	<-env.Clock.Waiting(3)
	wantError(t, getAttempt(t, env, att["action_attempt_id"]), protocol.ErrorActionAttemptExpired)
}

// A late encode success still records the card on the credential: the card
// exists and its sequence counts at the locks.
func TestLateEncodeResultRecordsCard(t *testing.T) {
	cloudtest.Backends(t, testLateEncodeResultRecordsCard)
}

func testLateEncodeResultRecordsCard(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{})
	b, encID := connect(t, env)
	credID := env.CreateCredential(nil)["acs_credential_id"].(string)
	att := encode(t, env, encID, credID)
	j := b.Expect(protocol.TypeJob).Job
	env.Clock.Advance(61 * time.Second)
	if _, err := env.Server.Sweep(t.Context()); err != nil {
		t.Fatal(err)
	}
	b.Result(cloudtest.Success(j, nil, env.Clock.Now()))
	wantError(t, getAttempt(t, env, att["action_attempt_id"]), protocol.ErrorActionAttemptExpired)
	cred := obj(env.MustCall("/acs/credentials/get", map[string]any{"acs_credential_id": credID})["acs_credential"])
	if cred["is_issued"] != true {
		t.Errorf("credential after a late success: %v", cred)
	}
}

func TestReofferAfterReconnect(t *testing.T) { cloudtest.Backends(t, testReofferAfterReconnect) }

func testReofferAfterReconnect(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{})
	b, encID := connect(t, env)
	credID := env.CreateCredential(nil)["acs_credential_id"].(string)
	att := encode(t, env, encID, credID)
	first := b.Expect(protocol.TypeJob).Job
	b.Ack(first.JobID)
	b.Conn.Close()
	waitOffline(t, env)
	env.Clock.Advance(20 * time.Second)

	b = env.Connect(cloudtest.Encoder("e1"))
	again := b.Expect(protocol.TypeJob).Job
	// The same job, saying the bridge acked it: a bridge that lost it
	// with a damaged journal must not write a card for it again.
	if first.Acked || !again.Acked {
		t.Fatalf("acked: first offer %v, after the ack %v", first.Acked, again.Acked)
	}
	want := *first
	want.Acked = true
	fj, _ := json.Marshal(want)
	aj, _ := json.Marshal(again)
	if !bytes.Equal(fj, aj) {
		t.Fatalf("re-offered job differs:\n%s\n%s", fj, aj)
	}
	b.Result(cloudtest.Success(again, nil, env.Clock.Now()))
	if a := getAttempt(t, env, att["action_attempt_id"]); a["status"] != "success" {
		t.Fatalf("attempt %v", a)
	}
	// A finished job is not offered again.
	b.Conn.Close()
	waitOffline(t, env)
	b = env.Connect(cloudtest.Encoder("e1"))
	b.ExpectNone(100 * time.Millisecond)
}

// Results finished while the link was down come in the hello; each is
// acknowledged, including one for a job the cloud does not know.
func TestResultsInHello(t *testing.T) { cloudtest.Backends(t, testResultsInHello) }

func testResultsInHello(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{})
	b, encID := connect(t, env)
	credID := env.CreateCredential(nil)["acs_credential_id"].(string)
	att := encode(t, env, encID, credID)
	j := b.Expect(protocol.TypeJob).Job
	b.Conn.Close()
	waitOffline(t, env)

	b2, _, err := env.Dial(env.BridgeID, env.BridgeToken)
	if err != nil {
		t.Fatal(err)
	}
	unknown := protocol.Result{JobID: "no-such-job", Error: &protocol.JobError{Type: "uncategorized_error", Message: "x"}}
	b2.Hello([]protocol.Encoder{cloudtest.Encoder("e1")}, []protocol.Result{cloudtest.Success(j, nil, env.Clock.Now()), unknown})
	acks := map[string]bool{}
	for i := 0; i < 2; i++ {
		acks[b2.Expect(protocol.TypeResultAck).ResultAck.JobID] = true
	}
	if !acks[j.JobID] || !acks["no-such-job"] {
		t.Fatalf("acks %v", acks)
	}
	b2.ExpectNone(100 * time.Millisecond) // the finished job is not offered
	if a := getAttempt(t, env, att["action_attempt_id"]); a["status"] != "success" {
		t.Fatalf("attempt %v", a)
	}
}

func TestDuplicateResults(t *testing.T) { cloudtest.Backends(t, testDuplicateResults) }

func testDuplicateResults(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{})
	b, encID := connect(t, env)
	credID := env.CreateCredential(nil)["acs_credential_id"].(string)
	att := encode(t, env, encID, credID)
	j := b.Expect(protocol.TypeJob).Job
	b.Result(cloudtest.Success(j, nil, env.Clock.Now()))
	first := getAttempt(t, env, att["action_attempt_id"])
	env.Clock.Advance(time.Minute)
	b.Result(cloudtest.Success(j, nil, env.Clock.Now()))
	b.Result(cloudtest.Failure(j, protocol.ErrorEncodingInterrupted))
	again := getAttempt(t, env, att["action_attempt_id"])
	fj, _ := json.Marshal(first)
	aj, _ := json.Marshal(again)
	if !bytes.Equal(fj, aj) {
		t.Fatalf("a duplicate result changed the attempt:\n%s\n%s", fj, aj)
	}
}

// A cloud restarted mid-job (new Server on the same database) offers the
// job again when the bridge reconnects, and completes it.
func TestRestartMidJob(t *testing.T) { cloudtest.Backends(t, testRestartMidJob) }

func testRestartMidJob(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{})
	b, encID := connect(t, env)
	credID := env.CreateCredential(nil)["acs_credential_id"].(string)
	att := encode(t, env, encID, credID)
	first := b.Expect(protocol.TypeJob).Job
	b.Ack(first.JobID)

	env.Restart()
	b.WaitClosed()
	env.Clock.Advance(10 * time.Second)
	b = env.Connect(cloudtest.Encoder("e1"))
	again := b.Expect(protocol.TypeJob).Job
	if again.JobID != first.JobID || again.ActionAttemptID != first.ActionAttemptID {
		t.Fatalf("re-offered %+v, want %+v", again, first)
	}
	b.Result(cloudtest.Success(again, nil, env.Clock.Now()))
	if a := getAttempt(t, env, att["action_attempt_id"]); a["status"] != "success" {
		t.Fatalf("attempt after restart %v", a)
	}
}

// After a restart with no reconnect, a job whose deadline passed while the
// cloud was down expires as action_attempt_expired; one that passes after
// the restart without its bridge is bridge_disconnected.
func TestRestartExpiry(t *testing.T) { cloudtest.Backends(t, testRestartExpiry) }

func testRestartExpiry(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{})
	b, encID := connect(t, env)
	early := scan(t, env, encID)
	b.Expect(protocol.TypeJob)
	env.Clock.Advance(30 * time.Second)
	late := scan(t, env, encID)
	b.Expect(protocol.TypeJob)
	env.Clock.Advance(31 * time.Second) // early's deadline passed "while down"
	env.Restart()
	env.Clock.Advance(30 * time.Second)
	if _, err := env.Server.Sweep(t.Context()); err != nil {
		t.Fatal(err)
	}
	wantError(t, getAttempt(t, env, early["action_attempt_id"]), protocol.ErrorActionAttemptExpired)
	wantError(t, getAttempt(t, env, late["action_attempt_id"]), protocol.ErrorBridgeDisconnected)
}

// Malformed, oversized and unknown messages are answered with an error
// message and the link stays up.
func TestBadMessagesKeepLink(t *testing.T) { cloudtest.Backends(t, testBadMessagesKeepLink) }

func testBadMessagesKeepLink(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{})
	b, encID := connect(t, env)
	big := `{"v":1,"type":"ack","ack":{"job_id":"` + strings.Repeat("x", protocol.MaxMessageSize) + `"}}`
	cases := []struct {
		frame string
		code  protocol.ErrorCode
	}{
		{`{"v":1,`, protocol.CodeMalformed},
		{`not json at all`, protocol.CodeMalformed},
		{`{"v":1,"type":"ack"}`, protocol.CodeMalformed},
		{`{"v":1,"type":"ack","ack":{"job_id":"j"},"extra":1}`, protocol.CodeMalformed},
		{`{"v":1,"type":"teleport"}`, protocol.CodeUnknownType},
		{big, protocol.CodeTooLarge},
		{`{"v":1,"type":"job","job":{"job_id":"j","encoder_id":"e","kind":"scan","deadline":"2026-01-01T00:00:00Z"}}`, protocol.CodeUnexpected},
		{`{"v":1,"type":"ack","ack":{"job_id":"nobody"}}`, protocol.CodeUnexpected},
		{`{"v":1,"type":"encoder_removed","encoder_id":"e9"}`, protocol.CodeUnknownEncoder},
		{`{"v":2,"type":"ack","ack":{"job_id":"j"}}`, protocol.CodeUnsupported},
	}
	for _, c := range cases {
		b.SendRaw([]byte(c.frame))
		m := b.Expect(protocol.TypeError)
		if m.Error.Code != c.code {
			t.Errorf("frame %.60q: error %+v, want %s", c.frame, m.Error, c.code)
		}
	}
	// Still up: a job reaches the bridge.
	scan(t, env, encID)
	b.Expect(protocol.TypeJob)
}

// A frame beyond the hard limit closes the link (it is not read into
// memory), unlike one just over MaxMessageSize.
func TestHugeFrameClosesLink(t *testing.T) {
	env, logs := observed(t, zapcore.InfoLevel)
	b, _ := connect(t, env)
	// The write may fail once the cloud stops reading; the close says why.
	_ = b.Conn.WriteMessage(websocket.TextMessage, bytes.Repeat([]byte("x"), hub.HardReadLimit+1))
	var ce *websocket.CloseError
	if err := b.WaitClosed(); !errors.As(err, &ce) || ce.Code != websocket.CloseMessageTooBig {
		t.Fatalf("link closed with %v, want close code %d (message too big)", err, websocket.CloseMessageTooBig)
	}
	// The reason on the wire is the websocket library's (empty); the log
	// says which limit. The link is forgotten after that line.
	waitOffline(t, env)
	if !loggedWith(logs, "bridge link read failed", websocket.ErrReadLimit.Error()) {
		t.Errorf("the cloud did not log the read limit: %v", logs.All())
	}
}

func TestHelloRules(t *testing.T) { cloudtest.Backends(t, testHelloRules) }

func testHelloRules(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{})
	otherID, otherToken, err := env.Server.CreateBridgeToken(t.Context(), env.Workspace.ID, "Back office")
	if err != nil {
		t.Fatal(err)
	}

	t.Run("bad or missing token refused before upgrade", func(t *testing.T) {
		if err := env.Server.RevokeBridgeToken(t.Context(), otherID); err != nil {
			t.Fatal(err)
		}
		for name, tok := range map[string]string{"none": "", "garbage": "hello", "unknown": "ebt_aaaaaaaaaaaaaaaa_" + strings.Repeat("b", 52),
			"wrong secret": env.BridgeToken[:len(env.BridgeToken)-4] + "zzzz", "api key": env.APIKey, "revoked": otherToken} {
			_, resp, err := env.Dial(env.BridgeID, tok)
			if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s token: err %v resp %v", name, err, resp)
			}
		}
	})

	t.Run("hello for another bridge refused", func(t *testing.T) {
		thirdID, _, err := env.Server.CreateBridgeToken(t.Context(), env.Workspace.ID, "Lobby")
		if err != nil {
			t.Fatal(err)
		}
		b, _, err := env.Dial(thirdID, env.BridgeToken) // token of the env's bridge, hello as the third
		if err != nil {
			t.Fatal(err)
		}
		b.Send(&protocol.Message{V: 1, Type: protocol.TypeHello, Hello: &protocol.Hello{BridgeID: thirdID, ProtocolVersion: 1, Encoders: []protocol.Encoder{}}})
		if e := b.Expect(protocol.TypeError).Error; e.Code != protocol.CodeUnauthenticated {
			t.Errorf("error %+v", e)
		}
		b.WaitClosed()
		if env.Server.Online(thirdID) || env.Server.Online(env.BridgeID) {
			t.Error("a refused hello made a bridge online")
		}
	})

	t.Run("unsupported protocol version", func(t *testing.T) {
		b, _, err := env.Dial(env.BridgeID, env.BridgeToken)
		if err != nil {
			t.Fatal(err)
		}
		b.Send(&protocol.Message{V: 1, Type: protocol.TypeHello, Hello: &protocol.Hello{BridgeID: env.BridgeID, ProtocolVersion: 2}})
		if e := b.Expect(protocol.TypeError).Error; e.Code != protocol.CodeUnsupported {
			t.Errorf("error %+v", e)
		}
		b.WaitClosed()
		b, _, err = env.Dial(env.BridgeID, env.BridgeToken)
		if err != nil {
			t.Fatal(err)
		}
		b.SendRaw([]byte(`{"v":2,"type":"hello","hello":{"bridge_id":"x"}}`))
		if e := b.Expect(protocol.TypeError).Error; e.Code != protocol.CodeUnsupported {
			t.Errorf("error %+v", e)
		}
		b.WaitClosed()
	})

	t.Run("messages before hello", func(t *testing.T) {
		b, _, err := env.Dial(env.BridgeID, env.BridgeToken)
		if err != nil {
			t.Fatal(err)
		}
		b.Send(&protocol.Message{V: 1, Type: protocol.TypeAck, Ack: &protocol.Ack{JobID: "j"}})
		if e := b.Expect(protocol.TypeError).Error; e.Code != protocol.CodeUnexpected {
			t.Errorf("error %+v", e)
		}
		b.Hello(nil, nil) // still accepted
		b.Send(&protocol.Message{V: 1, Type: protocol.TypeHello, Hello: &protocol.Hello{BridgeID: env.BridgeID, ProtocolVersion: 1}})
		if e := b.Expect(protocol.TypeError).Error; e.Code != protocol.CodeUnexpected {
			t.Errorf("second hello: %+v", e)
		}
	})

	t.Run("no hello in time", func(t *testing.T) {
		env := cloudtest.New(t, cloudtest.Options{Config: func(c *cloudConfig) { c.HelloWait = 100 * time.Millisecond }})
		b, _, err := env.Dial(env.BridgeID, env.BridgeToken)
		if err != nil {
			t.Fatal(err)
		}
		b.WaitClosed()
	})
}

// A second link of the same bridge replaces the first, which is closed;
// jobs go to the newer link.
func TestLinkReplaced(t *testing.T) { cloudtest.Backends(t, testLinkReplaced) }

func testLinkReplaced(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{})
	old, encID := connect(t, env)
	nu := env.Connect(cloudtest.Encoder("e1"))
	old.WaitClosed()
	if !env.Server.Online(env.BridgeID) {
		t.Fatal("bridge offline after the old link closed")
	}
	scan(t, env, encID)
	nu.Expect(protocol.TypeJob)
}

func TestEncoderLifecycle(t *testing.T) { cloudtest.Backends(t, testEncoderLifecycle) }

func testEncoderLifecycle(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{})
	b := env.Connect(cloudtest.Encoder("e1"), cloudtest.Encoder("e2"))
	list := arr(env.MustCall("/acs/encoders/list", nil)["acs_encoders"])
	if len(list) != 2 {
		t.Fatalf("encoders %v", list)
	}
	ids := map[string]string{}
	for _, e := range list {
		ids[obj(e)["display_name"].(string)] = obj(e)["acs_encoder_id"].(string)
	}
	e1, e2 := ids["Encoder e1"], ids["Encoder e2"]

	b.Send(&protocol.Message{V: 1, Type: protocol.TypeEncoderRemoved, EncoderID: "e2"})
	enc := waitEncoder(t, env, e2, func(e map[string]any) bool { return len(arr(e["errors"])) == 1 })
	if errs := arr(enc["errors"]); obj(errs[0])["error_code"] != "acs_encoder_removed" {
		t.Fatalf("removed encoder %v", enc)
	}
	wantError(t, scan(t, env, e2), protocol.ErrorEncoderNotOnline)

	e3 := cloudtest.Encoder("e2")
	e3.DisplayName = "Back desk"
	b.Send(&protocol.Message{V: 1, Type: protocol.TypeEncoderAdded, Encoder: &e3})
	enc = waitEncoder(t, env, e2, func(e map[string]any) bool { return len(arr(e["errors"])) == 0 })
	if enc["display_name"] != "Back desk" {
		t.Errorf("re-added encoder %v", enc)
	}

	// A hello without e1 marks it removed; ids survive reconnects.
	b.Conn.Close()
	waitOffline(t, env)
	env.Connect(cloudtest.Encoder("e2"))
	enc = waitEncoder(t, env, e1, func(e map[string]any) bool { return len(arr(e["errors"])) == 1 })
	if list := arr(env.MustCall("/acs/encoders/list", nil)["acs_encoders"]); len(list) != 2 {
		t.Errorf("encoders after reconnect %v", list)
	}

	// Another bridge's encoder with the same local id has another id.
	otherID, otherToken, err := env.Server.CreateBridgeToken(t.Context(), env.Workspace.ID, "Lobby")
	if err != nil {
		t.Fatal(err)
	}
	ob, _, err := env.Dial(otherID, otherToken)
	if err != nil {
		t.Fatal(err)
	}
	ob.Hello([]protocol.Encoder{cloudtest.Encoder("e1")}, nil)
	if list := arr(env.MustCall("/acs/encoders/list", nil)["acs_encoders"]); len(list) != 3 {
		t.Errorf("encoders with a second bridge %v", list)
	}
}

func waitEncoder(t *testing.T, env *cloudtest.Env, id string, ok func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		e := obj(env.MustCall("/acs/encoders/get", map[string]any{"acs_encoder_id": id})["acs_encoder"])
		if ok(e) {
			return e
		}
		if time.Now().After(deadline) {
			t.Fatalf("encoder %v", e)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// A bridge's error message about a job ends it when the bridge cannot run
// it.
func TestBridgeRefusesJob(t *testing.T) { cloudtest.Backends(t, testBridgeRefusesJob) }

func testBridgeRefusesJob(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{})
	b, encID := connect(t, env)
	for code, want := range map[protocol.ErrorCode]protocol.ErrorType{
		protocol.CodeUnknownEncoder: protocol.ErrorEncoderNotOnline,
		protocol.CodeDeadlinePassed: protocol.ErrorActionAttemptExpired,
	} {
		att := scan(t, env, encID)
		j := b.Expect(protocol.TypeJob).Job
		b.Send(&protocol.Message{V: 1, Type: protocol.TypeError, Error: &protocol.Error{Code: code, Message: "no", JobID: j.JobID}})
		b.Sync()
		wantError(t, getAttempt(t, env, att["action_attempt_id"]), want)
	}
}

// One bridge cannot finish another bridge's job.
func TestResultOfAnotherBridgesJob(t *testing.T) {
	cloudtest.Backends(t, testResultOfAnotherBridgesJob)
}

func testResultOfAnotherBridgesJob(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{})
	b, encID := connect(t, env)
	att := scan(t, env, encID)
	j := b.Expect(protocol.TypeJob).Job
	otherID, otherToken, err := env.Server.CreateBridgeToken(t.Context(), env.Workspace.ID, "Lobby")
	if err != nil {
		t.Fatal(err)
	}
	ob, _, err := env.Dial(otherID, otherToken)
	if err != nil {
		t.Fatal(err)
	}
	ob.Hello(nil, nil)
	ob.Result(cloudtest.Failure(j, protocol.ErrorNoCredentialOnEncoder)) // acknowledged, dropped
	if a := getAttempt(t, env, att["action_attempt_id"]); a["status"] != "pending" {
		t.Fatalf("another bridge finished the job: %v", a)
	}
}

func TestRevokedBridgeIsCut(t *testing.T) { cloudtest.Backends(t, testRevokedBridgeIsCut) }

func testRevokedBridgeIsCut(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{})
	b, _ := connect(t, env)
	if err := env.Server.RevokeBridgeToken(t.Context(), env.BridgeID); err != nil {
		t.Fatal(err)
	}
	b.WaitClosed()
	if _, resp, err := env.Dial(env.BridgeID, env.BridgeToken); err == nil || resp.StatusCode != 401 {
		t.Errorf("revoked token: %v", err)
	}
}

// A job a connected bridge does not acknowledge (it could not store it,
// or the frame was lost) is offered again; an acknowledged one is not.
func TestUnackedJobOfferedAgain(t *testing.T) { cloudtest.Backends(t, testUnackedJobOfferedAgain) }

func testUnackedJobOfferedAgain(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{})
	b, encID := connect(t, env)
	scan(t, env, encID)
	j := b.Expect(protocol.TypeJob).Job
	b.Send(&protocol.Message{V: 1, Type: protocol.TypeError, Error: &protocol.Error{Code: protocol.CodeInternal, Message: "disk full", JobID: j.JobID}})
	env.Clock.Advance(9 * time.Second)
	if _, err := env.Server.Sweep(t.Context()); err != nil {
		t.Fatal(err)
	}
	b.ExpectNone(50 * time.Millisecond)
	env.Clock.Advance(2 * time.Second)
	if _, err := env.Server.Sweep(t.Context()); err != nil {
		t.Fatal(err)
	}
	if again := b.Expect(protocol.TypeJob).Job; again.JobID != j.JobID {
		t.Fatalf("offered %s, want %s", again.JobID, j.JobID)
	}
	b.Ack(j.JobID)
	b.Sync()
	env.Clock.Advance(11 * time.Second)
	if _, err := env.Server.Sweep(t.Context()); err != nil {
		t.Fatal(err)
	}
	b.ExpectNone(50 * time.Millisecond)
}

// A job the bridge says it holds (hello.active_jobs) is not offered again:
// its result will come. Other unfinished jobs are.
func TestHeldJobNotOffered(t *testing.T) { cloudtest.Backends(t, testHeldJobNotOffered) }

func testHeldJobNotOffered(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{})
	b, encID := connect(t, env)
	held := encodeJob(t, env, b, encID)
	lost := encodeJob(t, env, b, encID)
	b.Conn.Close()
	waitOffline(t, env)

	b, _, err := env.Dial(env.BridgeID, env.BridgeToken)
	if err != nil {
		t.Fatal(err)
	}
	m := protocol.New(protocol.TypeHello)
	m.Hello = &protocol.Hello{BridgeID: env.BridgeID, SoftwareVersion: "test", ProtocolVersion: protocol.Version,
		Encoders: []protocol.Encoder{cloudtest.Encoder("e1")}, ActiveJobs: []string{held.JobID}}
	b.Send(m)
	b.Expect(protocol.TypeWelcome)
	if again := b.Expect(protocol.TypeJob).Job; again.JobID != lost.JobID {
		t.Fatalf("offered %s, want only the job the bridge does not hold (%s)", again.JobID, lost.JobID)
	}
	b.ExpectNone(100 * time.Millisecond)
}

// encodeJob starts an encode of a new credential and returns the job the
// bridge receives, acknowledged.
func encodeJob(t *testing.T, env *cloudtest.Env, b *cloudtest.Bridge, encID string) *protocol.Job {
	t.Helper()
	credID := env.CreateCredential(nil)["acs_credential_id"].(string)
	encode(t, env, encID, credID)
	j := b.Expect(protocol.TypeJob).Job
	b.Ack(j.JobID)
	return j
}

// A job the bridge refuses because it is stopping (bridge_stopping, no
// ack) stays pending, and the cloud offers it to the bridge's next
// connection, which did not list it (docs/protocol.md, "Stopping").
func TestStoppingBridgeJobOfferedAgain(t *testing.T) {
	cloudtest.Backends(t, testStoppingBridgeJobOfferedAgain)
}

func testStoppingBridgeJobOfferedAgain(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{})
	b, encID := connect(t, env)
	att := scan(t, env, encID)
	j := b.Expect(protocol.TypeJob).Job
	b.Send(&protocol.Message{V: 1, Type: protocol.TypeError, Error: &protocol.Error{Code: protocol.CodeStopping, Message: "the bridge is stopping", JobID: j.JobID}})
	b.Sync()
	if a := getAttempt(t, env, att["action_attempt_id"]); a["status"] != "pending" {
		t.Fatalf("attempt after bridge_stopping: %v", a)
	}
	b.Conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, "bridge stopping"), time.Now().Add(time.Second))
	b.WaitClosed()
	b = env.Connect(cloudtest.Encoder("e1"))
	if again := b.Expect(protocol.TypeJob).Job; again.JobID != j.JobID {
		t.Fatalf("offered %s, want %s", again.JobID, j.JobID)
	}
}
