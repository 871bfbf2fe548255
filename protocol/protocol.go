// Package protocol defines the messages a bridge and the cloud exchange
// over the bridge's one outbound websocket. docs/protocol.md describes the
// conversation; this package is its single source of truth for both ends.
//
// Every message is one JSON text frame: an envelope with the protocol
// version, a type, and the body for that type. It must not import bridge,
// cloud, reader or cardfmt: both ends import it.
package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
	"unicode/utf8"
)

// Version is the protocol version this build speaks.
const Version = 1

// MaxMessageSize bounds one frame, both ways. A job with 32 entrances is
// about 2 KiB; a hello listing many encoders and pending results stays far
// below this.
const MaxMessageSize = 256 << 10

// Path is the websocket endpoint bridges dial on the cloud.
const Path = "/bridge/v1/connect"

// Type names a message.
type Type string

const (
	// Bridge → cloud.
	TypeHello          Type = "hello"           // first message: who the bridge is, its encoders, results finished offline
	TypeEncoderAdded   Type = "encoder_added"   // a reader was plugged in
	TypeEncoderRemoved Type = "encoder_removed" // a reader was unplugged
	TypeAck            Type = "ack"             // the job is stored durably; a result will follow
	TypeProgress       Type = "progress"        // the job reached a stage
	TypeResult         Type = "result"          // the job ended; repeated until acknowledged

	// Cloud → bridge.
	TypeWelcome   Type = "welcome"    // answer to hello
	TypeJob       Type = "job"        // run this job (again, after a reconnect: idempotent by job id)
	TypeResultAck Type = "result_ack" // the cloud stored the result; the bridge may forget it

	// Either way.
	TypeError Type = "error" // the peer's last message was refused
)

// Message is the envelope. Exactly the body field matching Type is set.
type Message struct {
	V    int  `json:"v"`
	Type Type `json:"type"`

	Hello     *Hello     `json:"hello,omitempty"`
	Welcome   *Welcome   `json:"welcome,omitempty"`
	Encoder   *Encoder   `json:"encoder,omitempty"`
	EncoderID EncoderID  `json:"encoder_id,omitempty"`
	Job       *Job       `json:"job,omitempty"`
	Ack       *Ack       `json:"ack,omitempty"`
	Progress  *Progress  `json:"progress,omitempty"`
	Result    *Result    `json:"result,omitempty"`
	ResultAck *ResultAck `json:"result_ack,omitempty"`
	Error     *Error     `json:"error,omitempty"`
}

// Hello introduces a bridge.
type Hello struct {
	BridgeID        string    `json:"bridge_id"`
	SoftwareVersion string    `json:"software_version"`
	ProtocolVersion int       `json:"protocol_version"`
	Encoders        []Encoder `json:"encoders"`
	// Results finished while the link was down, not yet acknowledged.
	Results []Result `json:"results,omitempty"`
	// Jobs the bridge holds (received, not finished), so the cloud does not
	// offer them again as new.
	ActiveJobs []string `json:"active_jobs,omitempty"`
	// JournalReset is set when the bridge found its job journal damaged,
	// set it aside and started a new one: jobs it held may have been lost.
	// Sent until a welcome answers a hello carrying it.
	JournalReset *JournalReset `json:"journal_reset,omitempty"`
}

// MaxReasonLen bounds JournalReset.Reason.
const MaxReasonLen = 1024

// JournalReset tells the cloud the bridge's job journal was damaged and
// started over. Jobs the bridge had acknowledged and no longer knows are
// answered, if the cloud offers them again (Job.Acked), with
// encoding_interrupted for encode jobs: never run twice.
type JournalReset struct {
	// At is when the bridge set the damaged journal aside, on its clock.
	At time.Time `json:"at"`
	// Reason says what was wrong with the file, for people.
	Reason string `json:"reason"`
}

// EncoderID is a bridge's id for one of its encoders, stable across
// reconnects and restarts: derived from the bridge id and the reader's
// identity. It is not the cloud's acs_encoder_id, which the cloud derives
// from it.
type EncoderID string

// Encoder is a card encoder (a reader) attached to a bridge.
type Encoder struct {
	ID          EncoderID `json:"id"`
	DisplayName string    `json:"display_name"`
	ReaderName  string    `json:"reader_name"`
	// Technologies the encoder can write (card technology names).
	Technologies []string `json:"technologies"`
}

// Welcome accepts a hello.
type Welcome struct {
	BridgeID   string    `json:"bridge_id"`
	ServerTime time.Time `json:"server_time"`
}

// JobKind is what a job does.
type JobKind string

const (
	JobEncode JobKind = "encode"
	JobScan   JobKind = "scan"
)

// Job asks the bridge to encode or scan a card.
type Job struct {
	JobID           string    `json:"job_id"`
	ActionAttemptID string    `json:"action_attempt_id"`
	Kind            JobKind   `json:"kind"`
	EncoderID       EncoderID `json:"encoder_id"`
	Deadline        time.Time `json:"deadline"`
	// Credential is set for encode jobs.
	Credential *Credential `json:"credential,omitempty"`
	// Acked says the cloud received the bridge's ack for this job on an
	// earlier delivery: the bridge stored it. A bridge that does not know
	// such a job lost it with a damaged journal and must not write a card
	// for it again.
	Acked bool `json:"acked,omitempty"`
}

