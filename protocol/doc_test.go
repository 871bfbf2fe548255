package protocol

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// Every JSON example in docs/protocol.md is a valid message, and every
// message type has an example.
func TestProtocolDocExamples(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "docs", "protocol.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```json\n(.*?)```").FindAllSubmatch(doc, -1)
	if len(blocks) == 0 {
		t.Fatal("no JSON examples")
	}
	seen := map[Type]bool{}
	for i, b := range blocks {
		m, err := Decode(b[1])
		if err != nil {
			t.Errorf("example %d does not decode: %v\n%s", i+1, err, b[1])
			continue
		}
		seen[m.Type] = true
	}
	for _, ty := range []Type{TypeHello, TypeEncoderAdded, TypeEncoderRemoved, TypeAck, TypeProgress, TypeResult, TypeWelcome, TypeJob, TypeResultAck, TypeError} {
		if !seen[ty] {
			t.Errorf("no example of %s", ty)
		}
	}
}
