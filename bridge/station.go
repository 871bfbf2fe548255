// Package bridge is the policy of a front-desk encoder: it takes encode
// and scan jobs, waits for a card on a reader, picks the card layout,
// writes and verifies the credential, and reports the outcome as a result
// or a typed JobError.
//
// It sees readers only through reader.Context and cards through the
// layouts in cardfmt; it must not import reader/pcsc or reader/sim (they
// are wired in by cmd/ and tests).
package bridge

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/encoder-bridge/encoder-bridge/cardfmt"
	"github.com/encoder-bridge/encoder-bridge/cardfmt/classic"
	"github.com/encoder-bridge/encoder-bridge/cardfmt/desfire"
	"github.com/encoder-bridge/encoder-bridge/cardfmt/ultralight"
	"github.com/encoder-bridge/encoder-bridge/protocol"
	"github.com/encoder-bridge/encoder-bridge/reader"
)

// Log field keys, so log queries stay stable.
const (
	FieldJobID   = "job_id"
	FieldEncoder = "encoder" // the encoder id the cloud knows
	FieldReader  = "reader"  // the PC/SC reader name
	FieldTech    = "technology"
	FieldCode    = "code"
)

// Station runs card jobs on the readers of one reader.Context.
type Station struct {
	Readers reader.Context
	Keys    *cardfmt.KeySet
	// Now is the clock for validity warnings; nil means time.Now.
	Now func() time.Time
	Log *zap.Logger
}

// Card is what a job learned about the card it worked on.
type Card struct {
	Reader     string
	UID        []byte
	Technology reader.Technology
}

// Encoded is a successful encode: the card and the record written and
// verified on it, with the key and format versions it was sealed under.
type Encoded struct {
	Card
	Record cardfmt.Record
}

// ScanResult is a successful scan: the card and the verdict on it. A card
// without a valid record is still a successful scan.
type ScanResult struct {
	Card
	cardfmt.Scan
	Warnings []string
}

// layout is one card format's entry points.
type layout struct {
	encode func(context.Context, *reader.Tag, reader.Info, *cardfmt.KeySet, cardfmt.Credential) (cardfmt.Record, error)
	scan   func(context.Context, *reader.Tag, reader.Info, *cardfmt.KeySet) (cardfmt.Scan, error)
}

func layoutFor(t reader.Technology) (layout, bool) {
	switch t.Family() {
	case reader.FamilyClassic:
		return layout{
			encode: func(ctx context.Context, tag *reader.Tag, i reader.Info, ks *cardfmt.KeySet, c cardfmt.Credential) (cardfmt.Record, error) {
				return classic.Encode(ctx, tag, i, ks, c)
			},
			scan: func(ctx context.Context, tag *reader.Tag, i reader.Info, ks *cardfmt.KeySet) (cardfmt.Scan, error) {
				return classic.Scan(ctx, tag, i, ks)
			},
		}, true
	case reader.FamilyUltralight:
		return layout{
			encode: func(ctx context.Context, tag *reader.Tag, i reader.Info, ks *cardfmt.KeySet, c cardfmt.Credential) (cardfmt.Record, error) {
				return ultralight.Encode(ctx, tag, i, ks, c)
			},
			scan: func(ctx context.Context, tag *reader.Tag, i reader.Info, ks *cardfmt.KeySet) (cardfmt.Scan, error) {
				return ultralight.Scan(ctx, tag, i, ks)
			},
		}, true
	case reader.FamilyDESFire:
		return layout{
			encode: func(ctx context.Context, tag *reader.Tag, i reader.Info, ks *cardfmt.KeySet, c cardfmt.Credential) (cardfmt.Record, error) {
				return desfire.Encode(ctx, tag, i, ks, c)
			},
			scan: func(ctx context.Context, tag *reader.Tag, i reader.Info, ks *cardfmt.KeySet) (cardfmt.Scan, error) {
				return desfire.Scan(ctx, tag, i, ks)
			},
		}, true
	}
	return layout{}, false
}

func (s *Station) log() *zap.Logger {
	if s.Log == nil {
		return zap.NewNop()
	}
	return s.Log
}

func (s *Station) now() time.Time {
	if s.Now == nil {
		return time.Now()
	}
	return s.Now()
}

