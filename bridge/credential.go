package bridge

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/encoder-bridge/encoder-bridge/cardfmt"
	"github.com/encoder-bridge/encoder-bridge/protocol"
)

// ErrInvalidCredential marks credential input that could not be decoded.
var ErrInvalidCredential = errors.New("invalid credential")

// CredentialSpec is a credential as the CLI's --credential file and encode
// jobs carry it: one shape, defined by the job protocol.
type CredentialSpec = protocol.Credential

// maxCredentialJSON bounds what is read from a file or a job.
const maxCredentialJSON = 64 << 10

// ParseCredential decodes and validates a credential. Every missing or
// malformed field is named in the error, all of them at once.
func ParseCredential(data []byte) (cardfmt.Credential, error) {
	if len(data) > maxCredentialJSON {
		return cardfmt.Credential{}, fmt.Errorf("%w: larger than %d bytes", ErrInvalidCredential, maxCredentialJSON)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var s CredentialSpec
	if err := dec.Decode(&s); err != nil {
		return cardfmt.Credential{}, fmt.Errorf("%w: %s", ErrInvalidCredential, jsonError(data, err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return cardfmt.Credential{}, fmt.Errorf("%w: trailing data after the JSON object", ErrInvalidCredential)
	}
	return CredentialOf(s)
}

// CredentialOf converts and validates a credential spec.
func CredentialOf(s CredentialSpec) (cardfmt.Credential, error) {
	var c cardfmt.Credential
	var errs []string
	bad := func(field, format string, args ...any) {
		errs = append(errs, field+": "+fmt.Sprintf(format, args...))
	}
	if s.CredentialID == "" {
		bad("credential_id", "missing")
	} else if id, err := uuid.Parse(s.CredentialID); err != nil {
		bad("credential_id", "not a UUID")
	} else {
		c.ID = id
	}
	if s.CardNumber == "" {
		bad("card_number", "missing")
	}
	c.CardNumber = s.CardNumber
	if s.CardFunctionType == "" {
		bad("card_function_type", "missing")
	} else if f, err := cardfmt.ParseFunction(s.CardFunctionType); err != nil {
		bad("card_function_type", "unknown %q (guest, staff, master, maintenance, emergency)", s.CardFunctionType)
	} else {
		c.Function = f
	}
	parseTime := func(field, v string, dst *time.Time) {
		if v == "" {
			bad(field, "missing")
			return
		}
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			bad(field, "not an RFC 3339 time such as 2026-11-23T15:00:00Z")
			return
		}
		*dst = t
	}
	parseTime("starts_at", s.StartsAt, &c.StartsAt)
	parseTime("ends_at", s.EndsAt, &c.EndsAt)
	for i, e := range s.EntranceIDs {
		id, err := uuid.Parse(e)
		if err != nil {
			bad(fmt.Sprintf("entrance_ids[%d]", i), "not a UUID")
			continue
		}
		c.Entrances = append(c.Entrances, id)
	}
	if s.IssueSequence == nil {
		bad("issue_sequence", "missing")
	} else {
		c.IssueSequence = *s.IssueSequence
	}
	if len(errs) > 0 {
		return cardfmt.Credential{}, fmt.Errorf("%w: %s", ErrInvalidCredential, strings.Join(errs, "; "))
	}
	if err := c.Validate(); err != nil {
		return cardfmt.Credential{}, fmt.Errorf("%w: %w", ErrInvalidCredential, err)
	}
	return c, nil
}

// SpecOf is the spec of c, for output. It is not an exact inverse of
// CredentialOf: the spec comes back normalized (times in UTC to the
// second, UUIDs in lower case, entrance_ids never null).
func SpecOf(c cardfmt.Credential) CredentialSpec {
	ids := make([]string, len(c.Entrances))
	for i, e := range c.Entrances {
		ids[i] = e.String()
	}
	seq := c.IssueSequence
	return CredentialSpec{
		CredentialID:     c.ID.String(),
		CardNumber:       c.CardNumber,
		CardFunctionType: c.Function.String(),
		StartsAt:         c.StartsAt.UTC().Format(time.RFC3339),
		EndsAt:           c.EndsAt.UTC().Format(time.RFC3339),
		EntranceIDs:      ids,
		IssueSequence:    &seq,
	}
}

// jsonError turns a decoding error into words with a line number where
// there is an offset, and the field where there is one.
func jsonError(data []byte, err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("malformed JSON at line %d: %v", lineOf(data, syn.Offset), syn)
	case errors.As(err, &typ):
		return fmt.Sprintf("%s: must be a %s, not %s", typ.Field, typ.Type, typ.Value)
	case errors.Is(err, io.EOF):
		return "empty input"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "truncated JSON"
	}
	if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return "unknown field " + f
	}
	return err.Error()
}

func lineOf(data []byte, off int64) int {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	return 1 + bytes.Count(data[:off], []byte{'\n'})
}
