package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/encoder-bridge/encoder-bridge/cloud"
	"github.com/encoder-bridge/encoder-bridge/internal/pgtest"
	"github.com/encoder-bridge/encoder-bridge/internal/syncbuf"
	"github.com/encoder-bridge/encoder-bridge/protocol"
)

// TestMain lets the test binary run as encoder-cloud itself, so a test can
// start the command in a process of its own, with its own limits; and
// stops the PostgreSQL cluster of the tests that use one.
func TestMain(m *testing.M) {
	if os.Getenv("ENCODER_CLOUD_TEST_MAIN") == "1" {
		main()
		return
	}
	os.Exit(pgtest.Main(m))
}

// dbPassword is in every PostgreSQL URL the tests give the command (the
// test cluster lets the socket's users in without one): it must never
// show in its output.
const dbPassword = "n0t-in-any-l0g"

// backends runs fn on a new SQLite file and on a new PostgreSQL database
// whose URL holds dbPassword.
func backends(t *testing.T, fn func(t *testing.T, db string)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, filepath.Join(t.TempDir(), "c.db")) })
	t.Run("postgres", func(t *testing.T) { fn(t, pgDSN(t)) })
}

func pgDSN(t *testing.T) string {
	t.Helper()
	u, err := url.Parse(pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(u.User.Username(), dbPassword)
	return u.String()
}

func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb syncbuf.Buffer
	a := &app{stdout: &out, stderr: &errb}
	code := a.run(context.Background(), args)
	noSecret(t, strings.Join(args[:min(len(args), 2)], " "), out.String()+errb.String())
	return code, out.String(), errb.String()
}

// Without --db, the database is $ENCODER_CLOUD_DB; --db wins over it.
func TestDBFromEnvironment(t *testing.T) {
	dir := t.TempDir()
	fromEnv, fromFlag := filepath.Join(dir, "env.db"), filepath.Join(dir, "flag.db")
	runEnv := func(args ...string) (int, string) {
		var out, errb syncbuf.Buffer
		a := &app{stdout: &out, stderr: &errb, getenv: func(k string) string {
			if k == envDB {
				return fromEnv
			}
			return ""
		}}
		return a.run(context.Background(), args), out.String() + errb.String()
	}
	if code, out := runEnv("workspace", "create", "--name", "From env"); code != 0 {
		t.Fatalf("create: %d %s", code, out)
	}
	if code, out := runEnv("workspace", "create", "--name", "From flag", "--db", fromFlag); code != 0 {
		t.Fatalf("create --db: %d %s", code, out)
	}
	if code, out := runEnv("workspace", "list"); code != 0 || !strings.Contains(out, "From env") || strings.Contains(out, "From flag") {
		t.Errorf("list from env: %d %s", code, out)
	}
	if code, out, _ := run(t, "workspace", "list", "--db", fromFlag); code != 0 || !strings.Contains(out, "From flag") {
		t.Errorf("list --db: %d %s", code, out)
	}
}

func TestUsage(t *testing.T) {
	db := filepath.Join(t.TempDir(), "c.db")
	for _, args := range [][]string{
		{},
		{"frobnicate"},
		{"workspace"},
		{"workspace", "delete", "--db", db},
		{"workspace", "create", "--name", "x"},
		{"workspace", "create", "--db", db},
		{"api-key", "create", "--db", db},
		{"bridge-token", "create", "--db", db, "--workspace", "w"},
		{"serve", "--db", db, "--job-timeout", "-1s"},
		{"serve", "--db", db, "--settle-wait", "-1s"},
		{"serve", "--db", db, "extra"},
	} {
		if code, _, stderr := run(t, args...); code != 2 || stderr == "" {
			t.Errorf("%v: exit %d, stderr %q", args, code, stderr)
		}
	}
	if code, out, _ := run(t, "version"); code != 0 || !strings.HasPrefix(out, "encoder-cloud ") {
		t.Errorf("version: %d %q", code, out)
	}
}

func TestAdminCommands(t *testing.T) { backends(t, testAdminCommands) }

