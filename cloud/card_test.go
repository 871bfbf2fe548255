package cloud_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/encoder-bridge/encoder-bridge/cloud/cloudtest"
	"github.com/encoder-bridge/encoder-bridge/cloud/seam"
	"github.com/encoder-bridge/encoder-bridge/protocol"
)

// encodeCard runs an encode job to success and returns the job.
func encodeCard(t *testing.T, env *cloudtest.Env, b *cloudtest.Bridge, encID, credID string) *protocol.Job {
	t.Helper()
	att := encode(t, env, encID, credID)
	j := b.Expect(protocol.TypeJob).Job
	b.Result(cloudtest.Success(j, nil, env.Clock.Now()))
	if a := getAttempt(t, env, att["action_attempt_id"]); a["status"] != "success" {
		t.Fatalf("encode %v", a)
	}
	return j
}

// scanCard runs a scan job that reads card and returns the result.
func scanCard(t *testing.T, env *cloudtest.Env, b *cloudtest.Bridge, encID string, card *protocol.Card) map[string]any {
	t.Helper()
	att := scan(t, env, encID)
	j := b.Expect(protocol.TypeJob).Job
	if j.Kind != protocol.JobScan || j.Credential != nil {
		t.Fatalf("scan job %+v", j)
	}
	b.Result(cloudtest.Success(j, card, env.Clock.Now()))
	a := getAttempt(t, env, att["action_attempt_id"])
	if a["status"] != "success" {
		t.Fatalf("scan %v", a)
	}
	return obj(a["result"])
}

func warningCodes(res map[string]any) []string {
	var out []string
	for _, w := range arr(res["warnings"]) {
		out = append(out, obj(w)["warning_code"].(string))
	}
	return out
}

// Re-encoding an issued credential makes a replacement card with a higher
// issue sequence; the old card then scans as out of sync.
func TestReissue(t *testing.T) { cloudtest.Backends(t, testReissue) }

func testReissue(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{})
	b, encID := connect(t, env)
	other := env.CreateCredential(nil) // uses a sequence, so sequences are not just per credential
	_ = other
	credID := env.CreateCredential(nil)["acs_credential_id"].(string)
	first := encodeCard(t, env, b, encID, credID)
	second := encodeCard(t, env, b, encID, credID)
	if *second.Credential.IssueSequence <= *first.Credential.IssueSequence {
		t.Fatalf("replacement card sequence %d, first %d", *second.Credential.IssueSequence, *first.Credential.IssueSequence)
	}
	cred := obj(env.MustCall("/acs/credentials/get", map[string]any{"acs_credential_id": credID})["acs_credential"])
	if seq := obj(cred["encoder_bridge_metadata"])["issue_sequence"]; seq != float64(*second.Credential.IssueSequence) {
		t.Errorf("credential sequence %v, want %d", seq, *second.Credential.IssueSequence)
	}
	res := scanCard(t, env, b, encID, cloudtest.EncodedCard(first))
	if codes := warningCodes(res); len(codes) != 1 || codes[0] != seam.WarnOutOfSync {
		t.Fatalf("old card warnings %v", res["warnings"])
	}
	if msg := obj(arr(res["warnings"])[0])["warning_message"].(string); !strings.Contains(msg, "older issue") {
		t.Errorf("warning message %q", msg)
	}
	res = scanCard(t, env, b, encID, cloudtest.EncodedCard(second))
	if codes := warningCodes(res); len(codes) != 0 {
		t.Errorf("current card warnings %v", res["warnings"])
	}
	// A failed attempt also moves later attempts to a new sequence.
	att := encode(t, env, encID, credID)
	j := b.Expect(protocol.TypeJob).Job
	b.Result(cloudtest.Failure(j, protocol.ErrorEncodingInterrupted))
	wantError(t, getAttempt(t, env, att["action_attempt_id"]), protocol.ErrorEncodingInterrupted)
	third := encodeCard(t, env, b, encID, credID)
	if *third.Credential.IssueSequence <= *j.Credential.IssueSequence {
		t.Errorf("retry after an interrupted encode reused sequence %d", *j.Credential.IssueSequence)
	}
}

