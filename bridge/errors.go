package bridge

import (
	"context"
	"errors"
	"fmt"

	"github.com/encoder-bridge/encoder-bridge/cardfmt"
	"github.com/encoder-bridge/encoder-bridge/protocol"
	"github.com/encoder-bridge/encoder-bridge/reader"
)

// JobError is a failed encode or scan: an error type for machines, a
// message for people. The message names the cause and never holds key
// material or card data.
type JobError struct {
	Code protocol.ErrorType
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
	code := protocol.ErrorUncategorized
	switch {
	case errors.Is(err, cardfmt.ErrInterrupted):
		code = protocol.ErrorEncodingInterrupted
	case errors.Is(err, reader.ErrCardRemoved), errors.Is(err, reader.ErrCardChanged):
		// Seam: encoding_interrupted is "card removed before writing was
		// complete"; a scan that loses its card simply has none. Another
		// card answering after a reset means the job's card is no longer
		// the one selected: for the job, it left.
		code = protocol.ErrorNoCredentialOnEncoder
		if op == OpEncode {
			code = protocol.ErrorEncodingInterrupted
		}
	case errors.Is(err, reader.ErrNoCard), errors.Is(err, context.DeadlineExceeded):
		code = protocol.ErrorNoCredentialOnEncoder
	case errors.Is(err, cardfmt.ErrIncompatible), errors.Is(err, cardfmt.ErrForeign):
		code = protocol.ErrorIncompatibleCardFormat
	case errors.Is(err, reader.ErrTimeout):
		code = protocol.ErrorEncoderCommunicationTimeout
	case errors.Is(err, reader.ErrNoService), errors.Is(err, reader.ErrNoReaders),
		errors.Is(err, reader.ErrUnknownReader), errors.Is(err, reader.ErrReaderGone):
		code = protocol.ErrorEncoderNotOnline
	case errors.Is(err, cardfmt.ErrInvalidCredential), errors.Is(err, ErrInvalidCredential):
		code = protocol.ErrorInvalidCredential
	}
	return &JobError{Code: code, Err: err}
}
