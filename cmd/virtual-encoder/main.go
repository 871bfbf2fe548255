// Command virtual-encoder inserts one emulated contactless card into a
// vsmartcard vpcd reader of the local pcscd, so encoder-bridge, the README's
// demo and any PC/SC program can encode cards without a reader or cards.
//
// It is the card side only: it must not import bridge, cardfmt or
// reader/pcsc.
package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/encoder-bridge/encoder-bridge/hwtest/vpcd"
	"github.com/encoder-bridge/encoder-bridge/internal/durable"
	"github.com/encoder-bridge/encoder-bridge/reader/sim/chip"
)

const usage = `Usage: virtual-encoder [flags]

Puts one emulated contactless card into a virtual reader of the local pcscd
(vsmartcard-vpcd), as if it lay on a USB encoder. PC/SC programs such as
encoder-bridge or pcsc_scan then see it in "Virtual PCD 00 00" (or the
reader of --vpcd). Ctrl-C removes the card and exits.

Flags:
  --card KIND           card to emulate (default mifare_classic_1k):
%s
  --uid HEX             the card's UID, e.g. 04A1B2C3 (default: random)
  --desfire-size BYTES  DESFire: user memory, 2048, 4096 (default) or 8192
  --random-uid          DESFire: a fresh random UID at every activation; the
                        real one only through GetCardUID after authentication
  --aes-picc-key        DESFire: an all-zero AES PICC master key instead of
                        the factory all-zero 2K3DES key
  --vpcd ADDR           vpcd slot to plug into (default 127.0.0.1:35963 is
                        "Virtual PCD 00 00"; 127.0.0.1:35964 is "... 00 01")
  --state FILE          load the card from FILE if it exists; save it there
                        (mode 0600) after every removal and on exit, so an
                        encoded card survives across runs
  --remove-after N      fault injection: the card leaves the reader during its
                        Nth APDU, then comes back 2 s later without the fault
  --stay-out            with --remove-after: the card does not come back
  --delay DURATION      fault injection: add DURATION (e.g. 50ms) to every APDU

Needs pcscd running with vsmartcard-vpcd installed (Debian: apt-get install
pcscd vsmartcard-vpcd). It takes the slot's lock (shared with the hardware
tests) and fails if the slot is in use, unless ENCODER_BRIDGE_VPCD_HELD names
the slot: the caller holds its lock (scripts/with-vpcd-slot.sh).
`

// reinsertAfter is the pause before a removed card comes back: long enough
// for pcscd (which polls every ~0.4 s) and the program using it to notice.
const reinsertAfter = 2 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second Ctrl-C kills at once
	}()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

type options struct {
	kind, uidHex, addr, state string
	removeAfter               int
	stayOut                   bool
	delay                     time.Duration
	desfire                   chip.DESFireOptions
	set                       map[string]bool
}

// lockSlot is replaced in tests, which hold the slot through hwtest.
var lockSlot = vpcd.LockSlot

// heldEnv names the vpcd slot whose lock the caller holds for the run of
// its children (scripts/with-vpcd-slot.sh), so that a conformance run or
// the demo keeps the slot between cards.
const heldEnv = "ENCODER_BRIDGE_VPCD_HELD"

// takeSlot locks the slot at addr. A slot busy because the caller holds
// its lock (heldEnv names it) is used without it.
func takeSlot(addr string, getenv func(string) string) (unlock func(), err error) {
	unlock, err = lockSlot(addr)
	if errors.Is(err, vpcd.ErrSlotBusy) && getenv(heldEnv) == addr {
		return func() {}, nil
	}
	return unlock, err
}

func printUsage(w io.Writer) {
	var kinds strings.Builder
	for _, k := range chip.Kinds() {
		fmt.Fprintf(&kinds, "%24s%s\n", "", k)
	}
	fmt.Fprintf(w, usage, strings.TrimRight(kinds.String(), "\n"))
}

