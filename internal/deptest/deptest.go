// Package deptest enforces, in tests, the import rules each package doc
// states ("it must not import ..."), so a layering mistake fails CI
// instead of surfacing in review.
package deptest

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// Module is this repository's module path.
const Module = "github.com/encoder-bridge/encoder-bridge"

// Forbid fails t if the package in the current directory imports, directly
// or through others, any of the packages (or their subpackages) named
// relative to the module, e.g. "reader/pcsc". Test-only imports do not
// count: fakes may use what production code must not.
func Forbid(t testing.TB, banned ...string) {
	t.Helper()
	bad, err := Violations(".", banned...)
	if err != nil {
		t.Fatal(err)
	}
	for _, dep := range bad {
		t.Errorf("imports %s, which its package doc rules out", dep)
	}
}

// Violations lists the dependencies of the package in dir that Forbid
// would report.
func Violations(dir string, banned ...string) ([]string, error) {
	cmd := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", ".")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("go list -deps: %v\n%s", err, out)
	}
	var bad []string
	for _, dep := range strings.Fields(string(out)) {
		for _, b := range banned {
			full := Module + "/" + b
			if dep == full || strings.HasPrefix(dep, full+"/") {
				bad = append(bad, dep)
			}
		}
	}
	return bad, nil
}
