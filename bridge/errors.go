package bridge

import (
	"context"
	"errors"
	"fmt"

	"github.com/encoder-bridge/encoder-bridge/cardfmt"
	"github.com/encoder-bridge/encoder-bridge/reader"
)

// Code is a job error type. Card and encoder outcomes use the names of
// Seam's ENCODE_CREDENTIAL and SCAN_CREDENTIAL action attempts, so the
// cloud passes them through unchanged; the rest are this system's own.
type Code string

const (
	CodeNoCredentialOnEncoder       Code = "no_credential_on_encoder"
	CodeIncompatibleCardFormat      Code = "incompatible_card_format"
	CodeEncodingInterrupted         Code = "encoding_interrupted"
	CodeEncoderCommunicationTimeout Code = "encoder_communication_timeout"
	CodeEncoderNotOnline            Code = "encoder_not_online"
	CodeUncategorized               Code = "uncategorized_error"

	// Not Seam's: input the bridge refused before touching a card.
	CodeInvalidCredential Code = "invalid_credential"
	CodeInvalidConfig     Code = "invalid_config"
	CodeKeyFile           Code = "key_file_error"
)

// JobError is a failed encode or scan: a Code for machines, a message for
// people. The message names the cause and never holds key material or card
// data.
type JobError struct {
	Code Code
	Err  error
}

func (e *JobError) Error() string { return fmt.Sprintf("%s: %v", e.Code, e.Err) }
func (e *JobError) Unwrap() error { return e.Err }

// Op is the kind of card job, which decides how a removed card reads.
type Op int

const (
	OpEncode Op = iota
	OpScan
)

// Classify maps the reader's and the layouts' sentinel errors to a job
// error. It is the one place that mapping lives.
func Classify(op Op, err error) *JobError {
	if err == nil {
		return nil
	}
	var je *JobError
	if errors.As(err, &je) {
		return je
	}
	code := CodeUncategorized
	switch {
	case errors.Is(err, cardfmt.ErrInterrupted):
		code = CodeEncodingInterrupted
	case errors.Is(err, reader.ErrCardRemoved), errors.Is(err, reader.ErrCardChanged):
		// Seam: encoding_interrupted is "card removed before writing was
		// complete"; a scan that loses its card simply has none. Another
		// card answering after a reset means the job's card is no longer
		// the one selected: for the job, it left.
		code = CodeNoCredentialOnEncoder
		if op == OpEncode {
			code = CodeEncodingInterrupted
		}
	case errors.Is(err, reader.ErrNoCard), errors.Is(err, context.DeadlineExceeded):
		code = CodeNoCredentialOnEncoder
	case errors.Is(err, cardfmt.ErrIncompatible), errors.Is(err, cardfmt.ErrForeign):
		code = CodeIncompatibleCardFormat
	case errors.Is(err, reader.ErrTimeout):
		code = CodeEncoderCommunicationTimeout
	case errors.Is(err, reader.ErrNoService), errors.Is(err, reader.ErrNoReaders),
		errors.Is(err, reader.ErrUnknownReader), errors.Is(err, reader.ErrReaderGone):
		code = CodeEncoderNotOnline
	case errors.Is(err, cardfmt.ErrInvalidCredential), errors.Is(err, ErrInvalidCredential):
		code = CodeInvalidCredential
	}
	return &JobError{Code: code, Err: err}
}
