package seam

import (
	"encoding/json"
	"time"

	"github.com/encoder-bridge/encoder-bridge/cloud/store"
)

// Event types this cloud records, as Seam names them. Seam defines more
// for this domain (acs_credential.deleted, acs_credential.invalidated,
// access_method.revoked, ...): nothing here deletes or revokes a
// credential, so nothing records them; filters and webhooks accept them.
const (
	EventEncoderAdded          = "acs_encoder.added"
	EventEncoderRemoved        = "acs_encoder.removed"
	EventCredentialIssued      = "acs_credential.issued"
	EventCredentialReissued    = "acs_credential.reissued"
	EventAccessMethodCreated   = "access_method.created"
	EventAccessMethodIssued    = "access_method.issued"
	EventAccessMethodReissued  = "access_method.reissued"
	eventCredentialInvalidated = "acs_credential.invalidated"
	eventCredentialDeleted     = "acs_credential.deleted"
)

// EventTypes are the event types of this domain that Seam defines: the
// ones a webhook or a filter may name.
var EventTypes = []string{
	EventEncoderAdded, EventEncoderRemoved,
	EventCredentialIssued, EventCredentialReissued, eventCredentialInvalidated, eventCredentialDeleted,
	EventAccessMethodCreated, EventAccessMethodIssued, EventAccessMethodReissued,
	"access_method.revoked", "access_method.card_encoding_required", "access_method.deleted",
	"access_method.delay_in_issuing", "access_method.failed_to_issue",
}

// SeamEvent is Seam's event: the common fields, and the id fields of the
// resource it is about. The store.Event's id columns, which the filters of
// /events/list read, hold the same ids as the body.
type SeamEvent struct {
	EventID            string    `json:"event_id"`
	EventType          string    `json:"event_type"`
	WorkspaceID        string    `json:"workspace_id"`
	CreatedAt          string    `json:"created_at"`
	OccurredAt         string    `json:"occurred_at"`
	AcsSystemID        string    `json:"acs_system_id,omitempty"`
	ConnectedAccountID string    `json:"connected_account_id,omitempty"`
	AcsEncoderID       string    `json:"acs_encoder_id,omitempty"`
	AcsCredentialID    string    `json:"acs_credential_id,omitempty"`
	AccessMethodID     string    `json:"access_method_id,omitempty"`
	AccessGrantIDs     *[]string `json:"access_grant_ids,omitempty"`
	EventDescription   string    `json:"event_description,omitempty"`
}

// newEvent renders an event; id is its event_id, now when it is created.
func newEvent(id, typ string, ws store.Workspace, occurred, now time.Time, description string) (store.Event, SeamEvent) {
	now, occurred = now.UTC().Truncate(time.Millisecond), occurred.UTC().Truncate(time.Millisecond)
	return store.Event{ID: id, WorkspaceID: ws.ID, Type: typ, OccurredAt: occurred, CreatedAt: now},
		SeamEvent{EventID: id, EventType: typ, WorkspaceID: ws.ID, CreatedAt: Time(now), OccurredAt: Time(occurred), EventDescription: description}
}

func finish(e store.Event, s SeamEvent) store.Event {
	e.Body, _ = json.Marshal(s) // only strings: cannot fail
	return e
}

// EncoderEvent renders acs_encoder.added or acs_encoder.removed.
func EncoderEvent(id, typ string, ws store.Workspace, enc store.Encoder, occurred, now time.Time) store.Event {
	what := "added to"
	if typ == EventEncoderRemoved {
		what = "removed from"
	}
	e, s := newEvent(id, typ, ws, occurred, now, "Encoder "+enc.DisplayName+" was "+what+" its bridge.")
	s.AcsSystemID, s.ConnectedAccountID, s.AcsEncoderID = ws.AcsSystemID, ws.ConnectedAccountID, enc.ID
	e.AcsEncoderID = enc.ID
	return finish(e, s)
}

// CredentialEvent renders an acs_credential.* event.
func CredentialEvent(id, typ string, ws store.Workspace, c store.Credential, occurred, now time.Time) store.Event {
	desc := DisplayName(c) + " was encoded onto a card."
	if typ == EventCredentialReissued {
		desc = DisplayName(c) + " was encoded onto a new card; earlier cards are refused by locks that see it."
	}
	e, s := newEvent(id, typ, ws, occurred, now, desc)
	s.AcsSystemID, s.ConnectedAccountID, s.AcsCredentialID = ws.AcsSystemID, ws.ConnectedAccountID, c.ID
	e.AcsCredentialID = c.ID
	return finish(e, s)
}

// AccessMethodEvent renders an access_method.* event. Access methods here
// belong to no access grant: access_grant_ids is empty.
func AccessMethodEvent(id, typ string, ws store.Workspace, c store.Credential, occurred, now time.Time) store.Event {
	desc := map[string]string{
		EventAccessMethodCreated:  "Card access method " + DisplayName(c) + " was created; it needs a card encoded.",
		EventAccessMethodIssued:   "Card access method " + DisplayName(c) + " was issued: its card was encoded.",
		EventAccessMethodReissued: "Card access method " + DisplayName(c) + " was reissued onto a new card.",
	}[typ]
	e, s := newEvent(id, typ, ws, occurred, now, desc)
	grants := []string{}
	s.AccessMethodID, s.AccessGrantIDs = c.AccessMethodID, &grants
	e.AccessMethodID = c.AccessMethodID
	return finish(e, s)
}
