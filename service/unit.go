package service

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"text/template"
)

// User is the system account the Linux service runs as. The Debian
// package creates it, and its polkit rule lets it use pcscd.
const User = "encoder-bridge"

// unitText is the one systemd unit: the package ships it rendered, and
// install writes it rendered the same way.
//
//go:embed encoder-bridge.service
var unitText string

var unitTemplate = template.Must(template.New("unit").Funcs(template.FuncMap{
	"exec": execArg,
	"path": unitPath,
}).Parse(unitText))

// UnitOptions fill in the systemd unit.
type UnitOptions struct {
	// Executable is the absolute path of the encoder-bridge binary.
	Executable string
	// Config is the absolute path of the configuration it runs with; the
	// unit does not start while it is missing.
	Config string
	// User runs the service; empty: User.
	User string
}

// ErrUnitValue: a path or name cannot be written into a unit file.
var ErrUnitValue = errors.New("service: value not allowed in a systemd unit")

// Unit renders the systemd unit for o.
func Unit(o UnitOptions) ([]byte, error) {
	if o.User == "" {
		o.User = User
	}
	for _, p := range []struct{ name, v string }{{"executable", o.Executable}, {"config", o.Config}} {
		// Unix paths, whatever the OS building the unit.
		if !strings.HasPrefix(p.v, "/") {
			return nil, fmt.Errorf("%w: %s %q is not an absolute path", ErrUnitValue, p.name, p.v)
		}
		if strings.ContainsAny(p.v, "\n\r\x00") {
			return nil, fmt.Errorf("%w: %s %q has a line break or NUL", ErrUnitValue, p.name, p.v)
		}
	}
	if !validUserName(o.User) {
		return nil, fmt.Errorf("%w: user %q", ErrUnitValue, o.User)
	}
	var b bytes.Buffer
	if err := unitTemplate.Execute(&b, o); err != nil {
		return nil, fmt.Errorf("service: unit: %w", err)
	}
	return b.Bytes(), nil
}

// validUserName accepts the portable user names useradd accepts.
func validUserName(s string) bool {
	if s == "" || len(s) > 32 || s[0] == '-' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// unitPath escapes a path for a unit setting that takes one path: systemd
// expands % specifiers everywhere.
func unitPath(p string) string {
	return strings.ReplaceAll(filepath.ToSlash(p), "%", "%%")
}

// execArg quotes one ExecStart word the way systemd splits them: double
// quotes around anything with a space or quote, backslash escapes inside.
func execArg(s string) string {
	s = unitPath(s)
	if !strings.ContainsAny(s, " \t\"'\\;$") {
		return s
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, `$`, `$$`)
	return `"` + r.Replace(s) + `"`
}