// Credential is the card data of an encode job: the fields of the card's
// credential record.
type Credential struct {
	CredentialID     string   `json:"credential_id"`
	CardNumber       string   `json:"card_number"`
	CardFunctionType string   `json:"card_function_type"`
	StartsAt         string   `json:"starts_at"`
	EndsAt           string   `json:"ends_at"`
	EntranceIDs      []string `json:"entrance_ids"`
	IssueSequence    *uint32  `json:"issue_sequence"`
}

// Ack says the bridge stored the job durably. It promises a result, not
// a successful one: a job that cannot run is acked and then finished with
// an error result.
type Ack struct {
	JobID string `json:"job_id"`
}

// Stage is a step of a running job. The bridge's Station reports each
// one before it starts.
type Stage string

const (
	StageWaitingForCard Stage = "waiting_for_card" // waiting for a card to be presented
	StageCardDetected   Stage = "card_detected"    // a card is connected and identified
	StageWriting        Stage = "writing"          // about to write (encode only): nothing is written before it is reported
	StageVerifying      Stage = "verifying"        // the layout reads the card back (encode only)
)

// Progress reports a stage.
type Progress struct {
	JobID string `json:"job_id"`
	Stage Stage  `json:"stage"`
}

// Result ends a job: Card on success, Error otherwise.
type Result struct {
	JobID      string    `json:"job_id"`
	FinishedAt time.Time `json:"finished_at"`
	Card       *Card     `json:"card,omitempty"`
	Error      *JobError `json:"error,omitempty"`
}

