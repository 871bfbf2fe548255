package classic

import (
	"context"
	"testing"

	"github.com/google/uuid"

	"github.com/encoder-bridge/encoder-bridge/reader"
)

// answers is a card connection that answers each command APDU, and each
// reset, with the next frame of the fuzz input: a length byte, then that
// many bytes (for an APDU, data and status word). A reset succeeds on an
// empty frame. When the input runs out the card is gone.
type answers struct{ b []byte }

func (a *answers) next() ([]byte, bool) {
	if len(a.b) == 0 {
		return nil, false
	}
	n := min(int(a.b[0]), len(a.b)-1)
	out := a.b[1 : 1+n]
	a.b = a.b[1+n:]
	return out, true
}

func (a *answers) Reader() string { return readerName }
func (a *answers) ATR() []byte    { return nil }
func (a *answers) Close() error   { return nil }

func (a *answers) Transmit(context.Context, []byte) ([]byte, error) {
	out, ok := a.next()
	if !ok {
		return nil, reader.ErrCardRemoved
	}
	return append([]byte(nil), out...), nil
}

func (a *answers) Reset(context.Context) error {
	out, ok := a.next()
	if !ok || len(out) != 0 {
		return reader.ErrCardRemoved
	}
	return nil
}

// recorder writes what a real card answers in the answers format, for
// seeds that reach past the first sector.
type recorder struct {
	reader.Card
	b []byte
}

func (r *recorder) Transmit(ctx context.Context, apdu []byte) ([]byte, error) {
	resp, err := r.Card.Transmit(ctx, apdu)
	if err == nil {
		r.b = append(append(r.b, byte(len(resp))), resp...)
	}
	return resp, err
}

func (r *recorder) Reset(ctx context.Context) error {
	err := r.Card.Reset(ctx)
	if err == nil {
		r.b = append(r.b, 0)
	}
	return err
}

// record runs op on a fresh connection to the rig's card and returns the
// card's answers.
func (r *rig) record(op func(*reader.Tag, reader.Info) error) []byte {
	r.t.Helper()
	c, err := r.sim.Connect(context.Background(), readerName)
	if err != nil {
		r.t.Fatal(err)
	}
	defer c.Close()
	rec := &recorder{Card: c}
	tag := reader.NewTag(rec)
	info, err := reader.Identify(context.Background(), tag)
	if err != nil {
		r.t.Fatal(err)
	}
	rec.b = nil
	if err := op(tag, info); err != nil {
		r.t.Fatal(err)
	}
	return rec.b
}

// FuzzAnswers feeds arbitrary APDU responses (short, long, any status
// word, a card gone mid-way, a reset refused) to Scan and Encode through
// the real reader.Tag: a card's answers come from outside. Neither may
// panic, and Scan may find valid only a record this test sealed.
func FuzzAnswers(f *testing.F) {
	ks := keySet(f)
	sealed := map[uuid.UUID]bool{}
	blank := newRig(f, "mifare_classic_1k")
	uid := blank.chip.UID()
	c1, c2 := credential("1001", 2), credential("2002", 0)
	sealed[c1.ID], sealed[c2.ID] = true, true
	f.Add(blank.record(func(t *reader.Tag, info reader.Info) error {
		return errOf(Encode(context.Background(), t, info, ks, c1))
	}))
	scanned := blank.record(func(t *reader.Tag, info reader.Info) error {
		_, err := Scan(context.Background(), t, info, ks)
		return err
	})
	// The harness must reach the record: a scan's answers replayed scan valid.
	info := reader.Info{Technology: reader.TechClassic1K, UID: uid}
	if s, err := Scan(context.Background(), reader.NewTag(&answers{b: scanned}), info, ks); err != nil || !s.Valid() || s.Record.ID != c1.ID {
		f.Fatalf("replayed scan: %+v %v", s, err)
	}
	f.Add(scanned)
	f.Add(blank.record(func(t *reader.Tag, info reader.Info) error {
		return errOf(Encode(context.Background(), t, info, ks, c2))
	}))
	f.Add([]byte{2, 0x63, 0x00})
	f.Add([]byte{2, 0x90, 0x00, 2, 0x90, 0x00, 1, 0x90})
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, tech := range []reader.Technology{reader.TechClassic1K, reader.TechClassic4K} {
			info := reader.Info{Technology: tech, UID: uid}
			s, err := Scan(context.Background(), reader.NewTag(&answers{b: data}), info, ks)
			if err == nil && s.Valid() && !sealed[s.Record.ID] {
				t.Fatal("a record nobody sealed scans valid")
			}
			_, _ = Encode(context.Background(), reader.NewTag(&answers{b: data}), info, ks, credential("3003", 1))
		}
	})
}
