// Package metrics is the cloud's Prometheus metrics: bridges connected,
// jobs by type and outcome, dispatch latency, action attempts expired and
// webhook posts by outcome. It hears events through jobs.Observer and
// webhook.Observer and counts links through a function, so the other
// packages do not import Prometheus.
//
// Labels hold only bounded words: a job's kind and a Seam error type the
// cloud already normalised; never an id, a token or card data. It must
// not import any other package of this module.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the cloud's collectors, on a registry of their own.
type Metrics struct {
	reg      *prometheus.Registry
	jobs     *prometheus.CounterVec
	dispatch *prometheus.HistogramVec
	expired  *prometheus.CounterVec
	webhooks *prometheus.CounterVec
}

// New registers the collectors; links reports how many bridges are
// connected now.
func New(links func() int) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "encoder_cloud_jobs_total",
			Help: "Jobs whose action attempt finished, by type (encode, scan) and outcome (success or the Seam error type).",
		}, []string{"type", "outcome"}),
		dispatch: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "encoder_cloud_job_dispatch_seconds",
			Help: "Time from a job's creation to the bridge's acknowledgement that it stored it.",
			// Milliseconds on a live link; seconds to minutes when the
			// bridge was offline and took the job at its next hello.
			Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"type"}),
		expired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "encoder_cloud_action_attempts_expired_total",
			Help: "Action attempts the cloud finished at their deadline, by reason (action_attempt_expired, bridge_disconnected).",
		}, []string{"reason"}),
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "encoder_cloud_webhook_posts_total",
			Help: "Webhook posts by outcome: delivered, failed (retried later) or given_up (the delivery was abandoned).",
		}, []string{"outcome"}),
	}
	bridges := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "encoder_cloud_bridges_connected",
		Help: "Bridges with a websocket link to this cloud now.",
	}, func() float64 { return float64(links()) })
	m.reg.MustRegister(m.jobs, m.dispatch, m.expired, m.webhooks, bridges,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// JobFinished counts a job whose attempt finished with a bridge's result.
func (m *Metrics) JobFinished(kind, outcome string) { m.jobs.WithLabelValues(kind, outcome).Inc() }

// JobAcked observes how long a job took to reach its bridge's journal.
func (m *Metrics) JobAcked(kind string, sinceCreated time.Duration) {
	m.dispatch.WithLabelValues(kind).Observe(sinceCreated.Seconds())
}

// AttemptExpired counts an attempt finished at its deadline.
func (m *Metrics) AttemptExpired(kind, reason string) {
	m.expired.WithLabelValues(reason).Inc()
	m.jobs.WithLabelValues(kind, reason).Inc()
}

// WebhookPosted counts a webhook post by outcome.
func (m *Metrics) WebhookPosted(outcome string) { m.webhooks.WithLabelValues(outcome).Inc() }

// Handler serves the metrics in Prometheus' text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}