// Card is what the bridge learned about the card of a successful job.
type Card struct {
	UID        string `json:"uid"` // hex
	Technology string `json:"technology"`
	// KeyVersion is the site key version the card is keyed under.
	KeyVersion int `json:"key_version,omitempty"`
	// Valid, Reason and Warnings are the verdict of a scan.
	Valid    bool     `json:"valid"`
	Reason   string   `json:"reason,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
	// Credential is what the card holds (scan) or was given (encode);
	// nil when a scanned card holds no valid record.
	Credential    *Credential `json:"credential,omitempty"`
	FormatVersion int         `json:"format_version,omitempty"`
}

// JobError is a failed job, typed with Seam's action attempt error types.
type JobError struct {
	Type    ErrorType `json:"type"`
	Message string    `json:"message"`
}

// ResultAck lets the bridge forget a result.
type ResultAck struct {
	JobID string `json:"job_id"`
}

// Error refuses a message.
type Error struct {
	Code    ErrorCode `json:"code"`
	Message string    `json:"message"`
	// JobID is set when the refused message concerned a job.
	JobID string `json:"job_id,omitempty"`
}

// ErrorCode classifies a refused message.
type ErrorCode string

const (
	CodeMalformed       ErrorCode = "malformed_message"
	CodeUnsupported     ErrorCode = "unsupported_version"
	CodeUnknownType     ErrorCode = "unknown_message_type"
	CodeUnknownEncoder  ErrorCode = "unknown_encoder"
	CodeDeadlinePassed  ErrorCode = "deadline_passed"
	CodeUnexpected      ErrorCode = "unexpected_message"
	CodeTooLarge        ErrorCode = "message_too_large"
	CodeInternal        ErrorCode = "internal_error"
	CodeUnauthenticated ErrorCode = "unauthenticated"
	// CodeStopping: the bridge is stopping and took no new job; the
	// cloud offers it again at the next hello.
	CodeStopping ErrorCode = "bridge_stopping"
)

// Sentinel errors of Decode, matched with errors.Is.
var (
	ErrMalformed   = errors.New("malformed message")
	ErrVersion     = errors.New("unsupported protocol version")
	ErrUnknownType = errors.New("unknown message type")
	ErrTooLarge    = errors.New("message too large")
)

// JobID is the job a message is about, or "" for one about no job.
func (m *Message) JobID() string {
	switch {
	case m.Job != nil:
		return m.Job.JobID
	case m.Ack != nil:
		return m.Ack.JobID
	case m.Progress != nil:
		return m.Progress.JobID
	case m.Result != nil:
		return m.Result.JobID
	case m.ResultAck != nil:
		return m.ResultAck.JobID
	case m.Error != nil:
		return m.Error.JobID
	}
	return ""
}

// New wraps a body into a message of the current version.
func New(t Type) *Message { return &Message{V: Version, Type: t} }

// Encode marshals m.
func Encode(m *Message) ([]byte, error) {
	if m.V != Version {
		// A literal Message without V would be refused by every receiver;
		// say so here, where the mistake is.
		return nil, fmt.Errorf("protocol: encode %s: %w: v is %d, want %d (build messages with New)", m.Type, ErrVersion, m.V, Version)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	// No HTML escaping: the frames are never embedded in HTML, and
	// escaping <, > and & would make a frame re-encode up to six times
	// larger than the one it was decoded from.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return nil, fmt.Errorf("protocol: encode %s: %w", m.Type, err)
	}
	b := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	if len(b) > MaxMessageSize {
		return nil, fmt.Errorf("protocol: encode %s: %d bytes: %w", m.Type, len(b), ErrTooLarge)
	}
	return b, nil
}

// Decode parses and validates one frame. The error says what is wrong and
// wraps one of the sentinels, so the receiver can answer with an Error
// message and carry on.
func Decode(b []byte) (*Message, error) {
	if len(b) > MaxMessageSize {
		return nil, fmt.Errorf("protocol: %d bytes: %w", len(b), ErrTooLarge)
	}
	// JSON text is UTF-8 (RFC 8259 section 8.1). encoding/json would
	// silently replace invalid bytes with U+FFFD, changing strings such as
	// job ids between what the peer sent and what this end echoes back.
	if !utf8.Valid(b) {
		return nil, fmt.Errorf("protocol: %w: not valid UTF-8", ErrMalformed)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var m Message
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("protocol: %w: %v", ErrMalformed, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("protocol: %w: data after the message", ErrMalformed)
	}
	if m.V != Version {
		return nil, fmt.Errorf("protocol: %w: %d (this end speaks %d)", ErrVersion, m.V, Version)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Validate checks that the body matching Type is present and well formed.
func (m *Message) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("protocol: %s: %w: %s", m.Type, ErrMalformed, fmt.Sprintf(format, args...))
	}
	need := func(ok bool, field string) error {
		if !ok {
			return bad("%s missing", field)
		}
		return nil
	}
	switch m.Type {
	case TypeHello:
		if m.Hello == nil {
			return bad("hello missing")
		}
		if m.Hello.BridgeID == "" {
			return bad("hello.bridge_id missing")
		}
		for i, e := range m.Hello.Encoders {
			if err := e.validate(); err != nil {
				return bad("hello.encoders[%d]: %v", i, err)
			}
		}
		for i, r := range m.Hello.Results {
			if err := r.validate(); err != nil {
				return bad("hello.results[%d]: %v", i, err)
			}
		}
		for i, id := range m.Hello.ActiveJobs {
			if id == "" {
				return bad("hello.active_jobs[%d] empty", i)
			}
		}
		if r := m.Hello.JournalReset; r != nil && (r.At.IsZero() || len(r.Reason) > MaxReasonLen) {
			return bad("hello.journal_reset: at missing or reason longer than %d bytes", MaxReasonLen)
		}
		return nil
	case TypeWelcome:
		return need(m.Welcome != nil, "welcome")
	case TypeEncoderAdded:
		if m.Encoder == nil {
			return bad("encoder missing")
		}
		if err := m.Encoder.validate(); err != nil {
			return bad("encoder: %v", err)
		}
		return nil
	case TypeEncoderRemoved:
		return need(m.EncoderID != "", "encoder_id")
	case TypeJob:
		if m.Job == nil {
			return bad("job missing")
		}
		return m.Job.validate(bad)
	case TypeAck:
		return need(m.Ack != nil && m.Ack.JobID != "", "ack.job_id")
	case TypeProgress:
		if m.Progress == nil || m.Progress.JobID == "" {
			return bad("progress.job_id missing")
		}
		switch m.Progress.Stage {
		case StageWaitingForCard, StageCardDetected, StageWriting, StageVerifying:
			return nil
		}
		return bad("progress.stage %q unknown", m.Progress.Stage)
	case TypeResult:
		if m.Result == nil {
			return bad("result missing")
		}
		if err := m.Result.validate(); err != nil {
			return bad("result: %v", err)
		}
		return nil
	case TypeResultAck:
		return need(m.ResultAck != nil && m.ResultAck.JobID != "", "result_ack.job_id")
	case TypeError:
		return need(m.Error != nil && m.Error.Code != "", "error.code")
	case "":
		return fmt.Errorf("protocol: %w: type missing", ErrMalformed)
	}
	return fmt.Errorf("protocol: %w: %q", ErrUnknownType, m.Type)
}

func (e Encoder) validate() error {
	if e.ID == "" {
		return errors.New("id missing")
	}
	if e.ReaderName == "" {
		return errors.New("reader_name missing")
	}
	return nil
}

func (j *Job) validate(bad func(string, ...any) error) error {
	switch {
	case j.JobID == "":
		return bad("job.job_id missing")
	case j.EncoderID == "":
		return bad("job.encoder_id missing")
	case j.Deadline.IsZero():
		return bad("job.deadline missing")
	}
	switch j.Kind {
	case JobEncode:
		if j.Credential == nil {
			return bad("job.credential missing for an encode job")
		}
	case JobScan:
		if j.Credential != nil {
			return bad("job.credential given for a scan job")
		}
	default:
		return bad("job.kind %q unknown (encode, scan)", j.Kind)
	}
	return nil
}

func (r Result) validate() error {
	switch {
	case r.JobID == "":
		return errors.New("job_id missing")
	case (r.Card == nil) == (r.Error == nil):
		return errors.New("exactly one of card and error must be set")
	case r.Error != nil && r.Error.Type == "":
		return errors.New("error.type missing")
	}
	return nil
}
