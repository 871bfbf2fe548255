package fleet_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/encoder-bridge/encoder-bridge/cloud/cloudtest"
	"github.com/encoder-bridge/encoder-bridge/cloud/cloudtest/fleet"
	"github.com/encoder-bridge/encoder-bridge/protocol"
)

func tokens(t *testing.T, env *cloudtest.Env, n int) []fleet.Token {
	t.Helper()
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("Fleet %d", i)
	}
	got, err := env.Server.CreateBridgeTokens(t.Context(), env.Workspace.ID, names)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]fleet.Token, n)
	for i, g := range got {
		out[i] = fleet.Token{BridgeID: g.BridgeID, Token: g.Token}
	}
	return out
}

// TestFleet connects simulated bridges to a real cloud, runs encode and
// scan jobs the fleet answers, and checks that the keep-alive pings are
// answered and that Close leaves nothing dropped.
func TestFleet(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{SettleWait: 10 * time.Second})
	toks := tokens(t, env, 6)
	var mu sync.Mutex
	var got []fleet.Job
	f, err := fleet.Start(t.Context(), fleet.Config{
		Tokens: toks, URLs: []string{env.URL()}, Encoders: 2, Answer: true,
		PingInterval: 50 * time.Millisecond, Dialers: 3,
		OnJob: func(j fleet.Job) { mu.Lock(); got = append(got, j); mu.Unlock() },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, tok := range toks {
		if !env.Server.Online(tok.BridgeID) {
			t.Fatalf("bridge %s not online", tok.BridgeID)
		}
	}
	list := env.MustCall("/acs/encoders/list", nil)["acs_encoders"].([]any)
	if len(list) != 2*len(toks) {
		t.Fatalf("%d encoders listed, want %d", len(list), 2*len(toks))
	}
	enc := list[0].(map[string]any)["acs_encoder_id"].(string)
	cred := env.CreateCredential(nil)["acs_credential_id"].(string)
	for i, tc := range []struct {
		path string
		body map[string]any
		kind protocol.JobKind
	}{
		{"/acs/encoders/encode_credential", map[string]any{"acs_encoder_id": enc, "acs_credential_id": cred}, protocol.JobEncode},
		{"/acs/encoders/encode_credential", map[string]any{"acs_encoder_id": enc, "acs_credential_id": cred}, protocol.JobEncode},
		{"/acs/encoders/scan_credential", map[string]any{"acs_encoder_id": enc}, protocol.JobScan},
	} {
		att := env.MustCall(tc.path, tc.body)["action_attempt"].(map[string]any)
		if att["status"] != "success" {
			t.Fatalf("%s: attempt %v, want success", tc.path, att)
		}
		mu.Lock()
		if len(got) != i+1 || got[i].ActionAttemptID != att["action_attempt_id"] || got[i].Kind != tc.kind || got[i].At.IsZero() {
			t.Fatalf("%s: jobs seen %+v", tc.path, got)
		}
		mu.Unlock()
	}
	// The pinger pings about one link in five per 100 ms tick here, so
	// every link has pinged within a few ticks. The cloud acknowledges a
	// result on the link after it settled the attempt, so the last ack
	// may still be on its way when the API answered.
	deadline := time.Now().Add(10 * time.Second)
	for st := f.Stats(); st.Pongs < int64(2*len(toks)) || st.ResultAcks < 3; st = f.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("pongs or result acks missing: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	st := f.Stats()
	if st.Links != len(toks) || st.Jobs != 3 || st.ResultAcks != 3 || st.Refusals != 0 || st.Dropped != 0 || st.Pings < st.Pongs {
		t.Fatalf("stats %+v", st)
	}
	f.Close()
	if st := f.Stats(); st.Links != 0 || st.Dropped != 0 {
		t.Fatalf("after Close: %+v", st)
	}
}

// TestFleetDropped counts links the cloud ends.
func TestFleetDropped(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{})
	toks := tokens(t, env, 2)
	f, err := fleet.Start(t.Context(), fleet.Config{Tokens: toks, URLs: []string{strings.Replace(env.URL(), "http://", "ws://", 1)}})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := env.Server.RevokeBridgeToken(t.Context(), toks[0].BridgeID); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for f.Stats().Dropped != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("revoked link not counted: %+v", f.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st := f.Stats(); st.Links != 1 || st.LastDrop == "" {
		t.Fatalf("stats %+v", st)
	}
}

func TestStartRefused(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{})
	good := tokens(t, env, 1)
	for _, tc := range []struct {
		name string
		cfg  fleet.Config
		want error
	}{
		{"no tokens", fleet.Config{URLs: []string{env.URL()}}, fleet.ErrConfig},
		{"no URL", fleet.Config{Tokens: good}, fleet.ErrConfig},
		{"bad scheme", fleet.Config{Tokens: good, URLs: []string{"ftp://127.0.0.1"}}, fleet.ErrConfig},
		{"revoked token", fleet.Config{Tokens: []fleet.Token{{BridgeID: good[0].BridgeID, Token: "ebt_aaaaaaaaaaaaaaaa_" + strings.Repeat("b", 52)}}, URLs: []string{env.URL()}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := fleet.Start(t.Context(), tc.cfg)
			if err == nil {
				f.Close()
				t.Fatal("started")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
		})
	}
}

func TestTokensFile(t *testing.T) {
	in := []fleet.Token{{BridgeID: "b1", Token: "t1"}, {BridgeID: "b2", Token: "t2"}}
	var buf bytes.Buffer
	if err := fleet.WriteTokens(&buf, in); err != nil {
		t.Fatal(err)
	}
	out, err := fleet.ReadTokens(&buf)
	if err != nil || len(out) != 2 || out[0] != in[0] || out[1] != in[1] {
		t.Fatalf("read back %v, %v", out, err)
	}
	for _, bad := range []string{
		"not json\n",
		`{"bridge_id":"b1"}` + "\n",
		`{"bridge_token":"t"}` + "\n",
	} {
		if _, err := fleet.ReadTokens(strings.NewReader(bad)); !errors.Is(err, fleet.ErrBadTokens) {
			t.Errorf("%q: error %v, want ErrBadTokens", bad, err)
		}
	}
}
