package health

import (
	"errors"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/encoder-bridge/encoder-bridge/bridge/status"
)

func get(t *testing.T, url string) (int, http.Header, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

func TestPage(t *testing.T) {
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	clk := func() time.Time { return now }
	rec := status.New(status.Options{Version: "1.2.3", BridgeID: "desk-1", KeyID: "0102030405060708 v2", Now: clk})
	rec.SetEncoders([]status.EncoderInfo{{ID: "e1", Name: "Front <desk>", Reader: "ACS ACR1252 00 00"}})
	rec.CardPresent("e1", true)
	rec.LinkURL("wss://cloud-b.example/v1/bridge")
	rec.LinkUp()
	rec.JobDone(status.JobReport{EncoderID: "e1", Kind: "encode", Outcome: "incompatible_card_format", Message: "card is DESFire"})
	ready := Report{Connected: true, Encoders: 1}
	srv := httptest.NewServer(Endpoints{
		Report:  func() Report { return ready },
		Status:  rec.Snapshot,
		Metrics: rec.Gatherer(),
	}.Handler())
	defer srv.Close()

	code, h, body := get(t, srv.URL+"/")
	if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/html") || h.Get("Cache-Control") != "no-store" {
		t.Fatalf("%d %v", code, h)
	}
	for _, want := range []string{
		`<meta http-equiv="refresh" content="5">`,
		`data-ready="true"`,
		`data-state="up"`,
		`data-encoder="e1" data-card="present"`,
		`Front &lt;desk&gt;`, // escaped
		`ACS ACR1252 00 00`,
		`data-outcome="incompatible_card_format"`,
		html.EscapeString(status.JobRemedy("incompatible_card_format")),
		`1.2.3`,
		`0102030405060708 v2`,
		`<dd class="url">wss://cloud-b.example/v1/bridge</dd>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}

	rec.LinkDown(errors.New("dial tcp: connection refused"), "start the cloud")
	rec.SetEncoders(nil)
	ready = Report{}
	_, _, body = get(t, srv.URL+"/")
	for _, want := range []string{`data-ready="false"`, `not connected to the cloud`, `data-state="down"`, `id="no-encoders"`, `connection refused`, `start the cloud`} {
		if !strings.Contains(body, want) {
			t.Errorf("page (down) lacks %q", want)
		}
	}

	code, _, body = get(t, srv.URL+"/metrics")
	if code != 200 || !strings.Contains(body, "encoder_bridge_link_up 0") || !strings.Contains(body, `encoder_bridge_jobs_total{outcome="incompatible_card_format",type="encode"} 1`) {
		t.Fatalf("metrics %d:\n%s", code, body)
	}
	if code, _, _ := get(t, srv.URL+"/nothing"); code != http.StatusNotFound {
		t.Fatalf("/nothing: %d", code)
	}
}

// TestHandlerAlone: the plain handler serves no page and no metrics.
func TestHandlerAlone(t *testing.T) {
	srv := httptest.NewServer(Handler(func() Report { return Report{} }))
	defer srv.Close()
	for _, p := range []string{"/", "/metrics"} {
		if code, _, _ := get(t, srv.URL+p); code != http.StatusNotFound {
			t.Errorf("%s: %d", p, code)
		}
	}
}

func TestAgo(t *testing.T) {
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"}, {42 * time.Second, "42s"}, {5*time.Minute + 7*time.Second, "5m07s"},
		{3*time.Hour + 4*time.Minute, "3h04m"}, {72 * time.Hour, "3d"},
	}
	for _, tt := range tests {
		if got := ago(now, now.Add(-tt.d)); got != tt.want {
			t.Errorf("ago(%s) = %q, want %q", tt.d, got, tt.want)
		}
	}
	if ago(now, time.Time{}) != "" {
		t.Error("zero time")
	}
}

// BenchmarkPage renders the status page of a bridge with four encoders
// and a full list of problems: what each 5-second refresh costs.
func BenchmarkPage(b *testing.B) {
	rec := status.New(status.Options{Version: "1.2.3", BridgeID: "desk-1", KeyID: "0102030405060708 v2"})
	var encs []status.EncoderInfo
	for i := range 4 {
		id := string(rune('a' + i))
		encs = append(encs, status.EncoderInfo{ID: id, Name: "Desk " + id, Reader: "ACS ACR1252 0" + id})
	}
	rec.SetEncoders(encs)
	for i := range status.DefaultMaxProblems {
		rec.JobDone(status.JobReport{EncoderID: "a", Kind: "encode", Outcome: "no_credential_on_encoder", Message: strings.Repeat("x", i+1)})
	}
	h := Endpoints{Report: func() Report { return Report{Connected: true, Encoders: 4} }, Status: rec.Snapshot, Metrics: rec.Gatherer()}.Handler()
	for _, path := range []string{"/", "/metrics"} {
		b.Run(path, func(b *testing.B) {
			req := httptest.NewRequest("GET", path, nil)
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != 200 {
					b.Fatal(w.Code)
				}
				b.SetBytes(int64(w.Body.Len()))
			}
		})
	}
}
