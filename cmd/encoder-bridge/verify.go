package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/encoder-bridge/encoder-bridge/bridge/agent"
	"github.com/encoder-bridge/encoder-bridge/bridge/config"
	"github.com/encoder-bridge/encoder-bridge/bridge/doctor"
	"github.com/encoder-bridge/encoder-bridge/bridge/link"
	"github.com/encoder-bridge/encoder-bridge/cardfmt"
	"github.com/encoder-bridge/encoder-bridge/protocol"
)

// verifyTimeout bounds the cloud check.
const verifyTimeout = 20 * time.Second

// cmdVerify checks, one line each, what "run" needs: the configuration,
// the key file, the token file, the state directory, the reader service,
// and one authenticated connection to the cloud that is welcomed.
//
// The cloud check connects as the bridge. A running service's connection
// may be replaced by it for a moment; the service reconnects by itself.
func (a *app) cmdVerify(ctx context.Context, args []string) error {
	var configPath, keysPath string
	fs := newFlags("verify", a.stderr)
	fs.StringVar(&configPath, "config", "", "configuration `file` to check")
	fs.StringVar(&keysPath, "keys", "", "site key `file`; overrides the configuration's keys")
	if err := parse(fs, args); err != nil {
		return err
	}
	if configPath == "" {
		return fmt.Errorf("%w: --config PATH is required", errUsage)
	}
	failed := 0
	check := func(name string, detail string, err error) bool {
		if err != nil {
			failed++
			fmt.Fprintf(a.stdout, "  %-15s FAILED: %v\n", name, err)
			return false
		}
		if detail != "" {
			detail = ": " + detail
		}
		fmt.Fprintf(a.stdout, "  %-15s ok%s\n", name, detail)
		return true
	}
	skip := func(name, why string) {
		failed++
		fmt.Fprintf(a.stdout, "  %-15s skipped: %s\n", name, why)
	}

	fmt.Fprintf(a.stdout, "Verifying encoder-bridge with %s\n", configPath)
	cfg, err := loadRunConfig(configPath)
	if !check("configuration", "", err) {
		for _, n := range []string{"key file", "token file", "state directory", "readers", "cloud"} {
			skip(n, "no valid configuration")
		}
		return a.verifyDone(failed)
	}

	if keysPath == "" {
		keysPath = cfg.Keys
	}
	if keysPath == "" {
		check("key file", "", errors.New("none: set keys: in the configuration or pass --keys PATH"))
	} else if ks, err := cardfmt.LoadKeySet(keysPath); check("key file", "", err) {
		id := ks.ID()
		fmt.Fprintf(a.stdout, "  %-15s    key id %s, current version %d\n", "", hex.EncodeToString(id[:]), ks.Current().Version)
	}

	token, err := link.ReadTokenFile(cfg.Cloud.TokenFile)
	tokenOK := check("token file", cfg.Cloud.TokenFile, err)

	check("state directory", cfg.StatePath(), checkStateDir(cfg.StatePath()))

	var attached []agent.Attached
	rc, err := a.openReaders(zap.NewNop())
	if err == nil {
		var names []string
		if names, err = rc.Readers(ctx); err == nil {
			attached = agent.Attach(ctx, rc, names)
		}
		rc.Close()
	}
	var offered []protocol.Encoder
	if check("readers", fmt.Sprintf("%d attached", len(attached)), err) {
		offered = agent.Offered(cfg.Cloud.BridgeID, cfg.Encoders, cfg.ExcludeReaders, agent.DefaultTechnologies, attached)
		for _, e := range offered {
			fmt.Fprintf(a.stdout, "  %-15s    encoder %q on %q\n", "", e.DisplayName, e.ReaderName)
		}
		if len(offered) == 0 && len(attached) > 0 {
			fmt.Fprintf(a.stdout, "  %-15s    note: no attached reader matches encoders[] or all are in exclude_readers\n", "")
		}
	}

	if !tokenOK {
		skip("cloud", "no token")
		return a.verifyDone(failed)
	}
	detail, err := verifyCloud(ctx, cfg, token, offered)
	check("cloud", detail, err)
	return a.verifyDone(failed)
}

func (a *app) verifyDone(failed int) error {
	if failed == 0 {
		fmt.Fprintln(a.stdout, "All checks passed.")
		return nil
	}
	fmt.Fprintf(a.stdout, "%d check(s) did not pass.\n", failed)
	return errReported
}

// checkStateDir checks that the journal's directory exists or can be
// made. It does not open the journal: a running service holds its lock.
func checkStateDir(dir string) error {
	fi, err := os.Stat(dir)
	switch {
	case err == nil && !fi.IsDir():
		return fmt.Errorf("%s is not a directory", dir)
	case err == nil:
		return nil
	case !errors.Is(err, os.ErrNotExist):
		return err
	}
	parent := filepath.Dir(dir)
	if _, err := os.Stat(parent); err != nil {
		return fmt.Errorf("%s does not exist and neither does %s", dir, parent)
	}
	return nil
}

// verifyCloud dials the cloud, says hello and waits for the welcome: each
// of several cloud URLs in turn, as "run" would, until one welcomes the
// bridge. A refused token stops it: every instance would refuse it.
func verifyCloud(ctx context.Context, cfg *config.Config, token string, encoders []protocol.Encoder) (string, error) {
	var failed []error
	for _, u := range cfg.Cloud.Endpoints() {
		detail, err := verifyURL(ctx, cfg, token, u, encoders)
		if err == nil {
			if len(failed) > 0 {
				detail += fmt.Sprintf(" (after %d URL(s) that did not: %v)", len(failed), errors.Join(failed...))
			}
			return detail, nil
		}
		if errors.Is(err, link.ErrAuthRevoked) {
			return "", err
		}
		failed = append(failed, err)
	}
	return "", errors.Join(failed...)
}

func verifyURL(ctx context.Context, cfg *config.Config, token, url string, encoders []protocol.Encoder) (string, error) {
	l, err := newLinkWith(cfg, token, zap.NewNop(), func(o *link.Options) { o.URLs = []string{url} })
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, verifyTimeout)
	defer cancel()
	w, rtt, err := doctor.Hello(ctx, l, cfg.Cloud.BridgeID, version, encoders)
	if err != nil {
		return "", err
	}
	parts := []string{fmt.Sprintf("%s welcomed bridge %q in %s", l.URL(), cfg.Cloud.BridgeID, max(rtt.Round(time.Millisecond), time.Millisecond))}
	if !w.ServerTime.IsZero() {
		skew := w.ServerTime.Sub(time.Now()).Round(time.Second)
		if skew > 30*time.Second || skew < -30*time.Second {
			parts = append(parts, fmt.Sprintf("WARNING: this PC's clock is %s off the cloud's", -skew))
		}
	}
	return strings.Join(parts, "; "), nil
}
