package doctor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/encoder-bridge/encoder-bridge/bridge/agent"
	"github.com/encoder-bridge/encoder-bridge/bridge/config"
	"github.com/encoder-bridge/encoder-bridge/bridge/journal"
	"github.com/encoder-bridge/encoder-bridge/bridge/link"
	"github.com/encoder-bridge/encoder-bridge/cardfmt"
	"github.com/encoder-bridge/encoder-bridge/reader"
)

// Check names, in the order Run reports them.
const (
	checkConfig  = "configuration"
	checkKeys    = "key file"
	checkToken   = "token file"
	checkState   = "state directory"
	checkService = "smart-card service"
	checkModules = "kernel NFC drivers"
	checkReaders = "readers"
	checkCards   = "cards"
	checkDNS     = "cloud DNS"
	checkTCP     = "cloud TCP"
	checkTLS     = "cloud TLS"
	checkHello   = "cloud token"
	checkClock   = "clock"
)

// cardTimeout bounds identifying the card on one reader.
const cardTimeout = 5 * time.Second

func (r *run) checkConfig() (*config.Config, bool) {
	if r.env.ConfigPath == "" {
		r.fail(checkConfig, "no configuration file given", "pass --config /etc/encoder-bridge/bridge.yaml (on Windows %ProgramData%\\encoder-bridge\\bridge.yaml)")
		return nil, false
	}
	cfg, err := config.Load(r.env.ConfigPath)
	if err == nil {
		err = cfg.RequireCloud()
	}
	if err != nil {
		fix := "correct the field named above; \"encoder-bridge validate --config " + r.env.ConfigPath + "\" checks the file"
		if errors.Is(err, fs.ErrNotExist) {
			fix = "copy configs/encoder-bridge.yaml there and fill in cloud.url, cloud.bridge_id and cloud.token_file"
		}
		r.fail(checkConfig, err.Error(), fix)
		return nil, false
	}
	r.pass(checkConfig, r.env.ConfigPath)
	return cfg, true
}

func (r *run) checkKeyFile() {
	path := r.env.KeysPath
	if path == "" {
		path = r.cfg.Keys
	}
	if path == "" {
		r.fail(checkKeys, "no key file configured", "set keys: in the configuration to the site key file")
		return
	}
	ks, err := cardfmt.LoadKeySet(path)
	switch {
	case err == nil:
		id := ks.ID()
		r.pass(checkKeys, fmt.Sprintf("%s, key id %x, current version %d", path, id[:], ks.Current().Version))
	case errors.Is(err, fs.ErrNotExist):
		r.fail(checkKeys, err.Error(), "restore the property's key file from its backup (every front desk of a property needs the same one); \"encoder-bridge keys init\" only for a new property")
	case errors.Is(err, fs.ErrPermission):
		r.fail(checkKeys, err.Error(), "the service user must be able to read it: chown it to that user, mode 0600")
	case errors.Is(err, cardfmt.ErrKeyFileInsecure):
		r.fail(checkKeys, err.Error(), "chmod 600 the file (on Windows: only SYSTEM and Administrators may read it)")
	default:
		r.fail(checkKeys, err.Error(), "restore the key file from its backup; never edit it by hand")
	}
}

func (r *run) checkTokenFile() (token string, ok bool) {
	path := r.cfg.Cloud.TokenFile
	if path == "" {
		r.fail(checkToken, "cloud.token_file is not set", "set cloud.token_file to the file holding the bridge token from \"encoder-cloud bridge-token create\"")
		return "", false
	}
	token, err := link.ReadTokenFile(path)
	switch {
	case err == nil:
		r.pass(checkToken, path)
		return token, true
	case errors.Is(err, fs.ErrNotExist):
		r.fail(checkToken, err.Error(), "write the bridge token from \"encoder-cloud bridge-token create\" into it, mode 0600")
	case errors.Is(err, fs.ErrPermission):
		r.fail(checkToken, err.Error(), "the service user must be able to read it: chown it to that user, mode 0600")
	case errors.Is(err, link.ErrTokenFileInsecure):
		r.fail(checkToken, err.Error(), "chmod 600 the file")
	default:
		r.fail(checkToken, err.Error(), "write the bridge token alone on one line into the file")
	}
	return "", false
}

func (r *run) checkStateDir() {
	dir := r.cfg.StatePath()
	fi, err := os.Stat(dir)
	switch {
	case err == nil && !fi.IsDir():
		r.fail(checkState, dir+" is not a directory", "set state_dir to a directory the service user owns")
	case err == nil:
		r.checkJournal(dir)
	case errors.Is(err, fs.ErrNotExist):
		if _, perr := os.Stat(filepath.Dir(dir)); perr != nil {
			r.fail(checkState, fmt.Sprintf("%s does not exist and neither does %s", dir, filepath.Dir(dir)), "create it, owned by the service user, mode 0700")
			return
		}
		r.pass(checkState, dir+" (created at the first start)")
	default:
		r.fail(checkState, err.Error(), "the service user must own the state directory")
	}
}

