//go:build unix

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/encoder-bridge/encoder-bridge/cloud"
	"github.com/encoder-bridge/encoder-bridge/cloud/cloudtest"
	"github.com/encoder-bridge/encoder-bridge/internal/pgtest"
	"github.com/encoder-bridge/encoder-bridge/internal/syncbuf"
	"github.com/encoder-bridge/encoder-bridge/protocol"
)

// command is encoder-cloud in a process of its own (the test binary, run
// as the command by TestMain).
func command(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "ENCODER_CLOUD_TEST_MAIN=1")
	return cmd
}

// The real command on PostgreSQL, end to end, each step a process of its
// own: init makes the workspace, serve migrates nothing more and serves
// it, a bridge connects over the websocket, and a card is encoded through
// the API. The database URL's password shows in no output.
func TestPostgresEndToEnd(t *testing.T) {
	dsn := pgDSN(t)
	boot := filepath.Join(t.TempDir(), "boot.json")
	out, err := command("init", "--db", dsn, "--out", boot).CombinedOutput()
	if err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	noSecret(t, "init", string(out))

	// The URL from the environment, as an operator keeps it out of the
	// process list.
	serve := command("serve", "--listen", "127.0.0.1:0", "--bootstrap", boot, "--metrics-listen", "off", "--settle-wait", "0")
	serve.Env = append(serve.Env, envDB+"="+dsn)
	stderr, err := serve.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	logs := &syncbuf.Buffer{}
	endpoint, exited := make(chan string, 1), make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs.Write(append(sc.Bytes(), '\n'))
			var line struct{ Msg, Endpoint string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "serving" {
				endpoint <- line.Endpoint
			}
		}
		exited <- serve.Wait()
	}()
	t.Cleanup(func() {
		if serve.ProcessState == nil {
			_ = serve.Process.Kill()
			<-exited
		}
	})
	select {
	case <-endpoint:
	case err := <-exited:
		t.Fatalf("serve exited: %v\n%s", err, logs.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("serve did not start:\n%s", logs.String())
	}
	b, err := cloud.ReadBootstrap(boot)
	if err != nil {
		t.Fatal(err)
	}

	bridge, _, err := cloudtest.DialBridge(t, b.WebsocketURL, b.BridgeID, b.BridgeToken)
	if err != nil {
		t.Fatal(err)
	}
	bridge.Hello([]protocol.Encoder{cloudtest.Encoder("e1")}, nil)
	api := func(path string, body map[string]any) map[string]any {
		t.Helper()
		if body == nil {
			body = map[string]any{}
		}
		raw, _ := json.Marshal(body)
		req, _ := http.NewRequest(http.MethodPost, b.Endpoint+path, bytes.NewReader(raw))
		req.Header.Set("Authorization", "Bearer "+b.APIKey)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("POST %s: %d %v %v", path, resp.StatusCode, out, err)
		}
		return out
	}
	encoders, _ := api("/acs/encoders/list", nil)["acs_encoders"].([]any)
	if len(encoders) != 1 {
		t.Fatalf("encoders %v", encoders)
	}
	encID := encoders[0].(map[string]any)["acs_encoder_id"]
	now := time.Now().UTC()
	cred := api("/acs/credentials/create", map[string]any{
		"access_method": "card", "acs_user_id": "6f1c2d8e-3a4b-4c5d-9e6f-708192a3b4c5",
		"starts_at": now.Format(time.RFC3339), "ends_at": now.Add(48 * time.Hour).Format(time.RFC3339),
		"allowed_acs_entrance_ids": []string{"0b7e4f2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b"},
	})["acs_credential"].(map[string]any)
	att := api("/acs/encoders/encode_credential", map[string]any{"acs_encoder_id": encID, "acs_credential_id": cred["acs_credential_id"]})["action_attempt"].(map[string]any)

	j := bridge.Expect(protocol.TypeJob).Job
	if j.ActionAttemptID != att["action_attempt_id"] || j.Credential == nil || j.Credential.CardNumber != cred["card_number"] {
		t.Fatalf("job %+v for attempt %v", j, att)
	}
	bridge.Ack(j.JobID)
	bridge.Result(cloudtest.Success(j, nil, time.Now()))
	got := api("/action_attempts/get", map[string]any{"action_attempt_id": att["action_attempt_id"]})["action_attempt"].(map[string]any)
	res, _ := got["result"].(map[string]any)
	if got["status"] != "success" || res["acs_credential_id"] != cred["acs_credential_id"] || res["is_issued"] != true {
		t.Fatalf("attempt %v", got)
	}

	if err := serve.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("serve after SIGTERM: %v\n%s", err, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not stop on SIGTERM:\n%s", logs.String())
	}
	noSecret(t, "serve", logs.String())
	for _, s := range []string{b.APIKey, b.BridgeToken} {
		if strings.Contains(logs.String(), s) {
			t.Error("a key or token is in serve's logs")
		}
	}

	// The admin commands, from other processes, see what serve wrote.
	out, err = command("workspace", "list", "--db", dsn).CombinedOutput()
	if err != nil || !strings.Contains(string(out), b.WorkspaceID) {
		t.Errorf("workspace list: %v\n%s", err, out)
	}
	noSecret(t, "workspace list", string(out))
}

// A database that cannot be opened is named in the error, its password
// is not.
func TestPostgresErrorHidesPassword(t *testing.T) {
	c := pgtest.Shared(t)
	u, err := url.Parse(c.URL("no_such_db", pgtest.Superuser, dbPassword))
	if err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := run(t, "workspace", "list", "--db", u.String())
	if code != 1 || !strings.Contains(stderr, "no_such_db") || !strings.Contains(stderr, "xxxxx") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
	noSecret(t, "workspace list", stdout+stderr)
}

func noSecret(t *testing.T, what, out string) {
	t.Helper()
	if strings.Contains(out, dbPassword) {
		t.Errorf("%s shows the database password:\n%s", what, out)
	}
}
