package seam

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/encoder-bridge/encoder-bridge/cloud/store"
	"github.com/encoder-bridge/encoder-bridge/protocol"
)

// Scan warning codes.
const (
	WarnOutOfSync       = "acs_credential_on_encoder_out_of_sync"
	WarnOnSeamNotFound  = "acs_credential_on_seam_not_found"
	warnOnSeamNotFoundM = "The card holds a credential that this workspace does not know: it was issued by another system or another workspace, or it was deleted."
)

// ScanResult is the result of a successful SCAN_CREDENTIAL attempt.
type ScanResult struct {
	AcsCredentialOnEncoder *CredentialOnEncoder `json:"acs_credential_on_encoder"`
	AcsCredentialOnSeam    *AcsCredential       `json:"acs_credential_on_seam"`
	Warnings               []ScanWarning        `json:"warnings"`
	EncoderBridgeMetadata  ScanMetadata         `json:"encoder_bridge_metadata"`
}

// CredentialOnEncoder is what the card holds.
type CredentialOnEncoder struct {
	CardNumber *string `json:"card_number"`
	// CreatedAt is null: a card does not record when its credential was
	// created.
	CreatedAt             *string           `json:"created_at"`
	StartsAt              *string           `json:"starts_at"`
	EndsAt                *string           `json:"ends_at"`
	IsIssued              *bool             `json:"is_issued"`
	EncoderBridgeMetadata OnEncoderMetadata `json:"encoder_bridge_metadata"`
}

// OnEncoderMetadata is the card's record, beyond Seam's fields.
type OnEncoderMetadata struct {
	AcsCredentialID  string   `json:"acs_credential_id"`
	CardFunctionType string   `json:"card_function_type"`
	EntranceIDs      []string `json:"entrance_ids"`
	IssueSequence    *uint32  `json:"issue_sequence"`
	CardUID          string   `json:"card_uid"`
	CardTechnology   string   `json:"card_technology"`
	KeyVersion       *int     `json:"key_version"`
	FormatVersion    *int     `json:"format_version"`
}

// ScanWarning is a warning of a scan result.
type ScanWarning struct {
	WarningCode    string `json:"warning_code"`
	WarningMessage string `json:"warning_message"`
}

// ScanMetadata is the bridge's verdict on the card, present on every
// successful scan (also when the card holds no valid credential).
type ScanMetadata struct {
	CardUID        *string `json:"card_uid"`
	CardTechnology *string `json:"card_technology"`
	// IsValid: the card holds an authentic record of this property.
	IsValid bool `json:"is_valid"`
	// Reason is why a card is not valid: blank, foreign, bad_mac,
	// uid_mismatch, unknown_key_version, retired_key_version, corrupt
	// (null when valid).
	Reason *string `json:"reason"`
	// CardWarnings are the bridge's warnings on a valid card, such as
	// expired or not_yet_valid.
	CardWarnings []string `json:"card_warnings"`
}

