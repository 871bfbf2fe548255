package cloud_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/encoder-bridge/encoder-bridge/cloud"
	"github.com/encoder-bridge/encoder-bridge/cloud/cloudtest"
	"github.com/encoder-bridge/encoder-bridge/protocol"
)

// schema checks a 200 response against Seam's OpenAPI description.
type schema struct {
	t  *testing.T
	oa *cloudtest.OpenAPI
}

func newSchema(t *testing.T) *schema {
	return &schema{t: t, oa: cloudtest.LoadOpenAPI(t)}
}

func (s *schema) response(path string, body map[string]any) {
	s.t.Helper()
	if errs := s.oa.CheckResponse(path, body); len(errs) > 0 {
		s.t.Errorf("%s response does not match Seam's schema:\n  %s\nbody: %v", path, strings.Join(errs, "\n  "), body)
	}
}

func (s *schema) resource(name string, v any) {
	s.t.Helper()
	if errs := s.oa.CheckSchema(name, v); len(errs) > 0 {
		s.t.Errorf("%s does not match Seam's schema:\n  %s\nvalue: %v", name, strings.Join(errs, "\n  "), v)
	}
}

func obj(v any) map[string]any { m, _ := v.(map[string]any); return m }
func arr(v any) []any          { a, _ := v.([]any); return a }

func errType(body map[string]any) string { return obj(body["error"])["type"].(string) }

// encoderID connects the env's bridge with one encoder and returns the
// bridge and the encoder's acs_encoder_id.
func connect(t testing.TB, env *cloudtest.Env) (*cloudtest.Bridge, string) {
	t.Helper()
	b := env.Connect(cloudtest.Encoder("e1"))
	list := env.MustCall("/acs/encoders/list", nil)
	encs := arr(list["acs_encoders"])
	if len(encs) != 1 {
		t.Fatalf("encoders after hello: %v", list)
	}
	return b, obj(encs[0])["acs_encoder_id"].(string)
}

// TestRoutesMatchSeam calls every route, POST and (where Seam allows it)
// GET, and checks each answer against Seam's OpenAPI response schema.
func TestRoutesMatchSeam(t *testing.T) { cloudtest.Backends(t, testRoutesMatchSeam) }

