package hwtest

import (
	"fmt"
	"os"
	"slices"
	"testing"

	"github.com/ebfe/scard"

	"github.com/encoder-bridge/encoder-bridge/hwtest/vpcd"
)

// Require skips t when pcscd or its vpcd readers are not available, or fails
// it when the CI environment variable is set.
func Require(t testing.TB) {
	t.Helper()
	if _, err := listedSlots(); err != nil {
		unavailable(t, err)
	}
}

func unavailable(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("hardware tests must run in CI: start pcscd with vsmartcard-vpcd installed (%v)", err)
	}
	t.Skipf("no pcscd with vpcd readers: %v", err)
}

// listedSlots is Slots narrowed to the readers pcscd lists.
func listedSlots() ([]Slot, error) {
	if os.Getenv(vpcd.EnvReaderConf) != "" {
		// A private pcscd (hwtest/pcscd): its configuration must be there.
		if _, err := vpcd.ConfiguredReaders(); err != nil {
			return nil, err
		}
	}
	ctx, err := scard.EstablishContext()
	if err != nil {
		return nil, fmt.Errorf("pcscd not reachable: %w", err)
	}
	defer ctx.Release()
	names, err := ctx.ListReaders()
	if err != nil && err != scard.ErrNoReadersAvailable {
		return nil, fmt.Errorf("pcscd: list readers: %w", err)
	}
	var out []Slot
	for _, s := range Slots() {
		if slices.Contains(names, s.Reader) {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("pcscd lists none of the vpcd readers %v (it lists %q)", Slots(), names)
	}
	return out, nil
}
