package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"github.com/encoder-bridge/encoder-bridge/bridge"
	"github.com/encoder-bridge/encoder-bridge/bridge/config"
	"github.com/encoder-bridge/encoder-bridge/cardfmt"
	"github.com/encoder-bridge/encoder-bridge/protocol"
)

const keysUsage = `Usage:
  encoder-bridge keys init --out PATH [--force]   make a new site key file from the system's random source
  encoder-bridge keys rotate --keys PATH          add a new key version; cards written under older versions still scan
  encoder-bridge keys retire --keys PATH --version N [--verify-until TIME|now]
                                                  stop accepting cards written under an old version:
                                                  remove it, or keep it for re-encoding its cards and
                                                  refuse its records from TIME on
  encoder-bridge keys show --keys PATH [--json]   show the key id and versions (never the keys)
`

func (a *app) cmdKeys(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(a.stderr, keysUsage)
		return fmt.Errorf("%w: keys needs a subcommand", errUsage)
	}
	switch args[0] {
	case "init":
		return a.keysInit(args[1:])
	case "rotate":
		return a.keysRotate(args[1:])
	case "retire":
		return a.keysRetire(args[1:])
	case "show":
		return a.keysShow(args[1:])
	case "help", "-h", "--help":
		fmt.Fprint(a.stdout, keysUsage)
		return nil
	}
	return fmt.Errorf("%w: unknown keys subcommand %q", errUsage, args[0])
}

func (a *app) keysInit(args []string) error {
	var out string
	var force bool
	fs := newFlags("keys init", a.stderr)
	fs.StringVar(&out, "out", "", "where to write the key file (`path`); written with mode 0600")
	fs.BoolVar(&force, "force", false, "replace an existing key file (cards written under it become unreadable)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if out == "" {
		return fmt.Errorf("%w: --out PATH is required", errUsage)
	}
	ks, err := cardfmt.GenerateKeySet(rand.Reader)
	if err != nil {
		return err
	}
	if err := cardfmt.WriteKeySet(out, ks, force); err != nil {
		return &bridge.JobError{Code: protocol.ErrorKeyFile, Err: err}
	}
	id := ks.ID()
	fmt.Fprintf(a.stdout, "wrote key file %s (key id %s, version %d); keep a backup in a safe place: cards cannot be read or re-encoded without it\n",
		out, hex.EncodeToString(id[:]), ks.Current().Version)
	return nil
}

func (a *app) keysRotate(args []string) error {
	var path string
	fs := newFlags("keys rotate", a.stderr)
	fs.StringVar(&path, "keys", "", "the key file to rotate (`path`)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if path == "" {
		return fmt.Errorf("%w: --keys PATH is required", errUsage)
	}
	ks, err := cardfmt.LoadKeySet(path)
	if err != nil {
		return &bridge.JobError{Code: protocol.ErrorKeyFile, Err: err}
	}
	k, err := ks.Rotate(rand.Reader)
	if err != nil {
		return &bridge.JobError{Code: protocol.ErrorKeyFile, Err: err}
	}
	if err := cardfmt.WriteKeySet(path, ks, true); err != nil {
		return &bridge.JobError{Code: protocol.ErrorKeyFile, Err: err}
	}
	fmt.Fprintf(a.stdout, "key file %s: new version %d is current; cards written under versions %v still scan and are re-keyed when re-encoded\n"+
		"after a leak, stop accepting the old version: encoder-bridge keys retire --keys PATH --version N --verify-until now\n",
		path, k.Version, ks.Versions()[1:])
	return nil
}