func testRoutesMatchSeam(t *testing.T) {
	sc := newSchema(t)
	env := cloudtest.New(t, cloudtest.Options{})
	b, encID := connect(t, env)

	for _, method := range []string{http.MethodPost, http.MethodGet} {
		var body any
		if method == http.MethodGet {
			body = "acs_encoder_ids=" + encID
		} else {
			body = map[string]any{"acs_encoder_ids": []string{encID}}
		}
		status, out := env.Call(method, "/acs/encoders/list", body)
		if status != 200 || len(arr(out["acs_encoders"])) != 1 {
			t.Fatalf("%s list encoders: %d %v", method, status, out)
		}
		sc.response("/acs/encoders/list", out)
		if method == http.MethodGet {
			body = "acs_encoder_id=" + encID
		} else {
			body = map[string]any{"acs_encoder_id": encID}
		}
		status, out = env.Call(method, "/acs/encoders/get", body)
		if status != 200 {
			t.Fatalf("%s get encoder: %d %v", method, status, out)
		}
		sc.response("/acs/encoders/get", out)
		enc := obj(out["acs_encoder"])
		if enc["acs_encoder_id"] != encID || enc["display_name"] != "Encoder e1" || enc["workspace_id"] != env.Workspace.ID ||
			enc["acs_system_id"] != env.Workspace.AcsSystemID || len(arr(enc["errors"])) != 0 {
			t.Errorf("encoder: %v", enc)
		}
		if md := obj(enc["encoder_bridge_metadata"]); md["is_online"] != true || md["bridge_id"] != env.BridgeID {
			t.Errorf("encoder metadata: %v", md)
		}
	}

	out := env.MustCall("/acs/credentials/create", map[string]any{
		"access_method": "card", "acs_user_id": "6f1c2d8e-3a4b-4c5d-9e6f-708192a3b4c5",
		"starts_at": env.Clock.Now().Format(time.RFC3339), "ends_at": env.Clock.Now().Add(72 * time.Hour).Format(time.RFC3339),
		"allowed_acs_entrance_ids": []string{"0b7e4f2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b"},
		"encoder_bridge_metadata":  map[string]any{"card_function_type": "staff"},
	})
	sc.response("/acs/credentials/create", out)
	cred := obj(out["acs_credential"])
	credID := cred["acs_credential_id"].(string)
	md := obj(cred["encoder_bridge_metadata"])
	if cred["access_method"] != "card" || cred["is_issued"] != false || cred["card_number"] != "100001" || md["card_function_type"] != "staff" ||
		md["issue_sequence"] != float64(1) || cred["issued_at"] != nil {
		t.Errorf("created credential: %v", cred)
	}
	for _, method := range []string{http.MethodPost, http.MethodGet} {
		var body any = map[string]any{"acs_credential_id": credID}
		if method == http.MethodGet {
			body = "acs_credential_id=" + credID
		}
		status, out := env.Call(method, "/acs/credentials/get", body)
		if status != 200 || obj(out["acs_credential"])["acs_credential_id"] != credID {
			t.Fatalf("%s get credential: %d %v", method, status, out)
		}
		sc.response("/acs/credentials/get", out)
		body = map[string]any{"acs_system_id": env.Workspace.AcsSystemID}
		if method == http.MethodGet {
			body = "acs_system_id=" + env.Workspace.AcsSystemID
		}
		status, out = env.Call(method, "/acs/credentials/list", body)
		if status != 200 || len(arr(out["acs_credentials"])) != 1 {
			t.Fatalf("%s list credentials: %d %v", method, status, out)
		}
		sc.response("/acs/credentials/list", out)
	}

	// Encode: pending at once, then success once the bridge reports.
	out = env.MustCall("/acs/encoders/encode_credential", map[string]any{"acs_encoder_id": encID, "acs_credential_id": credID})
	sc.response("/acs/encoders/encode_credential", out)
	att := obj(out["action_attempt"])
	if att["status"] != "pending" || att["action_type"] != "ENCODE_CREDENTIAL" || att["result"] != nil || att["error"] != nil {
		t.Fatalf("encode attempt: %v", att)
	}
	job := b.Expect(protocol.TypeJob).Job
	b.Result(cloudtest.Success(job, nil, env.Clock.Now()))
	for _, method := range []string{http.MethodPost, http.MethodGet} {
		var body any = map[string]any{"action_attempt_id": att["action_attempt_id"]}
		if method == http.MethodGet {
			body = "action_attempt_id=" + att["action_attempt_id"].(string)
		}
		status, out := env.Call(method, "/action_attempts/get", body)
		if status != 200 || obj(out["action_attempt"])["status"] != "success" {
			t.Fatalf("%s get attempt: %d %v", method, status, out)
		}
		sc.response("/action_attempts/get", out)
	}

	// Scan.
	out = env.MustCall("/acs/encoders/scan_credential", map[string]any{"acs_encoder_id": encID})
	sc.response("/acs/encoders/scan_credential", out)
	scanJob := b.Expect(protocol.TypeJob).Job
	card := cloudtest.EncodedCard(job)
	b.Result(cloudtest.Success(scanJob, card, env.Clock.Now()))
	out = env.MustCall("/action_attempts/get", map[string]any{"action_attempt_id": obj(out["action_attempt"])["action_attempt_id"]})
	sc.response("/action_attempts/get", out)

	// Scan to assign.
	out = env.MustCall("/acs/encoders/scan_to_assign_credential", map[string]any{"acs_encoder_id": encID, "acs_user_id": "11111111-2222-4333-8444-555555555555"})
	sc.response("/acs/encoders/scan_to_assign_credential", out)
	assignJob := b.Expect(protocol.TypeJob).Job
	b.Result(cloudtest.Success(assignJob, card, env.Clock.Now()))
	out = env.MustCall("/action_attempts/get", map[string]any{"action_attempt_id": obj(out["action_attempt"])["action_attempt_id"]})
	sc.response("/action_attempts/get", out)
	if res := obj(obj(out["action_attempt"])["result"]); res["acs_user_id"] != "11111111-2222-4333-8444-555555555555" {
		t.Errorf("scan to assign result: %v", out)
	}

	// Simulations answer {"ok": true}.
	for _, c := range []struct {
		path string
		body map[string]any
	}{
		{"/acs/encoders/simulate/next_credential_encode_will_fail", map[string]any{"acs_encoder_id": encID}},
		{"/acs/encoders/simulate/next_credential_encode_will_succeed", map[string]any{"acs_encoder_id": encID}},
		{"/acs/encoders/simulate/next_credential_scan_will_fail", map[string]any{"acs_encoder_id": encID}},
		{"/acs/encoders/simulate/next_credential_scan_will_succeed", map[string]any{"acs_encoder_id": encID}},
	} {
		out := env.MustCall(c.path, c.body)
		sc.response(c.path, out)
	}

	// Routes beyond the encoder set: their resources match Seam's schemas.
	out = env.MustCall("/acs/systems/list", nil)
	if systems := arr(out["acs_systems"]); len(systems) != 1 {
		t.Fatalf("systems: %v", out)
	} else {
		sc.resource("acs_system", systems[0])
	}
	out = env.MustCall("/acs/systems/get", map[string]any{"acs_system_id": env.Workspace.AcsSystemID})
	sc.resource("acs_system", out["acs_system"])
	out = env.MustCall("/access_methods/get", map[string]any{"access_method_id": md["access_method_id"]})
	sc.resource("access_method", out["access_method"])
	if am := obj(out["access_method"]); am["mode"] != "card" || am["is_issued"] != true {
		t.Errorf("access method: %v", am)
	}
}

