package cloudtest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The checker must catch what it is there to catch, or the route tests
// prove nothing.
func TestCheckCatchesViolations(t *testing.T) {
	oa := LoadOpenAPI(t)
	good := map[string]any{
		"acs_encoder_id": "0b7e4f2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b", "acs_system_id": "0b7e4f2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b",
		"connected_account_id": "0b7e4f2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b", "workspace_id": "0b7e4f2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b",
		"errors": []any{}, "created_at": "2026-03-01T12:00:00.000Z", "display_name": "x",
	}
	if errs := oa.CheckSchema("acs_encoder", good); len(errs) != 0 {
		t.Fatalf("a valid encoder fails: %v", errs)
	}
	cases := map[string]func(m map[string]any){
		"missing required": func(m map[string]any) { delete(m, "display_name") },
		"bad uuid":         func(m map[string]any) { m["acs_encoder_id"] = "E1" },
		"bad time":         func(m map[string]any) { m["created_at"] = "yesterday" },
		"bad enum": func(m map[string]any) {
			m["errors"] = []any{map[string]any{"error_code": "gone", "message": "m", "created_at": "2026-03-01T12:00:00Z"}}
		},
		"wrong type": func(m map[string]any) { m["errors"] = "none" },
	}
	for name, mutate := range cases {
		m := map[string]any{}
		for k, v := range good {
			m[k] = v
		}
		mutate(m)
		if errs := oa.CheckSchema("acs_encoder", m); len(errs) == 0 {
			t.Errorf("%s: not caught", name)
		}
	}
	pending := map[string]any{"action_attempt_id": "0b7e4f2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b", "action_type": "ENCODE_CREDENTIAL",
		"status": "pending", "result": nil, "error": nil}
	if errs := oa.CheckSchema("action_attempt", pending); len(errs) != 0 {
		t.Errorf("pending attempt: %v", errs)
	}
	pending["status"] = "error"
	pending["error"] = map[string]any{"type": "not_a_seam_type", "message": "m"}
	if errs := oa.CheckSchema("action_attempt", pending); len(errs) == 0 || !strings.Contains(errs[0], "oneOf") {
		t.Errorf("unknown error type not caught: %v", errs)
	}
}

// The embedded spec must come from the @seamapi/types version the SDK
// conformance tests install, or the two kinds of test check different
// things. After changing the lockfile, regenerate it:
//
//	make seam-openapi
func TestOpenAPIMatchesLockfile(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "conformance", "package-lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	var lock struct {
		Packages map[string]struct {
			Version string `json:"version"`
		} `json:"packages"`
	}
	if err := json.Unmarshal(data, &lock); err != nil {
		t.Fatalf("package-lock.json: %v", err)
	}
	pinned := lock.Packages["node_modules/@seamapi/types"].Version
	if pinned == "" {
		t.Fatal("package-lock.json pins no @seamapi/types")
	}
	oa := LoadOpenAPI(t)
	if want := "npm @seamapi/types " + pinned + " "; !strings.HasPrefix(oa.Info.Source, want) {
		t.Errorf("testdata spec is from %q, the lockfile pins @seamapi/types %s: regenerate it with conformance/seam-openapi.mjs", oa.Info.Source, pinned)
	}
	if len(oa.Paths) == 0 || oa.Schemas["action_attempt"] == nil {
		t.Error("testdata spec holds no routes or no action_attempt schema")
	}
}
