package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"testing"
)

// keysByDecoding counts the object keys of valid JSON with a tokenizer:
// inside an object, tokens alternate between key and value.
func keysByDecoding(t *testing.T, b []byte) int {
	type frame struct{ obj, key bool }
	dec := json.NewDecoder(bytes.NewReader(b))
	var stack []frame
	n := 0
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return n
		}
		if err != nil {
			t.Fatalf("tokenizing valid JSON %q: %v", b, err)
		}
		if k := len(stack); k > 0 && stack[k-1].obj && stack[k-1].key && tok != json.Delim('}') {
			n++
			stack[k-1].key = false
			continue
		}
		if k := len(stack); k > 0 {
			stack[k-1].key = stack[k-1].obj // a value ends here or opens
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, frame{obj: true, key: true})
		case json.Delim('['):
			stack = append(stack, frame{})
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
	}
}

func TestCountKeys(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int
	}{
		{`{}`, 0},
		{`{"a":1}`, 1},
		{`{"a":{"b":[{"c":1},{"d":"x:y"}]},"e":"\":\\"}`, 5},
		{`{"a\"b:":"c:d"}`, 1},
		{`[1,2,3]`, 0},
	} {
		if got := countKeys([]byte(tt.in)); got != tt.want {
			t.Errorf("countKeys(%s) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

// The body decoder takes input from anyone: it never panics, accepts only
// one JSON object with nothing after it, within the key limit, and bounds
// the problems it reports.
func FuzzBodyInput(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1}`, `{}}}}not json`, `{"a":[1,2]}]garbage`, `{"a":{"b":"c:d"}}`, `null`, `[]`, `{"a":1} {"b":2}`, `"x"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		in, err := newBodyInput(b)
		if err != nil {
			var ie *InputError
			if !errors.As(err, &ie) || len(ie.Fields) == 0 || len(ie.Error()) > 16<<10 {
				t.Fatalf("error %v", err)
			}
			return
		}
		if json.Valid(b) {
			if got, want := countKeys(b), keysByDecoding(t, b); got != want {
				t.Fatalf("countKeys(%q) = %d, decoding counts %d", b, got, want)
			}
		}
		trimmed := bytes.TrimSpace(b)
		if len(trimmed) == 0 {
			return
		}
		var obj map[string]json.RawMessage
		if json.Unmarshal(trimmed, &obj) != nil || obj == nil {
			t.Fatalf("accepted %q, not one JSON object", b)
		}
		if countKeys(trimmed) > MaxBodyKeys {
			t.Fatalf("accepted %q with %d keys", b, countKeys(trimmed))
		}
		// Every field unread: each is reported, at most MaxReportedFields by name.
		if err := in.check(); len(obj) > 0 {
			ie, ok := err.(*InputError)
			if !ok || len(ie.Fields)+ie.Omitted != len(obj) || len(ie.Fields) > MaxReportedFields {
				t.Fatalf("%d unknown fields reported as %v", len(obj), err)
			}
		}
	})
}