// JobOptions tune one EncodeWith or ScanWith call.
type JobOptions struct {
	// Wait is how long to wait for a card to be presented (0: the card
	// must already be there).
	Wait time.Duration
	// Progress, when set, is called synchronously as the job reaches
	// each stage, before the stage starts. An error aborts the job there:
	// a job refused at protocol.StageWriting has not touched the card. That is what
	// lets a caller record durably that writing began before it does.
	Progress func(protocol.Stage) error
	// Now, when set, is the time a scan's validity warnings are judged
	// at, instead of Station.Now: the agent's view of the cloud's clock,
	// which a PC's wrong clock does not move.
	Now func() time.Time
	// APDUs, when set, counts the APDUs sent to the card, for metrics.
	APDUs *atomic.Int64
	// Card, when set, is called once the card is identified, before any
	// stage that reads its record or writes it. An error aborts the job
	// with the card untouched: a caller that must work on one particular
	// card refuses another here, and learns the UID of the card it writes.
	Card func(Card) error
	// RealUID, when set, is called with the real UID of a card whose
	// anticollision UID is random, once the layout reads it and before it
	// writes (cardfmt.Trace.RealUID). An error aborts the job there.
	RealUID func(uid []byte) error
}

// trace carries o's hooks to the layout.
func (o JobOptions) trace(ctx context.Context) context.Context {
	if o.Progress == nil && o.RealUID == nil {
		return ctx
	}
	t := &cardfmt.Trace{RealUID: o.RealUID}
	if o.Progress != nil {
		// Only protocol.StageWriting may stop a job; a refusal here changes nothing.
		t.Verifying = func() { _ = o.progress(protocol.StageVerifying) }
	}
	return cardfmt.WithTrace(ctx, t)
}

func (o JobOptions) progress(st protocol.Stage) error {
	if o.Progress == nil {
		return nil
	}
	return o.Progress(st)
}

// Encode writes c onto the card on readerName, waiting up to wait for one
// to be presented (0: the card must already be there).
func (s *Station) Encode(ctx context.Context, readerName string, c cardfmt.Credential, wait time.Duration) (Encoded, error) {
	return s.EncodeWith(ctx, readerName, c, JobOptions{Wait: wait})
}

// EncodeWith is Encode with progress reports. Every layout reads back and
// verifies what it wrote; protocol.StageVerifying is reported when it
// starts to. It returns the record as verified, so that the caller does
// not read the key set again (which may have changed meanwhile).
func (s *Station) EncodeWith(ctx context.Context, readerName string, c cardfmt.Credential, o JobOptions) (Encoded, error) {
	if err := c.Validate(); err != nil {
		return Encoded{}, Classify(OpEncode, fmt.Errorf("%w: %w", ErrInvalidCredential, err))
	}
	ctx = o.trace(ctx)
	var res Encoded
	err := s.withCard(ctx, OpEncode, readerName, o, func(tag *reader.Tag, info reader.Info, l layout) error {
		res.Card = cardOf(readerName, info)
		if err := o.progress(protocol.StageWriting); err != nil {
			return err
		}
		rec, err := l.encode(ctx, tag, info, s.Keys, c)
		res.Record = rec
		return err
	})
	return res, s.done(OpEncode, readerName, res.Card, err)
}

// Scan reads and verifies the card on readerName.
func (s *Station) Scan(ctx context.Context, readerName string, wait time.Duration) (ScanResult, error) {
	return s.ScanWith(ctx, readerName, JobOptions{Wait: wait})
}

// ScanWith is Scan with progress reports.
func (s *Station) ScanWith(ctx context.Context, readerName string, o JobOptions) (ScanResult, error) {
	ctx = o.trace(ctx)
	var res ScanResult
	err := s.withCard(ctx, OpScan, readerName, o, func(tag *reader.Tag, info reader.Info, l layout) error {
		res.Card = cardOf(readerName, info)
		sc, err := l.scan(ctx, tag, info, s.Keys)
		if err != nil {
			return err
		}
		res.Scan = sc
		now := s.now
		if o.Now != nil {
			now = o.Now
		}
		res.Warnings = sc.Warnings(now())
		return nil
	})
	return res, s.done(OpScan, readerName, res.Card, err)
}