// checkJournal looks at the job journal in the state directory without
// opening it: the service may be running.
func (r *run) checkJournal(dir string) {
	if err := journal.CheckFile(dir); errors.Is(err, journal.ErrDamaged) {
		r.warn(checkState, fmt.Sprintf("%s: %v", filepath.Join(dir, journal.FileName), err),
			"nothing to repair by hand: at its next start the service sets the file aside and starts a new journal; jobs it held may be lost, so encode again the cards whose jobs end encoding_interrupted")
		return
	} else if err != nil {
		r.fail(checkState, err.Error(), "the service user must be able to read and write the journal: chown the state directory and its files to that user")
		return
	}
	if old, _ := journal.SetAside(dir); len(old) > 0 {
		names := make([]string, len(old))
		for i, p := range old {
			names[i] = filepath.Base(p)
		}
		r.warn(checkState, fmt.Sprintf("%s; %d damaged journal(s) set aside: %s", dir, len(old), strings.Join(names, ", ")),
			"the service already started a new journal; keep these files for a support ticket, then delete them")
		return
	}
	r.pass(checkState, dir)
}

// checkReaders covers the smart-card service, the kernel drivers that
// keep readers from it, the readers and the cards on them.
func (r *run) checkReaders(ctx context.Context) {
	r.checkModules()
	rc, err := r.env.OpenReaders()
	var names []string
	if err == nil {
		defer rc.Close()
		names, err = rc.Readers(ctx)
	}
	if err != nil {
		r.serviceFailed(err)
		r.skip(checkReaders, "no smart-card service")
		r.skip(checkCards, "no smart-card service")
		return
	}
	r.pass(checkService, r.serviceName()+" answers")

	attached := agent.Attach(ctx, rc, names)
	offered := agent.Offered(r.cfg.Cloud.BridgeID, r.cfg.Encoders, r.cfg.ExcludeReaders, nil, attached)
	switch {
	case len(names) == 0:
		r.fail(checkReaders, "no reader attached", "plug the encoder in (directly, not through an unpowered hub) and run \"encoder-bridge readers\"; if it still does not show, see the kernel NFC drivers check and the smart-card service's log")
		r.skip(checkCards, "no reader")
		return
	case len(offered) == 0:
		r.fail(checkReaders, fmt.Sprintf("%d attached (%s), none offered", len(names), strings.Join(names, ", ")),
			"no attached reader matches encoders[] in the configuration, or exclude_readers drops them all: compare with \"encoder-bridge readers\"")
		r.skip(checkCards, "no encoder")
		return
	}
	var shown []string
	for _, e := range offered {
		shown = append(shown, fmt.Sprintf("%q on %q", e.DisplayName, e.ReaderName))
	}
	r.pass(checkReaders, fmt.Sprintf("%d attached, %d offered: %s", len(names), len(offered), strings.Join(shown, "; ")))

	for _, e := range offered {
		r.checkCard(ctx, rc, e.ReaderName)
	}
}

// checkCard identifies the card on one reader, if there is one.
func (r *run) checkCard(ctx context.Context, rc reader.Context, name string) {
	ctx, cancel := context.WithTimeout(ctx, cardTimeout)
	defer cancel()
	card, err := rc.Connect(ctx, name)
	if errors.Is(err, reader.ErrNoCard) {
		r.pass(checkCards, fmt.Sprintf("%s: no card on the encoder", name))
		return
	}
	if err != nil {
		fix := "take the card off, wait two seconds and put it back; if it persists, replug the reader"
		if errors.Is(err, reader.ErrSharingViolation) {
			fix = "another program holds the reader (a running encoder-bridge service is fine; otherwise close the other card software)"
		}
		r.fail(checkCards, fmt.Sprintf("%s: %v", name, err), fix)
		return
	}
	defer card.Close()
	info, err := reader.Identify(ctx, reader.NewTag(card))
	switch {
	case err != nil:
		r.fail(checkCards, fmt.Sprintf("%s: the card does not answer: %v", name, err), "hold the card flat on the encoder's marked area; try another card")
	case info.Technology.Family() == reader.FamilyUnknown:
		r.warn(checkCards, fmt.Sprintf("%s: a card this bridge cannot encode (ATR %X)", name, info.ATR), "use MIFARE Classic, Ultralight EV1, NTAG21x or DESFire cards")
	default:
		r.pass(checkCards, fmt.Sprintf("%s: %s", name, info.Technology))
	}
}
