package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// MaxReportedFields bounds the fields an InputError names, and so the size
// of the error body: a 1 MiB body of tens of thousands of unknown fields
// would otherwise be answered with each of them, twice (issue 10).
const MaxReportedFields = 20

// InputError is a 400: every field that is wrong, with what is wrong, up
// to MaxReportedFields fields; Omitted counts the wrong fields beyond.
type InputError struct {
	// Fields maps a field (dotted for nested ones) to its problems.
	Fields map[string][]string
	// Omitted is how many more fields were wrong.
	Omitted int
	order   []string
}

func (e *InputError) add(field, problem string) {
	// A field name may be anything a client sent: keep it short.
	if len(field) > maxFieldName {
		field = field[:maxFieldName] + "…"
	}
	if e.Fields == nil {
		e.Fields = map[string][]string{}
	}
	if _, ok := e.Fields[field]; !ok {
		if len(e.order) >= MaxReportedFields {
			e.Omitted++
			return
		}
		e.order = append(e.order, field)
	}
	if len(e.Fields[field]) < maxProblemsPerField {
		e.Fields[field] = append(e.Fields[field], problem)
	}
}

// maxProblemsPerField bounds the problems listed for one field, and
// maxFieldName the bytes of a field name reported.
const (
	maxProblemsPerField = 4
	maxFieldName        = 64
)

func (e *InputError) Error() string {
	parts := make([]string, 0, len(e.order)+1)
	for _, f := range e.order {
		parts = append(parts, f+": "+strings.Join(e.Fields[f], ", "))
	}
	if e.Omitted > 0 {
		parts = append(parts, fmt.Sprintf("and %d more fields", e.Omitted))
	}
	return "invalid input: " + strings.Join(parts, "; ")
}

// wrong reports whether any problem was found, named or omitted.
func (e *InputError) wrong() bool { return len(e.Fields) > 0 || e.Omitted > 0 }

// input reads a request's parameters, from a JSON body (POST) or the query
// string (GET), and collects every problem. Fields never read are unknown
// fields, reported by finish.
type input struct {
	prefix string
	body   map[string]json.RawMessage
	query  url.Values
	used   map[string]bool
	errs   *InputError
}

func newBodyInput(b []byte) (*input, error) {
	in := &input{body: map[string]json.RawMessage{}, used: map[string]bool{}, errs: &InputError{}}
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return in, nil // Seam's SDKs post no body to list routes called without arguments
	}
	if n := countKeys(b); n > MaxBodyKeys {
		// Refused before decoding: a map of tens of thousands of fields
		// costs tens of megabytes to build.
		e := &InputError{}
		e.add("body", fmt.Sprintf("has %d fields; no route takes more than %d", n, MaxBodyKeys))
		return nil, e
	}
	// Unmarshal, not a Decoder: it refuses anything after the object, even
	// closing brackets (a Decoder's More reports false before "}" or "]",
	// so `{...}}]garbage` used to pass).
	if err := json.Unmarshal(b, &in.body); err != nil || in.body == nil {
		e := &InputError{}
		e.add("body", "must be one JSON object and nothing after it")
		return nil, e
	}
	return in, nil
}

// MaxBodyKeys bounds the object keys in a request body, at every depth.
// The largest request has a few dozen.
const MaxBodyKeys = 256

