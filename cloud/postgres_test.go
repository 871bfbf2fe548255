package cloud_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/encoder-bridge/encoder-bridge/cloud"
	"github.com/encoder-bridge/encoder-bridge/cloud/cloudtest"
	"github.com/encoder-bridge/encoder-bridge/internal/pgtest"
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
