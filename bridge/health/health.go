// Package health serves the bridge's local monitoring endpoints, on a
// loopback address only (the bridge never listens on the network):
//
//	GET /healthz  200 while the process runs
//	GET /readyz   200 when the bridge can take jobs: linked to the cloud
//	              (its hello welcomed) and at least one encoder attached;
//	              503 otherwise
//	GET /metrics  Prometheus metrics (bridge/status names them)
//	GET /         the status page for the front-desk PC (page.go)
//
// The first two answer a small JSON object. None carries card data, a
// token or a key. It must not import the agent: it sees the bridge
// through functions and the status.Recorder.
package health

import (
	"encoding/json"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/encoder-bridge/encoder-bridge/bridge/status"
)

// Report is what /readyz judges.
type Report struct {
	Connected bool `json:"connected"`
	Encoders  int  `json:"encoders"`
	Jobs      int  `json:"jobs"`
}

// Ready reports whether the bridge can take jobs, and if not, why.
func (r Report) Ready() (bool, string) {
	switch {
	case !r.Connected:
		return false, "not connected to the cloud"
	case r.Encoders == 0:
		return false, "no encoder attached"
	}
	return true, ""
}

// Handler serves /healthz and /readyz from report.
func Handler(report func() Report) http.Handler {
	return Endpoints{Report: report}.Handler()
}

// Endpoints are what the listener serves; a nil field leaves its
// endpoint out.
type Endpoints struct {
	// Report feeds /readyz and the page's verdict; required.
	Report func() Report
	// Status feeds the status page at /.
	Status func() status.Snapshot
	// Metrics is served at /metrics.
	Metrics prometheus.Gatherer
}

// Handler serves the endpoints.
func (e Endpoints) Handler() http.Handler {
	mux := http.NewServeMux()
	if e.Metrics != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(e.Metrics, promhttp.HandlerOpts{}))
	}
	if e.Status != nil {
		mux.Handle("GET /{$}", pageHandler(e.Status, e.Report))
	}
	report := e.Report
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		write(w, http.StatusOK, map[string]any{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		r := report()
		ready, why := r.Ready()
		body := map[string]any{"ready": ready, "connected": r.Connected, "encoders": r.Encoders, "jobs": r.Jobs}
		code := http.StatusOK
		if !ready {
			body["reason"] = why
			code = http.StatusServiceUnavailable
		}
		write(w, code, body)
	})
	return mux
}

func write(w http.ResponseWriter, code int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body)
}
