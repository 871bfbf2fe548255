package status

import (
	"errors"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// fakeNow is a clock the test moves by hand.
type fakeNow struct{ t time.Time }

func (f *fakeNow) now() time.Time      { return f.t }
func (f *fakeNow) add(d time.Duration) { f.t = f.t.Add(d) }
func newClock() *fakeNow               { return &fakeNow{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)} }
func newRecorder(c *fakeNow, n int) *Recorder {
	return New(Options{Version: "1.2.3", BridgeID: "desk-1", KeyID: "0102030405060708 v2", Now: c.now, MaxProblems: n})
}

// gather returns the metric families by name.
func gather(t *testing.T, r *Recorder) map[string]*dto.MetricFamily {
	t.Helper()
	fams, err := r.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		out[f.GetName()] = f
	}
	return out
}

func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

func TestLink(t *testing.T) {
	c := newClock()
	r := newRecorder(c, 0)
	if s := r.Snapshot(); s.Link.Up || !s.Link.Since.IsZero() || s.Link.Reconnects != 0 {
		t.Fatalf("at start: %+v", s.Link)
	}
	r.LinkDown(errors.New("dial tcp 127.0.0.1:1: connection refused"), "start the cloud")
	down := c.t
	c.add(time.Second)
	r.LinkDown(errors.New("dial tcp 127.0.0.1:1: connection refused"), "start the cloud")
	s := r.Snapshot()
	if s.Link.Up || !s.Link.Since.Equal(down) || !strings.Contains(s.Link.Error, "refused") {
		t.Fatalf("down: %+v", s.Link)
	}
	if len(s.Problems) != 1 || s.Problems[0].Count != 2 || s.Problems[0].Remedy != "start the cloud" || !s.Problems[0].At.Equal(c.t) {
		t.Fatalf("a repeated dial failure is one problem counted twice: %+v", s.Problems)
	}

	c.add(time.Second)
	r.LinkURL("wss://b.example/v1/bridge")
	r.LinkUp()
	up := c.t
	c.add(3 * time.Second)
	r.Contact()
	s = r.Snapshot()
	if !s.Link.Up || !s.Link.Since.Equal(up) || !s.Link.LastContact.Equal(c.t) || s.Link.Error != "" || s.Link.Reconnects != 0 || s.Link.URL != "wss://b.example/v1/bridge" {
		t.Fatalf("up: %+v", s.Link)
	}
	r.LinkDown(nil, "")
	r.LinkUp()
	r.LinkUp() // a second report of the same connection counts nothing
	s = r.Snapshot()
	if s.Link.Reconnects != 1 {
		t.Fatalf("reconnects %d, want 1", s.Link.Reconnects)
	}
	m := gather(t, r)
	if v := m["encoder_bridge_link_up"].GetMetric()[0].GetGauge().GetValue(); v != 1 {
		t.Fatalf("link_up %v", v)
	}
	if v := m["encoder_bridge_link_reconnects_total"].GetMetric()[0].GetCounter().GetValue(); v != 1 {
		t.Fatalf("reconnects_total %v", v)
	}
}

