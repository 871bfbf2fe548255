package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/encoder-bridge/encoder-bridge/bridge"
	"github.com/encoder-bridge/encoder-bridge/bridge/journal"
	"github.com/encoder-bridge/encoder-bridge/cardfmt"
	"github.com/encoder-bridge/encoder-bridge/protocol"
	"github.com/encoder-bridge/encoder-bridge/reader"
)

// readerLost: the reader, or the smart-card service, went away; it may
// come back (pcscd restarted, a USB reset).
func readerLost(err error) bool {
	return errors.Is(err, reader.ErrNoService) || errors.Is(err, reader.ErrReaderGone) ||
		errors.Is(err, reader.ErrUnknownReader) || errors.Is(err, reader.ErrNoReaders)
}

// cardLost: talking to the card failed in transport (it left the field,
// another answered, the reader timed out or went away), not because of
// what the card holds.
func cardLost(err error) bool {
	return readerLost(err) || errors.Is(err, reader.ErrCardRemoved) || errors.Is(err, reader.ErrCardChanged) ||
		errors.Is(err, reader.ErrTimeout) || errors.Is(err, reader.ErrNoCard) || errors.Is(err, reader.ErrSharingViolation)
}

// knownUID reports whether uid tells the card apart from others. A
// random-ID card (ISO/IEC 14443-3: a single-size UID starting with 08,
// as a DESFire EV2/EV3 configured so) makes up another at each
// activation; only its layout reads the real one.
func knownUID(uid []byte) bool {
	return len(uid) > 0 && !(len(uid) == 4 && uid[0] == 0x08)
}

// retryPause is the pause between looks at a card that keeps failing in
// transport, so that a loop waiting for it does not spin.
const retryPause = 50 * time.Millisecond

