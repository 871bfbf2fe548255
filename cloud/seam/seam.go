// Package seam is the Seam Connect dialect of the cloud: the JSON shapes of
// acs_encoder, acs_credential, acs_system, access_method and
// action_attempt, the action attempt error types, and the renderers that
// build them from stored rows.
//
// This product's card data travels in one object, encoder_bridge_metadata,
// beside Seam's fields, the way Seam carries visionline_metadata; see
// docs/cloud.md for its fields.
//
// It imports only store and protocol; api and jobs use it.
package seam

import (
	"encoding/json"
	"slices"
	"time"

	"github.com/encoder-bridge/encoder-bridge/cloud/store"
	"github.com/encoder-bridge/encoder-bridge/protocol"
)

// Action types.
const (
	ActionEncodeCredential       = "ENCODE_CREDENTIAL"
	ActionScanCredential         = "SCAN_CREDENTIAL"
	ActionScanToAssignCredential = "SCAN_TO_ASSIGN_CREDENTIAL"
)

// The action attempt error types (protocol.ErrorType) Seam defines for
// each action type. The bridge reports card and encoder outcomes with the
// same values.
var errorTypes = map[string][]protocol.ErrorType{
	ActionEncodeCredential: {protocol.ErrorUncategorized, protocol.ErrorActionAttemptExpired, protocol.ErrorNoCredentialOnEncoder, protocol.ErrorIncompatibleCardFormat,
		protocol.ErrorCredentialCannotBeReissued, protocol.ErrorEncoderNotOnline, protocol.ErrorEncoderCommunicationTimeout, protocol.ErrorBridgeDisconnected,
		protocol.ErrorEncodingInterrupted, protocol.ErrorCredentialDeleted},
	ActionScanCredential: {protocol.ErrorUncategorized, protocol.ErrorActionAttemptExpired, protocol.ErrorNoCredentialOnEncoder, protocol.ErrorEncoderNotOnline,
		protocol.ErrorEncoderCommunicationTimeout, protocol.ErrorBridgeDisconnected},
	ActionScanToAssignCredential: {protocol.ErrorUncategorized, protocol.ErrorActionAttemptExpired, protocol.ErrorNoCredentialOnEncoder},
}

// ErrorTypes lists the error types Seam defines for an action type.
func ErrorTypes(actionType string) []protocol.ErrorType { return slices.Clone(errorTypes[actionType]) }

// NormalizeErrorType returns t if Seam defines it for actionType, else
// uncategorized_error: a client switching on Seam's enum never sees a type
// it does not know.
func NormalizeErrorType(actionType string, t protocol.ErrorType) protocol.ErrorType {
	if slices.Contains(errorTypes[actionType], t) {
		return t
	}
	return protocol.ErrorUncategorized
}

// TimeFormat is how times are rendered: RFC 3339, UTC, milliseconds.
const TimeFormat = "2006-01-02T15:04:05.000Z"

// Time renders t.
func Time(t time.Time) string { return t.UTC().Format(TimeFormat) }

func timePtr(t *time.Time) *string {
	if t == nil {
		return nil
	}
	s := Time(*t)
	return &s
}

// Error is an error or warning entry of a resource's errors/warnings list.
type Error struct {
	ErrorCode string `json:"error_code"`
	Message   string `json:"message"`
	CreatedAt string `json:"created_at"`
}

// Warning is an entry of a resource's warnings list.
type Warning struct {
	WarningCode string `json:"warning_code"`
	Message     string `json:"message"`
	CreatedAt   string `json:"created_at"`
}

// AcsEncoder is Seam's acs_encoder.
type AcsEncoder struct {
	AcsEncoderID          string          `json:"acs_encoder_id"`
	AcsSystemID           string          `json:"acs_system_id"`
	ConnectedAccountID    string          `json:"connected_account_id"`
	WorkspaceID           string          `json:"workspace_id"`
	DisplayName           string          `json:"display_name"`
	CreatedAt             string          `json:"created_at"`
	Errors                []Error         `json:"errors"`
	EncoderBridgeMetadata EncoderMetadata `json:"encoder_bridge_metadata"`
}

// EncoderMetadata is this product's part of an acs_encoder.
type EncoderMetadata struct {
	BridgeID     string   `json:"bridge_id"`
	BridgeName   string   `json:"bridge_name"`
	ReaderName   string   `json:"reader_name"`
	Technologies []string `json:"technologies"`
	// IsOnline: the encoder's bridge is connected now and the reader is
	// plugged in.
	IsOnline         bool    `json:"is_online"`
	BridgeLastSeenAt *string `json:"bridge_last_seen_at"`
	// BridgeJournalResetAt is when the bridge last reported that its job
	// journal was damaged and started over (null if never): jobs sent to
	// it before may have been lost. BridgeJournalResetReason says why.
	BridgeJournalResetAt     *string `json:"bridge_journal_reset_at"`
	BridgeJournalResetReason string  `json:"bridge_journal_reset_reason,omitempty"`
}

