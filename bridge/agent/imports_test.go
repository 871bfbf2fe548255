package agent

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImports enforces the package doc: what this package must not
// import, directly or not.
func TestImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	banned := []string{"github.com/encoder-bridge/encoder-bridge/reader/pcsc", "github.com/encoder-bridge/encoder-bridge/reader/sim", "github.com/encoder-bridge/encoder-bridge/cmd"}
	for _, dep := range strings.Fields(string(out)) {
		for _, b := range banned {
			if dep == b || strings.HasPrefix(dep, b+"/") {
				t.Errorf("imports %s", dep)
			}
		}
	}
}