func TestMethodsAndUnknownRoutes(t *testing.T) { cloudtest.Backends(t, testMethodsAndUnknownRoutes) }

func testMethodsAndUnknownRoutes(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{})
	status, out := env.Call(http.MethodGet, "/acs/encoders/encode_credential", nil)
	if status != http.StatusMethodNotAllowed || errType(out) != "method_not_allowed" {
		t.Errorf("GET encode_credential: %d %v", status, out)
	}
	status, out = env.Call(http.MethodPut, "/acs/encoders/list", nil)
	if status != http.StatusMethodNotAllowed {
		t.Errorf("PUT list: %d %v", status, out)
	}
	status, out = env.Call(http.MethodPost, "/acs/nothing", nil)
	if status != http.StatusNotFound || errType(out) != "not_found" {
		t.Errorf("unknown route: %d %v", status, out)
	}
	status, raw := env.RawCall("", http.MethodGet, "/healthz", nil)
	if status != 200 || string(raw) != "ok\n" {
		t.Errorf("healthz: %d %q", status, raw)
	}
}

// Every route refuses a request without a key, with a malformed key, with
// an unknown key, with a key whose secret is wrong, and with a revoked key.
func TestAuthentication(t *testing.T) { cloudtest.Backends(t, testAuthentication) }

