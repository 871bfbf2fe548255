package durable

import (
	"testing"

	"github.com/encoder-bridge/encoder-bridge/internal/deptest"
)

// TestImports enforces the package doc: it imports nothing of this module.
func TestImports(t *testing.T) {
	deptest.Forbid(t, "bridge", "cardfmt", "cloud", "cmd", "hwtest", "protocol", "reader", "service")
}