// A credential whose validity ended cannot be reissued.
func TestReissueAfterEnd(t *testing.T) { cloudtest.Backends(t, testReissueAfterEnd) }

func testReissueAfterEnd(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{})
	b, encID := connect(t, env)
	credID := env.CreateCredential(nil)["acs_credential_id"].(string)
	encodeCard(t, env, b, encID, credID)
	never := env.CreateCredential(nil)["acs_credential_id"].(string)
	env.Clock.Advance(49 * time.Hour)
	b.Send(&protocol.Message{V: 1, Type: protocol.TypeProgress, Progress: &protocol.Progress{JobID: "x", Stage: protocol.StageWriting}})
	b.Expect(protocol.TypeError) // keeps the link busy; unrelated
	wantError(t, encode(t, env, encID, credID), protocol.ErrorCredentialCannotBeReissued)
	wantError(t, encode(t, env, encID, never), protocol.ErrorUncategorized)
	b.ExpectNone(50 * time.Millisecond)
}

func TestScanResults(t *testing.T) { cloudtest.Backends(t, testScanResults) }

func testScanResults(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{})
	b, encID := connect(t, env)
	cred := env.CreateCredential(nil)
	credID := cred["acs_credential_id"].(string)
	j := encodeCard(t, env, b, encID, credID)

	t.Run("in sync", func(t *testing.T) {
		res := scanCard(t, env, b, encID, cloudtest.EncodedCard(j))
		onEnc, onSeam := obj(res["acs_credential_on_encoder"]), obj(res["acs_credential_on_seam"])
		if onEnc["card_number"] != cred["card_number"] || onEnc["is_issued"] != true || onEnc["created_at"] != nil ||
			onEnc["ends_at"] != cred["ends_at"] || obj(onEnc["encoder_bridge_metadata"])["acs_credential_id"] != credID {
			t.Errorf("on encoder %v", onEnc)
		}
		if onSeam["acs_credential_id"] != credID || len(warningCodes(res)) != 0 {
			t.Errorf("result %v", res)
		}
		if md := obj(res["encoder_bridge_metadata"]); md["is_valid"] != true || md["reason"] != nil || md["card_uid"] != "04A1B2C3D4E5F6" {
			t.Errorf("metadata %v", md)
		}
	})

	t.Run("different validity", func(t *testing.T) {
		card := cloudtest.EncodedCard(j)
		c := *card.Credential
		c.EndsAt = env.Clock.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)
		card.Credential = &c
		res := scanCard(t, env, b, encID, card)
		if codes := warningCodes(res); len(codes) != 1 || codes[0] != seam.WarnOutOfSync {
			t.Fatalf("warnings %v", res["warnings"])
		}
		if msg := obj(arr(res["warnings"])[0])["warning_message"].(string); !strings.Contains(msg, "ends_at") {
			t.Errorf("message %q", msg)
		}
	})

	t.Run("unknown credential", func(t *testing.T) {
		card := cloudtest.EncodedCard(j)
		c := *card.Credential
		c.CredentialID = "99999999-9999-4999-8999-999999999999"
		card.Credential = &c
		res := scanCard(t, env, b, encID, card)
		if res["acs_credential_on_seam"] != nil || res["acs_credential_on_encoder"] == nil {
			t.Errorf("result %v", res)
		}
		if codes := warningCodes(res); len(codes) != 1 || codes[0] != seam.WarnOnSeamNotFound {
			t.Errorf("warnings %v", res["warnings"])
		}
	})

	t.Run("blank card", func(t *testing.T) {
		res := scanCard(t, env, b, encID, &protocol.Card{UID: "04AABBCCDDEEFF", Technology: "ntag213", Valid: false, Reason: "blank"})
		if res["acs_credential_on_encoder"] != nil || res["acs_credential_on_seam"] != nil || len(warningCodes(res)) != 0 {
			t.Errorf("result %v", res)
		}
		if md := obj(res["encoder_bridge_metadata"]); md["is_valid"] != false || md["reason"] != "blank" {
			t.Errorf("metadata %v", md)
		}
	})

	t.Run("forged card", func(t *testing.T) {
		res := scanCard(t, env, b, encID, &protocol.Card{UID: "04AABBCCDDEEFF", Technology: "mifare_classic_1k", Reason: "bad_mac"})
		if res["acs_credential_on_encoder"] != nil || obj(res["encoder_bridge_metadata"])["reason"] != "bad_mac" {
			t.Errorf("result %v", res)
		}
	})

	t.Run("another workspace's credential", func(t *testing.T) {
		other := cloudtest.New(t, cloudtest.Options{})
		ob, oenc := connect(t, other)
		ocred := other.CreateCredential(nil)["acs_credential_id"].(string)
		oj := encodeCard(t, other, ob, oenc, ocred)
		res := scanCard(t, env, b, encID, cloudtest.EncodedCard(oj))
		if res["acs_credential_on_seam"] != nil || warningCodes(res)[0] != seam.WarnOnSeamNotFound {
			t.Errorf("result %v", res)
		}
	})
}