func testAuthentication(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{})
	good := env.APIKey
	id := strings.TrimPrefix(good, "seam_key")[:16]
	revoked, err := env.Server.CreateAPIKey(t.Context(), env.Workspace.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Server.RevokeAPIKey(t.Context(), revoked); err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{
		"none":         "",
		"not seam":     "sk_live_abc",
		"malformed":    "seam_key",
		"unknown id":   "seam_keyaaaaaaaaaaaaaaaa_" + strings.Repeat("b", 52),
		"wrong secret": "seam_key" + id + "_" + strings.Repeat("c", 52),
		"revoked":      revoked,
	}
	routes := []string{"/acs/encoders/list", "/acs/encoders/get", "/acs/encoders/encode_credential", "/acs/encoders/scan_credential",
		"/acs/encoders/scan_to_assign_credential", "/acs/encoders/simulate/next_credential_encode_will_fail",
		"/acs/encoders/simulate/next_credential_encode_will_succeed", "/acs/encoders/simulate/next_credential_scan_will_fail",
		"/acs/encoders/simulate/next_credential_scan_will_succeed", "/acs/credentials/create", "/acs/credentials/get",
		"/acs/credentials/list", "/action_attempts/get"}
	for name, key := range keys {
		for _, r := range routes {
			status, raw := env.RawCall(key, http.MethodPost, r, map[string]any{})
			if status != http.StatusUnauthorized || !strings.Contains(string(raw), `"type":"unauthorized"`) {
				t.Errorf("%s key on %s: %d %s", name, r, status, raw)
			}
			if key != "" && strings.Contains(string(raw), key) {
				t.Errorf("%s key echoed in the answer", name)
			}
		}
	}
	if status, _ := env.Call(http.MethodPost, "/acs/encoders/list", nil); status != 200 {
		t.Errorf("good key refused: %d", status)
	}
	// The scheme is case-insensitive, as HTTP says.
	status, _ := env.RawCall("", http.MethodPost, "/acs/encoders/list", nil)
	if status != 401 {
		t.Errorf("no key: %d", status)
	}
}

// A key of one workspace never sees another's encoders, credentials or
// action attempts: ids of the other workspace are answered as unknown.
func TestTenancy(t *testing.T) { cloudtest.Backends(t, testTenancy) }

func testTenancy(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{})
	b, encID := connect(t, env)
	cred := env.CreateCredential(nil)
	credID := cred["acs_credential_id"].(string)
	amID := obj(cred["encoder_bridge_metadata"])["access_method_id"].(string)
	att := obj(env.MustCall("/acs/encoders/scan_credential", map[string]any{"acs_encoder_id": encID})["action_attempt"])
	b.Expect(protocol.TypeJob)

	other, err := env.Server.CreateWorkspace(t.Context(), "Other hotel", cloud.WorkspaceOptions{Sandbox: true})
	if err != nil {
		t.Fatal(err)
	}
	key, err := env.Server.CreateAPIKey(t.Context(), other.ID)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		path, typ string
		body      map[string]any
	}{
		{"/acs/encoders/get", "acs_encoder_not_found", map[string]any{"acs_encoder_id": encID}},
		{"/acs/credentials/get", "acs_credential_not_found", map[string]any{"acs_credential_id": credID}},
		{"/action_attempts/get", "action_attempt_not_found", map[string]any{"action_attempt_id": att["action_attempt_id"]}},
		{"/access_methods/get", "access_method_not_found", map[string]any{"access_method_id": amID}},
		{"/acs/systems/get", "acs_system_not_found", map[string]any{"acs_system_id": env.Workspace.AcsSystemID}},
		{"/acs/encoders/encode_credential", "acs_encoder_not_found", map[string]any{"acs_encoder_id": encID, "acs_credential_id": credID}},
		{"/acs/encoders/scan_credential", "acs_encoder_not_found", map[string]any{"acs_encoder_id": encID}},
		{"/acs/encoders/scan_to_assign_credential", "acs_encoder_not_found", map[string]any{"acs_encoder_id": encID, "acs_user_id": credID}},
		{"/acs/encoders/simulate/next_credential_scan_will_fail", "acs_encoder_not_found", map[string]any{"acs_encoder_id": encID}},
	}
	for _, c := range checks {
		status, out := env.CallWith(key, http.MethodPost, c.path, c.body)
		if status != http.StatusNotFound || errType(out) != c.typ {
			t.Errorf("other workspace %s: %d %v, want 404 %s", c.path, status, out, c.typ)
		}
		// The same answer as for an id nobody has.
		unknown := map[string]any{}
		for k := range c.body {
			unknown[k] = "99999999-9999-4999-8999-999999999999"
		}
		s2, out2 := env.CallWith(key, http.MethodPost, c.path, unknown)
		if s2 != status || errType(out2) != errType(out) || obj(out2["error"])["message"] != obj(out["error"])["message"] {
			t.Errorf("%s: unknown id answers %d %v, foreign id %d %v", c.path, s2, out2, status, out)
		}
	}
	for _, path := range []string{"/acs/encoders/list", "/acs/credentials/list"} {
		status, out := env.CallWith(key, http.MethodPost, path, nil)
		for _, k := range []string{"acs_encoders", "acs_credentials"} {
			if v, ok := out[k]; ok && len(arr(v)) != 0 {
				t.Errorf("%s of the other workspace lists %v", path, v)
			}
		}
		if status != 200 {
			t.Errorf("%s: %d", path, status)
		}
	}
	status, out := env.CallWith(key, http.MethodPost, "/acs/credentials/create",
		map[string]any{"access_method": "card", "acs_system_id": env.Workspace.AcsSystemID, "ends_at": env.Clock.Now().Add(time.Hour).Format(time.RFC3339)})
	if status != http.StatusNotFound || errType(out) != "acs_system_not_found" {
		t.Errorf("create credential in another workspace's system: %d %v", status, out)
	}
}

