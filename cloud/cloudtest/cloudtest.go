// Package cloudtest starts a real cloud on loopback for tests (real
// SQLite in a temporary directory, or a real PostgreSQL database under
// Backends; real HTTP and websockets through httptest) and drives it like a client and like a bridge: Env calls the
// Seam-style API, Bridge is a fake bridge speaking the protocol over a
// gorilla websocket. Time is a fake clock the test moves.
//
// Other packages' tests may use it; production code must not import it.
package cloudtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/encoder-bridge/encoder-bridge/cloud"
	"github.com/encoder-bridge/encoder-bridge/cloud/clock"
	"github.com/encoder-bridge/encoder-bridge/internal/pgtest"
	"github.com/encoder-bridge/encoder-bridge/protocol"
)

// Start is the fake clock's default start.
var Start = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// Options configure New. The zero value works.
type Options struct {
	// DB is the database (cloud.Config.DB); default a new SQLite file in
	// t.TempDir(), or a new PostgreSQL database in the postgres half of
	// Backends.
	DB string
	// Clock; default a fake clock at Start.
	Clock *clock.Fake
	// JobTimeout; default 60s.
	JobTimeout time.Duration
	// NotSandbox makes the workspace a production one (no simulations).
	NotSandbox bool
	// SettleWait is how long the API holds encode and scan answers for
	// their attempt to finish; by default it does not hold them, so a
	// test drives the fake bridge after the first answer.
	SettleWait time.Duration
	// Config, if set, may change the server's configuration.
	Config func(*cloud.Config)
}

// Env is a cloud under test with one workspace, its API key and one
// registered bridge.
type Env struct {
	T      testing.TB
	Server *cloud.Server
	HTTP   *httptest.Server
	Clock  *clock.Fake
	DB     string
	opt    Options

	Workspace   cloud.Workspace
	APIKey      string
	BridgeID    string
	BridgeToken string
}

// New starts a cloud and registers a workspace, an API key and a bridge.
// Everything is closed when the test ends.
func New(t testing.TB, opt Options) *Env {
	t.Helper()
	if opt.DB == "" {
		opt.DB = NewDB(t)
	}
	if opt.Clock == nil {
		opt.Clock = clock.NewFake(Start)
	}
	e := &Env{T: t, Clock: opt.Clock, DB: opt.DB, opt: opt}
	e.start()
	ctx := context.Background()
	var err error
	if e.Workspace, err = e.Server.CreateWorkspace(ctx, "Test hotel", cloud.WorkspaceOptions{Sandbox: !opt.NotSandbox}); err != nil {
		t.Fatal(err)
	}
	if e.APIKey, err = e.Server.CreateAPIKey(ctx, e.Workspace.ID); err != nil {
		t.Fatal(err)
	}
	if e.BridgeID, e.BridgeToken, err = e.Server.CreateBridgeToken(ctx, e.Workspace.ID, "Front desk"); err != nil {
		t.Fatal(err)
	}
	return e
}

// postgresTests are the names of the running postgres halves of Backends.
var postgresTests sync.Map

// Backends runs fn twice, as the subtests "sqlite" and "postgres": in the
// second, New and NewDB give a fresh PostgreSQL database (package
// internal/pgtest, whose Main the test binary's TestMain must run), so a
// cloud test suite runs on both stores unchanged. Without PostgreSQL the
// postgres half is skipped, or fails when CI is set.
func Backends(t *testing.T, fn func(t *testing.T)) {
	t.Run("sqlite", fn)
	t.Run("postgres", func(t *testing.T) {
		pgtest.Shared(t)
		postgresTests.Store(t.Name(), true)
		t.Cleanup(func() { postgresTests.Delete(t.Name()) })
		fn(t)
	})
}

// OnPostgres reports whether t is (within) the postgres half of Backends.
func OnPostgres(t testing.TB) bool {
	name := t.Name()
	for {
		if _, ok := postgresTests.Load(name); ok {
			return true
		}
		i := strings.LastIndex(name, "/")
		if i < 0 {
			return false
		}
		name = name[:i]
	}
}

