package protocol

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func seq(v uint32) *uint32 { return &v }

func validMessages() []*Message {
	deadline := time.Date(2026, 11, 23, 15, 1, 0, 0, time.UTC)
	cred := &Credential{CredentialID: "6f1c2d8e-3a4b-4c5d-9e6f-708192a3b4c5", CardNumber: "1", CardFunctionType: "guest",
		StartsAt: "2026-11-23T15:00:00Z", EndsAt: "2026-11-26T11:00:00Z", IssueSequence: seq(1)}
	enc := Encoder{ID: "e1", DisplayName: "Front desk", ReaderName: "ACS ACR1252", Technologies: []string{"ntag213"}}
	res := Result{JobID: "j1", Card: &Card{UID: "04A1B2C3D4E5F6", Technology: "ntag213", Valid: true, Credential: cred}}
	return []*Message{
		{V: 1, Type: TypeHello, Hello: &Hello{BridgeID: "b1", SoftwareVersion: "dev", ProtocolVersion: 1, Encoders: []Encoder{enc}, Results: []Result{res}}},
		{V: 1, Type: TypeWelcome, Welcome: &Welcome{BridgeID: "b1", ServerTime: deadline}},
		{V: 1, Type: TypeEncoderAdded, Encoder: &enc},
		{V: 1, Type: TypeEncoderRemoved, EncoderID: "e1"},
		{V: 1, Type: TypeJob, Job: &Job{JobID: "j1", ActionAttemptID: "a1", Kind: JobEncode, EncoderID: "e1", Deadline: deadline, Credential: cred}},
		{V: 1, Type: TypeJob, Job: &Job{JobID: "j2", Kind: JobScan, EncoderID: "e1", Deadline: deadline}},
		{V: 1, Type: TypeAck, Ack: &Ack{JobID: "j1"}},
		{V: 1, Type: TypeProgress, Progress: &Progress{JobID: "j1", Stage: StageWriting}},
		{V: 1, Type: TypeResult, Result: &res},
		{V: 1, Type: TypeResult, Result: &Result{JobID: "j1", Error: &JobError{Type: "no_credential_on_encoder", Message: "no card"}}},
		{V: 1, Type: TypeResultAck, ResultAck: &ResultAck{JobID: "j1"}},
		{V: 1, Type: TypeError, Error: &Error{Code: CodeUnknownEncoder, Message: "no encoder e9", JobID: "j9"}},
	}
}

func TestRoundTrip(t *testing.T) {
	for _, m := range validMessages() {
		b, err := Encode(m)
		if err != nil {
			t.Fatalf("Encode %s: %v", m.Type, err)
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("Decode %s: %v", m.Type, err)
		}
		again, _ := Encode(got)
		if !bytes.Equal(b, again) {
			t.Fatalf("%s does not round-trip:\n%s\n%s", m.Type, b, again)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want error
		text string
	}{
		{"not JSON", `{"v":1,`, ErrMalformed, ""},
		{"two objects", `{"v":1,"type":"ack","ack":{"job_id":"j"}}{}`, ErrMalformed, "data after"},
		{"unknown field", `{"v":1,"type":"ack","ack":{"job_id":"j"},"x":1}`, ErrMalformed, `unknown field "x"`},
		{"future version", `{"v":2,"type":"ack","ack":{"job_id":"j"}}`, ErrVersion, "2"},
		{"no version", `{"type":"ack","ack":{"job_id":"j"}}`, ErrVersion, ""},
		{"no type", `{"v":1}`, ErrMalformed, "type missing"},
		{"unknown type", `{"v":1,"type":"reboot"}`, ErrUnknownType, "reboot"},
		{"body missing", `{"v":1,"type":"job"}`, ErrMalformed, "job missing"},
		{"encode without credential", `{"v":1,"type":"job","job":{"job_id":"j","kind":"encode","encoder_id":"e","deadline":"2026-01-01T00:00:00Z"}}`, ErrMalformed, "credential missing"},
		{"scan with credential", `{"v":1,"type":"job","job":{"job_id":"j","kind":"scan","encoder_id":"e","deadline":"2026-01-01T00:00:00Z","credential":{}}}`, ErrMalformed, "scan job"},
		{"unknown kind", `{"v":1,"type":"job","job":{"job_id":"j","kind":"wipe","encoder_id":"e","deadline":"2026-01-01T00:00:00Z"}}`, ErrMalformed, `"wipe"`},
		{"no deadline", `{"v":1,"type":"job","job":{"job_id":"j","kind":"scan","encoder_id":"e"}}`, ErrMalformed, "deadline"},
		{"result with both", `{"v":1,"type":"result","result":{"job_id":"j","card":{"uid":"","technology":"","valid":false},"error":{"type":"x","message":""}}}`, ErrMalformed, "exactly one"},
		{"result with neither", `{"v":1,"type":"result","result":{"job_id":"j"}}`, ErrMalformed, "exactly one"},
		{"bad stage", `{"v":1,"type":"progress","progress":{"job_id":"j","stage":"dancing"}}`, ErrMalformed, "dancing"},
		{"hello without bridge", `{"v":1,"type":"hello","hello":{"bridge_id":""}}`, ErrMalformed, "bridge_id"},
		{"hello encoder without id", `{"v":1,"type":"hello","hello":{"bridge_id":"b","encoders":[{"reader_name":"r"}]}}`, ErrMalformed, "encoders[0]"},
		{"too large", `{"v":1,"type":"error","error":{"code":"x","message":"` + strings.Repeat("a", MaxMessageSize) + `"}}`, ErrTooLarge, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode([]byte(tt.in))
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.text) {
				t.Fatalf("error %q lacks %q", err, tt.text)
			}
		})
	}
}