func TestEncodeCredentialInput(t *testing.T) { cloudtest.Backends(t, testEncodeCredentialInput) }

func testEncodeCredentialInput(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{})
	_, encID := connect(t, env)
	cred := env.CreateCredential(nil)
	credID := cred["acs_credential_id"].(string)
	amID := obj(cred["encoder_bridge_metadata"])["access_method_id"].(string)
	cases := []struct {
		name   string
		body   map[string]any
		fields []string
	}{
		{"both", map[string]any{"acs_encoder_id": encID, "acs_credential_id": credID, "access_method_id": amID}, []string{"acs_credential_id", "access_method_id"}},
		{"neither", map[string]any{"acs_encoder_id": encID}, []string{"acs_credential_id", "access_method_id"}},
		{"no encoder", map[string]any{"acs_credential_id": credID}, []string{"acs_encoder_id"}},
		{"bad uuid", map[string]any{"acs_encoder_id": "nope", "acs_credential_id": credID}, []string{"acs_encoder_id"}},
		{"wrong type", map[string]any{"acs_encoder_id": 12, "acs_credential_id": credID}, []string{"acs_encoder_id"}},
		{"unknown field", map[string]any{"acs_encoder_id": encID, "acs_credential_id": credID, "card_uid": "x"}, []string{"card_uid"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, out := env.Call(http.MethodPost, "/acs/encoders/encode_credential", c.body)
			if status != http.StatusBadRequest || errType(out) != "invalid_input" {
				t.Fatalf("%d %v", status, out)
			}
			ve := obj(obj(out["error"])["validation_errors"])
			msg := obj(out["error"])["message"].(string)
			var got []string
			for k := range ve {
				got = append(got, k)
			}
			slices.Sort(got)
			want := slices.Clone(c.fields)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("validation errors name %v, want %v (%v)", got, want, ve)
			}
			for _, f := range c.fields {
				if !strings.Contains(msg, f) {
					t.Errorf("message %q does not name %s", msg, f)
				}
			}
		})
	}
	// Encoding by access method works like by credential id.
	out := env.MustCall("/acs/encoders/encode_credential", map[string]any{"acs_encoder_id": encID, "access_method_id": amID})
	if obj(out["action_attempt"])["status"] != "pending" {
		t.Errorf("encode by access method: %v", out)
	}
	status, body := env.Call(http.MethodPost, "/acs/encoders/encode_credential",
		map[string]any{"acs_encoder_id": encID, "access_method_id": "99999999-9999-4999-8999-999999999999"})
	if status != 404 || errType(body) != "access_method_not_found" {
		t.Errorf("unknown access method: %d %v", status, body)
	}
	// Malformed bodies.
	for _, raw := range []string{`[1,2]`, `{"acs_encoder_id":`, `{} {}`, `"x"`} {
		status, body := env.Call(http.MethodPost, "/acs/encoders/encode_credential", []byte(raw))
		if status != 400 || errType(body) != "invalid_input" {
			t.Errorf("body %s: %d %v", raw, status, body)
		}
	}
}

