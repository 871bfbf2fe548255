package ev1

import (
	"testing"

	"github.com/encoder-bridge/encoder-bridge/internal/deptest"
)

// TestImports enforces the package doc.
func TestImports(t *testing.T) {
	deptest.Forbid(t, "bridge", "cardfmt", "reader")
}