func cardOf(readerName string, info reader.Info) Card {
	return Card{Reader: readerName, UID: info.UID, Technology: info.Technology}
}

func (s *Station) done(op Op, readerName string, card Card, err error) error {
	verb := "encode"
	if op == OpScan {
		verb = "scan"
	}
	if err == nil {
		s.log().Info(verb+" done", zap.String(FieldReader, readerName), zap.String(FieldTech, string(card.Technology)))
		return nil
	}
	je := Classify(op, err)
	s.log().Warn(verb+" failed", zap.String(FieldReader, readerName), zap.String(FieldCode, string(je.Code)), zap.Error(je.Err))
	return je
}

// withCard waits for a card, connects exclusively, identifies it and runs
// fn with its layout.
func (s *Station) withCard(ctx context.Context, op Op, readerName string, o JobOptions, fn func(*reader.Tag, reader.Info, layout) error) error {
	if s.Keys == nil {
		return errors.New("bridge: no key set loaded")
	}
	if err := o.progress(protocol.StageWaitingForCard); err != nil {
		return err
	}
	// Most cards are on the encoder before the job arrives: try to connect
	// straight away, and only wait (a status-change wait costs pcscd a new
	// context) when there is no card yet.
	c, err := s.Readers.Connect(ctx, readerName)
	if errors.Is(err, reader.ErrNoCard) && o.Wait > 0 {
		wctx, cancel := context.WithTimeout(ctx, o.Wait)
		err = s.Readers.WaitCard(wctx, readerName, true)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return fmt.Errorf("no card presented on %q within %s: %w", readerName, o.Wait, reader.ErrNoCard)
		}
		if err != nil {
			return err
		}
		c, err = s.Readers.Connect(ctx, readerName)
	}
	if err != nil {
		return err
	}
	defer c.Close()
	if o.APDUs != nil {
		c = countingCard{c, o.APDUs}
	}
	tag := reader.NewTag(c)
	info, err := reader.Identify(ctx, tag)
	if err != nil {
		return err
	}
	if o.Card != nil {
		if err := o.Card(cardOf(readerName, info)); err != nil {
			return err
		}
	}
	if err := o.progress(protocol.StageCardDetected); err != nil {
		return err
	}
	l, ok := layoutFor(info.Technology)
	if !ok {
		return fmt.Errorf("card is %s (ATR %s), which this system does not encode: %w",
			info.Technology, hex.EncodeToString(info.ATR), cardfmt.ErrIncompatible)
	}
	return fn(tag, info, l)
}

// countingCard counts the APDUs sent through it.
type countingCard struct {
	reader.Card
	n *atomic.Int64
}

func (c countingCard) Transmit(ctx context.Context, apdu []byte) ([]byte, error) {
	c.n.Add(1)
	return c.Card.Transmit(ctx, apdu)
}

// ResolveReader picks the reader a user meant: an exact name, else the one
// reader whose name contains name (case-insensitively); with name empty,
// the only attached reader.
func ResolveReader(ctx context.Context, rc reader.Context, name string) (string, error) {
	names, err := rc.Readers(ctx)
	if err != nil {
		return "", err
	}
	if len(names) == 0 {
		return "", fmt.Errorf("no card reader attached: %w", reader.ErrNoReaders)
	}
	if name == "" {
		if len(names) == 1 {
			return names[0], nil
		}
		return "", fmt.Errorf("%d readers attached (%s): choose one with --reader: %w", len(names), quoteAll(names), reader.ErrUnknownReader)
	}
	var matches []string
	for _, n := range names {
		if n == name {
			return n, nil
		}
		if strings.Contains(strings.ToLower(n), strings.ToLower(name)) {
			matches = append(matches, n)
		}
	}
	switch len(matches) {
	case 1:
		return matches[0], nil
	case 0:
		return "", fmt.Errorf("no reader named %q (attached: %s): %w", name, quoteAll(names), reader.ErrUnknownReader)
	}
	return "", fmt.Errorf("%q matches %d readers (%s): %w", name, len(matches), quoteAll(matches), reader.ErrUnknownReader)
}

func quoteAll(s []string) string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = fmt.Sprintf("%q", v)
	}
	return strings.Join(q, ", ")
}
