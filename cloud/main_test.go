package cloud_test

import (
	"os"
	"testing"

	"github.com/encoder-bridge/encoder-bridge/internal/pgtest"
)

// The cluster of the suites that run on PostgreSQL too
// (cloudtest.Backends) is stopped after the tests.
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
