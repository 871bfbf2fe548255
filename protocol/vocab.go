package protocol

import (
	"encoding/json"
	"errors"
	"fmt"
)

// ErrorType is the type of a failed job (JobError.Type). Card and encoder
// outcomes use the names of Seam's action attempt error types, so the
// cloud passes them through unchanged; the last three are this system's
// own, for input the bridge refused before touching a card. Both ends
// spell them only here.
type ErrorType string

const (
	ErrorUncategorized ErrorType = "uncategorized_error"
	// ErrorActionAttemptExpired: the attempt's time ran out before a card
	// was touched (on arrival, waiting for the encoder or for a card, or
	// while the bridge was not running).
	ErrorActionAttemptExpired        ErrorType = "action_attempt_expired"
	ErrorNoCredentialOnEncoder       ErrorType = "no_credential_on_encoder"
	ErrorIncompatibleCardFormat      ErrorType = "incompatible_card_format"
	ErrorCredentialCannotBeReissued  ErrorType = "credential_cannot_be_reissued"
	ErrorEncoderNotOnline            ErrorType = "encoder_not_online"
	ErrorEncoderCommunicationTimeout ErrorType = "encoder_communication_timeout"
	ErrorBridgeDisconnected          ErrorType = "bridge_disconnected"
	// ErrorEncodingInterrupted: writing began and did not finish; the
	// card may hold part of a record.
	ErrorEncodingInterrupted ErrorType = "encoding_interrupted"
	ErrorCredentialDeleted   ErrorType = "credential_deleted"

	// Not Seam's: input the bridge refused before touching a card.
	ErrorInvalidCredential ErrorType = "invalid_credential"
	ErrorInvalidConfig     ErrorType = "invalid_config"
	ErrorKeyFile           ErrorType = "key_file_error"
)

// CodeOf is the code that refuses a frame Decode failed with err.
func CodeOf(err error) ErrorCode {
	switch {
	case errors.Is(err, ErrTooLarge):
		return CodeTooLarge
	case errors.Is(err, ErrVersion):
		return CodeUnsupported
	case errors.Is(err, ErrUnknownType):
		return CodeUnknownType
	}
	return CodeMalformed
}

// jobFramePrefix is how Encode begins a job message: the envelope's fields
// before the body, in the order encoding/json writes them.
var jobFramePrefix = fmt.Sprintf(`{"v":%d,"type":%q,"job":`, Version, TypeJob)

// MarshalJob validates j and marshals it as a job message's body, once:
// the cloud stores the body and sends it as JobFrame(body) on every
// offer, without decoding and encoding it again.
func MarshalJob(j *Job) (json.RawMessage, error) {
	m := New(TypeJob)
	m.Job = j
	frame, err := Encode(m)
	if err != nil {
		return nil, err
	}
	return json.RawMessage(frame[len(jobFramePrefix) : len(frame)-1]), nil
}

// JobFrame is the frame Encode makes of a job message whose body is body
// (from MarshalJob).
func JobFrame(body json.RawMessage) []byte {
	f := make([]byte, 0, len(jobFramePrefix)+len(body)+1)
	f = append(f, jobFramePrefix...)
	f = append(f, body...)
	return append(f, '}')
}
