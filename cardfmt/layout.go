package cardfmt

import (
	"errors"
	"time"
)

// Errors the layouts (cardfmt/classic, cardfmt/ultralight) return. They sit
// beside the reader's transport errors; bridge maps both to job error types.
var (
	// ErrForeign: the card is keyed by another system, so this system can
	// neither read nor write it.
	ErrForeign = errors.New("card is keyed by another system")
	// ErrIncompatible: the card cannot hold this system's record (wrong
	// technology, too little free memory, locked or damaged memory).
	ErrIncompatible = errors.New("incompatible card format")
	// ErrInterrupted: writing began but did not complete and verify: the card
	// left the field, or the read-back differed. The card stays re-encodable.
	ErrInterrupted = errors.New("encoding interrupted")
	// ErrUIDMismatch: an authentic record issued to another card, copied
	// onto this one.
	ErrUIDMismatch = errors.New("record was issued to another card")
)

// Reason says why a scanned card holds no valid record. The strings are
// part of the CLI's JSON output and the job protocol.
type Reason string

const (
	ReasonNone              Reason = ""
	ReasonBlank             Reason = "blank"               // no record of this system, card not keyed by another
	ReasonForeign           Reason = "foreign"             // keyed by another system
	ReasonBadMAC            Reason = "bad_mac"             // record present, authentication failed
	ReasonUIDMismatch       Reason = "uid_mismatch"        // authentic record issued to another card
	ReasonUnknownKeyVersion Reason = "unknown_key_version" // this system's card, key version not in the key file
	ReasonRetiredKeyVersion Reason = "retired_key_version" // this system's card, key version no longer accepted
	ReasonCorrupt           Reason = "corrupt"             // record present but malformed or truncated
)

// ReasonFor classifies an error from Open (or a layout) as a scan verdict.
// It returns ReasonNone for errors that are not verdicts, such as a card
// removed mid-read: those fail the scan instead.
func ReasonFor(err error) Reason {
	switch {
	case err == nil:
		return ReasonNone
	case errors.Is(err, ErrNoRecord):
		return ReasonBlank
	case errors.Is(err, ErrForeign):
		return ReasonForeign
	case errors.Is(err, ErrUIDMismatch):
		return ReasonUIDMismatch
	case errors.Is(err, ErrBadMAC):
		return ReasonBadMAC
	case errors.Is(err, ErrUnknownKeyVersion):
		return ReasonUnknownKeyVersion
	case errors.Is(err, ErrRetiredKeyVersion):
		return ReasonRetiredKeyVersion
	case errors.Is(err, ErrCorrupt), errors.Is(err, ErrUnsupportedFormat):
		return ReasonCorrupt
	}
	return ReasonNone
}

// Scan is what a layout read from a card.
type Scan struct {
	// Record is set when the record verified.
	Record *Record
	// Reason is set when it did not.
	Reason Reason
	// Detail explains Reason in words for operators; it never holds card
	// data or key material.
	Detail string
}

// Valid reports whether the card holds an authentic record for this card.
func (s Scan) Valid() bool { return s.Record != nil && s.Reason == ReasonNone }

// Warnings lists validity warnings for a valid record at time now.
func (s Scan) Warnings(now time.Time) []string {
	if !s.Valid() {
		return nil
	}
	switch {
	case now.Before(s.Record.StartsAt):
		return []string{"not_yet_valid"}
	case !now.Before(s.Record.EndsAt):
		return []string{"expired"}
	}
	return nil
}

// Verdict turns the outcome of Open into a Scan: a verdict error becomes a
// Reason, any other error is returned.
func Verdict(rec Record, err error) (Scan, error) {
	if err == nil {
		return Scan{Record: &rec}, nil
	}
	if r := ReasonFor(err); r != ReasonNone {
		return Scan{Reason: r, Detail: err.Error()}, nil
	}
	return Scan{}, err
}