// NewDB returns a new, empty database for t's backend: a SQLite file in
// t.TempDir(), or a PostgreSQL database under Backends.
func NewDB(t testing.TB) string {
	t.Helper()
	if OnPostgres(t) {
		return pgtest.DSN(t)
	}
	return filepath.Join(t.TempDir(), "cloud.db")
}

func (e *Env) start() {
	cfg := cloud.Config{DB: e.DB, Clock: e.Clock, JobTimeout: e.opt.JobTimeout, SettleWait: e.opt.SettleWait}
	if cfg.SettleWait == 0 {
		cfg.SettleWait = -1
	}
	if e.opt.Config != nil {
		e.opt.Config(&cfg)
	}
	srv, err := cloud.New(cfg)
	if err != nil {
		e.T.Fatal(err)
	}
	e.Server = srv
	e.HTTP = httptest.NewServer(srv.Handler())
	s, h := srv, e.HTTP
	e.T.Cleanup(func() {
		h.CloseClientConnections()
		s.Close()
		h.Close()
	})
}

// Restart stops the server as a crash would (links dropped, nothing
// flushed beyond what was committed) and starts a new one on the same
// database, at a new URL.
func (e *Env) Restart() {
	e.HTTP.CloseClientConnections()
	e.Server.Close()
	e.HTTP.Close()
	e.start()
}

// Instance starts another cloud instance on the same database, with the
// same clock, workspace, API key and bridge: several instances serving one
// set of bridges. It is closed when the test ends.
func (e *Env) Instance() *Env {
	e.T.Helper()
	o := *e
	o.start()
	return &o
}

// Stop stops this instance as a crash would: links dropped, its listener
// closed, nothing flushed beyond what was committed.
func (e *Env) Stop() {
	e.HTTP.CloseClientConnections()
	e.Server.Close()
	e.HTTP.Close()
}

// URL is the API's base URL.
func (e *Env) URL() string { return e.HTTP.URL }

// Call calls the API with the environment's key. body is marshalled as
// JSON for POST and PUT; for GET and DELETE a string goes in the query
// string. It returns the status and the decoded
// JSON body.
func (e *Env) Call(method, path string, body any) (int, map[string]any) {
	e.T.Helper()
	return e.CallWith(e.APIKey, method, path, body)
}

// CallWith calls the API with key ("" sends no Authorization header).
func (e *Env) CallWith(key, method, path string, body any) (int, map[string]any) {
	e.T.Helper()
	status, raw := e.RawCall(key, method, path, body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		e.T.Fatalf("%s %s: status %d, body not JSON: %q", method, path, status, raw)
	}
	return status, out
}

// RawCall calls the API and returns the status and the body bytes.
func (e *Env) RawCall(key, method, path string, body any) (int, []byte) {
	e.T.Helper()
	u := e.HTTP.URL + path
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		if method == http.MethodGet || method == http.MethodDelete {
			u += "?" + b
		} else {
			rd = strings.NewReader(b)
		}
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.T.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		e.T.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := e.HTTP.Client().Do(req)
	if err != nil {
		e.T.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		e.T.Fatal(err)
	}
	return resp.StatusCode, raw
}

// MustCall calls the API, fails the test unless it answers 200, and
// returns the body.
func (e *Env) MustCall(path string, body any) map[string]any {
	e.T.Helper()
	status, out := e.Call(http.MethodPost, path, body)
	if status != http.StatusOK {
		e.T.Fatalf("POST %s: status %d: %v", path, status, out)
	}
	return out
}