func TestCreateCredentialInput(t *testing.T) { cloudtest.Backends(t, testCreateCredentialInput) }

func testCreateCredentialInput(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{})
	now := env.Clock.Now()
	user := "6f1c2d8e-3a4b-4c5d-9e6f-708192a3b4c5"
	ends := now.Add(time.Hour).Format(time.RFC3339)
	cases := []struct {
		name  string
		body  map[string]any
		field string
	}{
		{"no access method", map[string]any{"acs_user_id": user, "ends_at": ends}, "access_method"},
		{"code", map[string]any{"access_method": "code", "acs_user_id": user, "ends_at": ends}, "access_method"},
		{"bogus method", map[string]any{"access_method": "magic", "acs_user_id": user, "ends_at": ends}, "access_method"},
		{"no owner", map[string]any{"access_method": "card", "ends_at": ends}, "acs_user_id"},
		{"no end", map[string]any{"access_method": "card", "acs_user_id": user}, "ends_at"},
		{"past end", map[string]any{"access_method": "card", "acs_user_id": user, "ends_at": now.Add(-time.Hour).Format(time.RFC3339)}, "ends_at"},
		{"end before start", map[string]any{"access_method": "card", "acs_user_id": user, "starts_at": now.Add(2 * time.Hour).Format(time.RFC3339), "ends_at": ends}, "ends_at"},
		{"end after 2106", map[string]any{"access_method": "card", "acs_user_id": user, "ends_at": "2200-01-01T00:00:00Z"}, "ends_at"},
		{"bad time", map[string]any{"access_method": "card", "acs_user_id": user, "ends_at": "tomorrow"}, "ends_at"},
		{"bad entrance", map[string]any{"access_method": "card", "acs_user_id": user, "ends_at": ends, "allowed_acs_entrance_ids": []string{"x"}}, "allowed_acs_entrance_ids[0]"},
		{"bad function", map[string]any{"access_method": "card", "acs_user_id": user, "ends_at": ends, "encoder_bridge_metadata": map[string]any{"card_function_type": "vip"}}, "encoder_bridge_metadata.card_function_type"},
		{"unknown metadata", map[string]any{"access_method": "card", "acs_user_id": user, "ends_at": ends, "encoder_bridge_metadata": map[string]any{"x": 1}}, "encoder_bridge_metadata.x"},
		{"vendor metadata", map[string]any{"access_method": "card", "acs_user_id": user, "ends_at": ends, "visionline_metadata": map[string]any{}}, "visionline_metadata"},
		{"unknown field", map[string]any{"access_method": "card", "acs_user_id": user, "ends_at": ends, "room": "101"}, "room"},
	}
	for _, c := range cases {
		status, out := env.Call(http.MethodPost, "/acs/credentials/create", c.body)
		ve := obj(obj(out["error"])["validation_errors"])
		if status != 400 || ve[c.field] == nil {
			t.Errorf("%s: %d %v, want a validation error on %s", c.name, status, out, c.field)
		}
	}
	// Too many entrances.
	var ents []string
	for i := 0; i < 33; i++ {
		ents = append(ents, "0b7e4f2a-1c3d-4e5f-8a9b-0c1d2e3f4a"+strings.Repeat("0", 2-len(itoa(i)))+itoa(i))
	}
	status, out := env.Call(http.MethodPost, "/acs/credentials/create", map[string]any{"access_method": "card", "acs_user_id": user, "ends_at": ends, "allowed_acs_entrance_ids": ents})
	if status != 400 {
		t.Errorf("33 entrances: %d %v", status, out)
	}
	// Card numbers and issue sequences grow.
	a := env.CreateCredential(nil)
	b := env.CreateCredential(nil)
	if a["card_number"] == b["card_number"] ||
		obj(b["encoder_bridge_metadata"])["issue_sequence"].(float64) <= obj(a["encoder_bridge_metadata"])["issue_sequence"].(float64) {
		t.Errorf("credentials %v and %v", a, b)
	}
}

