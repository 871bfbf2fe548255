// Package config loads the bridge's YAML configuration: strict (an unknown
// key is an error naming it and its line), validated separately from
// decoding, with errors that name the offending field like
// `encoders[1].reader: must not be empty`.
//
// It must not import reader implementations or open any device.
package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Version is the configuration format this build reads.
const Version = 1

// Config is the bridge's configuration.
type Config struct {
	Version int `yaml:"version"`
	// Keys is the path of the site key file.
	Keys string `yaml:"keys"`
	// Wait is how long encode and scan wait for a card by default.
	Wait Duration `yaml:"wait"`
	Log  Log      `yaml:"log"`
	// Encoders names the readers this bridge offers, and how they are shown.
	// Empty: every attached reader, under its own name.
	Encoders []Encoder `yaml:"encoders"`
	// ExcludeReaders are reader name patterns never offered, e.g. a
	// laptop's built-in reader; they win over Encoders.
	ExcludeReaders []string `yaml:"exclude_readers"`
	// Cloud is the connection "run" and "verify" make to the cloud.
	Cloud Cloud `yaml:"cloud"`
	// StateDir holds the job journal. Empty: DefaultStateDir().
	StateDir string `yaml:"state_dir"`
	// Health is the local monitoring listener: /healthz, /readyz,
	// /metrics and the status page; on by default.
	Health Health `yaml:"health"`
}

// Health configures the local monitoring listener of "run".
type Health struct {
	// Listen is a loopback host:port; empty is DefaultHealthListen, and
	// HealthOff turns the listener off. The bridge never listens beyond
	// this machine.
	Listen string `yaml:"listen"`
}

const (
	// DefaultHealthListen is where the status page and metrics are
	// served unless health.listen says otherwise.
	DefaultHealthListen = "127.0.0.1:9477"
	// HealthOff as health.listen turns the listener off.
	HealthOff = "off"
)

// Address is the address to listen on, "" when off.
func (h Health) Address() string {
	switch h.Listen {
	case "":
		return DefaultHealthListen
	case HealthOff:
		return ""
	}
	return h.Listen
}

// Cloud configures the bridge's one outbound connection.
type Cloud struct {
	// URL is the cloud's base URL, wss://host[:port][/prefix]; ws:// is
	// accepted only to a loopback host.
	URL string `yaml:"url"`
	// URLs lists the base URLs of several cloud instances, tried in turn:
	// a dial that fails or a connection that drops moves to the next.
	// Set URL or URLs, not both.
	URLs []string `yaml:"urls"`
	// BridgeID names this bridge to the cloud.
	BridgeID string `yaml:"bridge_id"`
	// TokenFile holds the bridge's bearer token, one line, mode 0600.
	TokenFile string `yaml:"token_file"`
	// CAFile holds PEM certificates trusted in addition to the system's.
	CAFile string `yaml:"ca_file"`
	// SPKIPin, optional, is the base64 SHA-256 of the cloud certificate's
	// SubjectPublicKeyInfo; the connection is refused unless it matches.
	SPKIPin string `yaml:"spki_pin"`
}

// Configured reports whether any cloud key is set.
func (c Cloud) Configured() bool {
	return c.URL != "" || c.URLs != nil || c.BridgeID != "" || c.TokenFile != "" || c.CAFile != "" || c.SPKIPin != ""
}

// Endpoints lists the cloud URLs in the order they are tried: URLs, or
// URL alone.
func (c Cloud) Endpoints() []string {
	if len(c.URLs) > 0 {
		return c.URLs
	}
	if c.URL != "" {
		return []string{c.URL}
	}
	return nil
}

// Log configures logging.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // console or json
	// File is the log file "run" writes besides standard error.
	File LogFile `yaml:"file"`
}

// LogFile configures the size-rotated log file of "run": on by default
// on Windows, where a service's standard error goes nowhere; off by
// default elsewhere, where journald keeps standard error.
type LogFile struct {
	// Path is the file; empty is DefaultLogFile, LogFileOff turns it off.
	Path string `yaml:"path"`
	// MaxSize is the size a file is rotated at.
	MaxSize ByteSize `yaml:"max_size"`
	// MaxFiles is how many rotated files are kept besides the current one.
	MaxFiles int `yaml:"max_files"`
}

