package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/encoder-bridge/encoder-bridge/bridge/config"
	"github.com/encoder-bridge/encoder-bridge/protocol"
	"github.com/encoder-bridge/encoder-bridge/reader"
)

// EncoderID is the stable id of the encoder on readerName at bridgeID:
// the same across reconnects, restarts and re-plugging, and different on
// every bridge.
func EncoderID(bridgeID, readerName string) string {
	sum := sha256.Sum256([]byte(bridgeID + "\x00" + readerName))
	return hex.EncodeToString(sum[:16])
}

// Offered returns the encoders announced for the attached readers names:
// those the configuration's encoders pick (all when it picks none), with
// their display names, sorted by reader name.
//
// An encoders[].reader matches a reader of exactly that name, or else
// every reader whose name contains it (case-insensitively); a reader
// matched by a part of its name that several readers share is shown as
// "Name (reader name)" so staff can tell them apart.
func Offered(bridgeID string, picks []config.Encoder, technologies []string, names []string) []protocol.Encoder {
	names = slices.Clone(names)
	slices.Sort(names)
	names = slices.Compact(names)
	out := []protocol.Encoder{}
	add := func(readerName, display string) {
		out = append(out, protocol.Encoder{
			ID: EncoderID(bridgeID, readerName), DisplayName: display, ReaderName: readerName,
			Technologies: slices.Clone(technologies),
		})
	}
	if len(picks) == 0 {
		for _, n := range names {
			add(n, n)
		}
		return out
	}
	for _, n := range names {
		pick, shared, ok := match(picks, names, n)
		if !ok {
			continue
		}
		display := pick.Name
		switch {
		case display == "":
			display = n
		case shared:
			display += " (" + n + ")"
		}
		add(n, display)
	}
	return out
}

// match finds the configuration entry for reader n: an exact name wins
// over a part of a name. shared says the entry matches other readers too.
func match(picks []config.Encoder, names []string, n string) (pick config.Encoder, shared, ok bool) {
	for _, p := range picks {
		if p.Reader == n {
			return p, false, true
		}
	}
	for _, p := range picks {
		if !strings.Contains(strings.ToLower(n), strings.ToLower(p.Reader)) {
			continue
		}
		count := 0
		for _, m := range names {
			if strings.Contains(strings.ToLower(m), strings.ToLower(p.Reader)) {
				count++
			}
		}
		return p, count > 1, true
	}
	return config.Encoder{}, false, false
}

// setReaders makes the attached readers names the online encoders and
// tells the cloud what changed.
func (a *Agent) setReaders(names []string) {
	next := map[string]protocol.Encoder{}
	for _, e := range Offered(a.opts.BridgeID, a.opts.Encoders, a.opts.Technologies, names) {
		next[e.ID] = e
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	prev := a.encoders
	a.encoders = next
	var added, removed []protocol.Encoder
	for id, e := range next {
		a.seen[id] = e.ReaderName
		if old, ok := prev[id]; !ok || old.DisplayName != e.DisplayName {
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
		a.log.Info("encoder removed", zap.String(FieldEncoder, e.ID), zap.String(FieldReader, e.ReaderName))
		if a.sess != nil {
			m := protocol.New(protocol.TypeEncoderRemoved)
			m.EncoderID = e.ID
			a.sess.enqueue(m, false)
		}
	}
	for _, e := range added {
		a.log.Info("encoder added", zap.String(FieldEncoder, e.ID), zap.String(FieldReader, e.ReaderName), zap.String("name", e.DisplayName))
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
			a.setReaders(names)
			known = names
			continue
		}
		if ctx.Err() != nil || errors.Is(err, reader.ErrClosed) {
			return
		}
		if !failing {
			a.log.Warn("cannot follow readers; retrying", zap.Error(err))
			failing = true
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(a.opts.ReaderRetry):
		}
		if names, err := a.readers.Readers(ctx); err == nil {
			a.setReaders(names)
			known = names
		}
	}
}