// awaitReader waits until the job's reader is listed again, or end on
// the cloud's clock: pcscd restarted, or the reader was reset. It polls,
// as the reader service may itself be down meanwhile.
func (a *Agent) awaitReader(ctx context.Context, jobID, name string, end time.Time) bool {
	a.log.Info("the encoder's reader went away: waiting for it", zap.String(FieldJobID, jobID), zap.String(FieldReader, name))
	poll := min(a.opts.ReaderRetry, 200*time.Millisecond)
	for {
		if names, err := a.readers.Readers(ctx); err == nil && slices.Contains(names, name) {
			a.log.Info("the encoder's reader is back", zap.String(FieldJobID, jobID), zap.String(FieldReader, name))
			return true
		}
		if !a.cloudNow().Add(poll).Before(end) || !sleepCtx(ctx, poll) {
			return false
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// holdsJob reports whether rec is exactly the record the job writes: the
// same credential, card number, function, validity, entrances and issue
// sequence. Its MAC was checked by the scan, for this card.
func holdsJob(rec *cardfmt.Record, c cardfmt.Credential) bool {
	return rec.ID == c.ID && rec.CardNumber == c.CardNumber && rec.Function == c.Function &&
		rec.IssueSequence == c.IssueSequence &&
		rec.StartsAt.Unix() == c.StartsAt.Unix() && rec.EndsAt.Unix() == c.EndsAt.Unix() &&
		slices.Equal(rec.Entrances, c.Entrances)
}

// replaced reports whether a scan shows nothing of the job's record:
// a valid record other than the job's that the job would replace (not a
// later card of the same credential), or no record (blank; a fresh card
// whose first blocks were written still reads so). Writing such a card
// again is what the layouts allow from any state.
func replaced(sc cardfmt.Scan, c cardfmt.Credential) bool {
	if sc.Valid() {
		return sc.Record.ID != c.ID || sc.Record.IssueSequence < c.IssueSequence
	}
	return sc.Reason == cardfmt.ReasonBlank
}

// resume settles an encode whose write may have completed or not: one
// the journal found writing after a crash or stop, or one that lost the
// card or its reader in transport after writing began (the read-back
// included). It waits until end for the card it wrote (uid: for a
// random-ID card its real UID, which the layout reads, or when that was
// not recorded, any card) and scans it: this
// job's record, with a valid MAC, is success, reported with the scan; a
// card that shows nothing of it (see replaced) is written again, on that
// card only (the journal counts the attempt); anything else is
// encoding_interrupted, saying what the card holds. Success is never
// reported without reading the record back.
func (a *Agent) resume(ctx context.Context, e journal.Entry, cred cardfmt.Credential, opts bridge.JobOptions, run *jobRun, end time.Time, uid []byte) (protocol.Result, error) {
	id := e.Job.JobID
	log := a.log.With(zap.String(FieldJobID, id))
	known := knownUID(uid)
	run.mu.Lock()
	run.want = nil
	if known {
		run.want = uid
	}
	run.mu.Unlock()
	interrupted := func(why string) (protocol.Result, error) {
		log.Warn("the job's card could not be confirmed", zap.String("why", why))
		return errorResult(protocol.ErrorEncodingInterrupted, why+"; encode the card again"), nil
	}
	scanOpts := bridge.JobOptions{Now: opts.Now, APDUs: opts.APDUs, Card: opts.Card, RealUID: opts.RealUID}
	for {
		now := a.cloudNow()
		if !now.Before(end) {
			return interrupted("writing the card began, and the card written was not presented again before the job's time ran out, so whether it holds the new record is unknown")
		}
		scanOpts.Wait = end.Sub(now)
		sc, err := a.station.ScanWith(ctx, e.Reader, scanOpts)
		run.mu.Lock()
		// A random UID is the card written only if the layout read its
		// real UID (the hook refused any other).
		same := known && (knownUID(sc.UID) || run.real != nil)
		run.mu.Unlock()
		switch {
		case ctx.Err() != nil:
			return jobErrorResult(bridge.OpEncode, ctx.Err()), ctx.Err()
		case errors.Is(err, errOtherCard):
			// Another card is on the encoder: wait for it to go, and
			// look again now and then, as a swap may be missed.
			wctx, cancel := context.WithTimeout(ctx, min(otherCardLook, a.untilCloud(end)))
			werr := a.readers.WaitCard(wctx, e.Reader, false)
			cancel()
			if werr != nil && !errors.Is(werr, context.DeadlineExceeded) {
				sleepCtx(ctx, retryPause)
			}
			continue
		case err != nil && readerLost(err):
			if !a.awaitReader(ctx, id, e.Reader, end) {
				return interrupted("writing the card began, and the encoder went offline before the card could be read back")
			}
			continue
		case err != nil && cardLost(err):
			sleepCtx(ctx, retryPause)
			continue
		case err != nil:
			return interrupted(fmt.Sprintf("writing the card began, and reading it back failed: %v", bridge.Classify(bridge.OpScan, err).Err))
		}
		switch {
		case sc.Valid() && holdsJob(sc.Record, cred):
			log.Info("the card holds the job's record")
			given := *e.Job.Credential
			return protocol.Result{Card: &protocol.Card{
				UID:           uidHex(sc.UID),
				Technology:    string(sc.Technology),
				KeyVersion:    int(sc.Record.KeyVersion),
				FormatVersion: int(sc.Record.FormatVersion),
				Valid:         true,
				Credential:    &given,
			}}, nil
		case !same:
			return interrupted("writing a random-ID card began, and the card presented does not hold the job's record; its UID cannot tell whether it is the card written")
		case !replaced(sc.Scan, cred):
			reason := string(sc.Reason)
			if sc.Valid() {
				reason = "a later card of the same credential"
			}
			return interrupted(fmt.Sprintf("writing the card began, and the card holds neither the job's record nor the one it replaced (%s)", reason))
		}
		// Nothing of this job landed: write again, on this card only.
		log.Info("the card holds the record the job replaces: writing it again")
		opts.Wait = end.Sub(a.cloudNow())
		res, err := a.station.EncodeWith(ctx, e.Reader, cred, opts)
		switch {
		case err == nil:
			return encodedResult(e, res), nil
		case ctx.Err() != nil, errors.Is(err, errStopping):
			return jobErrorResult(bridge.OpEncode, err), err
		case errors.Is(err, errTimeUp):
			return errorResult(protocol.ErrorActionAttemptExpired, "the job's time ran out before the card could be written again; it holds the record it held before the job"), nil
		case errors.Is(err, errOtherCard), cardLost(err):
			// Lost again: the card decides again.
			continue
		}
		return jobErrorResult(bridge.OpEncode, err), nil
	}
}

// otherCardLook bounds a wait for another card to leave the encoder: the
// job's card may have replaced it meanwhile.
const otherCardLook = 500 * time.Millisecond

// untilCloud is how long until the cloud's clock reaches t.
func (a *Agent) untilCloud(t time.Time) time.Duration { return t.Sub(a.cloudNow()) }
