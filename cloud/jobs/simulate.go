package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/google/uuid"

	"github.com/encoder-bridge/encoder-bridge/cloud/seam"
	"github.com/encoder-bridge/encoder-bridge/cloud/store"
	"github.com/encoder-bridge/encoder-bridge/protocol"
)

// Simulation kinds: which job a simulated outcome applies to.
const (
	simEncode = "encode"
	simScan   = "scan"
)

// Scan scenarios of next_credential_scan_will_succeed, and the encode one.
const (
	ScenarioCredentialIsIssued             = "credential_is_issued"
	ScenarioCredentialExistsOnSeam         = "credential_exists_on_seam"
	ScenarioCredentialOnEncoderNeedsUpdate = "credential_on_encoder_needs_update"
	ScenarioCredentialDoesNotExistOnSeam   = "credential_does_not_exist_on_seam"
	ScenarioCredentialOnEncoderIsEmpty     = "credential_on_encoder_is_empty"
)

// Simulation is the outcome the next job of an encoder will have, without
// touching a card or the bridge.
type Simulation struct {
	// Encode: the next encode (else the next scan).
	Encode bool `json:"encode"`
	// ErrorCode makes the job fail with this type; empty means success.
	ErrorCode string `json:"error_code,omitempty"`
	// Scenario of a success.
	Scenario string `json:"scenario,omitempty"`
	// CredentialID limits an encode simulation to that credential.
	CredentialID string `json:"acs_credential_id,omitempty"`
	// CredentialIDOnSeam is the credential a simulated scan finds.
	CredentialIDOnSeam string `json:"acs_credential_id_on_seam,omitempty"`
}

// Simulate stores the outcome of the next encode or scan job on an
// encoder. Only sandbox workspaces may simulate.
func (s *Service) Simulate(ctx context.Context, workspaceID, encoderID string, sim Simulation) error {
	enc, err := s.encoder(ctx, workspaceID, encoderID)
	if err != nil {
		return err
	}
	given := sim
	return s.st.Update(ctx, func(tx *store.Tx) error {
		sim := given // Update may run this again
		ws, err := tx.Workspace(ctx, workspaceID)
		if err != nil {
			return err
		}
		if !ws.IsSandbox {
			return ErrNotSandbox
		}
		for _, id := range []string{sim.CredentialID, sim.CredentialIDOnSeam} {
			if id == "" {
				continue
			}
			if _, err := tx.Credential(ctx, workspaceID, id); errors.Is(err, store.ErrNotFound) {
				return &NotFoundError{Resource: "acs_credential", ID: id}
			} else if err != nil {
				return err
			}
		}
		needsCred := !sim.Encode && sim.ErrorCode == "" &&
			(sim.Scenario == ScenarioCredentialExistsOnSeam || sim.Scenario == ScenarioCredentialOnEncoderNeedsUpdate)
		if needsCred && sim.CredentialIDOnSeam == "" {
			c, err := tx.LatestCredential(ctx, workspaceID)
			if errors.Is(err, store.ErrNotFound) {
				return &NotFoundError{Resource: "acs_credential", ID: "(none in this workspace to simulate a scan of)"}
			} else if err != nil {
				return err
			}
			sim.CredentialIDOnSeam = c.ID
		}
		kind := simScan
		if sim.Encode {
			kind = simEncode
		}
		b, err := json.Marshal(sim)
		if err != nil {
			return err
		}
		return tx.SetSimulation(ctx, enc.ID, kind, b, s.now())
	})
}

// takeSimulation consumes the encoder's simulated outcome for kind, if one
// is set and applies to credentialID.
func (s *Service) takeSimulation(ctx context.Context, tx *store.Tx, encoderID, kind, credentialID string) (Simulation, bool, error) {
	raw, err := tx.Simulation(ctx, encoderID, kind)
	if errors.Is(err, store.ErrNotFound) {
		return Simulation{}, false, nil
	}
	if err != nil {
		return Simulation{}, false, err
	}
	var sim Simulation
	if err := json.Unmarshal(raw, &sim); err != nil {
		return Simulation{}, false, tx.DeleteSimulation(ctx, encoderID, kind)
	}
	if sim.CredentialID != "" && sim.CredentialID != credentialID {
		return Simulation{}, false, nil
	}
	return sim, true, tx.DeleteSimulation(ctx, encoderID, kind)
}