// countKeys counts the object keys in JSON text b without decoding it: the
// colons outside strings. It does not validate b.
func countKeys(b []byte) int {
	n := 0
	inString, escaped := false, false
	for _, c := range b {
		switch {
		case escaped:
			escaped = false
		case inString:
			switch c {
			case '\\':
				escaped = true
			case '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == ':':
			n++
		}
	}
	return n
}

// newQueryInput reads a GET query the way Seam's SDKs write one: arrays as
// repeated keys (an empty array as one empty value), null as an empty
// value, and "_strict=true" on every query, which is ignored (this API is
// always strict).
func newQueryInput(q url.Values) *input {
	norm := url.Values{}
	for k, v := range q {
		if k == "_strict" {
			continue
		}
		k = strings.TrimSuffix(k, "[]")
		norm[k] = append(norm[k], v...)
	}
	return &input{query: norm, used: map[string]bool{}, errs: &InputError{}}
}

func (in *input) name(field string) string { return in.prefix + field }

func (in *input) bad(field, format string, args ...any) {
	in.errs.add(in.name(field), fmt.Sprintf(format, args...))
}

// raw returns the field's value: JSON text for a body, the query values
// for a query. JSON null counts as absent.
func (in *input) raw(field string) (j json.RawMessage, q []string, ok bool) {
	in.used[field] = true
	if in.query != nil {
		q, ok = in.query[field]
		return nil, q, ok && len(q) > 0
	}
	j, ok = in.body[field]
	if ok && string(j) == "null" {
		return nil, nil, false
	}
	return j, nil, ok
}

// str reads a string.
func (in *input) str(field string) (string, bool) {
	j, q, ok := in.raw(field)
	if !ok {
		return "", false
	}
	if q != nil {
		if len(q) > 1 {
			in.bad(field, "must be given once")
			return "", false
		}
		// An empty query value is how the SDKs send null.
		return q[0], q[0] != ""
	}
	var s string
	if err := json.Unmarshal(j, &s); err != nil {
		in.bad(field, "must be a string")
		return "", false
	}
	return s, true
}

func (in *input) required(field string) {
	in.bad(field, "required")
}

// uuid reads a UUID (canonical lower-case form returned).
func (in *input) uuid(field string, required bool) string {
	s, ok := in.str(field)
	if !ok {
		if required && !in.errs.has(in.name(field)) {
			in.required(field)
		}
		return ""
	}
	u, err := uuid.Parse(s)
	if err != nil || len(s) != 36 {
		in.bad(field, "must be a UUID")
		return ""
	}
	return u.String()
}

func (e *InputError) has(field string) bool {
	_, ok := e.Fields[field]
	return ok
}

// uuids reads an array of UUIDs. present is false when the field is absent.
func (in *input) uuids(field string) (ids []string, present bool) {
	j, q, ok := in.raw(field)
	if !ok {
		return nil, false
	}
	var vals []string
	if q != nil {
		for _, v := range q {
			if v == "" {
				continue
			}
			vals = append(vals, strings.Split(v, ",")...)
		}
	} else if err := json.Unmarshal(j, &vals); err != nil {
		in.bad(field, "must be an array of UUIDs")
		return nil, true
	}
	ids = make([]string, 0, len(vals))
	for i, v := range vals {
		u, err := uuid.Parse(v)
		if err != nil || len(v) != 36 {
			in.bad(fmt.Sprintf("%s[%d]", field, i), "must be a UUID")
			continue
		}
		ids = append(ids, u.String())
	}
	return ids, true
}

// enum reads a string that must be one of allowed.
func (in *input) enum(field string, allowed ...string) (string, bool) {
	s, ok := in.str(field)
	if !ok {
		return "", false
	}
	if !slices.Contains(allowed, s) {
		in.bad(field, "must be one of %s", strings.Join(allowed, ", "))
		return "", false
	}
	return s, true
}

// time reads an ISO 8601 (RFC 3339) time.
func (in *input) time(field string) (time.Time, bool) {
	s, ok := in.str(field)
	if !ok {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		in.bad(field, "must be an ISO 8601 date-time such as 2026-11-23T15:00:00Z")
		return time.Time{}, false
	}
	return t.UTC(), true
}

// number reads a number.
func (in *input) number(field string) (float64, bool) {
	j, q, ok := in.raw(field)
	if !ok {
		return 0, false
	}
	var f float64
	var err error
	if q != nil {
		if len(q) > 1 {
			in.bad(field, "must be given once")
			return 0, false
		}
		if q[0] == "" {
			return 0, false
		}
		f, err = strconv.ParseFloat(q[0], 64)
	} else {
		err = json.Unmarshal(j, &f)
	}
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		in.bad(field, "must be a number")
		return 0, false
	}
	return f, true
}

// boolean reads a boolean.
func (in *input) boolean(field string) (bool, bool) {
	j, q, ok := in.raw(field)
	if !ok {
		return false, false
	}
	var b bool
	var err error
	if q != nil {
		if len(q) > 1 {
			in.bad(field, "must be given once")
			return false, false
		}
		if q[0] == "" {
			return false, false
		}
		b, err = strconv.ParseBool(q[0])
	} else {
		err = json.Unmarshal(j, &b)
	}
	if err != nil {
		in.bad(field, "must be true or false")
		return false, false
	}
	return b, true
}

// object reads a nested JSON object as an input of its own, whose problems
// are reported with "field." in front. It is nil when the field is absent.
func (in *input) object(field string) *input {
	j, q, ok := in.raw(field)
	if !ok {
		return nil
	}
	if q != nil {
		in.bad(field, "objects are accepted in a JSON body (POST) only")
		return nil
	}
	sub := &input{prefix: in.name(field) + ".", body: map[string]json.RawMessage{}, used: map[string]bool{}, errs: in.errs}
	if err := json.Unmarshal(j, &sub.body); err != nil {
		in.bad(field, "must be an object")
		return nil
	}
	return sub
}

// unsupported refuses Seam fields that this access system has no use for.
func (in *input) unsupported(fields ...string) {
	for _, f := range fields {
		if _, _, ok := in.raw(f); ok {
			in.bad(f, "not supported by this access system")
		}
	}
}

// exactlyOne checks that exactly one of a and b was given.
func (in *input) exactlyOne(a, av, b, bv string) {
	if (av == "") == (bv == "") && !in.errs.has(in.name(a)) && !in.errs.has(in.name(b)) {
		msg := "exactly one of " + in.name(a) + " and " + in.name(b) + " is required"
		if av != "" {
			msg = "give only one of " + in.name(a) + " and " + in.name(b)
		}
		in.bad(a, "%s", msg)
		in.bad(b, "%s", msg)
	}
}

// check reports unknown fields (of this input and nested ones already
// finished) and every problem found.
func (in *input) check() error {
	in.unknown()
	if in.errs.wrong() {
		return in.errs
	}
	return nil
}

// unknown reports the fields never read: the first MaxReportedFields by
// name, and how many more.
func (in *input) unknown() {
	var first []string // sorted, at most MaxReportedFields
	more := 0
	note := func(k string) {
		if in.used[k] {
			return
		}
		i, _ := slices.BinarySearch(first, k)
		if len(first) < MaxReportedFields {
			first = slices.Insert(first, i, k)
			return
		}
		more++
		if i < len(first) {
			copy(first[i+1:], first[i:])
			first[i] = k
		}
	}
	if in.query != nil {
		for k := range in.query {
			note(k)
		}
	} else {
		for k := range in.body {
			note(k)
		}
	}
	for _, k := range first {
		in.bad(k, "unknown field")
	}
	in.errs.Omitted += more
}
