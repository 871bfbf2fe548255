// Package bus carries what one cloud instance must tell the others when
// several share one database: a job is ready for a bridge (whose link may
// be on another instance), an action attempt settled (someone may hold
// an answer for it elsewhere), a bridge token was revoked (its link may
// be elsewhere).
//
// An event carries ids only: the row is the truth, and the instance that
// hears an event reads it. Events can be missed (a listening connection
// lost), so after a gap a Bus delivers Resync and the listener scans the
// rows again.
//
// Local serves instances in one process (one instance on SQLite: then it
// delivers nothing, today's behaviour at no cost; several in tests).
// Postgres uses PostgreSQL's LISTEN/NOTIFY, so several processes need no
// broker besides their database.
//
// It must not import the other cloud packages: they use it.
package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
)

// Kind is what an event says.
type Kind string

const (
	// JobReady: job ID of bridge Bridge was stored and not yet sent: the
	// instance holding the bridge's link sends it.
	JobReady Kind = "job"
	// AttemptSettled: action attempt ID left pending: every instance
	// wakes the answers it holds for it.
	AttemptSettled Kind = "settled"
	// BridgeRevoked: bridge Bridge's token was revoked: every instance
	// closes the bridge's links.
	BridgeRevoked Kind = "revoked"
	// Resync is delivered, never published: events may have been missed
	// (the listener reconnected); the listener reads the rows again.
	Resync Kind = "resync"
)

// Event is one notice. Origin is the instance that published it; a Bus
// never delivers an instance's own events back to it.
type Event struct {
	Kind   Kind
	Origin string
	Bridge string
	ID     string
}

// ErrBadEvent is a notice that does not decode.
var ErrBadEvent = errors.New("bus: malformed event")

// Bus publishes events to the other instances and listens for theirs.
type Bus interface {
	// Publish tells the other instances. Delivery is at most once; a
	// listener that may have missed events hears Resync.
	Publish(ctx context.Context, e Event) error
	// Listen calls fn with every event of the other instances, one at a
	// time, until ctx ends; it returns nil then. fn must not block long.
	Listen(ctx context.Context, instance string, fn func(Event)) error
}

// maxEventLen bounds an encoded event; PostgreSQL's payload limit is
// 8000 bytes and ids are short.
const maxEventLen = 1024

// encode writes e as kind|origin|bridge|id. Ids never hold '|': they are
// UUIDs and bridge ids (letters, digits and . _ : -).
func encode(e Event) (string, error) {
	for _, f := range []string{string(e.Kind), e.Origin, e.Bridge, e.ID} {
		if strings.Contains(f, "|") {
			return "", fmt.Errorf("%w: a field holds '|'", ErrBadEvent)
		}
	}
	s := string(e.Kind) + "|" + e.Origin + "|" + e.Bridge + "|" + e.ID
	if len(s) > maxEventLen {
		return "", fmt.Errorf("%w: %d bytes, at most %d", ErrBadEvent, len(s), maxEventLen)
	}
	return s, nil
}

// decode reads what encode wrote.
func decode(s string) (Event, error) {
	if len(s) > maxEventLen {
		return Event{}, fmt.Errorf("%w: %d bytes", ErrBadEvent, len(s))
	}
	f := strings.Split(s, "|")
	if len(f) != 4 {
		return Event{}, fmt.Errorf("%w: %d fields, want 4", ErrBadEvent, len(f))
	}
	e := Event{Kind: Kind(f[0]), Origin: f[1], Bridge: f[2], ID: f[3]}
	switch e.Kind {
	case JobReady:
		if e.Bridge == "" || e.ID == "" {
			return Event{}, fmt.Errorf("%w: job event without bridge or job id", ErrBadEvent)
		}
	case AttemptSettled:
		if e.ID == "" {
			return Event{}, fmt.Errorf("%w: settled event without attempt id", ErrBadEvent)
		}
	case BridgeRevoked:
		if e.Bridge == "" {
			return Event{}, fmt.Errorf("%w: revoked event without bridge id", ErrBadEvent)
		}
	default:
		return Event{}, fmt.Errorf("%w: unknown kind %q", ErrBadEvent, f[0])
	}
	if e.Origin == "" {
		return Event{}, fmt.Errorf("%w: no origin", ErrBadEvent)
	}
	return e, nil
}

// Local delivers events between the instances of one process. With one
// instance it delivers nothing. The zero value is ready.
type Local struct {
	mu   sync.Mutex
	subs map[*localSub]struct{}
}

type localSub struct {
	instance string
	ch       chan Event
}

// localQueue bounds the events waiting for one slow listener; beyond it
// the listener hears Resync instead, as after a lost connection.
const localQueue = 1024

// Publish delivers e to every other listening instance.
func (l *Local) Publish(ctx context.Context, e Event) error {
	if _, err := encode(e); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for s := range l.subs {
		if s.instance == e.Origin {
			continue
		}
		select {
		case s.ch <- e:
		default:
			// Full: drop the oldest and say events were missed.
			select {
			case <-s.ch:
			default:
			}
			s.ch <- Event{Kind: Resync}
		}
	}
	return nil
}

// Listen delivers the other instances' events to fn until ctx ends.
func (l *Local) Listen(ctx context.Context, instance string, fn func(Event)) error {
	s := &localSub{instance: instance, ch: make(chan Event, localQueue)}
	l.mu.Lock()
	if l.subs == nil {
		l.subs = map[*localSub]struct{}{}
	}
	l.subs[s] = struct{}{}
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.subs, s)
		l.mu.Unlock()
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e := <-s.ch:
			fn(e)
		}
	}
}

// listeners is how many instances listen (for tests).
func (l *Local) listeners() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.subs)
}
