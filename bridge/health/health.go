// Package health serves the bridge's local monitoring endpoints, on a
// loopback address only (the bridge never listens on the network):
//
//	GET /healthz  200 while the process runs
//	GET /readyz   200 when the bridge can take jobs: linked to the cloud
//	              (its hello welcomed) and at least one encoder attached;
//	              503 otherwise
//
// Both answer a small JSON object and carry no card data, token or key.
// It must not import the agent: it sees the bridge through a function.
package health

import (
	"encoding/json"
	"net/http"
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

// Handler serves the endpoints from report.
func Handler(report func() Report) http.Handler {
	mux := http.NewServeMux()
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