func itoa(i int) string {
	const digits = "0123456789"
	if i < 10 {
		return digits[i : i+1]
	}
	return itoa(i/10) + digits[i%10:i%10+1]
}

func TestListPagination(t *testing.T) { cloudtest.Backends(t, testListPagination) }

func testListPagination(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{})
	var ids []string
	for i := 0; i < 5; i++ {
		ids = append(ids, env.CreateCredential(nil)["acs_credential_id"].(string))
		env.Clock.Advance(time.Millisecond)
	}
	var got []string
	cursor := ""
	for pages := 0; pages < 10; pages++ {
		body := map[string]any{"limit": 2}
		if cursor != "" {
			body["page_cursor"] = cursor
		}
		out := env.MustCall("/acs/credentials/list", body)
		for _, c := range arr(out["acs_credentials"]) {
			got = append(got, obj(c)["acs_credential_id"].(string))
		}
		p := obj(out["pagination"])
		if p["has_next_page"] != true {
			break
		}
		cursor = p["next_page_cursor"].(string)
	}
	if !slices.Equal(got, ids) {
		t.Errorf("paged %v, want %v", got, ids)
	}
	out := env.MustCall("/acs/credentials/list", map[string]any{"search": ids[2][:8]})
	if l := arr(out["acs_credentials"]); len(l) != 1 {
		t.Errorf("search by id prefix: %v", out)
	}
	status, body := env.Call(http.MethodPost, "/acs/credentials/list", map[string]any{"page_cursor": "garbage"})
	if status != 400 {
		t.Errorf("bad cursor: %d %v", status, body)
	}
	status, body = env.Call(http.MethodPost, "/acs/credentials/list", map[string]any{"limit": 0})
	if status != 400 {
		t.Errorf("limit 0: %d %v", status, body)
	}
}

type cloudConfig = cloud.Config

// Seam's JavaScript SDK sends get and list calls as GET with arrays as
// repeated keys, an empty array as one empty value, null as an empty
// value, and _strict=true on every query.
func TestSDKQueryStyle(t *testing.T) { cloudtest.Backends(t, testSDKQueryStyle) }

func testSDKQueryStyle(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{})
	_, encID := connect(t, env)
	cases := []struct {
		query string
		n     int
	}{
		{"acs_system_ids=" + env.Workspace.AcsSystemID + "&_strict=true", 1},
		{"acs_encoder_ids=" + encID + "&acs_encoder_ids=99999999-9999-4999-8999-999999999999&_strict=true", 1},
		{"acs_encoder_ids=&_strict=true", 0},
		{"page_cursor=&limit=10&_strict=true", 1},
		{"acs_encoder_ids[]=" + encID, 1},
	}
	for _, c := range cases {
		status, out := env.Call(http.MethodGet, "/acs/encoders/list", c.query)
		if status != 200 || len(arr(out["acs_encoders"])) != c.n {
			t.Errorf("?%s: %d %v, want %d encoders", c.query, status, out, c.n)
		}
	}
	status, out := env.Call(http.MethodGet, "/acs/encoders/get", "acs_encoder_id="+encID+"&_strict=true")
	if status != 200 {
		t.Errorf("get with _strict: %d %v", status, out)
	}
	status, out = env.Call(http.MethodGet, "/acs/encoders/get", "acs_encoder_id="+encID+"&acs_encoder_id="+encID)
	if status != 400 {
		t.Errorf("a scalar given twice: %d %v", status, out)
	}
}
