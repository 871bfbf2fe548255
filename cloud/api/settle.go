package api

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/encoder-bridge/encoder-bridge/cloud/store"
)

// Held responses: encode_credential, scan_credential and
// scan_to_assign_credential wait a little for their action attempt to
// finish and answer with the settled attempt, so a client resolving it
// (Seam's SDKs) does not poll. Seam itself answers pending.
const (
	// DefaultSettleWait is how long an answer is held by default: a card
	// already on the encoder is done well within it.
	DefaultSettleWait = 2 * time.Second
	// DefaultMaxSettling bounds the answers held at once; each costs the
	// request's goroutine and connection, nothing more.
	DefaultMaxSettling = 1024
	// settleMargin is left between the end of a hold and the request's
	// own deadline, to write the answer.
	settleMargin = 100 * time.Millisecond
)

// settle waits for a pending attempt to finish, within the hold, and
// returns it as it stands then. On any failure to wait it returns att:
// pending is always a correct answer.
func (a *API) settle(ctx context.Context, r *request, att store.ActionAttempt) store.ActionAttempt {
	if att.Status != store.StatusPending {
		return att
	}
	// A context's deadline is in real time, whatever clock the cloud runs on.
	deadline, hasDeadline := ctx.Deadline()
	d := holdFor(a.cfg.SettleWait, time.Now(), deadline, hasDeadline, r.wait, r.hasWait)
	if d <= 0 || a.quit.Err() != nil {
		return att
	}
	if a.held.Add(1) > int64(a.maxHeld) {
		a.held.Add(-1)
		return att
	}
	defer a.held.Add(-1)
	// Shutdown ends every hold at once; AfterFunc starts no goroutine
	// unless it fires.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(a.quit, cancel)()
	got, err := a.cfg.Jobs.Await(ctx, r.ws.ID, att.ID, d)
	if err != nil {
		if ctx.Err() == nil {
			a.log.Warn("action attempt not awaited; answering pending", zap.String("action_attempt_id", att.ID), zap.Error(err))
		}
		return att
	}
	return got
}

// holdFor is how long to hold an answer: the configured bound, cut to the
// client's Prefer: wait and to the request's deadline, less a margin to
// write the answer. Zero or less: answer at once.
func holdFor(bound time.Duration, now, deadline time.Time, hasDeadline bool, wait time.Duration, hasWait bool) time.Duration {
	d := bound
	if hasWait {
		d = min(d, wait-settleMargin)
	}
	if hasDeadline {
		d = min(d, deadline.Sub(now)-settleMargin)
	}
	return d
}

// preferWait reads the wait preference of RFC 7240 (Prefer: wait=N, in
// seconds): how long the client is prepared to wait for this answer. The
// first wait preference counts; a malformed one is ignored, as the RFC
// asks.
func preferWait(h http.Header) (time.Duration, bool) {
	for _, v := range h.Values("Prefer") {
		for pref := range strings.SplitSeq(v, ",") {
			// Parameters after ";" do not apply to wait.
			pref, _, _ = strings.Cut(pref, ";")
			name, val, ok := strings.Cut(pref, "=")
			if !ok || !strings.EqualFold(strings.TrimSpace(name), "wait") {
				continue
			}
			val = strings.Trim(strings.TrimSpace(val), `"`)
			n, err := strconv.ParseUint(val, 10, 32)
			if err != nil {
				return 0, false
			}
			return time.Duration(n) * time.Second, true
		}
	}
	return 0, false
}

// ReleaseHeld answers every held request now (with its attempt as it
// stands) and stops holding new ones: for shutdown.
func (a *API) ReleaseHeld() { a.stopHolding() }