func parseFlags(args []string) (*options, error) {
	o := &options{set: map[string]bool{}}
	fs := flag.NewFlagSet("virtual-encoder", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported in one line by run
	fs.Usage = func() {}
	fs.StringVar(&o.kind, "card", chip.KindClassic1K, "")
	fs.StringVar(&o.uidHex, "uid", "", "")
	fs.StringVar(&o.addr, "vpcd", vpcd.DefaultAddr, "")
	fs.StringVar(&o.state, "state", "", "")
	fs.IntVar(&o.removeAfter, "remove-after", 0, "")
	fs.BoolVar(&o.stayOut, "stay-out", false, "")
	fs.DurationVar(&o.delay, "delay", 0, "")
	fs.IntVar(&o.desfire.Size, "desfire-size", 4096, "")
	fs.BoolVar(&o.desfire.RandomUID, "random-uid", false, "")
	fs.BoolVar(&o.desfire.AESPICCKey, "aes-picc-key", false, "")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	fs.Visit(func(f *flag.Flag) { o.set[f.Name] = true })
	isDESFire := o.kind == chip.KindDESFireEV2 || o.kind == chip.KindDESFireEV3
	for _, f := range []string{"desfire-size", "random-uid", "aes-picc-key"} {
		if o.set[f] && !isDESFire {
			return nil, fmt.Errorf("--%s: only for --card %s or %s", f, chip.KindDESFireEV2, chip.KindDESFireEV3)
		}
	}
	switch {
	case fs.NArg() > 0:
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case !slices.Contains(chip.Kinds(), o.kind):
		return nil, fmt.Errorf("--card %q: unknown kind; use one of %s", o.kind, strings.Join(chip.Kinds(), ", "))
	case o.removeAfter < 0:
		return nil, fmt.Errorf("--remove-after %d: must be 1 or more (0 = never)", o.removeAfter)
	case o.stayOut && o.removeAfter == 0:
		return nil, errors.New("--stay-out: needs --remove-after")
	case o.delay < 0:
		return nil, fmt.Errorf("--delay %v: must not be negative", o.delay)
	}
	if _, _, err := net.SplitHostPort(o.addr); err != nil {
		return nil, fmt.Errorf("--vpcd %q: want host:port, e.g. %s", o.addr, vpcd.DefaultAddr)
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "virtual-encoder: "+format+"\n", a...)
		return 1
	}
	o, err := parseFlags(args)
	if errors.Is(err, flag.ErrHelp) {
		printUsage(stdout)
		return 0
	}
	if err != nil {
		return fail("%v (see --help)", err)
	}
	card, loaded, err := loadCard(o)
	if err != nil {
		return fail("%v", err)
	}

	unlock, err := takeSlot(o.addr, os.Getenv)
	if errors.Is(err, vpcd.ErrSlotBusy) {
		return fail("the vpcd slot %s is in use by a hardware test or another virtual-encoder (%v); try --vpcd with another slot", o.addr, err)
	}
	if err != nil {
		return fail("%v", err)
	}
	defer unlock()

	logger := log.New(stderr, "", log.Ltime)
	reader := fmt.Sprintf("the vpcd reader on %s", o.addr)
	if r, ok := vpcd.ReaderFor(o.addr); ok {
		reader = fmt.Sprintf("%q", r.Name)
	}
	desc := fmt.Sprintf("%s card %X", kindOf(card), card.UID())
	if loaded {
		desc += " from " + o.state
	}
	save := func() error {
		if o.state == "" {
			return nil
		}
		if err := saveCard(o.state, card); err != nil {
			return fmt.Errorf("save the card to %s: %w", o.state, err)
		}
		return nil
	}

	faults := chip.Faults{RemoveAt: o.removeAfter, Delay: o.delay}
	first := true
	for {
		served := card
		if faults != (chip.Faults{}) {
			served = chip.WithFaults(card, faults)
		}
		slot, err := vpcd.Insert(ctx, o.addr, served)
		if err != nil {
			if ctx.Err() != nil {
				return exit(save(), fail)
			}
			if first {
				return fail("cannot reach vpcd at %s (%v): is pcscd running with vsmartcard-vpcd installed?", o.addr, reason(err))
			}
			logger.Printf("vpcd at %s not reachable, retrying: %v", o.addr, err)
			if !sleep(ctx, time.Second) {
				return exit(save(), fail)
			}
			continue
		}
		if !attached(ctx, slot, logger, reader) {
			slot.Remove()
			if ctx.Err() != nil {
				return exit(save(), fail)
			}
			logger.Printf("vpcd dropped the card before taking it: %v", slot.Err())
			if !sleep(ctx, time.Second) {
				return exit(save(), fail)
			}
			continue
		}
		if first {
			fmt.Fprintf(stdout, "%s is in reader %s. Press Ctrl-C to remove it and exit.\n", desc, reader)
			first = false
		}
		logger.Printf("card inserted into %s", reader)

		select {
		case <-slot.Done():
		case <-ctx.Done():
		}
		removeErr := slot.Remove()
		cause := slot.Err()
		saveErr := save()
		if ctx.Err() != nil {
			logger.Printf("card removed after %d APDUs", slot.APDUs())
			return exit(saveErr, fail)
		}
		if saveErr != nil {
			return fail("%v", saveErr)
		}
		if errors.Is(cause, chip.ErrRemoved) && o.stayOut {
			logger.Printf("card left the field during APDU %d (--remove-after); it stays out (--stay-out)", slot.APDUs())
			<-ctx.Done()
			return 0 // saved just above
		}
		if errors.Is(cause, chip.ErrRemoved) {
			logger.Printf("card left the field during APDU %d (--remove-after); putting it back in %v", slot.APDUs(), reinsertAfter)
			faults.RemoveAt = 0
		} else {
			if removeErr == nil {
				removeErr = cause
			}
			logger.Printf("vpcd dropped the card (pcscd restarted?): %v; inserting it again", removeErr)
		}
		if !sleep(ctx, reinsertAfter) {
			return 0 // saved just above
		}
	}
}

