package secret

import (
	"strings"
	"testing"
)

func TestNewParseMatch(t *testing.T) {
	for _, k := range []Kind{APIKey, BridgeToken} {
		id, plain, hash := k.New()
		if !strings.HasPrefix(plain, k.Prefix) || strings.Contains(string(hash), plain) {
			t.Fatalf("%s: %q", k.Prefix, plain)
		}
		got, err := k.Parse(plain)
		if err != nil || got != id {
			t.Fatalf("Parse(%q) = %q, %v; want %q", plain, got, err, id)
		}
		if !Matches(plain, hash) || Matches(plain+"x", hash) || Matches(plain[:len(plain)-1]+"A", hash) {
			t.Fatal("Matches")
		}
		_, other, _ := k.New()
		if other == plain {
			t.Fatal("two secrets are equal")
		}
	}
	// Seam's SDKs treat seam_at*, seam_cst* and seam_pk* as other kinds of
	// token; an API key must never look like one.
	for i := 0; i < 200; i++ {
		_, key, _ := APIKey.New()
		for _, p := range []string{"seam_at", "seam_cst", "seam_pk", "ey"} {
			if strings.HasPrefix(key, p) {
				t.Fatalf("API key %q starts with %s", key, p)
			}
		}
	}
}

func TestParseRefuses(t *testing.T) {
	_, good, _ := APIKey.New()
	for _, s := range []string{"", "seam_key", "seam_keyabc_def", good[:len(good)-40], "ebt_" + good[8:], strings.Replace(good, "_", "", 2),
		good + strings.Repeat("x", 300)} {
		if _, err := APIKey.Parse(s); err == nil {
			t.Errorf("Parse(%q) accepted", s)
		}
	}
}

func TestBearer(t *testing.T) {
	for in, want := range map[string]string{"Bearer abc": "abc", "bearer  abc ": "abc", "BEARER abc": "abc"} {
		if got, ok := Bearer(in); !ok || got != want {
			t.Errorf("Bearer(%q) = %q %v", in, got, ok)
		}
	}
	for _, in := range []string{"", "abc", "Basic abc", "Bearer ", "Bearer"} {
		if _, ok := Bearer(in); ok {
			t.Errorf("Bearer(%q) accepted", in)
		}
	}
}
