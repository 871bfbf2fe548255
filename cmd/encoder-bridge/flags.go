package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/encoder-bridge/encoder-bridge/bridge"
	"github.com/encoder-bridge/encoder-bridge/bridge/config"
	"github.com/encoder-bridge/encoder-bridge/cardfmt"
	"github.com/encoder-bridge/encoder-bridge/protocol"
)

var errHelp = errors.New("help shown")

// common holds the flags every card command takes.
type common struct {
	config string
	keys   string
	json   bool
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.config, "config", "", "configuration `file` (YAML); built-in defaults when empty")
	fs.StringVar(&c.keys, "keys", "", "site key `file`; overrides the configuration's keys")
	fs.BoolVar(&c.json, "json", false, "print the result, or the error, as JSON on standard output")
}

func newFlags(name string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("encoder-bridge "+name, flag.ContinueOnError)
	fs.SetOutput(out)
	return fs
}

// parse parses args and refuses stray positional arguments.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	return nil
}

// loadConfig reads --config, or returns the defaults.
func (c *common) loadConfig() (*config.Config, error) {
	if c.config == "" {
		return config.Default(), nil
	}
	cfg, err := config.Load(c.config)
	if err != nil {
		return nil, &bridge.JobError{Code: protocol.ErrorInvalidConfig, Err: err}
	}
	return cfg, nil
}

// loadKeys reads the key file named by --keys or the configuration.
func (c *common) loadKeys(cfg *config.Config) (*cardfmt.KeySet, error) {
	path := c.keys
	if path == "" {
		path = cfg.Keys
	}
	if path == "" {
		return nil, &bridge.JobError{Code: protocol.ErrorKeyFile, Err: errors.New("no key file: pass --keys PATH or set keys: in the configuration (create one with: encoder-bridge keys init --out PATH)")}
	}
	ks, err := cardfmt.LoadKeySet(path)
	if err != nil {
		return nil, &bridge.JobError{Code: protocol.ErrorKeyFile, Err: err}
	}
	return ks, nil
}

// waitFlag registers --wait with the configuration's default applied later.
type waitFlag struct {
	d   time.Duration
	set bool
}

func (w *waitFlag) String() string { return w.d.String() }
func (w *waitFlag) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return fmt.Errorf("%q is not a duration such as 30s", s)
	}
	w.d, w.set = d, true
	return nil
}

func (w *waitFlag) value(cfg *config.Config) time.Duration {
	if w.set {
		return w.d
	}
	return time.Duration(cfg.Wait)
}
