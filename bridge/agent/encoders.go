package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"maps"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/encoder-bridge/encoder-bridge/bridge/config"
	"github.com/encoder-bridge/encoder-bridge/protocol"
	"github.com/encoder-bridge/encoder-bridge/reader"
)

// NewEncoderID is the id of the encoder with the given identity (see
// Identities) at bridgeID: the same across reconnects, restarts and
// re-plugging, and different on every bridge.
func NewEncoderID(bridgeID, identity string) protocol.EncoderID {
	sum := sha256.Sum256([]byte(bridgeID + "\x00" + identity))
	return protocol.EncoderID(hex.EncodeToString(sum[:16]))
}

// Attached is a reader as the bridge finds it: its name now, and its
// serial number when it reports one.
type Attached struct {
	Name   string
	Serial string
}

// Identities gives each attached reader the identity its encoder id is
// made from: its serial number where it reports one, else its name
// without the plug-order index (reader.StableName), so a reader replugged
// into another USB port keeps its id and display name.
//
// Readers that share an identity (two of one model without serial
// numbers) are told apart by their full names, in plug order: the first
// (lowest index) keeps the shared identity, so plugging in a second
// reader of the same model does not change the first one's id.
func Identities(readers []Attached) map[string]string {
	key := func(r Attached) string {
		if r.Serial != "" {
			return "serial:" + r.Serial
		}
		return "name:" + reader.StableName(r.Name)
	}
	sorted := slices.Clone(readers)
	slices.SortFunc(sorted, func(x, y Attached) int { return strings.Compare(x.Name, y.Name) })
	taken := map[string]bool{}
	out := make(map[string]string, len(readers))
	for _, r := range sorted {
		k := key(r)
		if taken[k] {
			out[r.Name] = k + "\x00" + r.Name
			continue
		}
		taken[k] = true
		out[r.Name] = k
	}
	return out
}

// Offered returns the encoders announced for the attached readers: those
// the configuration's encoders pick (all when it picks none) and
// exclude_readers does not drop, with their display names (the
// configured name, else the reader's name without its plug-order index),
// sorted by reader name.
//
// An encoders[] entry picks by serial number, or by reader name pattern
// (config.MatchReader); an exact name or a serial number wins over a
// pattern. A reader picked by a pattern that several readers match is
// shown as "Name (reader name)" so staff can tell them apart.
func Offered(bridgeID string, picks []config.Encoder, exclude []string, technologies []string, readers []Attached) []protocol.Encoder {
	readers = slices.Clone(readers)
	slices.SortFunc(readers, func(x, y Attached) int { return strings.Compare(x.Name, y.Name) })
	readers = slices.CompactFunc(readers, func(x, y Attached) bool { return x.Name == y.Name })
	readers = slices.DeleteFunc(readers, func(r Attached) bool {
		return slices.ContainsFunc(exclude, func(x string) bool { return config.MatchReader(x, r.Name) })
	})
	ids := Identities(readers)
	// A reader is shown by its name without the plug-order index, which a
	// replug changes, unless that index is what tells it from a reader of
	// the same model (Identities then made its identity of its full name).
	shown := func(r Attached) string {
		if strings.HasSuffix(ids[r.Name], "\x00"+r.Name) {
			return r.Name
		}
		return reader.DisplayName(r.Name)
	}
	out := []protocol.Encoder{}
	add := func(r Attached, display string) {
		out = append(out, protocol.Encoder{
			ID: NewEncoderID(bridgeID, ids[r.Name]), DisplayName: display, ReaderName: r.Name,
			Technologies: slices.Clone(technologies),
		})
	}
	if len(picks) == 0 {
		for _, r := range readers {
			add(r, shown(r))
		}
		return out
	}
	for _, r := range readers {
		pick, shared, ok := match(picks, readers, r)
		if !ok {
			continue
		}
		display := pick.Name
		switch {
		case display == "":
			display = shown(r)
		case shared:
			display += " (" + shown(r) + ")"
		}
		add(r, display)
	}
	return out
}

// match finds the configuration entry for reader r: a serial number or an
// exact name wins over a pattern. shared says the entry matches other
// readers too.
func match(picks []config.Encoder, readers []Attached, r Attached) (pick config.Encoder, shared, ok bool) {
	for _, p := range picks {
		if (p.Serial != "" && p.Serial == r.Serial) || (p.Reader != "" && p.Reader == r.Name) {
			return p, false, true
		}
	}
	for _, p := range picks {
		if p.Reader == "" || !config.MatchReader(p.Reader, r.Name) {
			continue
		}
		count := 0
		for _, m := range readers {
			if config.MatchReader(p.Reader, m.Name) {
				count++
			}
		}
		return p, count > 1, true
	}
	return config.Encoder{}, false, false
}

