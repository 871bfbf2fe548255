package pcscd

import (
	"testing"

	"github.com/encoder-bridge/encoder-bridge/internal/deptest"
)

// TestImports enforces the package doc: what this package must not
// import, directly or not.
func TestImports(t *testing.T) {
	deptest.Forbid(t, "bridge", "cardfmt", "reader/pcsc")
}