// CreateCredential makes a card credential valid from the fake clock's now
// for two days, and returns it.
func (e *Env) CreateCredential(extra map[string]any) map[string]any {
	e.T.Helper()
	body := map[string]any{
		"access_method":            "card",
		"acs_user_id":              "6f1c2d8e-3a4b-4c5d-9e6f-708192a3b4c5",
		"starts_at":                e.Clock.Now().UTC().Format(time.RFC3339),
		"ends_at":                  e.Clock.Now().Add(48 * time.Hour).UTC().Format(time.RFC3339),
		"allowed_acs_entrance_ids": []string{"0b7e4f2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b"},
	}
	for k, v := range extra {
		body[k] = v
	}
	return e.MustCall("/acs/credentials/create", body)["acs_credential"].(map[string]any)
}

// WebsocketURL is the bridges' URL.
func (e *Env) WebsocketURL() string {
	return "ws" + strings.TrimPrefix(e.HTTP.URL, "http") + protocol.Path
}

// Bridge is a fake bridge: a websocket client whose received messages are
// decoded by a reader goroutine (which also answers the server's pings).
type Bridge struct {
	T    testing.TB
	ID   string
	Conn *websocket.Conn
	In   chan *protocol.Message
	// Closed is closed when the connection ends.
	Closed chan struct{}
	// CloseErr is the read error that ended it (valid after Closed).
	CloseErr error
}

// Dial connects a fake bridge with token; on a refused upgrade it
// returns the HTTP response.
func (e *Env) Dial(bridgeID, token string) (*Bridge, *http.Response, error) {
	return DialBridge(e.T, e.WebsocketURL(), bridgeID, token)
}

// DialBridge connects a fake bridge with token to the cloud at wsURL (one
// that runs elsewhere, such as in a process of its own); on a refused
// upgrade it returns the HTTP response. The link is closed when t ends.
func DialBridge(t testing.TB, wsURL, bridgeID, token string) (*Bridge, *http.Response, error) {
	h := http.Header{}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	conn, resp, err := websocket.DefaultDialer.Dial(wsURL, h)
	if err != nil {
		return nil, resp, err
	}
	b := &Bridge{T: t, ID: bridgeID, Conn: conn, In: make(chan *protocol.Message, 1024), Closed: make(chan struct{})}
	go b.read()
	t.Cleanup(func() { conn.Close() })
	return b, resp, nil
}

// Connect dials the environment's bridge and says hello with encoders;
// it returns the bridge after the welcome (later messages stay queued).
func (e *Env) Connect(encoders ...protocol.Encoder) *Bridge {
	e.T.Helper()
	b, _, err := e.Dial(e.BridgeID, e.BridgeToken)
	if err != nil {
		e.T.Fatalf("dial: %v", err)
	}
	b.Hello(encoders, nil)
	return b
}

func (b *Bridge) read() {
	defer close(b.Closed)
	for {
		_, data, err := b.Conn.ReadMessage()
		if err != nil {
			b.CloseErr = err
			return
		}
		m, err := protocol.Decode(data)
		if err != nil {
			b.CloseErr = fmt.Errorf("cloud sent an undecodable message %q: %w", data, err)
			return
		}
		b.In <- m
	}
}

// Send sends a message.
func (b *Bridge) Send(m *protocol.Message) {
	b.T.Helper()
	data, err := json.Marshal(m)
	if err != nil {
		b.T.Fatal(err)
	}
	b.SendRaw(data)
}

// SendRaw sends one text frame.
func (b *Bridge) SendRaw(data []byte) {
	b.T.Helper()
	if err := b.Conn.WriteMessage(websocket.TextMessage, data); err != nil {
		b.T.Fatalf("bridge send: %v", err)
	}
}

// Wait is how long Next waits.
var Wait = 5 * time.Second

// Next returns the next message, or fails the test after Wait.
func (b *Bridge) Next() *protocol.Message {
	b.T.Helper()
	select {
	case m := <-b.In:
		return m
	case <-b.Closed:
		select {
		case m := <-b.In:
			return m
		default:
		}
		b.T.Fatalf("bridge link closed while waiting for a message: %v", b.CloseErr)
	case <-time.After(Wait):
		b.T.Fatalf("no message from the cloud within %s", Wait)
	}
	return nil
}