func TestScanToAssign(t *testing.T) { cloudtest.Backends(t, testScanToAssign) }

func testScanToAssign(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{})
	b, encID := connect(t, env)
	credID := env.CreateCredential(nil)["acs_credential_id"].(string)
	j := encodeCard(t, env, b, encID, credID)
	identity := "22222222-3333-4444-8555-666666666666"
	att := attemptOf(t, env, env.MustCall("/acs/encoders/scan_to_assign_credential", map[string]any{"acs_encoder_id": encID, "user_identity_id": identity}))
	if att["action_type"] != "SCAN_TO_ASSIGN_CREDENTIAL" {
		t.Fatalf("attempt %v", att)
	}
	sj := b.Expect(protocol.TypeJob).Job
	b.Result(cloudtest.Success(sj, cloudtest.EncodedCard(j), env.Clock.Now()))
	res := obj(getAttempt(t, env, att["action_attempt_id"])["result"])
	if res["user_identity_id"] != identity || res["acs_credential_id"] != credID {
		t.Errorf("result %v", res)
	}
	// A blank card has nothing to assign.
	att = attemptOf(t, env, env.MustCall("/acs/encoders/scan_to_assign_credential", map[string]any{"acs_encoder_id": encID, "acs_user_id": identity}))
	sj = b.Expect(protocol.TypeJob).Job
	b.Result(cloudtest.Success(sj, &protocol.Card{UID: "04", Technology: "ntag213", Reason: "blank"}, env.Clock.Now()))
	wantError(t, getAttempt(t, env, att["action_attempt_id"]), protocol.ErrorNoCredentialOnEncoder)
	// Exactly one of the user fields.
	status, out := env.Call(http.MethodPost, "/acs/encoders/scan_to_assign_credential", map[string]any{"acs_encoder_id": encID})
	if status != 400 || obj(obj(out["error"])["validation_errors"])["acs_user_id"] == nil {
		t.Errorf("no user: %d %v", status, out)
	}
}

// Simulations decide the next job's outcome without a card or a bridge.
func TestSimulations(t *testing.T) { cloudtest.Backends(t, testSimulations) }