const (
	// LogFileOff as log.file.path turns the log file off.
	LogFileOff = "off"
	// DefaultLogMaxSize and DefaultLogMaxFiles bound the log files to
	// 60 MiB together.
	DefaultLogMaxSize  = 10 << 20
	DefaultLogMaxFiles = 5

	minLogSize  = 64 << 10
	maxLogSize  = 1 << 30
	maxLogFiles = 100
)

// LogFilePath is the log file "run" writes, "" for none: log.file.path,
// else on Windows logs\encoder-bridge.log in the state directory
// (%ProgramData%\encoder-bridge\logs by default).
func (c *Config) LogFilePath() string {
	switch p := c.Log.File.Path; {
	case p == LogFileOff:
		return ""
	case p != "":
		return p
	case runtime.GOOS == "windows":
		return filepath.Join(c.StatePath(), "logs", "encoder-bridge.log")
	}
	return ""
}

// ByteSize is a size in bytes, written in YAML as a number of bytes or
// with a unit: 512KB, 10MB, 1GB (powers of 1024).
type ByteSize int64

var byteUnits = []struct {
	suffix string
	factor int64
}{{"GB", 1 << 30}, {"MB", 1 << 20}, {"KB", 1 << 10}, {"B", 1}}

// ParseByteSize reads a size such as 10MB.
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	factor := int64(1)
	for _, u := range byteUnits {
		if strings.HasSuffix(t, u.suffix) {
			t, factor = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.factor
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/factor {
		return 0, fmt.Errorf("%q is not a size such as 10MB", s)
	}
	return ByteSize(n * factor), nil
}

func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: must be a size such as 10MB", n.Line)
	}
	v, err := ParseByteSize(s)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*b = v
	return nil
}

func (b ByteSize) MarshalYAML() (any, error) { return b.String(), nil }

// String writes b with the largest unit that divides it.
func (b ByteSize) String() string {
	for _, u := range byteUnits {
		if b != 0 && int64(b)%u.factor == 0 {
			return strconv.FormatInt(int64(b)/u.factor, 10) + u.suffix
		}
	}
	return "0B"
}

// Encoder is one reader offered as an encoder, picked by its serial
// number or by a reader name pattern.
type Encoder struct {
	// Reader is a reader name pattern (see MatchReader).
	Reader string `yaml:"reader"`
	// Serial is the reader's serial number, as "encoder-bridge readers"
	// shows it; it picks the reader whatever USB port it is plugged into.
	Serial string `yaml:"serial"`
	// Name is what front-desk staff see.
	Name string `yaml:"name"`
}

// MatchReader reports whether the reader name matches pattern: the whole
// name, a glob over the whole name when the pattern has * or ?, else a
// part of the name; case-insensitively. Brackets are literal: pcsc-lite
// puts them in reader names.
func MatchReader(pattern, name string) bool {
	p, n := strings.ToLower(pattern), strings.ToLower(name)
	if p == n {
		return true
	}
	if strings.ContainsAny(p, "*?") {
		ok, _ := path.Match(globEscaper.Replace(p), n)
		return ok
	}
	return strings.Contains(n, p)
}