// Expect returns the next message and fails the test unless it has type t.
func (b *Bridge) Expect(t protocol.Type) *protocol.Message {
	b.T.Helper()
	m := b.Next()
	if m.Type != t {
		b.T.Fatalf("got %s message %+v, want %s", m.Type, describe(m), t)
	}
	return m
}

// ExpectNone fails the test if a message arrives within d.
func (b *Bridge) ExpectNone(d time.Duration) {
	b.T.Helper()
	select {
	case m := <-b.In:
		b.T.Fatalf("unexpected %s message: %+v", m.Type, describe(m))
	case <-time.After(d):
	}
}

// WaitClosed waits until the cloud closes the link.
func (b *Bridge) WaitClosed() error {
	b.T.Helper()
	select {
	case <-b.Closed:
		return b.CloseErr
	case <-time.After(Wait):
		b.T.Fatalf("link still open after %s", Wait)
		return nil
	}
}

func describe(m *protocol.Message) string {
	j, _ := json.Marshal(m)
	return string(j)
}

// Hello sends a hello and expects the welcome.
func (b *Bridge) Hello(encoders []protocol.Encoder, results []protocol.Result) *protocol.Message {
	b.T.Helper()
	if encoders == nil {
		encoders = []protocol.Encoder{}
	}
	m := protocol.New(protocol.TypeHello)
	m.Hello = &protocol.Hello{BridgeID: b.ID, SoftwareVersion: "test", ProtocolVersion: protocol.Version, Encoders: encoders, Results: results}
	b.Send(m)
	return b.Expect(protocol.TypeWelcome)
}

// Sync waits until the cloud has handled every message sent before it: it
// sends an ack for a job that does not exist and waits for the refusal
// (a link's messages are handled in order). Nothing else may be due.
func (b *Bridge) Sync() {
	b.T.Helper()
	b.Ack("cloudtest-sync")
	m := b.Expect(protocol.TypeError)
	if m.Error.JobID != "cloudtest-sync" {
		b.T.Fatalf("sync: got %+v", m.Error)
	}
}

// Ack acknowledges a job.
func (b *Bridge) Ack(jobID string) {
	m := protocol.New(protocol.TypeAck)
	m.Ack = &protocol.Ack{JobID: jobID}
	b.Send(m)
}

// Result sends a result and expects its result_ack.
func (b *Bridge) Result(r protocol.Result) {
	b.T.Helper()
	m := protocol.New(protocol.TypeResult)
	m.Result = &r
	b.Send(m)
	ack := b.Expect(protocol.TypeResultAck)
	if ack.ResultAck.JobID != r.JobID {
		b.T.Fatalf("result_ack for %s, want %s", ack.ResultAck.JobID, r.JobID)
	}
}

// Encoder is a protocol encoder for tests.
func Encoder(id protocol.EncoderID) protocol.Encoder {
	return protocol.Encoder{ID: id, DisplayName: "Encoder " + string(id), ReaderName: "ACS ACR1252 " + string(id), Technologies: []string{"mifare_classic_1k", "ntag213"}}
}

// EncodedCard is the card a bridge reports after encoding job j.
func EncodedCard(j *protocol.Job) *protocol.Card {
	return &protocol.Card{UID: "04A1B2C3D4E5F6", Technology: "ntag213", KeyVersion: 1, Valid: true, Credential: j.Credential, FormatVersion: 1}
}

// Success is the successful result of job j (an encode writes j's
// credential; a scan reads card).
func Success(j *protocol.Job, card *protocol.Card, at time.Time) protocol.Result {
	if card == nil {
		card = EncodedCard(j)
	}
	return protocol.Result{JobID: j.JobID, FinishedAt: at, Card: card}
}

// Failure is a failed result of job j.
func Failure(j *protocol.Job, typ protocol.ErrorType) protocol.Result {
	return protocol.Result{JobID: j.JobID, Error: &protocol.JobError{Type: typ, Message: "test: " + string(typ)}}
}