// Encoder renders an encoder. online says whether its bridge is connected.
func Encoder(e store.Encoder, ws store.Workspace, b store.Bridge, online bool) AcsEncoder {
	errs := []Error{}
	if e.RemovedAt != nil {
		errs = append(errs, Error{
			ErrorCode: "acs_encoder_removed",
			Message:   "The bridge reports that this encoder (reader " + e.ReaderName + ") was removed; plug it back in to use it.",
			CreatedAt: Time(*e.RemovedAt),
		})
	}
	techs := e.Technologies
	if techs == nil {
		techs = []string{}
	}
	return AcsEncoder{
		AcsEncoderID:       e.ID,
		AcsSystemID:        ws.AcsSystemID,
		ConnectedAccountID: ws.ConnectedAccountID,
		WorkspaceID:        ws.ID,
		DisplayName:        e.DisplayName,
		CreatedAt:          Time(e.CreatedAt),
		Errors:             errs,
		EncoderBridgeMetadata: EncoderMetadata{
			BridgeID:         e.BridgeID,
			BridgeName:       b.Name,
			ReaderName:       e.ReaderName,
			Technologies:     techs,
			IsOnline:         online && e.RemovedAt == nil,
			BridgeLastSeenAt: timePtr(b.LastSeenAt),

			BridgeJournalResetAt:     timePtr(b.JournalResetAt),
			BridgeJournalResetReason: b.JournalResetReason,
		},
	}
}

// AcsCredential is Seam's acs_credential for a card.
type AcsCredential struct {
	AcsCredentialID                        string             `json:"acs_credential_id"`
	AcsUserID                              string             `json:"acs_user_id,omitempty"`
	UserIdentityID                         string             `json:"user_identity_id,omitempty"`
	AcsSystemID                            string             `json:"acs_system_id"`
	ConnectedAccountID                     string             `json:"connected_account_id"`
	WorkspaceID                            string             `json:"workspace_id"`
	AccessMethod                           string             `json:"access_method"`
	DisplayName                            string             `json:"display_name"`
	ExternalTypeDisplayName                string             `json:"external_type_display_name"`
	CardNumber                             *string            `json:"card_number"`
	Code                                   *string            `json:"code"`
	IsIssued                               bool               `json:"is_issued"`
	IssuedAt                               *string            `json:"issued_at"`
	StartsAt                               string             `json:"starts_at"`
	EndsAt                                 string             `json:"ends_at"`
	CreatedAt                              string             `json:"created_at"`
	IsManaged                              bool               `json:"is_managed"`
	IsMultiPhoneSyncCredential             bool               `json:"is_multi_phone_sync_credential"`
	IsOneTimeUse                           bool               `json:"is_one_time_use"`
	IsLatestDesiredStateSyncedWithProvider *bool              `json:"is_latest_desired_state_synced_with_provider"`
	LatestDesiredStateSyncedWithProviderAt *string            `json:"latest_desired_state_synced_with_provider_at"`
	Errors                                 []Error            `json:"errors"`
	Warnings                               []Warning          `json:"warnings"`
	EncoderBridgeMetadata                  CredentialMetadata `json:"encoder_bridge_metadata"`
}

// CredentialMetadata is this product's card data of a credential.
type CredentialMetadata struct {
	AccessMethodID   string   `json:"access_method_id"`
	CardFunctionType string   `json:"card_function_type"`
	EntranceIDs      []string `json:"entrance_ids"`
	// IssueSequence of the card now issued, or of the first card before
	// one is: a lock refuses this credential's cards with a lower sequence
	// once it has seen a higher one.
	IssueSequence  uint32  `json:"issue_sequence"`
	CardUID        *string `json:"card_uid"`
	CardTechnology *string `json:"card_technology"`
	KeyVersion     *int    `json:"key_version"`
}

// ExternalTypeDisplayName names this system's credentials. Seam's
// external_type is an enum of other vendors' names, so it is left out.
const ExternalTypeDisplayName = "Encoder Bridge card"

// DisplayName is a card credential's display name.
func DisplayName(c store.Credential) string { return "Card " + c.CardNumber }

