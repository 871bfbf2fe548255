package jobs

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/encoder-bridge/encoder-bridge/cloud/store"
	"github.com/encoder-bridge/encoder-bridge/protocol"
)

// A job is marshalled once, when it is made: the frame offered is its
// stored body as it is, byte for byte what protocol.Encode makes of the
// job message. Only a job the bridge acked is decoded again, to say so.
func TestJobFrame(t *testing.T) {
	s := &Service{timeout: time.Minute}
	enc := store.Encoder{ID: "acs-1", BridgeID: "b1", ProtocolID: "e1"}
	att := newAttempt("w1", "ENCODE_CREDENTIAL", t0)
	j, err := s.newJob(att, enc, protocol.JobEncode, ProtocolCredential(store.Credential{ID: "c1", CardNumber: "1<2", StartsAt: t0, EndsAt: t0.Add(time.Hour)}), t0)
	if err != nil {
		t.Fatal(err)
	}
	m, err := jobMessage(j)
	if err != nil {
		t.Fatal(err)
	}
	want, err := protocol.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		mutate  func(*store.Job)
		want    []byte
		acked   bool
		wantErr error
	}{
		{"new", func(*store.Job) {}, want, false, nil},
		{"acked", func(j *store.Job) { at := t0; j.AckedAt = &at }, nil, true, nil},
		{"damaged", func(j *store.Job) { j.Payload = []byte(`{"job_id":`) }, nil, false, store.ErrDamaged},
		{"not an object", func(j *store.Job) { j.Payload = []byte(`"x"`) }, nil, false, store.ErrDamaged},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			jj := j
			tt.mutate(&jj)
			f, err := jobFrame(jj)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if tt.want != nil && !bytes.Equal(f, tt.want) {
				t.Fatalf("frame %s\nwant  %s", f, tt.want)
			}
			got, err := protocol.Decode(f)
			if err != nil || got.Job.JobID != j.ID || got.Job.Acked != tt.acked || got.Job.Credential.CardNumber != "1<2" {
				t.Fatalf("decoded %+v, %v", got, err)
			}
		})
	}
}