func (s *Service) simulateEncode(ctx context.Context, tx *store.Tx, ws store.Workspace, att *store.ActionAttempt,
	cred store.Credential, sim Simulation, now time.Time) error {
	if sim.ErrorCode != "" {
		att.Status, att.ErrorType = store.StatusError, string(seam.NormalizeErrorType(seam.ActionEncodeCredential, protocol.ErrorType(sim.ErrorCode)))
		att.ErrorMessage = "Simulated failure: " + sim.ErrorCode
		return tx.CreateActionAttempt(ctx, *att)
	}
	before, err := tx.CountEncodeJob(ctx, cred.ID)
	if err != nil {
		return err
	}
	seq := cred.IssueSequence
	if before > 0 || cred.IsIssued {
		if seq, err = tx.NextIssueSequence(ctx, ws.ID); err != nil {
			return err
		}
	}
	cred, err = s.issue(ctx, tx, ws, cred, store.CardIssued{IssueSequence: seq, IssuedAt: now, CardTechnology: "simulated"}, now)
	if err != nil {
		return err
	}
	if att.Result, err = json.Marshal(seam.Credential(cred, ws)); err != nil {
		return err
	}
	att.Status = store.StatusSuccess
	return tx.CreateActionAttempt(ctx, *att)
}

func (s *Service) simulateScan(ctx context.Context, tx *store.Tx, ws store.Workspace, att *store.ActionAttempt, sim Simulation) error {
	if sim.ErrorCode != "" {
		att.Status, att.ErrorType = store.StatusError, string(seam.NormalizeErrorType(seam.ActionScanCredential, protocol.ErrorType(sim.ErrorCode)))
		att.ErrorMessage = "Simulated failure: " + sim.ErrorCode
		return tx.CreateActionAttempt(ctx, *att)
	}
	card := &protocol.Card{UID: "", Technology: "simulated"}
	var onSeam *store.Credential
	switch sim.Scenario {
	case ScenarioCredentialOnEncoderIsEmpty:
		card.Reason = "blank"
	case ScenarioCredentialDoesNotExistOnSeam:
		seq := uint32(1)
		card.Valid = true
		card.Credential = &protocol.Credential{
			CredentialID: uuid.NewString(), CardNumber: "999999", CardFunctionType: "guest",
			StartsAt: wholeSecond(s).Format(time.RFC3339), EndsAt: wholeSecond(s).Add(24 * time.Hour).Format(time.RFC3339),
			EntranceIDs: []string{}, IssueSequence: &seq,
		}
	default: // exists on seam, possibly out of date
		c, err := tx.Credential(ctx, ws.ID, sim.CredentialIDOnSeam)
		if errors.Is(err, store.ErrNotFound) {
			// Deleted since: the card's credential is unknown.
			c = store.Credential{ID: sim.CredentialIDOnSeam, CardNumber: "999999", CardFunctionType: "guest",
				StartsAt: wholeSecond(s), EndsAt: wholeSecond(s).Add(24 * time.Hour)}
		} else if err != nil {
			return err
		} else {
			onSeam = &c
		}
		card.Valid = true
		card.Credential = ProtocolCredential(c)
		if sim.Scenario == ScenarioCredentialOnEncoderNeedsUpdate {
			// An older card: earlier end, lower sequence.
			card.Credential.EndsAt = c.EndsAt.Add(-24 * time.Hour).UTC().Format(time.RFC3339)
			if c.IssueSequence > 1 {
				seq := c.IssueSequence - 1
				card.Credential.IssueSequence = &seq
			}
		}
	}
	res := seam.Scan(card, onSeam, ws)
	if sim.Scenario != ScenarioCredentialOnEncoderNeedsUpdate && onSeam != nil {
		// The card matches the credential by construction.
		res.Warnings = []seam.ScanWarning{}
	}
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	att.Status, att.Result = store.StatusSuccess, b
	return tx.CreateActionAttempt(ctx, *att)
}

func wholeSecond(s *Service) time.Time { return s.now().Truncate(time.Second) }