func testAdminCommands(t *testing.T, db string) {
	code, out, stderr := run(t, "workspace", "create", "--db", db, "--name", "Seaside", "--json")
	if code != 0 {
		t.Fatalf("workspace create: %d %s", code, stderr)
	}
	var ws struct{ WorkspaceID, APIKey string }
	if err := json.Unmarshal([]byte(strings.ReplaceAll(strings.ReplaceAll(out, "workspace_id", "WorkspaceID"), "api_key", "APIKey")), &ws); err != nil ||
		ws.WorkspaceID == "" || !strings.HasPrefix(ws.APIKey, "seam_key") {
		t.Fatalf("workspace create output %q", out)
	}
	code, out, _ = run(t, "workspace", "create", "--db", db, "--name", "Text")
	if code != 0 || !strings.Contains(out, "workspace_id: ") || !strings.Contains(out, "api_key: seam_key") {
		t.Fatalf("text output %q", out)
	}
	if code, out, _ = run(t, "workspace", "list", "--db", db); code != 0 || !strings.Contains(out, "Seaside") || !strings.Contains(out, "Text") {
		t.Fatalf("workspace list %q", out)
	}
	code, out, _ = run(t, "api-key", "create", "--db", db, "--workspace", ws.WorkspaceID)
	if code != 0 || !strings.HasPrefix(out, "api_key: seam_key") {
		t.Fatalf("api-key create: %d %q", code, out)
	}
	key := strings.TrimSpace(strings.TrimPrefix(out, "api_key: "))
	if code, _, stderr = run(t, "api-key", "create", "--db", db, "--workspace", "nope"); code != 1 || stderr == "" {
		t.Errorf("api key for an unknown workspace: %d %q", code, stderr)
	}
	code, out, _ = run(t, "bridge-token", "create", "--db", db, "--workspace", ws.WorkspaceID, "--name", "Front desk", "--json")
	var bt map[string]string
	if code != 0 || json.Unmarshal([]byte(out), &bt) != nil || bt["bridge_id"] == "" || !strings.HasPrefix(bt["bridge_token"], "ebt_") {
		t.Fatalf("bridge-token create: %d %q", code, out)
	}
	if code, _, _ = run(t, "bridge-token", "revoke", "--db", db, "--bridge", bt["bridge_id"]); code != 0 {
		t.Errorf("revoke: %d", code)
	}
	if code, _, _ = run(t, "bridge-token", "revoke", "--db", db, "--bridge", bt["bridge_id"]); code != 1 {
		t.Errorf("second revoke: %d", code)
	}
	if code, _, _ = run(t, "api-key", "revoke", "--db", db, "--key", key); code != 0 {
		t.Errorf("api-key revoke: %d", code)
	}

	srv, err := cloud.New(cloud.Config{DB: db})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	rec := func(key string) int {
		req := httptest.NewRequest(http.MethodPost, "/acs/encoders/list", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		w := httptest.NewRecorder()
		srv.Handler().ServeHTTP(w, req)
		return w.Code
	}
	if rec(ws.APIKey) != 200 || rec(key) != 401 {
		t.Errorf("keys made by the CLI: %d, revoked %d", rec(ws.APIKey), rec(key))
	}
}

func TestInit(t *testing.T) { backends(t, testInit) }

func testInit(t *testing.T, db string) {
	out := filepath.Join(t.TempDir(), "boot.json")
	code, stdout, stderr := run(t, "init", "--db", db, "--out", out, "--endpoint", "http://127.0.0.1:9999")
	if code != 0 {
		t.Fatalf("init: %d %s", code, stderr)
	}
	if strings.Contains(stdout, "seam_key") || strings.Contains(stdout, "ebt_") {
		t.Errorf("init printed a secret: %q", stdout)
	}
	b, err := cloud.ReadBootstrap(out)
	if err != nil {
		t.Fatal(err)
	}
	if b.WebsocketURL != "ws://127.0.0.1:9999"+protocol.Path || !b.Sandbox || !strings.HasPrefix(b.APIKey, "seam_key") {
		t.Errorf("bootstrap %+v", b)
	}
	if fi, _ := os.Stat(out); runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
		t.Errorf("bootstrap file mode %v", fi.Mode())
	}
	if code, _, _ := run(t, "init", "--db", db, "--out", out); code != 1 {
		t.Errorf("init over an existing file: %d", code)
	}
	if code, _, _ := run(t, "init", "--db", db, "--out", out, "--force"); code != 0 {
		t.Errorf("init --force: %d", code)
	}
}

// serve answers on loopback, writes the bootstrap file, accepts the
// bridge, keeps the file across restarts, never logs a secret, and
// returns cleanly when its context ends (as on SIGINT/SIGTERM).
func TestServe(t *testing.T) { backends(t, testServe) }

