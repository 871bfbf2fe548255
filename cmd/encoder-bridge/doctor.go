package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"go.uber.org/zap"

	"github.com/encoder-bridge/encoder-bridge/bridge/doctor"
	"github.com/encoder-bridge/encoder-bridge/bridge/link"
	"github.com/encoder-bridge/encoder-bridge/reader"
)

// cmdDoctor diagnoses this installation: configuration, files and their
// permissions, the smart-card service, readers and cards, and the way to
// the cloud step by step. It exits 1 when any check fails.
func (a *app) cmdDoctor(ctx context.Context, args []string) error {
	var configPath, keysPath string
	var asJSON bool
	fs := newFlags("doctor", a.stderr)
	fs.StringVar(&configPath, "config", "", "configuration `file` of the bridge to diagnose")
	fs.StringVar(&keysPath, "keys", "", "site key `file`; overrides the configuration's keys")
	fs.BoolVar(&asJSON, "json", false, "print the results as JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	env := doctor.Env{
		ConfigPath:  configPath,
		KeysPath:    keysPath,
		OpenReaders: func() (reader.Context, error) { return a.openReaders(zap.NewNop()) },
		Version:     version,
		NewLink: func(token, url string) (*link.Link, error) {
			cfg, err := loadRunConfig(configPath)
			if err != nil {
				return nil, err
			}
			return newLinkWith(cfg, token, zap.NewNop(), func(o *link.Options) { o.URLs = []string{url} })
		},
	}
	results := doctor.Run(ctx, env)
	if asJSON {
		a.printJSON(map[string]any{"ok": !doctor.Failed(results), "checks": results})
	} else {
		a.printDoctor(configPath, results)
	}
	if doctor.Failed(results) {
		return errReported
	}
	return nil
}

func (a *app) printDoctor(configPath string, results []doctor.Result) {
	fmt.Fprintf(a.stdout, "encoder-bridge %s doctor, configuration %s\n\n", version, configPath)
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	failed, warned := 0, 0
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Check, strings.ToUpper(string(r.Status)), r.Detail)
		if r.Fix != "" {
			fmt.Fprintf(tw, "\t\tfix: %s\n", r.Fix)
		}
		switch r.Status {
		case doctor.Fail:
			failed++
		case doctor.Warn:
			warned++
		}
	}
	tw.Flush()
	fmt.Fprintln(a.stdout)
	switch {
	case failed > 0:
		fmt.Fprintf(a.stdout, "%d check(s) failed, %d warning(s): fix them in the order listed.\n", failed, warned)
	case warned > 0:
		fmt.Fprintf(a.stdout, "All checks passed, %d warning(s).\n", warned)
	default:
		fmt.Fprintln(a.stdout, "All checks passed.")
	}
}