// Credential renders a credential.
func Credential(c store.Credential, ws store.Workspace) AcsCredential {
	card := c.CardNumber
	synced := true
	out := AcsCredential{
		AcsCredentialID:                        c.ID,
		AcsUserID:                              c.AcsUserID,
		UserIdentityID:                         c.UserIdentityID,
		AcsSystemID:                            ws.AcsSystemID,
		ConnectedAccountID:                     ws.ConnectedAccountID,
		WorkspaceID:                            ws.ID,
		AccessMethod:                           "card",
		DisplayName:                            DisplayName(c),
		ExternalTypeDisplayName:                ExternalTypeDisplayName,
		CardNumber:                             &card,
		IsIssued:                               c.IsIssued,
		IssuedAt:                               timePtr(c.IssuedAt),
		StartsAt:                               Time(c.StartsAt),
		EndsAt:                                 Time(c.EndsAt),
		CreatedAt:                              Time(c.CreatedAt),
		IsManaged:                              true,
		IsLatestDesiredStateSyncedWithProvider: &synced,
		LatestDesiredStateSyncedWithProviderAt: timePtr(&c.CreatedAt),
		Errors:                                 []Error{},
		Warnings:                               []Warning{},
		EncoderBridgeMetadata: CredentialMetadata{
			AccessMethodID:   c.AccessMethodID,
			CardFunctionType: c.CardFunctionType,
			EntranceIDs:      nonNil(c.EntranceIDs),
			IssueSequence:    c.IssueSequence,
		},
	}
	if !c.IsIssued {
		out.Warnings = append(out.Warnings, Warning{
			WarningCode: "waiting_to_be_issued",
			Message:     "The credential has not been encoded onto a card yet.",
			CreatedAt:   Time(c.CreatedAt),
		})
	} else {
		m := &out.EncoderBridgeMetadata
		if c.CardUID != "" {
			m.CardUID = &c.CardUID
		}
		if c.CardTechnology != "" {
			m.CardTechnology = &c.CardTechnology
		}
		if c.KeyVersion != 0 {
			kv := c.KeyVersion
			m.KeyVersion = &kv
		}
	}
	return out
}

// AccessMethod is Seam's access_method for a card credential.
type AccessMethod struct {
	AccessMethodID     string    `json:"access_method_id"`
	WorkspaceID        string    `json:"workspace_id"`
	DisplayName        string    `json:"display_name"`
	Mode               string    `json:"mode"`
	CreatedAt          string    `json:"created_at"`
	IssuedAt           *string   `json:"issued_at"`
	IsIssued           bool      `json:"is_issued"`
	IsEncodingRequired bool      `json:"is_encoding_required"`
	IsReadyForEncoding bool      `json:"is_ready_for_encoding"`
	Warnings           []Warning `json:"warnings"`
	Errors             []Error   `json:"errors"`
	PendingMutations   []any     `json:"pending_mutations"`
}

// AccessMethodOf renders the card access method of a credential.
func AccessMethodOf(c store.Credential, ws store.Workspace) AccessMethod {
	return AccessMethod{
		AccessMethodID:     c.AccessMethodID,
		WorkspaceID:        ws.ID,
		DisplayName:        DisplayName(c),
		Mode:               "card",
		CreatedAt:          Time(c.CreatedAt),
		IssuedAt:           timePtr(c.IssuedAt),
		IsIssued:           c.IsIssued,
		IsEncodingRequired: true,
		IsReadyForEncoding: !c.IsIssued,
		Warnings:           []Warning{},
		Errors:             []Error{},
		PendingMutations:   []any{},
	}
}

// AcsSystem is Seam's acs_system: one per workspace here.
type AcsSystem struct {
	AcsSystemID             string    `json:"acs_system_id"`
	Name                    string    `json:"name"`
	WorkspaceID             string    `json:"workspace_id"`
	ConnectedAccountID      string    `json:"connected_account_id"`
	ConnectedAccountIDs     []string  `json:"connected_account_ids"`
	CreatedAt               string    `json:"created_at"`
	IsCredentialManager     bool      `json:"is_credential_manager"`
	Location                Location  `json:"location"`
	ImageURL                string    `json:"image_url"`
	ImageAltText            string    `json:"image_alt_text"`
	ExternalTypeDisplayName string    `json:"external_type_display_name"`
	Errors                  []Error   `json:"errors"`
	Warnings                []Warning `json:"warnings"`
}

// Location of an acs_system.
type Location struct {
	TimeZone *string `json:"time_zone"`
}

// System renders a workspace's access control system.
func System(ws store.Workspace) AcsSystem {
	return AcsSystem{
		AcsSystemID:             ws.AcsSystemID,
		Name:                    ws.Name,
		WorkspaceID:             ws.ID,
		ConnectedAccountID:      ws.ConnectedAccountID,
		ConnectedAccountIDs:     []string{ws.ConnectedAccountID},
		CreatedAt:               Time(ws.CreatedAt),
		ImageURL:                "",
		ImageAltText:            "Encoder Bridge",
		ExternalTypeDisplayName: "Encoder Bridge",
		Errors:                  []Error{},
		Warnings:                []Warning{},
	}
}

// ActionAttempt is Seam's action_attempt.
type ActionAttempt struct {
	ActionAttemptID string          `json:"action_attempt_id"`
	ActionType      string          `json:"action_type"`
	Status          string          `json:"status"`
	Result          json.RawMessage `json:"result"`
	Error           *AttemptError   `json:"error"`
}

// AttemptError is the error of a failed action attempt.
type AttemptError struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

// Attempt renders an action attempt.
func Attempt(a store.ActionAttempt) ActionAttempt {
	out := ActionAttempt{
		ActionAttemptID: a.ID,
		ActionType:      a.ActionType,
		Status:          a.Status,
		Result:          json.RawMessage("null"),
	}
	switch a.Status {
	case store.StatusSuccess:
		if len(a.Result) > 0 {
			out.Result = a.Result
		}
	case store.StatusError:
		out.Error = &AttemptError{Type: a.ErrorType, Message: a.ErrorMessage}
	}
	return out
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
