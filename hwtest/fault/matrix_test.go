package fault_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/encoder-bridge/encoder-bridge/bridge"
	"github.com/encoder-bridge/encoder-bridge/cardfmt"
	"github.com/encoder-bridge/encoder-bridge/hwtest"
	"github.com/encoder-bridge/encoder-bridge/hwtest/vpcd"
	"github.com/encoder-bridge/encoder-bridge/internal/pgtest"
	"github.com/encoder-bridge/encoder-bridge/reader/sim/chip"
)

// steps are the protocol steps of an encode job as the link carries them,
// in order.
var steps = []step{
	{Type: "job"},
	{Type: "ack"},
	{Type: "progress", Stage: "waiting_for_card"},
	{Type: "progress", Stage: "card_detected"},
	{Type: "progress", Stage: "writing"},
	{Type: "progress", Stage: "verifying"},
	{Type: "result"},
	{Type: "result_ack"},
}

// cell is one fault at one point of a job.
type cell struct {
	name string
	// at is the step the fault fires at (once, its first occurrence);
	// nil for cells that do not act on the link.
	at *step
	// fault runs in the proxy before the message is forwarded and says
	// what becomes of it.
	fault func(d *desk) action
	// removeAt, when set, takes the card off the encoder during that APDU
	// and puts it back.
	removeAt int
	// delay is added to every APDU.
	delay time.Duration
	// db, when set, is a PostgreSQL database for a desk of two cloud
	// instances (newDuoDesk).
	db string
}

// runCell runs one encode on a fresh desk with a card holding an old
// record, applies the cell's fault, and checks the outcome.
func runCell(t *testing.T, slot hwtest.Slot, kind string, c cell, oneEncode map[int]int) (outcome, int) {
	t.Helper()
	card, err := chip.New(kind, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := newDeskOn(t, slot.Reader, c.db)
	old := oldCredential(t)
	writeOld(t, card, d.keys, old)
	w := countWrites(card)
	var served chip.Card = w
	if c.removeAt > 0 || c.delay > 0 {
		served = chip.WithFaults(w, chip.Faults{RemoveAt: c.removeAt, Delay: c.delay})
	}
	vs := insertCard(t, slot, served)
	d.mu.Lock()
	d.card = w
	d.mu.Unlock()

	var reinserted *vpcd.Slot
	var wg sync.WaitGroup
	settled := make(chan struct{})
	if c.removeAt > 0 {
		// The guest puts the card back once it has left the field.
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-vs.Done():
			case <-settled:
				return
			}
			if err := hwtest.WaitCard(slot.Reader, false, nil, 15*time.Second); err != nil {
				t.Errorf("after the card left: %v", err)
				return
			}
			s, err := vpcd.Insert(context.Background(), slot.Addr, w)
			if err != nil {
				t.Errorf("put the card back: %v", err)
				return
			}
			reinserted = s
		}()
	}

	var once sync.Once
	fired := false
	if c.at != nil {
		d.proxy.setHook(func(s step) action {
			act := pass
			if s == *c.at {
				once.Do(func() { act, fired = c.fault(d), true })
			}
			return act
		})
	}
	credID := d.createCredential()
	since := time.Now()
	var attempt map[string]any
	if id, ok := d.encode(credID); ok {
		attempt = d.settle(id, since)
	} else {
		d.waitIssued(credID, since)
	}
	close(settled)
	d.proxy.setHook(nil)
	once.Do(func() {}) // orders fired after the hook's last call
	if c.at != nil && !fired {
		t.Errorf("the job never reached %s: the cell tested nothing", c.at)
	}
	wg.Wait()
	apdus := vs.APDUs()
	// The card leaves the encoder before it is scanned on its own.
	d.mu.Lock()
	again := d.extra
	d.mu.Unlock()
	if reinserted != nil {
		again = append(again, reinserted)
	}
	for _, s := range again {
		s.Remove()
		apdus += s.APDUs()
	}
	vs.Remove()
	o := check(t, d, attempt, credID, scanCard(t, card, d.keys, old, credID), w.Writes(), oneEncode)
	t.Logf("%s: %s", c.name, o)
	return o, apdus
}

