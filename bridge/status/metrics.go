package status

import (
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the bridge's Prometheus collectors, named by Prometheus'
// rules: a unit suffix, _total on counters. Labels hold only bounded
// words (job type, outcome code) and encoder ids, never a card UID, a
// credential or a token.
type metrics struct {
	jobs        *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	apdus       *prometheus.HistogramVec
	linkUp      prometheus.Gauge
	reconnects  prometheus.Counter
	cardPresent *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer, version string) *metrics {
	m := &metrics{
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "encoder_bridge_jobs_total",
			Help: "Jobs finished, by type (encode, scan) and outcome (ok or the error code).",
		}, []string{"type", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "encoder_bridge_job_duration_seconds",
			Help: "Time from a job's start to its result, waiting for a card included.",
			// A card already on the encoder takes well under a second; a
			// clerk presenting one takes seconds; the cloud gives up by a minute.
			Buckets: []float64{0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60},
		}, []string{"type"}),
		apdus: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "encoder_bridge_card_apdus",
			Help: "APDUs a job sent to the card.",
			// A Classic encode takes a few dozen, an NTAG re-encode about 33.
			Buckets: []float64{2, 4, 8, 16, 24, 32, 48, 64, 96, 128},
		}, []string{"type"}),
		linkUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "encoder_bridge_link_up",
			Help: "1 while the cloud has accepted the bridge's connection, else 0.",
		}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "encoder_bridge_link_reconnects_total",
			Help: "Connections to the cloud made after the first.",
		}),
		cardPresent: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "encoder_bridge_encoder_card_present",
			Help: "1 while a card is on the encoder, else 0; encoder is the encoder id.",
		}, []string{"encoder"}),
	}
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "encoder_bridge_build_info",
		Help: "Always 1; the labels tell the bridge's version and Go version.",
	}, []string{"version", "goversion"})
	build.WithLabelValues(version, runtime.Version()).Set(1)
	reg.MustRegister(m.jobs, m.duration, m.apdus, m.linkUp, m.reconnects, m.cardPresent, build)
	return m
}

func (m *metrics) job(kind, outcome string, d time.Duration, apdus int) {
	m.jobs.WithLabelValues(kind, outcome).Inc()
	m.duration.WithLabelValues(kind).Observe(d.Seconds())
	if apdus > 0 {
		m.apdus.WithLabelValues(kind).Observe(float64(apdus))
	}
}

func (m *metrics) setCard(id string, present bool) {
	v := 0.0
	if present {
		v = 1
	}
	m.cardPresent.WithLabelValues(id).Set(v)
}

func (m *metrics) forgetEncoder(id string) { m.cardPresent.DeleteLabelValues(id) }
