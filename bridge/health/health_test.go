package health

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestEndpoints(t *testing.T) {
	tests := []struct {
		name   string
		report Report
		code   int
		reason string
	}{
		{"ready", Report{Connected: true, Encoders: 2, Jobs: 1}, 200, ""},
		{"offline", Report{Connected: false, Encoders: 1}, 503, "not connected to the cloud"},
		{"no encoder", Report{Connected: true}, 503, "no encoder attached"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(Handler(func() Report { return tt.report }))
			defer srv.Close()
			resp, err := http.Get(srv.URL + "/readyz")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body map[string]any
			json.NewDecoder(resp.Body).Decode(&body)
			if resp.StatusCode != tt.code || body["ready"] != (tt.code == 200) || (tt.reason != "" && body["reason"] != tt.reason) {
				t.Fatalf("%d %v", resp.StatusCode, body)
			}
			if resp, err := http.Get(srv.URL + "/healthz"); err != nil || resp.StatusCode != 200 {
				t.Fatalf("healthz: %v %v", resp, err)
			}
			if resp, err := http.Post(srv.URL+"/readyz", "text/plain", nil); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
				t.Fatalf("POST readyz: %v %v", resp, err)
			}
		})
	}
}
