package agent

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/encoder-bridge/encoder-bridge/bridge"
	"github.com/encoder-bridge/encoder-bridge/bridge/journal"
	"github.com/encoder-bridge/encoder-bridge/cardfmt"
	"github.com/encoder-bridge/encoder-bridge/protocol"
	"github.com/encoder-bridge/encoder-bridge/reader/sim"
	"github.com/encoder-bridge/encoder-bridge/reader/sim/chip"
)

// onBench runs f with a Station on card in a simulated reader of its
// own: the test sets up and reads cards there, never through the agent.
func onBench(t *testing.T, card chip.Card, ks *cardfmt.KeySet, f func(*bridge.Station) error) {
	t.Helper()
	rc := sim.New()
	rc.Plug("bench").Insert(card)
	defer rc.Unplug("bench")
	if err := f(&bridge.Station{Readers: rc, Keys: ks}); err != nil {
		t.Fatalf("bench: %v", err)
	}
}

// otherCredential is a guest's earlier stay: the record the job replaces.
func otherCredential(t *testing.T) cardfmt.Credential {
	t.Helper()
	p := *testCredential()
	p.CredentialID = uuid.NewString()
	c, err := bridge.CredentialOf(p)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func jobCredential(t *testing.T) cardfmt.Credential {
	t.Helper()
	c, err := bridge.CredentialOf(*testCredential())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func encodeOn(t *testing.T, card chip.Card, ks *cardfmt.KeySet, c cardfmt.Credential) {
	t.Helper()
	onBench(t, card, ks, func(st *bridge.Station) error {
		_, err := st.Encode(context.Background(), "bench", c, time.Second)
		return err
	})
}

// scanOn scans card on the bench: its UID and what it holds.
func scanOn(t *testing.T, card chip.Card, ks *cardfmt.KeySet) bridge.ScanResult {
	t.Helper()
	var res bridge.ScanResult
	onBench(t, card, ks, func(st *bridge.Station) (err error) {
		res, err = st.Scan(context.Background(), "bench", time.Second)
		return err
	})
	return res
}

// apduCount counts the APDUs a card answers.
type apduCount struct {
	chip.Card
	n atomic.Int32
}

func (a *apduCount) Transmit(apdu []byte) ([]byte, error) {
	a.n.Add(1)
	return a.Card.Transmit(apdu)
}

// encodeAPDUs is how many APDUs an encode of the job's record over an
// old one costs a Classic 1K card, the read-back included.
func encodeAPDUs(t *testing.T, ks *cardfmt.KeySet) int {
	t.Helper()
	c, _ := chip.New(chip.KindClassic1K, nil)
	encodeOn(t, c, ks, otherCredential(t))
	a := &apduCount{Card: c}
	encodeOn(t, a, ks, jobCredential(t))
	return int(a.n.Load())
}

// writesOverOld is how many card writes one encode of the job's record
// over an old record makes on a Classic 1K card.
func writesOverOld(t *testing.T, ks *cardfmt.KeySet) int32 {
	t.Helper()
	c := newCard(t)
	encodeOn(t, c, ks, otherCredential(t))
	before := c.writes.Load()
	encodeOn(t, c, ks, jobCredential(t))
	return c.writes.Load() - before
}

// torn is a Classic 1K card holding the old record whose encode of the
// job's record was cut in the middle: it holds neither record.
func torn(t *testing.T, ks *cardfmt.KeySet) *countingCard {
	t.Helper()
	n := encodeAPDUs(t, ks)
	for k := n / 2; k < n; k++ {
		c := newCard(t)
		encodeOn(t, c, ks, otherCredential(t))
		rc := sim.New()
		rc.Plug("bench").Insert(chip.WithFaults(c, chip.Faults{RemoveAt: k}))
		st := &bridge.Station{Readers: rc, Keys: ks}
		st.Encode(context.Background(), "bench", jobCredential(t), time.Second)
		if !scanOn(t, c, ks).Valid() {
			return c
		}
	}
	t.Fatal("no APDU of an encode leaves the card torn")
	return nil
}

// randomIDCard is a DESFire EV3 that makes up its UID at each activation.
func randomIDCard(t *testing.T) chip.Card { return randomID(t, chip.DESFireEV3) }

func randomID(t *testing.T, g int) *chip.DESFire {
	t.Helper()
	c, err := chip.NewDESFire(chip.DESFireOptions{Generation: g, Size: 4096, RandomUID: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A job the journal holds as writing, with its card's UID, is resumed
// after a restart by looking at that card: its record decides.
func TestResumeAfterRestart(t *testing.T) {
	for _, tc := range []struct {
		name string
		// card is the card the job was writing, as the crash left it; nil
		// when it is not presented again.
		card func(t *testing.T, ks *cardfmt.KeySet) chip.Card
		// other, when set, is on the encoder first; the job's card
		// replaces it once the job waits. otherRandom makes it a
		// random-ID DESFire EV2 (its UID tells nothing; its real one does).
		other, otherRandom bool
		// short: the job has little time left.
		short bool
		// real: the journal holds the card's real UID, as the agent
		// records it for a random-UID card before writing the record.
		real bool
		want protocol.ErrorType // "" for success
		// writes the agent makes on the job's card (UPDATE BINARY);
		// -1: one encode's over an old record, -2: one encode's of a
		// blank card.
		writes int32
	}{
		{name: "written, killed before the result", card: func(t *testing.T, ks *cardfmt.KeySet) chip.Card {
			c := newCard(t)
			encodeOn(t, c, ks, jobCredential(t))
			return c
		}},
		{name: "killed before the first write", card: func(t *testing.T, ks *cardfmt.KeySet) chip.Card {
			c := newCard(t)
			encodeOn(t, c, ks, otherCredential(t))
			return c
		}, writes: -1},
		{name: "blank card, killed before the first write", card: func(t *testing.T, ks *cardfmt.KeySet) chip.Card {
			return newCard(t)
		}, writes: -2},
		{name: "killed mid-write", card: func(t *testing.T, ks *cardfmt.KeySet) chip.Card {
			return torn(t, ks)
		}, want: protocol.ErrorEncodingInterrupted},
		{name: "a later card of the credential", card: func(t *testing.T, ks *cardfmt.KeySet) chip.Card {
			c := newCard(t)
			later := jobCredential(t)
			later.IssueSequence++
			encodeOn(t, c, ks, later)
			return c
		}, want: protocol.ErrorEncodingInterrupted},
		{name: "another card first, then the job's", other: true, card: func(t *testing.T, ks *cardfmt.KeySet) chip.Card {
			c := newCard(t)
			encodeOn(t, c, ks, jobCredential(t))
			return c
		}},
		{name: "the card never comes back", short: true, want: protocol.ErrorEncodingInterrupted},
		{name: "random-ID DESFire holding the job's record", card: func(t *testing.T, ks *cardfmt.KeySet) chip.Card {
			c := randomIDCard(t)
			encodeOn(t, c, ks, jobCredential(t))
			return c
		}},
		{name: "random-ID DESFire holding the old record", card: func(t *testing.T, ks *cardfmt.KeySet) chip.Card {
			c := randomIDCard(t)
			encodeOn(t, c, ks, otherCredential(t))
			return c
		}, want: protocol.ErrorEncodingInterrupted},
		{name: "random-ID EV2 cut after the commit, real UID recorded", real: true, card: func(t *testing.T, ks *cardfmt.KeySet) chip.Card {
			c := randomID(t, chip.DESFireEV2)
			encodeOn(t, c, ks, jobCredential(t))
			return c
		}},
		{name: "random-ID EV2 holding the old record, real UID recorded", real: true, card: func(t *testing.T, ks *cardfmt.KeySet) chip.Card {
			c := randomID(t, chip.DESFireEV2)
			encodeOn(t, c, ks, otherCredential(t))
			return c
		}},
		{name: "another random-ID EV2 first, then the job's, real UID recorded", real: true, other: true, otherRandom: true, card: func(t *testing.T, ks *cardfmt.KeySet) chip.Card {
			c := randomID(t, chip.DESFireEV2)
			encodeOn(t, c, ks, otherCredential(t))
			return c
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			enc := h.encoderID("Sim 00")
			r := h.sim.Plug("Sim 00")
			var card chip.Card
			uid := []byte{0x04, 1, 2, 3, 4, 5, 6}
			if tc.card != nil {
				card = tc.card(t, h.keys)
				uid = scanOn(t, card, h.keys).UID
			}
			if tc.real {
				uid = card.(*chip.DESFire).RealUID()
			}
			counted, _ := card.(*countingCard)
			var before int32
			if counted != nil {
				before = counted.writes.Load()
			}
			deadline := in(waitLong)
			if tc.short {
				deadline = in(2 * time.Second)
			}
			j, err := journal.Open(h.dir, journal.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := j.Receive(journal.Entry{Job: *encodeJob("j1", enc, deadline), Reader: "Sim 00"}); err != nil {
				t.Fatal(err)
			}
			if _, err := j.BeginWrite("j1", uidHex(uid)); err != nil {
				t.Fatal(err)
			}
			j.Close()

			other := newCard(t)
			encodeOn(t, other, h.keys, otherCredential(t))
			randomOther := randomID(t, chip.DESFireEV2)
			encodeOn(t, randomOther, h.keys, otherCredential(t))
			switch {
			case tc.otherRandom:
				r.Insert(randomOther)
			case tc.other:
				r.Insert(other)
			case card != nil:
				r.Insert(card)
			}
			h.start()
			cc := h.cloud.Next(t)
			if !slices.Contains(cc.Hello.ActiveJobs, "j1") || len(cc.Hello.Results) != 0 {
				t.Fatalf("hello after the restart: the job must be active, without a result: %+v", cc.Hello)
			}
			if tc.other {
				// The agent looks at the card on the encoder, refuses it,
				// and waits for it to go.
				// The reader watch is one waiter, the job the other.
				<-h.sim.Waiting(2)
				r.Remove()
				r.Insert(card)
			}
			res := cc.ExpectResult(t, "j1")
			switch {
			case tc.want == "" && res.Error != nil:
				t.Fatalf("result: %+v, want success", res.Error)
			case tc.want == "":
				if !res.Card.Valid || res.Card.Credential == nil || res.Card.Credential.CredentialID != testCredential().CredentialID {
					t.Fatalf("result card: %+v", res.Card)
				}
				if sc := scanOn(t, card, h.keys); !sc.Valid() || !holdsJob(sc.Record, jobCredential(t)) {
					t.Fatalf("success reported, and the card scans as %+v", sc.Scan)
				}
			case res.Error == nil || res.Error.Type != tc.want:
				t.Fatalf("result: %+v %+v, want %s", res.Error, res.Card, tc.want)
			}
			if counted != nil {
				want := tc.writes
				switch want {
				case -1:
					want = writesOverOld(t, h.keys)
				case -2:
					want = writesPerEncode()
				}
				if got := counted.writes.Load() - before; got != want {
					t.Fatalf("the agent wrote the card %d times, want %d", got, want)
				}
			}
			if sc := scanOn(t, randomOther, h.keys); tc.otherRandom && (!sc.Valid() || holdsJob(sc.Record, jobCredential(t))) {
				t.Fatalf("the other random-ID card scans as %+v", sc.Scan)
			}
			if n := other.writes.Load(); tc.other && !tc.otherRandom && n != writesPerEncode() {
				// Only the bench's encode of the old record.
				t.Fatalf("the other card was written by the agent: %d writes", n-writesPerEncode())
			}
			h.quiet()
		})
	}
}

// A random-ID DESFire EV2 lifted during the read-back, after the commit:
// the journal holds its real UID, recorded before the record was written
// (what a resume after a crash finds it by, see TestResumeAfterRestart),
// and the job finds the card by it and reports success.
func TestResumeRandomIDInJob(t *testing.T) {
	h := newHarness(t)
	enc := h.encoderID("Sim 00")
	r := h.sim.Plug("Sim 00")
	// The read-back's last APDU, counted on a card in the same state.
	bench := randomID(t, chip.DESFireEV2)
	encodeOn(t, bench, h.keys, otherCredential(t))
	a := &apduCount{Card: bench}
	encodeOn(t, a, h.keys, jobCredential(t))
	last := int(a.n.Load())

	card := randomID(t, chip.DESFireEV2)
	encodeOn(t, card, h.keys, otherCredential(t))
	served := chip.WithFaults(card, chip.Faults{RemoveAt: last})
	r.Insert(served)
	h.start()
	cc := h.cloud.Next(t)
	cc.Job(encodeJob("j1", enc, in(waitLong)))
	cc.Expect(t, "writing", isStage("j1", protocol.StageWriting))
	<-h.sim.Waiting(2) // the card left; the job waits for it
	_, active, err := h.j.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if len(active) != 1 || active[0].State != journal.StateWriting || active[0].CardUID != uidHex(card.RealUID()) {
		t.Fatalf("journal while the job waits: %+v, want writing with the real UID %s", active, uidHex(card.RealUID()))
	}
	r.Insert(served)
	res := cc.ExpectResult(t, "j1")
	if res.Error != nil {
		t.Fatalf("result: %+v, want success", res.Error)
	}
	if sc := scanOn(t, card, h.keys); !sc.Valid() || !holdsJob(sc.Record, jobCredential(t)) {
		t.Fatalf("success reported, and the card scans as %+v", sc.Scan)
	}
	h.quiet()
}

// An encode whose read-back loses the card waits for that card and
// settles by what it holds; a reader that goes away while a job waits or
// reads back is waited for.
func TestResumeInJob(t *testing.T) {
	type fault int
	const (
		lift        fault = iota // the card leaves during the read-back and comes back
		liftForGood              // ... and never comes back
		unplugRead               // the reader goes away during the read-back and comes back
		unplugWait               // the reader goes away while the job waits for a card
		unplugGone               // ... and does not come back
		liftEarly                // the card leaves after writing began, before any write landed
	)
	for _, tc := range []struct {
		name  string
		fault fault
		want  protocol.ErrorType
	}{
		{"card lifted during the read-back, put back", lift, ""},
		{"card lifted during the read-back for good", liftForGood, protocol.ErrorEncodingInterrupted},
		{"reader gone during the read-back, back", unplugRead, ""},
		{"reader gone while waiting for a card, back", unplugWait, ""},
		{"reader gone while waiting for a card for good", unplugGone, protocol.ErrorEncoderNotOnline},
		{"card lifted before the first write, put back", liftEarly, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			enc := h.encoderID("Sim 00")
			r := h.sim.Plug("Sim 00")
			card := newCard(t)
			encodeOn(t, card, h.keys, otherCredential(t))
			before := card.writes.Load()
			last := encodeAPDUs(t, h.keys) // the read-back's last APDU
			var served chip.Card = card
			switch tc.fault {
			case lift, liftForGood:
				served = chip.WithFaults(card, chip.Faults{RemoveAt: last})
			case liftEarly:
				// The first APDU after the card was identified: the
				// layout's, before any block changed.
				served = chip.WithFaults(card, chip.Faults{RemoveAt: 2})
			case unplugRead:
				served = &atAPDU{Card: card, at: int32(last), do: func() { h.sim.Unplug("Sim 00") }}
			}
			if tc.fault != unplugWait && tc.fault != unplugGone {
				r.Insert(served)
			}
			h.start()
			cc := h.cloud.Next(t)
			deadline := in(waitLong)
			if tc.fault == liftForGood || tc.fault == unplugGone {
				deadline = in(2 * time.Second)
			}
			cc.Job(encodeJob("j1", enc, deadline))
			switch tc.fault {
			case lift, liftEarly:
				cc.Expect(t, "writing", isStage("j1", protocol.StageWriting))
				<-h.sim.Waiting(2)
				r.Insert(served)
			case unplugRead:
				cc.Expect(t, "writing", isStage("j1", protocol.StageWriting))
				cc.Expect(t, "encoder removed", isType(protocol.TypeEncoderRemoved, ""))
				h.sim.Plug("Sim 00").Insert(card)
			case unplugWait:
				cc.Expect(t, "waiting for a card", isStage("j1", protocol.StageWaitingForCard))
				h.sim.Unplug("Sim 00")
				cc.Expect(t, "encoder removed", isType(protocol.TypeEncoderRemoved, ""))
				h.sim.Plug("Sim 00").Insert(card)
			case unplugGone:
				cc.Expect(t, "waiting for a card", isStage("j1", protocol.StageWaitingForCard))
				h.sim.Unplug("Sim 00")
			}
			res := cc.ExpectResult(t, "j1")
			if tc.want == "" {
				if res.Error != nil {
					t.Fatalf("result: %+v, want success", res.Error)
				}
				if sc := scanOn(t, card, h.keys); !sc.Valid() || !holdsJob(sc.Record, jobCredential(t)) {
					t.Fatalf("success reported, and the card scans as %+v", sc.Scan)
				}
			} else if res.Error == nil || res.Error.Type != tc.want {
				t.Fatalf("result: %+v, want %s", res, tc.want)
			}
			// One encode's writes, none for a job that never saw its
			// card: a lost card is never written twice.
			want := writesOverOld(t, h.keys)
			if tc.fault == unplugGone {
				want = 0
			}
			if got := card.writes.Load() - before; got != want {
				t.Fatalf("the card was written %d times, want %d", got, want)
			}
			h.quiet()
		})
	}
}

// atAPDU runs do during APDU number at, as the card answers it.
type atAPDU struct {
	chip.Card
	n  atomic.Int32
	at int32
	do func()
}

func (a *atAPDU) Transmit(apdu []byte) ([]byte, error) {
	resp, err := a.Card.Transmit(apdu)
	if a.n.Add(1) == a.at {
		a.do()
	}
	return resp, err
}

// A scan job whose reader goes away while it waits for a card waits for
// the reader, within its time.
func TestScanWaitsForReader(t *testing.T) {
	for _, tc := range []struct {
		name string
		back bool
		want protocol.ErrorType
	}{
		{"the reader comes back with a card", true, ""},
		{"the reader does not come back", false, protocol.ErrorEncoderNotOnline},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			enc := h.encoderID("Sim 00")
			h.sim.Plug("Sim 00")
			card := newCard(t)
			encodeOn(t, card, h.keys, jobCredential(t))
			h.start()
			cc := h.cloud.Next(t)
			cc.Job(scanJob("s1", enc, in(2*time.Second)))
			cc.Expect(t, "waiting for a card", isStage("s1", protocol.StageWaitingForCard))
			h.sim.Unplug("Sim 00")
			cc.Expect(t, "encoder removed", isType(protocol.TypeEncoderRemoved, ""))
			if tc.back {
				h.sim.Plug("Sim 00").Insert(card)
			}
			res := cc.ExpectResult(t, "s1")
			switch {
			case tc.want == "" && (res.Error != nil || res.Card == nil || !res.Card.Valid):
				t.Fatalf("scan: %+v / %+v, want the card's record", res.Card, res.Error)
			case tc.want != "" && (res.Error == nil || res.Error.Type != tc.want):
				t.Fatalf("scan: %+v / %+v, want %s", res.Card, res.Error, tc.want)
			}
			h.quiet()
		})
	}
}