func testSimulations(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{})
	b, encID := connect(t, env)
	b.Conn.Close() // simulations need no bridge
	waitOffline(t, env)
	cred := env.CreateCredential(nil)
	credID := cred["acs_credential_id"].(string)
	sim := func(route string, body map[string]any) {
		t.Helper()
		body["acs_encoder_id"] = encID
		env.MustCall("/acs/encoders/simulate/"+route, body)
	}

	sim("next_credential_encode_will_fail", map[string]any{})
	wantError(t, encode(t, env, encID, credID), protocol.ErrorNoCredentialOnEncoder)
	wantError(t, encode(t, env, encID, credID), protocol.ErrorEncoderNotOnline) // only the next one

	sim("next_credential_encode_will_fail", map[string]any{"error_code": "encoding_interrupted"})
	wantError(t, encode(t, env, encID, credID), protocol.ErrorEncodingInterrupted)

	other := env.CreateCredential(nil)["acs_credential_id"].(string)
	sim("next_credential_encode_will_fail", map[string]any{"error_code": "action_attempt_expired", "acs_credential_id": other})
	wantError(t, encode(t, env, encID, credID), protocol.ErrorEncoderNotOnline) // not that credential
	wantError(t, encode(t, env, encID, other), protocol.ErrorActionAttemptExpired)

	sim("next_credential_encode_will_succeed", map[string]any{"scenario": "credential_is_issued"})
	a := encode(t, env, encID, credID)
	if a["status"] != "success" || obj(a["result"])["is_issued"] != true {
		t.Fatalf("simulated encode %v", a)
	}

	sim("next_credential_scan_will_fail", map[string]any{})
	wantError(t, scan(t, env, encID), protocol.ErrorNoCredentialOnEncoder)
	sim("next_credential_scan_will_fail", map[string]any{"error_code": "uncategorized_error", "acs_credential_id_on_seam": credID})
	wantError(t, scan(t, env, encID), protocol.ErrorUncategorized)

	for scenario, want := range map[string]struct {
		onEncoder, onSeam bool
		warning           string
	}{
		"credential_exists_on_seam":          {true, true, ""},
		"credential_on_encoder_needs_update": {true, true, seam.WarnOutOfSync},
		"credential_does_not_exist_on_seam":  {true, false, seam.WarnOnSeamNotFound},
		"credential_on_encoder_is_empty":     {false, false, ""},
	} {
		body := map[string]any{"scenario": scenario}
		if want.onSeam {
			body["acs_credential_id_on_seam"] = credID
		}
		sim("next_credential_scan_will_succeed", body)
		a := scan(t, env, encID)
		res := obj(a["result"])
		codes := warningCodes(res)
		if a["status"] != "success" || (res["acs_credential_on_encoder"] != nil) != want.onEncoder ||
			(res["acs_credential_on_seam"] != nil) != want.onSeam || (want.warning == "") != (len(codes) == 0) ||
			(want.warning != "" && codes[0] != want.warning) {
			t.Errorf("%s: %v", scenario, a)
		}
		if want.onSeam && obj(res["acs_credential_on_seam"])["acs_credential_id"] != credID {
			t.Errorf("%s: on seam %v", scenario, res["acs_credential_on_seam"])
		}
	}
	// Without a credential id, the workspace's latest credential is used.
	sim("next_credential_scan_will_succeed", map[string]any{})
	if res := obj(scan(t, env, encID)["result"]); res["acs_credential_on_seam"] == nil {
		t.Errorf("default scenario %v", res)
	}

	bad := []struct {
		route string
		body  map[string]any
	}{
		{"next_credential_encode_will_fail", map[string]any{"error_code": "bridge_disconnected"}},
		{"next_credential_encode_will_fail", map[string]any{"error_code": "no_credential_on_encoder", "acs_credential_id": credID}},
		{"next_credential_encode_will_succeed", map[string]any{"scenario": "credential_exists_on_seam"}},
		{"next_credential_scan_will_fail", map[string]any{"error_code": "encoding_interrupted"}},
		{"next_credential_scan_will_succeed", map[string]any{"scenario": "credential_on_encoder_is_empty", "acs_credential_id_on_seam": credID}},
		{"next_credential_scan_will_succeed", map[string]any{"bogus": true}},
	}
	for _, c := range bad {
		c.body["acs_encoder_id"] = encID
		if status, out := env.Call(http.MethodPost, "/acs/encoders/simulate/"+c.route, c.body); status != 400 {
			t.Errorf("%s %v: %d %v", c.route, c.body, status, out)
		}
	}
}

func TestSimulationsNeedSandbox(t *testing.T) { cloudtest.Backends(t, testSimulationsNeedSandbox) }

func testSimulationsNeedSandbox(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{NotSandbox: true})
	_, encID := connect(t, env)
	status, out := env.Call(http.MethodPost, "/acs/encoders/simulate/next_credential_encode_will_succeed", map[string]any{"acs_encoder_id": encID})
	if status != 400 || errType(out) != "workspace_not_sandbox" {
		t.Errorf("%d %v", status, out)
	}
}
