package cloudtest

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// seamOpenAPI is the part of Seam's OpenAPI description that covers
// encoders, credentials, action attempts, events and webhooks, written from the
// @seamapi/types package that conformance/package-lock.json pins by
// conformance/seam-openapi.mjs. TestOpenAPIMatchesLockfile keeps the two
// in step.
//
//go:embed testdata/seam-encoders-openapi.json
var seamOpenAPI []byte

// OpenAPI is Seam's description of the routes this cloud speaks.
type OpenAPI struct {
	Info struct {
		Source string `json:"source"`
	} `json:"info"`
	Paths   map[string]map[string]json.RawMessage `json:"paths"`
	Schemas map[string]any                        `json:"schemas"`
}

// LoadOpenAPI returns Seam's description of the routes this cloud speaks.
func LoadOpenAPI(t testing.TB) *OpenAPI {
	t.Helper()
	var o OpenAPI
	if err := json.Unmarshal(seamOpenAPI, &o); err != nil {
		t.Fatalf("testdata/seam-encoders-openapi.json: %v", err)
	}
	return &o
}

// ResponseSchema returns the 200 response schema of a route (POST).
func (o *OpenAPI) ResponseSchema(path string) (map[string]any, error) {
	raw, ok := o.Paths[path]["post"]
	if !ok {
		return nil, fmt.Errorf("no POST %s in the OpenAPI file", path)
	}
	var op struct {
		Responses map[string]struct {
			Content map[string]struct {
				Schema map[string]any `json:"schema"`
			} `json:"content"`
		} `json:"responses"`
	}
	if err := json.Unmarshal(raw, &op); err != nil {
		return nil, err
	}
	s := op.Responses["200"].Content["application/json"].Schema
	if s == nil {
		return nil, fmt.Errorf("no 200 JSON response for %s", path)
	}
	return s, nil
}

// CheckResponse validates a decoded 200 response of route path against
// its schema and returns every violation.
func (o *OpenAPI) CheckResponse(path string, body any) []string {
	s, err := o.ResponseSchema(path)
	if err != nil {
		return []string{err.Error()}
	}
	return o.Check(s, body)
}

// CheckSchema validates v against a named schema (acs_encoder, ...).
func (o *OpenAPI) CheckSchema(name string, v any) []string {
	s, ok := o.Schemas[name].(map[string]any)
	if !ok {
		return []string{"no schema " + name}
	}
	return o.Check(s, v)
}

// Check validates v against schema s: types, nullable, required,
// properties, additionalProperties: false, items, enum, oneOf (exactly
// one), allOf, and the uuid and date-time formats. References to schemas
// the file does not hold (pagination) are not checked.
func (o *OpenAPI) Check(s map[string]any, v any) []string {
	var errs []string
	o.check("$", s, v, &errs)
	sort.Strings(errs)
	return errs
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

func (o *OpenAPI) check(at string, s map[string]any, v any, errs *[]string) {
	bad := func(format string, args ...any) { *errs = append(*errs, at+": "+fmt.Sprintf(format, args...)) }
	if ref, ok := s["$ref"].(string); ok {
		name := ref[strings.LastIndex(ref, "/")+1:]
		rs, ok := o.Schemas[name].(map[string]any)
		if !ok {
			return
		}
		s = rs
	}
	if v == nil {
		if s["nullable"] == true || (s["type"] == nil && s["oneOf"] == nil && s["properties"] == nil) {
			return
		}
		bad("null is not allowed")
		return
	}
	if all, ok := s["allOf"].([]any); ok {
		for _, sub := range all {
			o.check(at, sub.(map[string]any), v, errs)
		}
	}
	if one, ok := s["oneOf"].([]any); ok {
		var matched int
		var why []string
		for i, sub := range one {
			var e []string
			o.check(at, sub.(map[string]any), v, &e)
			if len(e) == 0 {
				matched++
			} else {
				why = append(why, fmt.Sprintf("variant %d: %s", i, e[0]))
			}
		}
		if matched != 1 {
			if matched == 0 {
				bad("matches none of %d oneOf variants (%s)", len(one), strings.Join(firstN(why, 3), " | "))
			} else {
				bad("matches %d oneOf variants, want exactly 1", matched)
			}
		}
	}
	if enum, ok := s["enum"].([]any); ok && !slices.Contains(enum, v) {
		bad("%v is not one of %v", v, enum)
	}
	switch s["type"] {
	case "string":
		str, ok := v.(string)
		if !ok {
			bad("want a string, got %T", v)
			return
		}
		switch s["format"] {
		case "uuid":
			if !uuidRE.MatchString(str) {
				bad("%q is not a lower-case UUID", str)
			}
		case "date-time":
			if _, err := time.Parse(time.RFC3339Nano, str); err != nil {
				bad("%q is not a date-time", str)
			}
		}
		if min, ok := s["minLength"].(float64); ok && float64(len(str)) < min {
			bad("%q is shorter than %v", str, min)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			bad("want a boolean, got %T", v)
		}
	case "number", "integer":
		if _, ok := v.(float64); !ok {
			bad("want a number, got %T", v)
		}
	case "array":
		arr, ok := v.([]any)
		if !ok {
			bad("want an array, got %T", v)
			return
		}
		if items, ok := s["items"].(map[string]any); ok {
			for i, it := range arr {
				o.check(fmt.Sprintf("%s[%d]", at, i), items, it, errs)
			}
		}
	case "object":
		obj, ok := v.(map[string]any)
		if !ok {
			bad("want an object, got %T", v)
			return
		}
		props, _ := s["properties"].(map[string]any)
		if req, ok := s["required"].([]any); ok {
			for _, r := range req {
				if _, present := obj[r.(string)]; !present {
					bad("required field %s missing", r)
				}
			}
		}
		for k, val := range obj {
			ps, known := props[k].(map[string]any)
			if !known {
				if s["additionalProperties"] == false {
					bad("field %s is not allowed", k)
				}
				continue
			}
			o.check(at+"."+k, ps, val, errs)
		}
	}
}

func firstN(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