// Scan builds the result of a scan. card is what the bridge read (nil for
// a simulated empty card); onSeam is the workspace's credential whose id
// the card holds, or nil.
func Scan(card *protocol.Card, onSeam *store.Credential, ws store.Workspace) ScanResult {
	res := ScanResult{Warnings: []ScanWarning{}, EncoderBridgeMetadata: ScanMetadata{CardWarnings: []string{}}}
	if card == nil {
		return res
	}
	m := &res.EncoderBridgeMetadata
	m.CardUID, m.CardTechnology = strPtr(card.UID), strPtr(card.Technology)
	m.IsValid = card.Valid && card.Credential != nil
	m.Reason = strPtr(card.Reason)
	if card.Warnings != nil {
		m.CardWarnings = card.Warnings
	}
	if !m.IsValid {
		if m.Reason == nil {
			m.Reason = strPtr("blank")
		}
		return res
	}
	pc := card.Credential
	issued := true
	onEnc := &CredentialOnEncoder{
		CardNumber: strPtr(pc.CardNumber),
		StartsAt:   cardTime(pc.StartsAt),
		EndsAt:     cardTime(pc.EndsAt),
		IsIssued:   &issued,
		EncoderBridgeMetadata: OnEncoderMetadata{
			AcsCredentialID:  pc.CredentialID,
			CardFunctionType: pc.CardFunctionType,
			EntranceIDs:      nonNil(pc.EntranceIDs),
			IssueSequence:    pc.IssueSequence,
			CardUID:          card.UID,
			CardTechnology:   card.Technology,
		},
	}
	if card.KeyVersion != 0 {
		kv := card.KeyVersion
		onEnc.EncoderBridgeMetadata.KeyVersion = &kv
	}
	if card.FormatVersion != 0 {
		fv := card.FormatVersion
		onEnc.EncoderBridgeMetadata.FormatVersion = &fv
	}
	res.AcsCredentialOnEncoder = onEnc
	if onSeam == nil {
		res.Warnings = append(res.Warnings, ScanWarning{WarningCode: WarnOnSeamNotFound, WarningMessage: warnOnSeamNotFoundM})
		return res
	}
	c := Credential(*onSeam, ws)
	res.AcsCredentialOnSeam = &c
	if diffs := Differences(pc, card.UID, *onSeam); len(diffs) > 0 {
		res.Warnings = append(res.Warnings, ScanWarning{
			WarningCode:    WarnOutOfSync,
			WarningMessage: "The card differs from the credential: " + strings.Join(diffs, "; ") + ". Re-encode the card to bring it up to date.",
		})
	}
	return res
}

// Differences lists how the card's record differs from the stored
// credential, one phrase per field, in a fixed order. cardUID is the
// scanned card's UID.
func Differences(pc *protocol.Credential, cardUID string, c store.Credential) []string {
	var d []string
	if pc.CardNumber != c.CardNumber {
		d = append(d, fmt.Sprintf("card_number is %q on the card, %q in the credential", pc.CardNumber, c.CardNumber))
	}
	if pc.CardFunctionType != c.CardFunctionType {
		d = append(d, fmt.Sprintf("card_function_type is %q on the card, %q in the credential", pc.CardFunctionType, c.CardFunctionType))
	}
	if !sameSecond(pc.StartsAt, c.StartsAt) {
		d = append(d, fmt.Sprintf("starts_at is %s on the card, %s in the credential", pc.StartsAt, c.StartsAt.UTC().Format(time.RFC3339)))
	}
	if !sameSecond(pc.EndsAt, c.EndsAt) {
		d = append(d, fmt.Sprintf("ends_at is %s on the card, %s in the credential", pc.EndsAt, c.EndsAt.UTC().Format(time.RFC3339)))
	}
	if !sameSet(pc.EntranceIDs, c.EntranceIDs) {
		d = append(d, "entrance_ids differ")
	}
	switch {
	case !c.IsIssued:
		d = append(d, "the credential is not recorded as issued")
	case pc.IssueSequence == nil:
		d = append(d, "the card has no issue sequence")
	case *pc.IssueSequence < c.IssueSequence:
		d = append(d, fmt.Sprintf("the card is an older issue (sequence %d) than the credential's current card (sequence %d): locks that have seen the newer card refuse it",
			*pc.IssueSequence, c.IssueSequence))
	case *pc.IssueSequence > c.IssueSequence:
		d = append(d, fmt.Sprintf("the card has issue sequence %d, newer than the recorded %d", *pc.IssueSequence, c.IssueSequence))
	case c.CardUID != "" && cardUID != "" && !strings.EqualFold(c.CardUID, cardUID):
		d = append(d, "the credential is recorded on another card (UID "+c.CardUID+")")
	}
	return d
}

func sameSecond(card string, t time.Time) bool {
	ct, err := time.Parse(time.RFC3339, card)
	return err == nil && ct.Unix() == t.Unix()
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	x, y := slices.Clone(a), slices.Clone(b)
	for i := range x {
		x[i] = strings.ToLower(x[i])
	}
	for i := range y {
		y[i] = strings.ToLower(y[i])
	}
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y)
}

func cardTime(s string) *string {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return nil
	}
	return strPtr(Time(t))
}

func strPtr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
