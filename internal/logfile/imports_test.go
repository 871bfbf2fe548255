package logfile

import (
	"testing"

	"github.com/encoder-bridge/encoder-bridge/internal/deptest"
)

// TestImports enforces the package doc: nothing of this module but
// internal/durable.
func TestImports(t *testing.T) {
	deptest.Forbid(t, "bridge", "cardfmt", "cloud", "cmd", "hwtest", "protocol", "reader", "service")
}