// baseline is what one encode of a new record over an old one costs the
// card, measured on the simulated reader with the same code the bridge
// runs: the writes that change memory and the APDUs the card answers.
// Then a clean cell on the desk.
func baseline(t *testing.T, slot hwtest.Slot, kind string) (writes map[int]int, apdus int) {
	t.Helper()
	card, err := chip.New(kind, nil)
	if err != nil {
		t.Fatal(err)
	}
	ks := keys(t)
	writeOld(t, card, ks, oldCredential(t))
	w := countWrites(card)
	a := &apduCounter{Card: w}
	if err := onSim(a, ks, func(st *bridge.Station) error {
		_, err := st.Encode(context.Background(), "sim", oldCredential(t), 5*time.Second)
		return err
	}); err != nil {
		t.Fatalf("baseline encode: %v", err)
	}
	writes, apdus = w.Writes(), int(a.n.Load())
	t.Run("none", func(t *testing.T) {
		o, n := runCell(t, slot, kind, cell{name: "no fault"}, writes)
		if o.status != "success" || o.card != verdictNew {
			t.Fatalf("a clean encode: %s", o)
		}
		// On the desk the bridge also identifies the card when it
		// arrives; those APDUs count too.
		apdus = n
	})
	return writes, apdus
}

// apduCounter counts the APDUs a card answers.
type apduCounter struct {
	chip.Card
	n atomic.Int64
}

func (a *apduCounter) Transmit(apdu []byte) ([]byte, error) {
	a.n.Add(1)
	return a.Card.Transmit(apdu)
}

func dropLink(before bool) func(*desk) action {
	return func(*desk) action {
		if before {
			return cutBefore
		}
		return cutAfter
	}
}

// TestLinkDrop drops the link between bridge and cloud at every protocol
// step of an encode, before the message crosses and just after.
func TestLinkDrop(t *testing.T) {
	slot := hwtest.AcquireSlot(t)
	const kind = "mifare_classic_1k"
	writes, _ := baseline(t, slot, kind)
	for _, s := range steps {
		for _, before := range []bool{true, false} {
			name := s.String() + "/after"
			if before {
				name = s.String() + "/before"
			}
			t.Run(name, func(t *testing.T) {
				runCell(t, slot, kind, cell{name: "drop link " + name, at: &s, fault: dropLink(before)}, writes)
			})
		}
	}
}

// restartBridge is SIGKILL then a new encoder-bridge run on the same
// state directory: a crash or power cut at the front desk. The message
// never leaves the dead process.
func restartBridge(d *desk) action {
	d.killBridge()
	if err := d.startBridge(); err != nil {
		d.t.Error(err)
	}
	return cutBefore
}

// restartCloud is SIGKILL then a new encoder-cloud serve on the same
// database and address. The message is lost with the process.
func restartCloud(d *desk) action {
	d.killCloud()
	if err := d.startCloud(); err != nil {
		d.t.Error(err)
	}
	return cutBefore
}

// journalSteps are where the bridge's journal changes, as the link shows
// them: the job is stored (before its ack), running (card detected),
// writing (recorded before the first write), finished (before the
// result), and forgotten (after result_ack).
var journalSteps = []step{
	{Type: "job"},
	{Type: "ack"},
	{Type: "progress", Stage: "card_detected"},
	{Type: "progress", Stage: "writing"},
	{Type: "progress", Stage: "verifying"},
	{Type: "result"},
	{Type: "result_ack"},
}

// TestKill SIGKILLs the bridge at each journal step and the cloud at each
// protocol step of an encode, and starts it again.
func TestKill(t *testing.T) {
	slot := hwtest.AcquireSlot(t)
	const kind = "mifare_classic_1k"
	writes, _ := baseline(t, slot, kind)
	for _, k := range []struct {
		name  string
		steps []step
		fault func(*desk) action
	}{
		{"bridge", journalSteps, restartBridge},
		{"cloud", steps, restartCloud},
	} {
		for _, s := range k.steps {
			name := k.name + "/" + s.String()
			t.Run(name, func(t *testing.T) {
				runCell(t, slot, kind, cell{name: "SIGKILL " + name, at: &s, fault: k.fault}, writes)
			})
		}
	}
}

// killInstance is SIGKILL of the cloud instance the bridge is linked to,
// for good: the bridge moves to the other instance, where the test's API
// calls go. The message is lost with the process.
func killInstance(d *desk) action {
	d.killCloud()
	return cutBefore
}

