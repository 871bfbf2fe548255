package cloud_test

import (
	"database/sql"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/encoder-bridge/encoder-bridge/cloud"
	"github.com/encoder-bridge/encoder-bridge/cloud/cloudtest"
	"github.com/encoder-bridge/encoder-bridge/cloud/store"
	"github.com/encoder-bridge/encoder-bridge/protocol"
)

// observed starts a cloud whose logs at level and above the test reads.
func observed(t *testing.T, level zapcore.Level) (*cloudtest.Env, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(level)
	env := cloudtest.New(t, cloudtest.Options{Config: func(c *cloud.Config) { c.Logger = zap.New(core) }})
	return env, logs
}

// damage runs a statement on the cloud's database behind its back, as a
// disk error or a bad manual edit would.
func damage(t *testing.T, env *cloudtest.Env, stmt string, args ...any) {
	t.Helper()
	db, err := sql.Open("sqlite", env.DB)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	res, err := db.ExecContext(t.Context(), stmt, args...)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("%s changed %d rows", stmt, n)
	}
}

// loggedWith reports whether an error line mentions s in a field.
func loggedWith(logs *observer.ObservedLogs, msg, s string) bool {
	for _, e := range logs.FilterMessage(msg).All() {
		for _, f := range e.Context {
			if strings.Contains(f.String, s) {
				return true
			}
			if err, ok := f.Interface.(error); ok && strings.Contains(err.Error(), s) {
				return true
			}
		}
	}
	return false
}

// A credential whose entrances do not decode is never encoded as a card
// without entrances: the request fails and the cause is logged.
func TestDamagedCredentialNotEncoded(t *testing.T) {
	env, logs := observed(t, zapcore.ErrorLevel)
	b, encID := connect(t, env)
	credID := env.CreateCredential(nil)["acs_credential_id"].(string)
	damage(t, env, `UPDATE credentials SET entrance_ids = '["room-10' WHERE id = ?`, credID)

	status, out := env.Call(http.MethodPost, "/acs/encoders/encode_credential", map[string]any{"acs_encoder_id": encID, "acs_credential_id": credID})
	if status != http.StatusInternalServerError || obj(out["error"])["type"] != "internal_server_error" {
		t.Fatalf("encode of a damaged credential: %d %v", status, out)
	}
	b.ExpectNone(50 * time.Millisecond)
	if !loggedWith(logs, "api request failed", credID) {
		t.Errorf("no error line names the damaged credential: %v", logs.All())
	}
}

// An unacknowledged job whose stored payload does not decode is reported
// by the sweep and logged; the other jobs are still offered again.
func TestDamagedJobReportedOnReoffer(t *testing.T) {
	env, logs := observed(t, zapcore.ErrorLevel)
	b, encID := connect(t, env)
	scan(t, env, encID)
	bad := b.Expect(protocol.TypeJob).Job
	scan(t, env, encID)
	good := b.Expect(protocol.TypeJob).Job
	damage(t, env, `UPDATE jobs SET payload = '{"job_id":' WHERE id = ?`, bad.JobID)

	env.Clock.Advance(11 * time.Second)
	_, err := env.Server.Sweep(t.Context())
	if !errors.Is(err, store.ErrDamaged) || !strings.Contains(err.Error(), bad.JobID) {
		t.Fatalf("sweep = %v, want ErrDamaged naming job %s", err, bad.JobID)
	}
	if again := b.Expect(protocol.TypeJob).Job; again.JobID != good.JobID {
		t.Fatalf("offered %s again, want %s", again.JobID, good.JobID)
	}
	if !loggedWith(logs, "unacknowledged job not offered again", bad.JobID) {
		t.Errorf("no error line names the damaged job: %v", logs.All())
	}
}