func (a *app) keysRetire(args []string) error {
	var path, until string
	var version int
	fs := newFlags("keys retire", a.stderr)
	fs.StringVar(&path, "keys", "", "the key file (`path`)")
	fs.IntVar(&version, "version", 0, "the key `version` to retire; never the current one")
	fs.StringVar(&until, "verify-until", "", "keep the version for re-encoding its cards, but refuse its records from this `time` on (RFC 3339, or \"now\")")
	if err := parse(fs, args); err != nil {
		return err
	}
	if path == "" {
		return fmt.Errorf("%w: --keys PATH is required", errUsage)
	}
	if version < 1 || version > 255 {
		return fmt.Errorf("%w: --version must be a key version from 1 to 255", errUsage)
	}
	var at time.Time
	switch until {
	case "":
	case "now":
		at = time.Now()
	default:
		t, err := time.Parse(time.RFC3339, until)
		if err != nil {
			return fmt.Errorf("%w: --verify-until must be an RFC 3339 time such as 2026-12-01T00:00:00Z, or now", errUsage)
		}
		at = t
	}
	ks, err := cardfmt.LoadKeySet(path)
	if err != nil {
		return &bridge.JobError{Code: protocol.ErrorKeyFile, Err: err}
	}
	v := uint8(version)
	if at.IsZero() {
		err = ks.Retire(v)
	} else {
		err = ks.RetireAt(v, at)
	}
	if err != nil {
		return &bridge.JobError{Code: protocol.ErrorKeyFile, Err: err}
	}
	if err := cardfmt.WriteKeySet(path, ks, true); err != nil {
		return &bridge.JobError{Code: protocol.ErrorKeyFile, Err: err}
	}
	if at.IsZero() {
		fmt.Fprintf(a.stdout, "key file %s: version %d removed; cards written under it no longer scan as valid and cannot be re-encoded (versions left %v)\n",
			path, v, ks.Versions())
		return nil
	}
	fmt.Fprintf(a.stdout, "key file %s: version %d is accepted until %s; re-encode its cards, which re-keys them under version %d\n",
		path, v, at.UTC().Truncate(time.Second).Format(time.RFC3339), ks.Current().Version)
	return nil
}

func (a *app) keysShow(args []string) error {
	var path string
	var asJSON bool
	fs := newFlags("keys show", a.stderr)
	fs.StringVar(&path, "keys", "", "the key file (`path`)")
	fs.BoolVar(&asJSON, "json", false, "print as JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if path == "" {
		return fmt.Errorf("%w: --keys PATH is required", errUsage)
	}
	ks, err := cardfmt.LoadKeySet(path)
	if err != nil {
		return &bridge.JobError{Code: protocol.ErrorKeyFile, Err: err}
	}
	id := ks.ID()
	until := map[string]string{}
	// As numbers: a []uint8 would marshal as a base64 string.
	versions := []int{}
	for _, v := range ks.Versions() {
		versions = append(versions, int(v))
		if k, _ := ks.Version(v); !k.VerifyUntil.IsZero() {
			until[strconv.Itoa(int(v))] = k.VerifyUntil.UTC().Format(time.RFC3339)
		}
	}
	if asJSON {
		a.printJSON(map[string]any{"key_id": hex.EncodeToString(id[:]), "current_version": ks.Current().Version, "versions": versions, "verify_until": until})
		return nil
	}
	fmt.Fprintf(a.stdout, "key id %s, current version %d, versions %v\n", hex.EncodeToString(id[:]), ks.Current().Version, ks.Versions())
	for _, v := range ks.Versions() {
		if t, ok := until[strconv.Itoa(int(v))]; ok {
			fmt.Fprintf(a.stdout, "version %d accepted until %s\n", v, t)
		}
	}
	return nil
}

func (a *app) cmdValidate(ctx context.Context, args []string) error {
	var path string
	fs := newFlags("validate", a.stderr)
	fs.StringVar(&path, "config", "", "configuration `file` to check")
	if err := parse(fs, args); err != nil {
		return err
	}
	if path == "" {
		return fmt.Errorf("%w: --config PATH is required", errUsage)
	}
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	if cfg.Keys != "" {
		if _, err := cardfmt.LoadKeySet(cfg.Keys); err != nil {
			return fmt.Errorf("keys: %w", err)
		}
	}
	fmt.Fprintf(a.stdout, "%s: configuration is valid\n", path)
	return nil
}
