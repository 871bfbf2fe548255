package cardfmt

import (
	"fmt"
	"math"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap/zapcore"
)

// Limits of a credential in record format version 1.
const (
	MaxCardNumberLen = 20 // card number: 1 to 20 characters [0-9A-Za-z-]
	MaxEntrances     = 32 // entrance ids per card
)

// Bounds of starts_at and ends_at: the record stores Unix seconds as an
// unsigned 32-bit number.
var (
	minTime = time.Unix(0, 0).UTC()              // 1970-01-01T00:00:00Z
	maxTime = time.Unix(math.MaxUint32, 0).UTC() // 2106-02-07T06:28:15Z
)

// Credential is what a card grants: who (ID, CardNumber), as what
// (Function), when (StartsAt to EndsAt) and where (Entrances).
type Credential struct {
	// ID identifies the credential in the property management system.
	// It must not be the nil UUID.
	ID uuid.UUID
	// CardNumber is the number printed on or assigned to the card: 1 to
	// 20 characters [0-9A-Za-z-].
	CardNumber string
	// Function is what the card is for.
	Function Function
	// StartsAt and EndsAt bound the validity. The record keeps whole Unix
	// seconds from 1970 to 2106: fractions of a second are dropped (both
	// times are rounded down). EndsAt must be after StartsAt, in whole
	// seconds.
	StartsAt time.Time
	EndsAt   time.Time
	// Entrances are the doors, rooms or zones the card opens: up to 32,
	// none nil, no duplicates. A card may have none (a function-only card).
	Entrances []uuid.UUID
	// IssueSequence orders the cards of one credential (the same ID): a
	// lock that has seen a card of the credential with a higher sequence
	// refuses older ones. Cards of other credentials are not affected.
	IssueSequence uint32
}

// Field names that Validate reports. They are the names of the CLI's and
// the job protocol's credential fields.
const (
	FieldCredentialID  = "credential_id"
	FieldCardNumber    = "card_number"
	FieldFunction      = "card_function_type"
	FieldStartsAt      = "starts_at"
	FieldEndsAt        = "ends_at"
	FieldEntrances     = "entrance_ids"
	FieldIssueSequence = "issue_sequence"
)

// FieldError is a credential field that does not fit the record format.
// It matches ErrInvalidCredential with errors.Is.
type FieldError struct {
	Field   string // e.g. "card_number" or "entrance_ids[3]"
	Problem string // e.g. "must be 1 to 20 characters [0-9A-Za-z-]"
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }

// Is reports whether target is ErrInvalidCredential.
func (e *FieldError) Is(target error) bool { return target == ErrInvalidCredential }

func fieldErr(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

// Validate checks that c fits the record format. The error is a
// *FieldError naming the first field that does not, for example
// "card_number: must be 1 to 20 characters [0-9A-Za-z-]".
func (c *Credential) Validate() error {
	if c.ID == uuid.Nil {
		return fieldErr(FieldCredentialID, "must not be the nil UUID")
	}
	if !validCardNumber(c.CardNumber) {
		return fieldErr(FieldCardNumber, "must be 1 to %d characters [0-9A-Za-z-]", MaxCardNumberLen)
	}
	if !c.Function.Valid() {
		return fieldErr(FieldFunction, "unknown card function %d (want 1 guest, 2 staff, 3 master, 4 maintenance or 5 emergency)", uint8(c.Function))
	}
	if !inRecordRange(c.StartsAt) {
		return fieldErr(FieldStartsAt, "must be from %s to %s", minTime.Format(time.RFC3339), maxTime.Format(time.RFC3339))
	}
	if !inRecordRange(c.EndsAt) {
		return fieldErr(FieldEndsAt, "must be from %s to %s", minTime.Format(time.RFC3339), maxTime.Format(time.RFC3339))
	}
	if c.EndsAt.Unix() <= c.StartsAt.Unix() {
		return fieldErr(FieldEndsAt, "must be after starts_at (in whole seconds)")
	}
	if len(c.Entrances) > MaxEntrances {
		return fieldErr(FieldEntrances, "at most %d entrances, got %d", MaxEntrances, len(c.Entrances))
	}
	for i, e := range c.Entrances {
		field := fmt.Sprintf("%s[%d]", FieldEntrances, i)
		if e == uuid.Nil {
			return fieldErr(field, "must not be the nil UUID")
		}
		for j := range i {
			if c.Entrances[j] == e {
				return fieldErr(field, "duplicates %s[%d]", FieldEntrances, j)
			}
		}
	}
	return nil
}

func inRecordRange(t time.Time) bool {
	s := t.Unix()
	return s >= 0 && s <= math.MaxUint32
}

func validCardNumber(s string) bool {
	if len(s) < 1 || len(s) > MaxCardNumberLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !cardNumberChar(s[i]) {
			return false
		}
	}
	return true
}

func cardNumberChar(b byte) bool {
	return b >= '0' && b <= '9' || b >= 'A' && b <= 'Z' || b >= 'a' && b <= 'z' || b == '-'
}

// MarshalLogObject logs the credential without its entrance ids (their
// count only).
func (c Credential) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddString(FieldCredentialID, c.ID.String())
	enc.AddString(FieldCardNumber, c.CardNumber)
	enc.AddString(FieldFunction, c.Function.String())
	enc.AddTime(FieldStartsAt, c.StartsAt)
	enc.AddTime(FieldEndsAt, c.EndsAt)
	enc.AddInt("entrances", len(c.Entrances))
	enc.AddUint32(FieldIssueSequence, c.IssueSequence)
	return nil
}
