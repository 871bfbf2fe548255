package cloud_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/encoder-bridge/encoder-bridge/cloud"
	"github.com/encoder-bridge/encoder-bridge/cloud/cloudtest"
	"github.com/encoder-bridge/encoder-bridge/internal/pgtest"
	"github.com/encoder-bridge/encoder-bridge/protocol"
)

// Two servers on one PostgreSQL database answer the same workspace: the
// credentials clients create at once through both get distinct card
// numbers and issue sequences, and each server lists all of them.
func TestTwoServersOnePostgres(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{DB: pgtest.DSN(t)})
	other, err := cloud.New(cloud.Config{DB: env.DB, Clock: env.Clock, SettleWait: -1})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(other.Handler())
	t.Cleanup(func() {
		ts.Close()
		other.Close()
	})
	create := func(base string) (map[string]any, error) {
		now := env.Clock.Now().UTC()
		body, _ := json.Marshal(map[string]any{
			"access_method": "card", "acs_user_id": "6f1c2d8e-3a4b-4c5d-9e6f-708192a3b4c5",
			"starts_at": now.Format(time.RFC3339), "ends_at": now.Add(48 * time.Hour).Format(time.RFC3339),
		})
		req, _ := http.NewRequest(http.MethodPost, base+"/acs/credentials/create", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+env.APIKey)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		var out map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("status %d: %v %v", resp.StatusCode, out, err)
		}
		return obj(out["acs_credential"]), nil
	}
	const workers, each = 8, 10
	var mu sync.Mutex
	numbers, seqs := map[any]bool{}, map[any]bool{}
	var wg sync.WaitGroup
	for i := range workers {
		base := []string{env.URL(), ts.URL}[i%2]
		wg.Go(func() {
			for range each {
				c, err := create(base)
				if err != nil {
					t.Error(err)
					return
				}
				seq := obj(c["encoder_bridge_metadata"])["issue_sequence"]
				mu.Lock()
				if numbers[c["card_number"]] || seqs[seq] {
					t.Errorf("card number %v or issue sequence %v given twice", c["card_number"], seq)
				}
				numbers[c["card_number"]], seqs[seq] = true, true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(numbers) != workers*each {
		t.Fatalf("%d distinct card numbers, want %d", len(numbers), workers*each)
	}
	list := arr(env.MustCall("/acs/credentials/list", map[string]any{})["acs_credentials"])
	if len(list) != workers*each {
		t.Errorf("the first server lists %d credentials, want %d", len(list), workers*each)
	}
}

// Jobs past their deadline, swept by two servers at once while the
// bridge's results for them arrive: each action attempt finishes once,
// either with the bridge's result or expired, and no sweep or result
// fails (the job's row is locked before the attempt's everywhere, and a
// deadlock would be run again).
func TestTwoServersSweepOnce(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{DB: pgtest.DSN(t), JobTimeout: 30 * time.Second})
	other, err := cloud.New(cloud.Config{DB: env.DB, Clock: env.Clock, JobTimeout: 30 * time.Second, SettleWait: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	b, encID := connect(t, env)
	const jobs = 6
	var attempts []any
	var sent []*protocol.Job
	for range jobs {
		attempts = append(attempts, scan(t, env, encID)["action_attempt_id"])
		sent = append(sent, b.Expect(protocol.TypeJob).Job)
	}
	env.Clock.Advance(31 * time.Second)

	var swept atomic.Int64
	var wg sync.WaitGroup
	for _, srv := range []*cloud.Server{env.Server, other, env.Server, other} {
		wg.Go(func() {
			n, err := srv.Sweep(t.Context())
			if err != nil {
				t.Error(err)
			}
			swept.Add(int64(n))
		})
	}
	for _, j := range sent {
		m := protocol.New(protocol.TypeResult)
		r := cloudtest.Success(j, &protocol.Card{UID: "04A1B2C3D4E5F6", Valid: false}, env.Clock.Now())
		m.Result = &r
		b.Send(m)
	}
	wg.Wait()
	for range sent {
		b.Expect(protocol.TypeResultAck)
	}
	errored := 0
	for _, id := range attempts {
		switch a := getAttempt(t, env, id); a["status"] {
		case "error":
			errored++
		case "success":
		default:
			t.Errorf("attempt %v", a)
		}
	}
	t.Logf("swept %d, errored %d", swept.Load(), errored)
	if int(swept.Load()) != errored {
		t.Errorf("sweeps finished %d attempts, %d ended in error: an attempt was finished twice or by nobody", swept.Load(), errored)
	}
}
