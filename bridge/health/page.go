package health

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"net/http"
	"time"

	"github.com/encoder-bridge/encoder-bridge/bridge/status"
)

// PageRefresh is how often the status page reloads itself, in seconds:
// plain HTML with a meta refresh, so it needs no script and no build step.
const PageRefresh = 5

//go:embed page.html
var pageHTML string

var page = template.Must(template.New("page").Funcs(template.FuncMap{"ago": ago}).Parse(pageHTML))

type pageData struct {
	S       status.Snapshot
	Ready   bool
	Why     string
	Refresh int
}

// pageHandler renders the status page. The snapshot holds nothing
// secret; html/template escapes every value.
func pageHandler(snap func() status.Snapshot, report func() Report) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		d := pageData{S: snap(), Refresh: PageRefresh}
		if report != nil {
			d.Ready, d.Why = report().Ready()
		}
		var b bytes.Buffer
		if err := page.Execute(&b, d); err != nil {
			http.Error(w, "status page: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		// The page is for this PC only: no frames, no outside resources.
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		_, _ = w.Write(b.Bytes())
	})
}

// ago is how long before now t was, rounded for people; "" for a zero t.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := now.Sub(t)
	switch {
	case d < time.Second:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d/time.Minute), int(d%time.Minute/time.Second))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
	return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
}