func TestEncodersAndJobs(t *testing.T) {
	c := newClock()
	r := newRecorder(c, 0)
	r.SetEncoders([]EncoderInfo{{ID: "e2", Name: "Back office", Reader: "ACS B"}, {ID: "e1", Name: "Front desk", Reader: "ACS A"}})
	r.CardPresent("e1", true)
	r.CardPresent("gone", true) // an encoder not attached is ignored
	r.JobDone(JobReport{EncoderID: "e1", Kind: "encode", Outcome: OutcomeOK, Duration: 800 * time.Millisecond, APDUs: 40})
	c.add(time.Second)
	r.JobDone(JobReport{EncoderID: "e2", Kind: "scan", Outcome: "no_credential_on_encoder", Message: "no card presented within 20s", Duration: 20 * time.Second})

	s := r.Snapshot()
	if len(s.Encoders) != 2 || s.Encoders[0].ID != "e1" || s.Encoders[1].ID != "e2" {
		t.Fatalf("encoders by reader name: %+v", s.Encoders)
	}
	e1, e2 := s.Encoders[0], s.Encoders[1]
	if !e1.CardKnown || !e1.CardPresent || e1.LastJob == nil || !e1.LastJob.OK() || e1.LastJob.Kind != "encode" {
		t.Fatalf("e1: %+v %+v", e1, e1.LastJob)
	}
	if e2.CardKnown || e2.LastJob == nil || e2.LastJob.OK() || e2.LastJob.Outcome != "no_credential_on_encoder" {
		t.Fatalf("e2: %+v %+v", e2, e2.LastJob)
	}
	if len(s.Problems) != 1 || s.Problems[0].Where != "Back office" || s.Problems[0].Remedy != JobRemedy("no_credential_on_encoder") ||
		!strings.Contains(s.Problems[0].What, "no card presented") {
		t.Fatalf("problems: %+v", s.Problems)
	}

	m := gather(t, r)
	jobs := map[string]float64{}
	for _, x := range m["encoder_bridge_jobs_total"].GetMetric() {
		l := labels(x)
		jobs[l["type"]+"/"+l["outcome"]] = x.GetCounter().GetValue()
	}
	if jobs["encode/ok"] != 1 || jobs["scan/no_credential_on_encoder"] != 1 || len(jobs) != 2 {
		t.Fatalf("jobs_total: %v", jobs)
	}
	var apdus uint64
	for _, x := range m["encoder_bridge_card_apdus"].GetMetric() {
		apdus += x.GetHistogram().GetSampleCount()
	}
	if apdus != 1 {
		t.Fatalf("card_apdus observed %d jobs; want only the one that reached a card", apdus)
	}
	if n := len(m["encoder_bridge_job_duration_seconds"].GetMetric()); n != 2 {
		t.Fatalf("job_duration_seconds series %d", n)
	}

	// Unplugged: its series goes, its last job stays for when it is back.
	r.SetEncoders([]EncoderInfo{{ID: "e2", Name: "Back office", Reader: "ACS B"}})
	m = gather(t, r)
	if f := m["encoder_bridge_encoder_card_present"]; f != nil {
		t.Fatalf("card_present of an unplugged encoder: %v", f)
	}
	r.SetEncoders([]EncoderInfo{{ID: "e1", Name: "Front desk", Reader: "ACS A 01"}, {ID: "e2", Name: "Back office", Reader: "ACS B"}})
	if s := r.Snapshot(); s.Encoders[0].LastJob == nil || s.Encoders[0].CardKnown {
		t.Fatalf("replugged: %+v", s.Encoders[0])
	}
}

// TestLabelValues: a label carries only a short lower-case word, so an id
// or a message passed by mistake cannot become a series.
func TestLabelValues(t *testing.T) {
	tests := []struct{ in, want string }{
		{"encode", "encode"},
		{"incompatible_card_format", "incompatible_card_format"},
		{"", "other"},
		{"04A1B2C3D4E5F6", "other"},
		{"cred-7f3a", "other"},
		{strings.Repeat("a", 41), "other"},
	}
	for _, tt := range tests {
		if got := labelValue(tt.in); got != tt.want {
			t.Errorf("labelValue(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	r := newRecorder(newClock(), 0)
	r.JobDone(JobReport{EncoderID: "e", Kind: "04A1B2C3", Outcome: "04A1B2C3D4E5F6"})
	for _, x := range gather(t, r)["encoder_bridge_jobs_total"].GetMetric() {
		if l := labels(x); l["type"] != "other" || l["outcome"] != "other" {
			t.Fatalf("labels %v", l)
		}
	}
}

func TestProblemsBounded(t *testing.T) {
	c := newClock()
	r := newRecorder(c, 3)
	for i := range 5 {
		c.add(time.Second)
		r.ReadersFailed(errors.New("pcsc: list readers: smart-card service not available #" + string(rune('0'+i))))
	}
	s := r.Snapshot()
	if len(s.Problems) != 3 || !strings.HasSuffix(s.Problems[0].What, "#4") || !strings.HasSuffix(s.Problems[2].What, "#2") {
		t.Fatalf("want the 3 newest, newest first: %+v", s.Problems)
	}
	if s.Problems[0].Remedy != RemedyReaders {
		t.Fatalf("remedy %q", s.Problems[0].Remedy)
	}
}

func TestBuildInfo(t *testing.T) {
	f := gather(t, newRecorder(newClock(), 0))["encoder_bridge_build_info"]
	if f == nil || len(f.GetMetric()) != 1 || labels(f.GetMetric()[0])["version"] != "1.2.3" || f.GetMetric()[0].GetGauge().GetValue() != 1 {
		t.Fatalf("build_info: %v", f)
	}
}