// attached waits until vpcd takes the card; it says why if that is slow.
func attached(ctx context.Context, slot *vpcd.Slot, logger *log.Logger, reader string) bool {
	slow := time.NewTimer(2 * time.Second)
	defer slow.Stop()
	for {
		select {
		case <-slot.Attached():
			return true
		case <-slot.Done():
			return false
		case <-ctx.Done():
			return false
		case <-slow.C:
			logger.Printf("waiting for %s to take the card: is another virtual card in it?", reader)
		}
	}
}

// reason is the root of a dial error, without the wrapping that repeats
// the address.
func reason(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		var sys *os.SyscallError
		if errors.As(op.Err, &sys) {
			return sys.Err
		}
		return op.Err
	}
	return err
}

func exit(saveErr error, fail func(string, ...any) int) int {
	if saveErr != nil {
		return fail("%v", saveErr)
	}
	return 0
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// loadCard restores the card from --state or makes a new one.
func loadCard(o *options) (card chip.Card, loaded bool, err error) {
	if o.state != "" {
		data, err := os.ReadFile(o.state)
		switch {
		case err == nil:
			if o.set["card"] || o.set["uid"] || o.set["desfire-size"] || o.set["random-uid"] || o.set["aes-picc-key"] {
				return nil, false, fmt.Errorf("%s already holds a card; --card, --uid and the DESFire flags only describe a new one (delete the file to start over)", o.state)
			}
			card, err := chip.Unmarshal(data)
			if err != nil {
				return nil, false, fmt.Errorf("--state %s: %w", o.state, err)
			}
			return card, true, nil
		case !errors.Is(err, fs.ErrNotExist):
			return nil, false, fmt.Errorf("--state: %w", err)
		}
	}
	var uid []byte
	if o.uidHex != "" {
		clean := strings.NewReplacer(":", "", " ", "", "-", "").Replace(o.uidHex)
		uid, err = hex.DecodeString(clean)
		if err != nil || len(uid) == 0 {
			return nil, false, fmt.Errorf("--uid %q: want hex bytes, e.g. 04A1B2C3", o.uidHex)
		}
	}
	switch o.kind {
	case chip.KindDESFireEV2, chip.KindDESFireEV3:
		opts := o.desfire
		opts.Generation = chip.DESFireEV2
		if o.kind == chip.KindDESFireEV3 {
			opts.Generation = chip.DESFireEV3
		}
		card, err = chip.NewDESFire(opts, uid)
	default:
		card, err = chip.New(o.kind, uid)
	}
	if err != nil {
		return nil, false, fmt.Errorf("--card %s --uid %s: %w", o.kind, o.uidHex, err)
	}
	return card, false, nil
}

// saveCard replaces path through a temporary file, so a crash mid-write
// leaves the previous state intact.
func saveCard(path string, card chip.Card) error {
	data, err := chip.Marshal(card)
	if err != nil {
		return err
	}
	return durable.WriteSecret(path, data)
}

func kindOf(c chip.Card) string {
	if k, ok := c.(interface{ Kind() string }); ok {
		return k.Kind()
	}
	return "emulated"
}
