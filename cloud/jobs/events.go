package jobs

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"

	"github.com/encoder-bridge/encoder-bridge/cloud/seam"
	"github.com/encoder-bridge/encoder-bridge/cloud/store"
)

// Events are recorded in the transaction of the change they report
// (store.Tx.RecordEvent), so an event exists exactly when its change does;
// eventsRecorded tells the webhook deliverer after the commit.

// encoderAdded records acs_encoder.added if e is new or comes back after
// removal; call it before the upsert, with the encoder as it will be.
func (s *Service) encoderAdded(ctx context.Context, tx *store.Tx, ws store.Workspace, e store.Encoder, now time.Time) (bool, error) {
	prior, err := tx.Encoder(ctx, ws.ID, e.ID)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return false, err
	case prior.RemovedAt == nil:
		return false, nil
	}
	_, err = tx.RecordEvent(ctx, seam.EncoderEvent(uuid.NewString(), seam.EventEncoderAdded, ws, e, now, now))
	return err == nil, err
}

// encodersRemoved records acs_encoder.removed for each encoder.
func (s *Service) encodersRemoved(ctx context.Context, tx *store.Tx, ws store.Workspace, removed []store.Encoder, now time.Time) error {
	for _, e := range removed {
		if _, err := tx.RecordEvent(ctx, seam.EncoderEvent(uuid.NewString(), seam.EventEncoderRemoved, ws, e, now, now)); err != nil {
			return err
		}
	}
	return nil
}

// issue records a card written for credential before (as it stood before
// this card) and, if the record changed, acs_credential.issued or
// .reissued and the matching access_method event. It returns the
// credential as it stands now.
func (s *Service) issue(ctx context.Context, tx *store.Tx, ws store.Workspace, before store.Credential, card store.CardIssued, now time.Time) (store.Credential, error) {
	// Locked and read again: another instance may have just recorded a
	// card for it, which makes this one a reissue.
	if err := tx.LockCredential(ctx, before.ID); err != nil {
		return store.Credential{}, err
	}
	before, err := tx.Credential(ctx, ws.ID, before.ID)
	if err != nil {
		return store.Credential{}, err
	}
	changed, err := tx.IssueCredential(ctx, before.ID, card)
	if err != nil {
		return store.Credential{}, err
	}
	after, err := tx.Credential(ctx, ws.ID, before.ID)
	if err != nil || !changed {
		return after, err
	}
	credType, methodType := seam.EventCredentialIssued, seam.EventAccessMethodIssued
	if before.IsIssued {
		credType, methodType = seam.EventCredentialReissued, seam.EventAccessMethodReissued
	}
	if _, err := tx.RecordEvent(ctx, seam.CredentialEvent(uuid.NewString(), credType, ws, after, card.IssuedAt, now)); err != nil {
		return store.Credential{}, err
	}
	if _, err := tx.RecordEvent(ctx, seam.AccessMethodEvent(uuid.NewString(), methodType, ws, after, card.IssuedAt, now)); err != nil {
		return store.Credential{}, err
	}
	return after, nil
}

// eventsRecorded tells the deliverer, if any, that events were committed.
func (s *Service) eventsRecorded() {
	if s.onEvents != nil {
		s.onEvents()
	}
}
