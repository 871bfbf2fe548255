package webhook

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/encoder-bridge/encoder-bridge/cloud/clock"
)

// BenchmarkDeliver measures one event from its commit to every receiver:
// the event and its outbox rows recorded in one transaction, then claimed,
// signed, posted to receivers on loopback and recorded delivered. With
// webhooks > 1 the event fans out to that many, posted at once.
func BenchmarkDeliver(b *testing.B) {
	for _, hooks := range []int{1, 16} {
		b.Run(fmt.Sprintf("webhooks=%d", hooks), func(b *testing.B) {
			e := newEnv(b, Config{Clock: clock.Real{}})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
			b.Cleanup(srv.Close)
			for h := 0; h < hooks; h++ {
				e.hook("w1", fmt.Sprintf("h%d", h), srv.URL)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				e.events("w1", fmt.Sprintf("e%d", i))
				for posted := 0; posted < hooks; {
					n, err := e.d.Pass(context.Background())
					if err != nil {
						b.Fatal(err)
					}
					posted += n
				}
			}
			b.ReportMetric(float64(b.N*hooks)/b.Elapsed().Seconds(), "posts/s")
		})
	}
}
