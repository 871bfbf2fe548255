package webhook

import (
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// Svix's published example, which its verifier (inside Seam's
// @seamapi/webhook) reproduces: the scheme, not just our own round trip.
func TestSignKnownAnswer(t *testing.T) {
	got, err := Sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0),
		[]byte(`{"test": 2432232314}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Errorf("signature %s, want %s", got, want)
	}
}

func TestVerify(t *testing.T) {
	secret, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	if key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, SecretPrefix)); err != nil || len(key) != 24 || !strings.HasPrefix(secret, SecretPrefix) {
		t.Fatalf("secret %d bytes, %v", len(key), err)
	}
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"event_id":"e1"}`)
	sig, _ := Sign(secret, "e1", now, body)
	other, _ := NewSecret()
	otherSig, _ := Sign(other, "e1", now, body)
	headers := func(id, ts, sig string) http.Header {
		h := http.Header{}
		h.Set(HeaderID, id)
		h.Set(HeaderTimestamp, ts)
		h.Set(HeaderSignature, sig)
		return h
	}
	cases := []struct {
		name string
		h    http.Header
		body string
		at   time.Time
		ok   bool
	}{
		{"valid", headers("e1", "1800000000", sig), string(body), now, true},
		{"one of several signatures", headers("e1", "1800000000", "v1,AAAA "+sig), string(body), now, true},
		{"other secret", headers("e1", "1800000000", otherSig), string(body), now, false},
		{"body changed", headers("e1", "1800000000", sig), `{"event_id":"e2"}`, now, false},
		{"id changed", headers("e2", "1800000000", sig), string(body), now, false},
		{"timestamp changed", headers("e1", "1800000001", sig), string(body), now, false},
		{"too old", headers("e1", "1800000000", sig), string(body), now.Add(Tolerance + time.Second), false},
		{"missing headers", http.Header{}, string(body), now, false},
	}
	for _, c := range cases {
		err := Verify(secret, c.h, []byte(c.body), c.at)
		if (err == nil) != c.ok {
			t.Errorf("%s: %v", c.name, err)
		}
		if err != nil && !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s: %v is not ErrBadSignature", c.name, err)
		}
	}
	if _, err := Sign("whsec_!!!", "e1", now, body); !errors.Is(err, ErrBadSecret) || strings.Contains(err.Error(), "!!!") {
		t.Errorf("bad secret: %v", err)
	}
}

func TestCheckURL(t *testing.T) {
	cases := []struct {
		url      string
		loopback bool
		ok       bool
	}{
		{"https://hooks.example.com/seam", false, true},
		{"https://hooks.example.com:8443/seam?token=x", false, true},
		{"http://hooks.example.com/seam", false, false},
		{"http://hooks.example.com/seam", true, false},
		{"http://127.0.0.1:9000/hook", false, false},
		{"http://127.0.0.1:9000/hook", true, true},
		{"http://[::1]:9000/hook", true, true},
		{"http://localhost:9000/hook", true, true},
		{"https://127.0.0.1/hook", false, false},
		{"https://localhost/hook", false, false},
		{"ftp://hooks.example.com/", false, false},
		{"https://user:pw@hooks.example.com/", false, false},
		{"https:///nohost", false, false},
		{"/relative", false, false},
		{"https://hooks.example.com/#frag", false, false},
		{"::not a url", false, false},
	}
	for _, c := range cases {
		err := CheckURL(c.url, c.loopback)
		if (err == nil) != c.ok {
			t.Errorf("%s (loopback %v): %v", c.url, c.loopback, err)
		}
		if err != nil && !errors.Is(err, ErrBadURL) {
			t.Errorf("%s: %v is not ErrBadURL", c.url, err)
		}
	}
}

func TestBackoff(t *testing.T) {
	want := []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second, 40 * time.Second}
	for i, w := range want {
		if got := Backoff(i + 1); got != w {
			t.Errorf("Backoff(%d) = %v, want %v", i+1, got, w)
		}
	}
	if got := Backoff(40); got != MaxBackoff {
		t.Errorf("Backoff(40) = %v, want the cap %v", got, MaxBackoff)
	}
}

func FuzzVerify(f *testing.F) {
	f.Add("e1", "1800000000", "v1,AAAA", []byte(`{}`))
	f.Fuzz(func(t *testing.T, id, ts, sig string, body []byte) {
		h := http.Header{}
		h.Set(HeaderID, id)
		h.Set(HeaderTimestamp, ts)
		h.Set(HeaderSignature, sig)
		// Nothing from outside may make a forged delivery verify.
		if Verify("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", h, body, time.Unix(1_800_000_000, 0)) == nil {
			want, _ := Sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", id, time.Unix(1_800_000_000, 0), body)
			if !strings.Contains(sig, want) {
				t.Fatalf("verified without the signature")
			}
		}
	})
}

// Whatever URL a client sends, one CheckURL accepts without the
// development flag is https to a named or public host.
func FuzzCheckURL(f *testing.F) {
	for _, s := range []string{"https://hooks.example.com/x", "http://127.0.0.1:9/", "https://[::1]/", "https://10.0.0.1/", "https://user@h/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if CheckURL(raw, false) != nil {
			return
		}
		u, err := url.Parse(raw)
		if err != nil || u.Scheme != "https" || u.Hostname() == "" || u.User != nil || isLoopbackHost(u.Hostname()) {
			t.Fatalf("accepted %q", raw)
		}
	})
}
