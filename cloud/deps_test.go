package cloud_test

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/encoder-bridge/encoder-bridge/"

// TestImportRules keeps the cloud's packages to their concerns: each
// package's doc says what it must not import, and this checks it.
func TestImportRules(t *testing.T) {
	// Packages of this module each package may import; anything else
	// from the module is refused. Standard and third-party imports are
	// not restricted.
	allowed := map[string][]string{
		"cloud":           {"cloud/api", "cloud/auth", "cloud/bus", "cloud/clock", "cloud/hub", "cloud/jobs", "cloud/metrics", "cloud/store", "cloud/webhook", "internal/durable", "protocol"},
		"cloud/api":       {"cloud/clock", "cloud/jobs", "cloud/seam", "cloud/secret", "cloud/store", "cloud/webhook", "protocol"},
		"cloud/auth":      {"cloud/clock", "cloud/secret", "cloud/store"},
		"cloud/bus":       {},
		"cloud/clock":     {},
		"cloud/cloudtest": {"cloud", "cloud/clock", "internal/pgtest", "protocol"},
		// Test tools: the fleet sees the cloud only through the wire.
		"cloud/cloudtest/fleet":           {"protocol"},
		"cloud/cloudtest/cmd/fakebridges": {"cloud/cloudtest/fleet"},
		"cloud/cloudtest/scale":           {"cloud", "cloud/cloudtest/fleet", "internal/syncbuf"},
		"cloud/hub":                       {"cloud/secret", "cloud/store", "protocol"},
		"cloud/jobs":                      {"cloud/bus", "cloud/clock", "cloud/seam", "cloud/store", "protocol"},
		"cloud/metrics":                   {},
		"cloud/seam":                      {"cloud/store", "protocol"},
		"cloud/secret":                    {},
		"cloud/store":                     {},
		"cloud/webhook":                   {"cloud/clock", "cloud/store"},
	}
	seen := map[string]bool{}
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		pkg := filepath.ToSlash(filepath.Join("cloud", filepath.Dir(path)))
		pkg = strings.TrimSuffix(pkg, "/.")
		seen[pkg] = true
		ok, known := allowed[pkg]
		if !known {
			t.Errorf("package %s has no import rule here", pkg)
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			rel, inModule := strings.CutPrefix(p, module)
			if !inModule {
				continue
			}
			permitted := false
			for _, a := range ok {
				permitted = permitted || a == rel
			}
			if !permitted {
				t.Errorf("%s imports %s", path, rel)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for pkg := range allowed {
		if !seen[pkg] {
			t.Errorf("rule for %s, which has no source", pkg)
		}
	}
}