var globEscaper = strings.NewReplacer(`[`, `\[`, `]`, `\]`, `\`, `\\`)

// Duration is a time.Duration written as "30s" in YAML.
type Duration time.Duration

func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: must be a duration such as 30s", n.Line)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration such as 30s", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// Default is the configuration used when no file is given.
func Default() *Config {
	return &Config{
		Version: Version,
		Wait:    0,
		Log: Log{Level: "info", Format: "console",
			File: LogFile{MaxSize: DefaultLogMaxSize, MaxFiles: DefaultLogMaxFiles}},
	}
}

// ErrInvalid marks configuration that failed to decode or validate.
var ErrInvalid = errors.New("invalid configuration")

// Load reads, decodes and validates the file at path. Relative paths in the
// file are taken relative to the file's directory.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	paths := []*string{&c.Keys, &c.Cloud.TokenFile, &c.Cloud.CAFile, &c.StateDir}
	if c.Log.File.Path != LogFileOff {
		paths = append(paths, &c.Log.File.Path)
	}
	for _, p := range paths {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(filepath.Dir(path), *p)
		}
	}
	return c, nil
}

// DefaultStateDir is where the journal lives when state_dir is not set:
// %ProgramData%\encoder-bridge on Windows, /var/lib/encoder-bridge
// elsewhere.
func DefaultStateDir() string { return defaultStateDir() }

// StatePath is StateDir, or DefaultStateDir when it is empty.
func (c *Config) StatePath() string {
	if c.StateDir != "" {
		return c.StateDir
	}
	return DefaultStateDir()
}

// RequireCloud checks that the cloud connection is configured, for the
// commands that need it.
func (c *Config) RequireCloud() error {
	if len(c.Cloud.Endpoints()) == 0 {
		return fmt.Errorf("%w: cloud.url: required to connect to the cloud (or cloud.urls, a list; with cloud.bridge_id and cloud.token_file)", ErrInvalid)
	}
	return nil
}

var unknownField = regexp.MustCompile(`line (\d+): field (\S+) not found in type`)

// Parse decodes and validates YAML configuration.
func Parse(data []byte) (*Config, error) {
	c := Default()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: %s", ErrInvalid, yamlError(err))
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// yamlError rewrites yaml.v3's type-centred messages into the user's terms.
func yamlError(err error) string {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err.Error()
	}
	msgs := make([]string, len(te.Errors))
	for i, m := range te.Errors {
		if g := unknownField.FindStringSubmatch(m); g != nil {
			m = fmt.Sprintf("line %s: unknown key %q", g[1], g[2])
		}
		msgs[i] = m
	}
	return strings.Join(msgs, "; ")
}

// Validate checks values the decoder cannot. Every problem is reported,
// each prefixed with its field path.
func (c *Config) Validate() error {
	var errs []string
	bad := func(field, format string, args ...any) {
		errs = append(errs, field+": "+fmt.Sprintf(format, args...))
	}
	if c.Version != Version {
		bad("version", "must be %d, got %d", Version, c.Version)
	}
	if c.Wait < 0 {
		bad("wait", "must not be negative")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "must be debug, info, warn or error, got %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "console", "json":
	default:
		bad("log.format", "must be console or json, got %q", c.Log.Format)
	}
	c.Log.File.validate(bad)
	seen := map[string]int{}
	for i, e := range c.Encoders {
		p := fmt.Sprintf("encoders[%d]", i)
		field, value := p+".reader", e.Reader
		if e.Serial != "" {
			field, value = p+".serial", "serial:"+e.Serial
		}
		switch {
		case e.Reader != "" && e.Serial != "":
			bad(p, "set reader or serial, not both")
		case strings.TrimSpace(e.Reader) == "" && strings.TrimSpace(e.Serial) == "":
			bad(p, "needs reader (a name pattern) or serial")
		default:
			if j, dup := seen[value]; dup {
				bad(field, "same reader as encoders[%d]", j)
			} else {
				seen[value] = i
			}
		}
		if len(e.Name) > 64 {
			bad(p+".name", "must be at most 64 characters")
		}
	}
	for i, x := range c.ExcludeReaders {
		if strings.TrimSpace(x) == "" {
			bad(fmt.Sprintf("exclude_readers[%d]", i), "must not be empty")
		}
	}
	c.Cloud.validate(bad)
	if l := c.Health.Listen; l != "" && l != HealthOff {
		host, port, err := net.SplitHostPort(l)
		switch {
		case err != nil || port == "":
			bad("health.listen", "must be host:port, e.g. 127.0.0.1:9477, or off")
		case !isLoopback(host):
			bad("health.listen", "must be a loopback address (127.0.0.1, ::1 or localhost): the bridge never listens on the network")
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalid, strings.Join(errs, "; "))
	}
	return nil
}

func (f LogFile) validate(bad func(field, format string, args ...any)) {
	if p := f.Path; p != "" && p != LogFileOff {
		if strings.HasSuffix(p, "/") || strings.HasSuffix(p, `\`) || filepath.Base(p) == "." || filepath.Base(p) == ".." {
			bad("log.file.path", "must name a file, not a directory (e.g. logs/encoder-bridge.log), or be off")
		}
	}
	if f.MaxSize < minLogSize || f.MaxSize > maxLogSize {
		bad("log.file.max_size", "must be between %s and %s, got %s", ByteSize(minLogSize), ByteSize(maxLogSize), f.MaxSize)
	}
	if f.MaxFiles < 1 || f.MaxFiles > maxLogFiles {
		bad("log.file.max_files", "must be between 1 and %d (rotated files kept besides the current one), got %d", maxLogFiles, f.MaxFiles)
	}
}

var bridgeIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)

func (c Cloud) validate(bad func(field, format string, args ...any)) {
	if !c.Configured() {
		return
	}
	switch {
	case c.URL != "" && c.URLs != nil:
		bad("cloud.url, cloud.urls", "set one of them, not both (cloud.urls lists every instance)")
	case c.URLs != nil:
		if len(c.URLs) == 0 {
			bad("cloud.urls", "must list at least one URL")
		}
		seen := make(map[string]int, len(c.URLs))
		for i, u := range c.URLs {
			field := fmt.Sprintf("cloud.urls[%d]", i)
			if msg := checkCloudURL(u); msg != "" {
				bad(field, "%s", msg)
			} else if j, dup := seen[strings.TrimRight(u, "/")]; dup {
				bad(field, "same URL as cloud.urls[%d]", j)
			} else {
				seen[strings.TrimRight(u, "/")] = i
			}
		}
	case c.URL == "":
		bad("cloud.url", "required when cloud is configured (or cloud.urls, a list)")
	default:
		if msg := checkCloudURL(c.URL); msg != "" {
			bad("cloud.url", "%s", msg)
		}
	}
	if c.BridgeID == "" {
		bad("cloud.bridge_id", "required when cloud is configured")
	} else if !bridgeIDPattern.MatchString(c.BridgeID) {
		bad("cloud.bridge_id", "must be 1 to 128 letters, digits and . _ : - (starting with a letter or digit)")
	}
	if strings.TrimSpace(c.TokenFile) == "" {
		bad("cloud.token_file", "required when cloud is configured")
	}
	if c.SPKIPin != "" {
		b, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(c.SPKIPin, "sha256/"))
		if err != nil || len(b) != sha256.Size {
			bad("cloud.spki_pin", "must be the base64 SHA-256 of the cloud certificate's SubjectPublicKeyInfo (44 characters)")
		} else {
			for _, u := range c.Endpoints() {
				if strings.HasPrefix(u, "ws://") {
					bad("cloud.spki_pin", "needs wss:// cloud URLs, not %s", u)
					break
				}
			}
		}
	}
}

// checkCloudURL says what is wrong with a cloud URL. It mirrors
// link.Endpoint, which is the authority at dial time; this copy gives the
// error its field path at validation time without tying configuration to
// the transport.
func checkCloudURL(raw string) string {
	u, err := url.Parse(raw)
	switch {
	case raw == "":
		return "must not be empty"
	case err != nil:
		return "not a URL"
	case u.Scheme != "wss" && u.Scheme != "ws":
		return fmt.Sprintf("must be a wss:// URL, got scheme %q", u.Scheme)
	case u.Hostname() == "":
		return "has no host"
	case u.User != nil:
		return "must not hold credentials (the token goes in cloud.token_file)"
	case u.RawQuery != "" || u.Fragment != "":
		return "must not have a query or fragment"
	case u.Scheme == "ws" && !isLoopback(u.Hostname()):
		return "ws:// (unencrypted) is only allowed to a loopback host; use wss://"
	}
	return ""
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