func testServe(t *testing.T, db string) {
	boot := filepath.Join(t.TempDir(), "boot.json")
	logs := &syncbuf.Buffer{}
	metricsAddr := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}()
	serve := func() (stop func() int, addr string) {
		ctx, cancel := context.WithCancel(context.Background())
		addrc := make(chan net.Addr, 1)
		a := &app{stdout: logs, stderr: logs, listening: func(a net.Addr) { addrc <- a }}
		done := make(chan int, 1)
		go func() {
			done <- a.run(ctx, []string{"serve", "--db", db, "--listen", "127.0.0.1:0", "--bootstrap", boot, "--job-timeout", "5s", "--metrics-listen", metricsAddr})
		}()
		select {
		case ad := <-addrc:
			return func() int { cancel(); return <-done }, ad.String()
		case code := <-done:
			t.Fatalf("serve exited %d: %s", code, logs.String())
		case <-time.After(10 * time.Second):
			t.Fatal("serve did not start")
		}
		return nil, ""
	}

	stop, addr := serve()
	b, err := cloud.ReadBootstrap(boot)
	if err != nil {
		t.Fatal(err)
	}
	if b.Endpoint != "http://"+addr {
		t.Errorf("endpoint %q, listening on %s", b.Endpoint, addr)
	}
	resp, err := http.Get(b.Endpoint + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", err, resp)
	}
	resp.Body.Close()
	conn, _, err := websocket.DefaultDialer.Dial(b.WebsocketURL, http.Header{"Authorization": {"Bearer " + b.BridgeToken}})
	if err != nil {
		t.Fatal(err)
	}
	hello := protocol.New(protocol.TypeHello)
	hello.Hello = &protocol.Hello{BridgeID: b.BridgeID, ProtocolVersion: protocol.Version, Encoders: []protocol.Encoder{{ID: "e1", ReaderName: "R"}}}
	data, _ := protocol.Encode(hello)
	conn.WriteMessage(websocket.TextMessage, data)
	_, data, err = conn.ReadMessage()
	if m, _ := protocol.Decode(data); err != nil || m == nil || m.Type != protocol.TypeWelcome {
		t.Fatalf("welcome: %q %v", data, err)
	}
	req, _ := http.NewRequest(http.MethodGet, b.Endpoint+"/acs/encoders/list", nil)
	req.Header.Set("Authorization", "Bearer "+b.APIKey)
	resp, err = http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("list: %v %v", err, resp)
	}
	var list struct {
		Encoders []map[string]any `json:"acs_encoders"`
	}
	json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if len(list.Encoders) != 1 {
		t.Errorf("encoders %v", list)
	}
	// Metrics on their own listener, not beside the API.
	if resp, err := http.Get("http://" + metricsAddr + "/metrics"); err != nil || resp.StatusCode != 200 {
		t.Errorf("metrics: %v %v", err, resp)
	} else {
		m, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(m), "encoder_cloud_bridges_connected 1") {
			t.Errorf("metrics:\n%s", m)
		}
	}
	if resp, err := http.Get(b.Endpoint + "/metrics"); err != nil || resp.StatusCode == 200 {
		t.Errorf("the API serves /metrics: %v %v", err, resp)
	} else {
		resp.Body.Close()
	}
	if code := stop(); code != 0 {
		t.Fatalf("serve exit %d: %s", code, logs.String())
	}
	// The bridge saw the server go.
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := conn.ReadMessage(); err == nil {
		t.Error("bridge link open after shutdown")
	}

	stop, _ = serve()
	b2, err := cloud.ReadBootstrap(boot)
	if err != nil || b2.APIKey != b.APIKey || b2.BridgeToken != b.BridgeToken {
		t.Errorf("bootstrap changed across restarts: %v", err)
	}
	if code := stop(); code != 0 {
		t.Fatalf("second serve exit %d", code)
	}
	for _, s := range []string{b.APIKey, b.BridgeToken, dbPassword} {
		if strings.Contains(logs.String(), s) {
			t.Errorf("a secret is in the logs")
		}
	}
	if !strings.Contains(logs.String(), `"database":"`+cloud.RedactDSN(db)+`"`) {
		t.Errorf("the database is not in the logs, as %s", cloud.RedactDSN(db))
	}
	if !strings.Contains(logs.String(), `"msg":"serving"`) {
		t.Errorf("logs: %s", logs.String())
	}
}