// attached finds the serial numbers of the readers names, asking each
// reader once while it stays attached.
func (a *Agent) attached(ctx context.Context, names []string) []Attached {
	a.mu.Lock()
	known := maps.Clone(a.serials)
	a.mu.Unlock()
	next := make(map[string]string, len(names))
	out := make([]Attached, 0, len(names))
	for _, n := range names {
		serial, ok := known[n]
		if !ok {
			serial, ok = a.serialNumber(ctx, n)
		}
		if ok {
			next[n] = serial
		}
		out = append(out, Attached{Name: n, Serial: serial})
	}
	a.mu.Lock()
	a.serials = next
	a.mu.Unlock()
	return out
}

// serialNumber asks reader n for its serial number ("" when it has none);
// final is false when the question failed for another reason, so that it
// is asked again next time rather than fixing a different identity for
// good after a passing fault.
func (a *Agent) serialNumber(ctx context.Context, n string) (serial string, final bool) {
	serial, err := serialOf(ctx, a.readers, n)
	if err != nil {
		a.log.Warn("cannot read the reader's serial number; identifying it by name for now",
			zap.String(FieldReader, n), zap.Error(err))
		return "", false
	}
	return serial, true
}

// serialOf returns reader n's serial number, "" when it reports none or
// rc cannot ask; err is a failure to ask.
func serialOf(ctx context.Context, rc reader.Context, n string) (string, error) {
	sn, ok := rc.(reader.SerialNumberer)
	if !ok {
		return "", nil
	}
	serial, err := sn.SerialNumber(ctx, n)
	if errors.Is(err, reader.ErrNoSerial) {
		return "", nil
	}
	return serial, err
}

// Attach asks each of the readers names for its serial number, for a
// one-off listing; a reader that cannot be asked is listed without one.
func Attach(ctx context.Context, rc reader.Context, names []string) []Attached {
	out := make([]Attached, 0, len(names))
	for _, n := range names {
		serial, _ := serialOf(ctx, rc, n)
		out = append(out, Attached{Name: n, Serial: serial})
	}
	return out
}

// setReaders makes the attached readers names the online encoders and
// tells the cloud what changed.
func (a *Agent) setReaders(ctx context.Context, names []string) {
	next := map[protocol.EncoderID]protocol.Encoder{}
	for _, e := range Offered(a.opts.BridgeID, a.opts.Encoders, a.opts.ExcludeReaders, a.opts.Technologies, a.attached(ctx, names)) {
		next[e.ID] = e
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	prev := a.encoders
	a.encoders = next
	a.observeEncodersLocked(ctx)
	var added, removed []protocol.Encoder
	for id, e := range next {
		a.seen[id] = e.ReaderName
		// A replugged reader keeps its id under a new name: announced
		// again, so jobs reach it by the new name.
		if old, ok := prev[id]; !ok || old.DisplayName != e.DisplayName || old.ReaderName != e.ReaderName {
			added = append(added, e)
		}
	}
	for id, e := range prev {
		if _, ok := next[id]; !ok {
			removed = append(removed, e)
		}
	}
	slices.SortFunc(added, func(x, y protocol.Encoder) int { return strings.Compare(x.ReaderName, y.ReaderName) })
	slices.SortFunc(removed, func(x, y protocol.Encoder) int { return strings.Compare(x.ReaderName, y.ReaderName) })
	for _, e := range removed {
		a.log.Info("encoder removed", zap.String(FieldEncoder, string(e.ID)), zap.String(FieldReader, e.ReaderName))
		if a.sess != nil {
			m := protocol.New(protocol.TypeEncoderRemoved)
			m.EncoderID = e.ID
			a.sess.enqueue(m, false)
		}
	}
	for _, e := range added {
		a.log.Info("encoder added", zap.String(FieldEncoder, string(e.ID)), zap.String(FieldReader, e.ReaderName), zap.String("name", e.DisplayName))
		if a.sess != nil {
			m := protocol.New(protocol.TypeEncoderAdded)
			m.Encoder = &e
			a.sess.enqueue(m, false)
		}
	}
}

// encoderListLocked is the online encoders, sorted by reader name.
func (a *Agent) encoderListLocked() []protocol.Encoder {
	out := make([]protocol.Encoder, 0, len(a.encoders))
	for _, e := range a.encoders {
		out = append(out, e)
	}
	slices.SortFunc(out, func(x, y protocol.Encoder) int { return strings.Compare(x.ReaderName, y.ReaderName) })
	return out
}

// watchReaders follows readers being plugged and unplugged.
func (a *Agent) watchReaders(ctx context.Context, known []string) {
	failing := false
	for {
		names, err := a.readers.WaitReadersChange(ctx, known)
		if err == nil {
			failing = false
			a.setReaders(ctx, names)
			known = names
			continue
		}
		if ctx.Err() != nil || errors.Is(err, reader.ErrClosed) {
			return
		}
		if !failing {
			a.log.Warn("cannot follow readers; retrying", zap.Error(err))
			failing = true
			if a.opts.Observer != nil {
				a.opts.Observer.ReadersFailed(err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(a.opts.ReaderRetry):
		}
		if names, err := a.readers.Readers(ctx); err == nil {
			a.setReaders(ctx, names)
			known = names
		}
	}
}
