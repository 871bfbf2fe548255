package cardfmt

import "context"

// Trace receives events from a layout as it works on a card, in the manner
// of net/http/httptrace: the caller puts it in the context, the layouts
// report to it, and nothing changes for callers that do not.
type Trace struct {
	// Verifying is called when a layout has written the card and starts
	// reading it back.
	Verifying func()
	// RealUID is called when a layout has read the real UID of a card
	// whose anticollision UID is random (a DESFire EV2/EV3 configured
	// so), before it writes the record. An error stops the layout there:
	// a caller that must work on one particular card refuses another.
	RealUID func(uid []byte) error
}

type traceKey struct{}

// WithTrace returns a context carrying t.
func WithTrace(ctx context.Context, t *Trace) context.Context {
	return context.WithValue(ctx, traceKey{}, t)
}

// TraceVerifying reports, for layouts, that the read-back begins.
func TraceVerifying(ctx context.Context) {
	if t, _ := ctx.Value(traceKey{}).(*Trace); t != nil && t.Verifying != nil {
		t.Verifying()
	}
}

// TraceRealUID reports, for layouts, the real UID of a random-UID card,
// and returns the caller's refusal.
func TraceRealUID(ctx context.Context, uid []byte) error {
	if t, _ := ctx.Value(traceKey{}).(*Trace); t != nil && t.RealUID != nil {
		return t.RealUID(uid)
	}
	return nil
}
