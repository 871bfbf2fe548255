package jobs

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/encoder-bridge/encoder-bridge/cloud/bus"
	"github.com/encoder-bridge/encoder-bridge/cloud/store"
)

// Several instances on one database (Config.Bus set). A bridge's link is
// on one instance; an API call on any other reaches it:
//
//   - the link's instance records it (store.SetBridgeLink) and refreshes
//     its own row every HeartbeatInterval; a bridge counts as online while
//     that row is fresh, so an instance that crashed stops counting by
//     itself within instanceTTL;
//   - a job whose bridge is not linked here is announced (bus.JobReady)
//     and the instance holding the link reads the row and sends it;
//   - a finished attempt is announced (bus.AttemptSettled) and held
//     answers everywhere wake;
//   - after events may have been missed (bus.Resync) every held answer
//     reads its attempt again and the unacknowledged jobs of the bridges
//     linked here are sent again: the rows are the truth.
//
// The sweeper runs on every instance; an attempt is finished by one
// conditional UPDATE that only one instance wins (Sweep).

// DefaultHeartbeatInterval is how often an instance refreshes its row.
const DefaultHeartbeatInterval = 2 * time.Second

// instanceTTL is how long an instance's row counts after its last beat.
func (s *Service) instanceTTL() time.Duration { return 3 * s.heartbeat }

// Instance is this instance's name on the bus.
func (s *Service) Instance() string { return s.instance }

// online reports whether the bridge has a link that said hello, here or,
// with several instances, on an instance that is alive.
func (s *Service) online(ctx context.Context, bridgeID string) bool {
	if s.local(bridgeID) {
		return true
	}
	if s.bus == nil {
		return false
	}
	ok, err := s.st.Q().BridgeLinked(ctx, bridgeID, s.now().Add(-s.instanceTTL()))
	if err != nil {
		s.log.Warn("bridge presence not read; taken as offline", zap.String(FieldBridgeID, bridgeID), zap.Error(err))
		return false
	}
	return ok
}

// Online reports whether the bridge is connected to any instance (for
// the API's is-online fields).
func (s *Service) Online(bridgeID string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return s.online(ctx, bridgeID)
}

// Beat refreshes this instance's row. Run calls it first, then every
// HeartbeatInterval. An instance that only administers (the CLI) never
// runs, and leaves no row.
func (s *Service) Beat(ctx context.Context) error {
	if s.bus == nil {
		return nil
	}
	return s.st.Q().HeartbeatInstance(ctx, s.instance, s.now())
}

// Revoked tells every instance to close a bridge's links.
func (s *Service) Revoked(ctx context.Context, bridgeID string) {
	if s.bus != nil {
		s.publish(ctx, bus.Event{Kind: bus.BridgeRevoked, Bridge: bridgeID})
	}
}

// publishTimeout bounds a notice: a database that hangs must not hold
// the request or the bridge message that caused it.
const publishTimeout = 5 * time.Second

func (s *Service) publish(ctx context.Context, e bus.Event) {
	e.Origin = s.instance
	// The notice goes out even if the request that caused it has ended.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), publishTimeout)
	defer cancel()
	if err := s.bus.Publish(ctx, e); err != nil {
		// The rows still hold it: the sweeper's re-offer and the held
		// answer's deadline cover a lost notice.
		s.log.Warn("event not published", zap.String("kind", string(e.Kind)), zap.Error(err))
	}
}

func (s *Service) beat(ctx context.Context) {
	defer func() {
		// A clean stop leaves no row behind; a crash leaves one that
		// goes stale.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.st.Update(ctx, func(tx *store.Tx) error { return tx.RemoveInstance(ctx, s.instance) }); err != nil {
			s.log.Warn("instance row not removed; it goes stale", zap.Error(err))
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.clk.After(s.heartbeat):
			if err := s.Beat(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("instance heartbeat failed", zap.Error(err))
			}
		}
	}
}

func (s *Service) listen(ctx context.Context) {
	if err := s.bus.Listen(ctx, s.instance, func(e bus.Event) { s.hear(ctx, e) }); err != nil && ctx.Err() == nil {
		s.log.Error("bus listener stopped", zap.Error(err))
	}
}

// hear acts on another instance's event.
func (s *Service) hear(ctx context.Context, e bus.Event) {
	switch e.Kind {
	case bus.JobReady:
		if s.links != nil && s.links.Holds(e.Bridge) {
			s.sendStored(ctx, e.ID, e.Bridge)
		}
	case bus.AttemptSettled:
		s.waiters.wake(e.ID)
	case bus.BridgeRevoked:
		if s.links != nil {
			s.links.Disconnect(e.Bridge, "bridge token revoked")
		}
	case bus.Resync:
		s.resync(ctx)
	}
}

// sendStored sends a stored job to its bridge's link here, if the job
// still waits for it.
func (s *Service) sendStored(ctx context.Context, jobID, bridgeID string) {
	j, ok, err := s.bridgeJob(ctx, bridgeID, jobID)
	if err != nil || !ok {
		if err != nil {
			s.log.Warn("announced job not read", zap.String(FieldJobID, jobID), zap.Error(err))
		}
		return
	}
	now := s.now()
	if j.ClosedAt != nil || j.Result != nil || !j.Deadline.After(now) {
		return
	}
	f, err := jobFrame(j)
	if err != nil {
		s.log.Error("job not offered", zap.String(FieldJobID, j.ID), zap.Error(err))
		return
	}
	if s.links.SendFrame(bridgeID, f) {
		if err := s.st.Q().MarkJobSent(ctx, j.ID, now); err != nil {
			s.log.Warn("job sent, not recorded as sent", zap.String(FieldJobID, j.ID), zap.Error(err))
		}
	}
}

// resync makes up for events that may have been missed.
func (s *Service) resync(ctx context.Context) {
	s.waiters.wakeAll()
	if s.links == nil {
		return
	}
	now := s.now()
	for _, id := range s.links.BridgeIDs() {
		if !s.local(id) {
			continue
		}
		js, err := s.st.Q().OfferableJobs(ctx, id, now)
		if err != nil {
			s.log.Warn("resync: jobs not read", zap.String(FieldBridgeID, id), zap.Error(err))
			continue
		}
		for _, j := range js {
			if j.AckedAt == nil {
				s.sendStored(ctx, j.ID, id)
			}
		}
	}
	s.log.Info("events may have been missed: pending answers and jobs read again")
}