// TestKillInstance: two cloud instances on one PostgreSQL database; the
// bridge is linked to the first, the encode is asked of the second, and
// the first is SIGKILLed at each protocol step of the job. The bridge
// reconnects to the second; the attempt must end (success, or an error
// Seam defines), never stay pending, and the card must be written no more
// than one encode writes it.
func TestKillInstance(t *testing.T) {
	slot := hwtest.AcquireSlot(t)
	const kind = "mifare_classic_1k"
	writes, _ := baseline(t, slot, kind)
	for _, s := range steps {
		t.Run(s.String(), func(t *testing.T) {
			runCell(t, slot, kind, cell{name: "SIGKILL instance at " + s.String(), at: &s, fault: killInstance, db: pgtest.DSN(t)}, writes)
		})
	}
}

func keys(t *testing.T) *cardfmt.KeySet {
	ks, err := cardfmt.GenerateKeySet(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

// removalKinds are the card types whose encode is cut by taking the card
// off: both layouts, the smallest and largest of each family.
var removalKinds = []string{chip.KindClassic1K, chip.KindClassic4K, chip.KindMF0UL21, chip.KindNTAG213, chip.KindNTAG216,
	chip.KindDESFireEV2, chip.KindDESFireEV3}

// removalIndices are the APDU indices (from 1, counted from when the
// card is put on the encoder) the card is taken off at. With FAULT_FULL
// set (make proof) every index of a clean encode and one past it; else
// a sample: the first two, the last two, one past the end, and
// FAULT_SAMPLES (default 4) evenly spaced between, so CI stays short.
func removalIndices(n int) []int {
	if os.Getenv("FAULT_FULL") != "" {
		var all []int
		for i := 1; i <= n+1; i++ {
			all = append(all, i)
		}
		return all
	}
	samples := 4
	if v, err := strconv.Atoi(os.Getenv("FAULT_SAMPLES")); err == nil && v >= 0 {
		samples = v
	}
	idx := []int{1, 2, n - 1, n, n + 1}
	for i := 1; i <= samples; i++ {
		idx = append(idx, 2+i*(n-3)/(samples+1))
	}
	slices.Sort(idx)
	return slices.Compact(slices.DeleteFunc(idx, func(i int) bool { return i < 1 }))
}

// TestCardRemoval takes the card off the encoder during sampled APDUs of
// each layout's encode, then puts it back, as a guest who lifts the card
// too early does.
func TestCardRemoval(t *testing.T) {
	slot := hwtest.AcquireSlot(t)
	for _, kind := range removalKinds {
		t.Run(kind, func(t *testing.T) {
			writes, n := baseline(t, slot, kind)
			idx := removalIndices(n)
			t.Logf("%s: a clean encode is %d APDUs on the desk; removing at %v", kind, n, idx)
			for _, k := range idx {
				t.Run(fmt.Sprintf("apdu=%d", k), func(t *testing.T) {
					o, _ := runCell(t, slot, kind, cell{name: fmt.Sprintf("remove at APDU %d of %d", k, n), removeAt: k}, writes)
					// Lifted during the last APDU (a read-back, or the
					// commit's answer) or after it: the card goes back on
					// the encoder, and the job reports what it reads.
					if k >= n && (o.status != "success" || o.card != verdictNew) {
						t.Errorf("lifted at APDU %d of %d and put back: %s, want success with the new record", k, n, o)
					}
				})
			}
		})
	}
}

// insertCard is hwtest.InsertCard, except that a card whose vpcd
// connection died with pcscd is no failure at cleanup.
func insertCard(t *testing.T, slot hwtest.Slot, card chip.Card) *vpcd.Slot {
	t.Helper()
	vs, err := vpcd.Insert(context.Background(), slot.Addr, card)
	if err != nil {
		t.Fatalf("insert card into %v: %v", slot, err)
	}
	t.Cleanup(func() {
		if err := vs.Remove(); err != nil && !errors.Is(err, vpcd.ErrClosed) {
			t.Errorf("virtual card in %v: %v", slot, err)
		}
		if err := hwtest.WaitCard(slot.Reader, false, nil, 15*time.Second); err != nil {
			t.Errorf("after removing the card: %v", err)
		}
	})
	select {
	case <-vs.Attached():
	case <-vs.Done():
		t.Fatalf("card in %v left before vpcd accepted it: %v", slot, vs.Err())
	case <-time.After(15 * time.Second):
		t.Fatalf("vpcd did not accept the card in %v: is another card in that slot?", slot)
	}
	if err := hwtest.WaitCard(slot.Reader, true, card.ATR(), 15*time.Second); err != nil {
		t.Fatal(err)
	}
	return vs
}