func TestEncodeRefusesInvalid(t *testing.T) {
	if _, err := Encode(&Message{V: 1, Type: TypeAck}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("Encode of an empty ack: %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	for _, m := range validMessages() {
		b, _ := Encode(m)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			return
		}
		if _, err := Encode(m); err != nil {
			t.Fatalf("decoded message does not encode: %v", err)
		}
	})
}

func TestEncodeRefusesMissingVersion(t *testing.T) {
	_, err := Encode(&Message{Type: TypeAck, Ack: &Ack{JobID: "j1"}})
	if !errors.Is(err, ErrVersion) {
		t.Fatalf("Encode without v: %v, want ErrVersion", err)
	}
}

func TestDecodeRefusesInvalidUTF8(t *testing.T) {
	_, err := Decode([]byte("{\"v\":1,\"type\":\"ack\",\"ack\":{\"job_id\":\"j\xff\"}}"))
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "UTF-8") {
		t.Fatalf("invalid UTF-8: %v", err)
	}
}

func TestDecodeRefusesEmptyActiveJob(t *testing.T) {
	_, err := Decode([]byte(`{"v":1,"type":"hello","hello":{"bridge_id":"b","software_version":"","protocol_version":1,"encoders":[],"active_jobs":[""]}}`))
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "active_jobs[0]") {
		t.Fatalf("empty active job: %v", err)
	}
}

func TestJournalReset(t *testing.T) {
	const hello = `{"v":1,"type":"hello","hello":{"bridge_id":"b","software_version":"","protocol_version":1,"encoders":[],"journal_reset":%s}}`
	long := strings.Repeat("x", MaxReasonLen+1)
	for _, tc := range []struct {
		reset string
		ok    bool
	}{
		{`{"at":"2026-11-23T14:58:02Z","reason":"the file is empty"}`, true},
		{`{"reason":"no time"}`, false},
		{`{"at":"2026-11-23T14:58:02Z","reason":"` + long + `"}`, false},
		{`{"at":"2026-11-23T14:58:02Z","reason":"r","extra":1}`, false},
	} {
		m, err := Decode(fmt.Appendf(nil, hello, tc.reset))
		if tc.ok != (err == nil) {
			t.Errorf("%.60s: %v", tc.reset, err)
			continue
		}
		if err == nil && (m.Hello.JournalReset == nil || m.Hello.JournalReset.At.IsZero()) {
			t.Errorf("%.60s: decoded %+v", tc.reset, m.Hello.JournalReset)
		}
	}
}

// A frame the peer may send must re-encode within the limit: HTML
// escaping would turn each '<' into six bytes.
func TestReencodeDoesNotGrow(t *testing.T) {
	msg := strings.Repeat("<&>", (MaxMessageSize-200)/3)
	in := `{"v":1,"type":"error","error":{"code":"internal_error","message":"` + msg + `"}}`
	m, err := Decode([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	out, err := Encode(m)
	if err != nil {
		t.Fatalf("re-encode: %v", err)
	}
	if len(out) != len(in) {
		t.Fatalf("re-encoded %d bytes from %d", len(out), len(in))
	}
}

func TestJobID(t *testing.T) {
	for _, m := range validMessages() {
		want := ""
		switch m.Type {
		case TypeJob, TypeAck, TypeProgress, TypeResult, TypeResultAck:
			want = "j1"
			if m.Job != nil {
				want = m.Job.JobID
			}
		case TypeError:
			want = "j9"
		}
		if got := m.JobID(); got != want {
			t.Errorf("%s: JobID() = %q, want %q", m.Type, got, want)
		}
	}
}

// CodeOf names the refusal for each way Decode fails, the one mapping both
// ends answer a bad frame with.
func TestCodeOf(t *testing.T) {
	big := make([]byte, MaxMessageSize+1)
	tests := []struct {
		frame string
		want  ErrorCode
	}{
		{`{"v":1,"type":"ack"`, CodeMalformed},
		{`{"v":2,"type":"ack","ack":{"job_id":"j"}}`, CodeUnsupported},
		{`{"v":1,"type":"fax"}`, CodeUnknownType},
		{string(big), CodeTooLarge},
	}
	for _, tt := range tests {
		_, err := Decode([]byte(tt.frame))
		if err == nil {
			t.Fatalf("Decode(%.40q) accepted", tt.frame)
		}
		if got := CodeOf(err); got != tt.want {
			t.Errorf("CodeOf(%v) = %s, want %s", err, got, tt.want)
		}
	}
}

// A job's stored body, framed, is byte for byte what Encode makes of the
// job message, and decodes back to the job.
func TestJobFrame(t *testing.T) {
	seq := uint32(7)
	j := &Job{JobID: "j1", ActionAttemptID: "aa", Kind: JobEncode, EncoderID: "e1", Deadline: time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC),
		Credential: &Credential{CredentialID: "c", CardNumber: "1<2&3", EntranceIDs: []string{}, IssueSequence: &seq}}
	body, err := MarshalJob(j)
	if err != nil {
		t.Fatal(err)
	}
	m := New(TypeJob)
	m.Job = j
	want, err := Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	if got := JobFrame(body); !bytes.Equal(got, want) {
		t.Fatalf("JobFrame = %s\nEncode   = %s", got, want)
	}
	back, err := Decode(JobFrame(body))
	if err != nil || back.Job.JobID != "j1" || back.Job.Credential.CardNumber != "1<2&3" {
		t.Fatalf("Decode(JobFrame) = %+v, %v", back, err)
	}
	if _, err := MarshalJob(&Job{JobID: "j2", Kind: JobScan}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("MarshalJob of an invalid job: %v, want ErrMalformed", err)
	}
}
