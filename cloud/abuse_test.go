package cloud_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"

	"github.com/encoder-bridge/encoder-bridge/cloud"
	"github.com/encoder-bridge/encoder-bridge/cloud/api"
	"github.com/encoder-bridge/encoder-bridge/cloud/cloudtest"
	"github.com/encoder-bridge/encoder-bridge/cloud/hub"
	"github.com/encoder-bridge/encoder-bridge/cloud/seam"
	"github.com/encoder-bridge/encoder-bridge/protocol"
)

// unknownFields is a JSON object of n unknown fields.
func unknownFields(n int) []byte {
	var b strings.Builder
	b.WriteByte('{')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"x%06d":1`, i)
	}
	b.WriteByte('}')
	return []byte(b.String())
}

// A body of tens of thousands of unknown fields is answered with a bounded
// error, and handling several at once allocates a bounded amount: the
// problems reported are capped (issue 10: 80,000 fields cost ~80 MB and a
// 5.3 MB answer each).
func TestManyUnknownFieldsBounded(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{})
	const fields, parallel = 80_000, 4
	body := unknownFields(fields)
	if len(body) > api.MaxBodySize {
		t.Fatalf("body of %d bytes is over the limit", len(body))
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	sizes := make([]int, parallel)
	statuses := make([]int, parallel)
	var wg sync.WaitGroup
	for i := range parallel {
		wg.Go(func() {
			// Not env.RawCall: it may fail the test, which only the test's
			// own goroutine may do.
			req, _ := http.NewRequest(http.MethodPost, env.URL()+"/acs/credentials/list", bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+env.APIKey)
			resp, err := env.HTTP.Client().Do(req)
			if err != nil {
				t.Errorf("request %d: %v", i, err)
				return
			}
			defer resp.Body.Close()
			raw, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Errorf("request %d: %v", i, err)
			}
			statuses[i], sizes[i] = resp.StatusCode, len(raw)
		})
	}
	wg.Wait()
	runtime.ReadMemStats(&after)
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("%d requests of %d unknown fields: %d MB allocated, answers of %v bytes", parallel, fields, alloc>>20, sizes)
	for i := range parallel {
		if statuses[i] != http.StatusBadRequest || sizes[i] > 8<<10 {
			t.Errorf("request %d: status %d, %d bytes answered", i, statuses[i], sizes[i])
		}
	}
	if alloc > parallel*16<<20 { // before the caps: about 130 MB each
		t.Errorf("%d MB allocated for %d requests", alloc>>20, parallel)
	}
}

// Under the key limit, the problems named are capped and the rest counted.
func TestReportedProblemsCapped(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{})
	ids := make([]string, 5000)
	for i := range ids {
		ids[i] = "not-a-uuid"
	}
	for name, body := range map[string]any{
		"unknown fields": unknownFields(200),
		"bad array":      map[string]any{"acs_encoder_ids": ids},
		"long names":     longNames(30, 30_000),
	} {
		status, raw := env.RawCall(env.APIKey, http.MethodPost, "/acs/encoders/list", body)
		var out map[string]any
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatal(err)
		}
		e := obj(out["error"])
		if status != http.StatusBadRequest || e["type"] != "invalid_input" || len(obj(e["validation_errors"])) != api.MaxReportedFields ||
			!strings.Contains(e["message"].(string), "more fields") || len(raw) > 8<<10 {
			t.Errorf("%s: %d, %d bytes: %.300s", name, status, len(raw), raw)
		}
	}
}

// longNames is a JSON object of n unknown fields with names of size bytes.
func longNames(n, size int) []byte {
	m := map[string]int{}
	for i := range n {
		m[fmt.Sprintf("%03d%s", i, strings.Repeat("x", size))] = i
	}
	b, _ := json.Marshal(m)
	return b
}

// Anything after the JSON object is refused, closing brackets included; it
// used to pass and could create a credential.
func TestTextAfterBodyRefused(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{})
	valid := `{"access_method":"card","acs_system_id":"` + env.Workspace.AcsSystemID + `","ends_at":"2099-01-01T00:00:00Z"}`
	if status, out := env.Call(http.MethodPost, "/acs/credentials/create", valid); status != http.StatusOK {
		t.Fatalf("valid body: %d %v", status, out)
	}
	for _, tail := range []string{"}", "}}}}not json", "]garbage", "}]", " {}", " x", "\n{}"} {
		status, out := env.Call(http.MethodPost, "/acs/credentials/create", valid+tail)
		if status != http.StatusBadRequest || errType(out) != "invalid_input" {
			t.Errorf("body + %q: %d %v", tail, status, out)
		}
	}
	list := env.MustCall("/acs/credentials/list", nil)
	if n := len(arr(list["acs_credentials"])); n != 1 {
		t.Errorf("%d credentials, want only the valid one", n)
	}
}

// A search longer than the bound is a 400, not SQLite's "LIKE or GLOB
// pattern too complex" as a 500.
func TestLongSearch(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{})
	env.CreateCredential(nil) // SQLite checks the pattern only against a row
	for _, tt := range []struct {
		search string
		status int
	}{
		{strings.Repeat("9", api.MaxSearchLength), http.StatusOK},
		{strings.Repeat("é", api.MaxSearchLength), http.StatusOK},
		{strings.Repeat("9", api.MaxSearchLength+1), http.StatusBadRequest},
		{strings.Repeat("%", 50_000), http.StatusBadRequest},
	} {
		for _, method := range []string{http.MethodPost, http.MethodGet} {
			var body any = map[string]any{"search": tt.search}
			if method == http.MethodGet {
				body = "search=" + url.QueryEscape(tt.search)
			}
			status, out := env.Call(method, "/acs/credentials/list", body)
			if status != tt.status || (status == http.StatusBadRequest && errType(out) != "invalid_input") {
				t.Errorf("%s search of %d characters: %d %.200v", method, len([]rune(tt.search)), status, out)
			}
		}
	}
}

// A missing key and a wrong key get the same answer; the 401 closes the
// connection instead of waiting for the body.
func TestUnauthorizedSameAnswer(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{})
	var msgs []string
	for _, key := range []string{"", "nonsense", "seam_keyaaaaaaaaaaaaaaaa_" + strings.Repeat("b", 52)} {
		status, out := env.CallWith(key, http.MethodPost, "/acs/encoders/list", nil)
		if status != http.StatusUnauthorized {
			t.Fatalf("key %q: %d", key, status)
		}
		msgs = append(msgs, obj(out["error"])["message"].(string))
	}
	for _, m := range msgs[1:] {
		if m != msgs[0] {
			t.Errorf("messages differ: %q", msgs)
		}
	}
}

// A 401 to a request that promised a body closes the connection at once:
// the server does not wait for a body nobody authenticated.
func TestUnauthorizedClosesConnection(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{})
	for _, path := range []string{"/acs/credentials/create", protocol.Path} {
		conn, err := net.Dial("tcp", env.HTTP.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{", path)
		conn.SetReadDeadline(time.Now().Add(cloudtest.Wait))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		_, err = io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusUnauthorized || !resp.Close || err != nil {
			t.Errorf("%s: %d, close %v, body read: %v", path, resp.StatusCode, resp.Close, err)
		}
		// The server closed its end: the next read is EOF, not a timeout.
		if n, err := conn.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
			t.Errorf("%s: connection still open after the 401: %d %v", path, n, err)
		}
	}
}

// A malformed query pair is refused, not dropped.
func TestMalformedQuery(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{})
	for _, q := range []string{"limit=%zz", "limit=5;x=1", "acs_system_id=%"} {
		status, out := env.Call(http.MethodGet, "/acs/encoders/list", q)
		if status != http.StatusBadRequest || errType(out) != "invalid_input" {
			t.Errorf("query %q: %d %v", q, status, out)
		}
	}
}

// An unclean path gets the API's 404 in Seam's shape, not a bare redirect.
func TestUncleanPath(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{})
	for _, path := range []string{"//acs/encoders/list", "/acs/../acs/encoders/list", "/acs/encoders/list/", "/./healthz"} {
		conn, err := net.Dial("tcp", env.HTTP.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		// Written by hand: an HTTP client would clean or reinterpret the path.
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: 2\r\n\r\n{}", path, env.APIKey)
		conn.SetReadDeadline(time.Now().Add(cloudtest.Wait))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		var out map[string]any
		err = json.NewDecoder(resp.Body).Decode(&out)
		conn.Close()
		if resp.StatusCode != http.StatusNotFound || err != nil || errType(out) != "not_found" {
			t.Errorf("%s: %d %v %v", path, resp.StatusCode, out, err)
		}
	}
}

// An encode result is checked against its job before the credential is
// issued: a card that is not valid, has no UID or holds another record is
// an error, and a finish time outside the job's life is not the issue time.
func TestEncodeResultValidated(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{})
	b, encID := connect(t, env)
	other := uint32(99)
	bad := map[string]func(c *protocol.Card){
		"bad_mac":            func(c *protocol.Card) { c.Valid, c.Reason = false, "bad_mac" },
		"empty uid":          func(c *protocol.Card) { c.UID = "" },
		"no record":          func(c *protocol.Card) { c.Credential = nil },
		"another credential": func(c *protocol.Card) { cc := *c.Credential; cc.CredentialID = uuid.NewString(); c.Credential = &cc },
		"another sequence":   func(c *protocol.Card) { cc := *c.Credential; cc.IssueSequence = &other; c.Credential = &cc },
	}
	for name, spoil := range bad {
		credID := env.CreateCredential(nil)["acs_credential_id"].(string)
		att := encode(t, env, encID, credID)
		j := b.Expect(protocol.TypeJob).Job
		card := cloudtest.EncodedCard(j)
		spoil(card)
		b.Result(cloudtest.Success(j, card, env.Clock.Now()))
		a := getAttempt(t, env, att["action_attempt_id"])
		if a["status"] != "error" || obj(a["error"])["type"] != "uncategorized_error" {
			t.Errorf("%s: attempt %v", name, a)
		}
		if c := obj(env.MustCall("/acs/credentials/get", map[string]any{"acs_credential_id": credID})["acs_credential"]); c["is_issued"] != false {
			t.Errorf("%s: credential issued: %v", name, c)
		}
	}
	for name, at := range map[string]time.Time{
		"1000 h before":  env.Clock.Now().Add(-1000 * time.Hour),
		"before the job": env.Clock.Now().Add(-time.Second),
		"in the future":  env.Clock.Now().Add(time.Hour),
	} {
		credID := env.CreateCredential(nil)["acs_credential_id"].(string)
		att := encode(t, env, encID, credID)
		j := b.Expect(protocol.TypeJob).Job
		env.Clock.Advance(2 * time.Second)
		b.Result(cloudtest.Success(j, nil, at))
		a := getAttempt(t, env, att["action_attempt_id"])
		if a["status"] != "success" || obj(a["result"])["issued_at"] != seam.Time(env.Clock.Now()) {
			t.Errorf("finished %s: attempt %v, want issued at %s", name, a, seam.Time(env.Clock.Now()))
		}
	}
}

// A binary frame is refused like a malformed message, even when it holds a
// valid message: the result in it does not finish the job.
func TestBinaryFrameRefused(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{})
	b, encID := connect(t, env)
	att := scan(t, env, encID)
	j := b.Expect(protocol.TypeJob).Job
	m := protocol.New(protocol.TypeResult)
	r := cloudtest.Success(j, &protocol.Card{UID: "04AABBCCDDEEFF", Technology: "ntag213", Reason: "blank"}, env.Clock.Now())
	m.Result = &r
	data, err := protocol.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Conn.WriteMessage(websocket.BinaryMessage, data); err != nil {
		t.Fatal(err)
	}
	if e := b.Expect(protocol.TypeError).Error; e.Code != protocol.CodeMalformed {
		t.Errorf("binary frame answered with %+v", e)
	}
	b.Sync()
	if a := getAttempt(t, env, att["action_attempt_id"]); a["status"] != "pending" {
		t.Errorf("a binary frame finished the attempt: %v", a)
	}
}

// Pongs sent before the hello do not extend its deadline.
func TestHelloDeadlineAbsolute(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{Config: func(c *cloud.Config) {
		c.HelloWait = 200 * time.Millisecond
		c.PongWait = time.Hour
	}})
	b, _, err := env.Dial(env.BridgeID, env.BridgeToken)
	if err != nil {
		t.Fatal(err)
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	give := time.After(cloudtest.Wait)
	for {
		select {
		case <-b.Closed:
			return
		case <-tick.C:
			_ = b.Conn.WriteControl(websocket.PongMessage, nil, time.Now().Add(time.Second))
		case <-give:
			t.Fatalf("link without a hello still open after %s of unsolicited pongs", cloudtest.Wait)
		}
	}
}

// One token holds a bounded number of links; the next is refused with 429
// until one closes.
func TestLinksPerToken(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{})
	var open []*cloudtest.Bridge
	for range hub.DefaultMaxLinks {
		b, _, err := env.Dial(env.BridgeID, env.BridgeToken)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, b)
	}
	_, resp, err := env.Dial(env.BridgeID, env.BridgeToken)
	if err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("link %d: %v %v", hub.DefaultMaxLinks+1, err, resp)
	}
	// Another bridge is not affected.
	otherID, otherToken, err := env.Server.CreateBridgeToken(t.Context(), env.Workspace.ID, "Back office")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := env.Dial(otherID, otherToken); err != nil {
		t.Fatalf("another bridge: %v", err)
	}
	// Once the cloud has seen a link close, there is room again.
	open[0].Conn.Close()
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	give := time.After(cloudtest.Wait)
	for {
		b, resp, err := env.Dial(env.BridgeID, env.BridgeToken)
		if err == nil {
			b.Hello(nil, nil)
			return
		}
		if resp == nil || resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("after a link closed: %v %v", err, resp)
		}
		select {
		case <-poll.C:
		case <-give:
			t.Fatalf("still refused %s after a link closed", cloudtest.Wait)
		}
	}
}

// A bridge registers a bounded number of encoders: a hello listing more
// registers the first ones, and encoder_added beyond the bound is refused.
func TestEncodersPerBridge(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{})
	b, _, err := env.Dial(env.BridgeID, env.BridgeToken)
	if err != nil {
		t.Fatal(err)
	}
	encoders := make([]protocol.Encoder, hub.DefaultMaxEncoders+10)
	for i := range encoders {
		encoders[i] = cloudtest.Encoder(protocol.EncoderID(fmt.Sprintf("e%03d", i)))
	}
	b.Hello(encoders, nil)
	if e := b.Expect(protocol.TypeError).Error; e.Code != protocol.CodeMalformed || !strings.Contains(e.Message, "at most") {
		t.Errorf("hello with %d encoders: %+v", len(encoders), e)
	}
	count := func() int { // encoders not marked removed
		n := 0
		for _, e := range arr(env.MustCall("/acs/encoders/list", map[string]any{"limit": 1000})["acs_encoders"]) {
			if len(arr(obj(e)["errors"])) == 0 {
				n++
			}
		}
		return n
	}
	if n := count(); n != hub.DefaultMaxEncoders {
		t.Fatalf("%d encoders registered, want %d", n, hub.DefaultMaxEncoders)
	}
	added := protocol.New(protocol.TypeEncoderAdded)
	e := cloudtest.Encoder("one-too-many")
	added.Encoder = &e
	b.Send(added)
	if e := b.Expect(protocol.TypeError).Error; e.Code != protocol.CodeMalformed {
		t.Errorf("encoder_added beyond the limit: %+v", e)
	}
	// Re-adding a registered one is an update, and after a removal there
	// is room again.
	e = encoders[0]
	added.Encoder = &e
	b.Send(added)
	b.Send(&protocol.Message{V: 1, Type: protocol.TypeEncoderRemoved, EncoderID: encoders[1].ID})
	e2 := cloudtest.Encoder("replacement")
	b.Send(&protocol.Message{V: 1, Type: protocol.TypeEncoderAdded, Encoder: &e2})
	b.Sync()
	if n := count(); n != hub.DefaultMaxEncoders {
		t.Fatalf("%d encoders registered, want %d", n, hub.DefaultMaxEncoders)
	}
}

// A token revoked by another process (bridge-token revoke on the same
// database) closes the bridge's live links at the next check of a running
// server, those that have not said hello included.
func TestRevokedElsewhereIsCut(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{})
	b, encID := connect(t, env)
	pre, _, err := env.Dial(env.BridgeID, env.BridgeToken) // no hello yet
	if err != nil {
		t.Fatal(err)
	}
	go env.Server.Run(t.Context())
	waitWaiters(t, env, 3) // the sweeper, the revocation check and the webhook deliverer

	admin, err := cloud.New(cloud.Config{DB: env.DB})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := admin.RevokeBridgeToken(t.Context(), env.BridgeID); err != nil {
		t.Fatal(err)
	}
	scan(t, env, encID) // still online until the check
	b.Expect(protocol.TypeJob)
	env.Clock.Advance(cloud.RevocationCheckInterval)
	b.WaitClosed()
	pre.WaitClosed()
	if _, resp, err := env.Dial(env.BridgeID, env.BridgeToken); err == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("revoked token: %v", err)
	}
}

// waitWaiters waits until n goroutines wait on the fake clock.
func waitWaiters(t *testing.T, env *cloudtest.Env, n int) {
	t.Helper()
	poll := time.NewTicker(time.Millisecond)
	defer poll.Stop()
	give := time.After(cloudtest.Wait)
	for env.Clock.Waiters() < n {
		select {
		case <-poll.C:
		case <-give:
			t.Fatalf("%d goroutines wait on the clock, want %d", env.Clock.Waiters(), n)
		}
	}
}

// Removed encoders stay on record, so adding and removing new ones cannot
// grow the table without end: a bridge registers a bounded number of
// encoders in its life, and those on record can always come back.
func TestEncoderRecordsBounded(t *testing.T) {
	const max = 8
	env := cloudtest.New(t, cloudtest.Options{Config: func(c *cloud.Config) { c.MaxEncoderRecords = max }})
	b, _, err := env.Dial(env.BridgeID, env.BridgeToken)
	if err != nil {
		t.Fatal(err)
	}
	b.Hello([]protocol.Encoder{cloudtest.Encoder("e0"), cloudtest.Encoder("e1")}, nil)
	for i := 2; i < max+3; i++ {
		e := cloudtest.Encoder(protocol.EncoderID(fmt.Sprintf("e%d", i)))
		b.Send(&protocol.Message{V: 1, Type: protocol.TypeEncoderAdded, Encoder: &e})
		b.Send(&protocol.Message{V: 1, Type: protocol.TypeEncoderRemoved, EncoderID: e.ID})
		if i >= max {
			if m := b.Expect(protocol.TypeError).Error; m.Code != protocol.CodeMalformed || !strings.Contains(m.Message, "most") {
				t.Fatalf("encoder %d: %+v", i, m)
			}
			// Not registered, so its removal is refused too.
			if m := b.Expect(protocol.TypeError).Error; m.Code != protocol.CodeUnknownEncoder {
				t.Fatalf("removal of encoder %d: %+v", i, m)
			}
		}
	}
	b.Sync()
	rows := len(arr(env.MustCall("/acs/encoders/list", map[string]any{"limit": 1000})["acs_encoders"]))
	if rows != max {
		t.Fatalf("%d encoders on record, want %d", rows, max)
	}
	// One on record comes back, in a hello and by encoder_added; a new one
	// in a hello is refused after the welcome.
	b.Conn.Close()
	waitOffline(t, env)
	b, _, err = env.Dial(env.BridgeID, env.BridgeToken)
	if err != nil {
		t.Fatal(err)
	}
	b.Hello([]protocol.Encoder{cloudtest.Encoder("e3"), cloudtest.Encoder("new")}, nil)
	if m := b.Expect(protocol.TypeError).Error; m.Code != protocol.CodeMalformed {
		t.Fatalf("new encoder in a hello: %+v", m)
	}
	e := cloudtest.Encoder("e5")
	b.Send(&protocol.Message{V: 1, Type: protocol.TypeEncoderAdded, Encoder: &e})
	b.Sync()
	online := 0
	for _, e := range arr(env.MustCall("/acs/encoders/list", map[string]any{"limit": 1000})["acs_encoders"]) {
		if len(arr(obj(e)["errors"])) == 0 {
			online++
		}
	}
	if online != 2 {
		t.Errorf("%d encoders online, want e3 and e5", online)
	}
}
