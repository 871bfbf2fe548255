package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/encoder-bridge/encoder-bridge/cloud/jobs"
	"github.com/encoder-bridge/encoder-bridge/cloud/seam"
	"github.com/encoder-bridge/encoder-bridge/cloud/store"
	"github.com/encoder-bridge/encoder-bridge/protocol"
)

// ok wraps a response as Seam does: the resource under its key, and
// "ok": true.
func ok(key string, v any) map[string]any {
	if key == "" {
		return map[string]any{"ok": true}
	}
	return map[string]any{key: v, "ok": true}
}

// pagination is Seam's pagination object.
type pagination struct {
	NextPageCursor *string `json:"next_page_cursor"`
	HasNextPage    bool    `json:"has_next_page"`
	NextPageURL    *string `json:"next_page_url"`
}

// MaxSearchLength bounds the search of /acs/credentials/list, in
// characters: longer than any card number, display name or id.
const MaxSearchLength = 256

// DefaultLimit is Seam's default page size; MaxLimit bounds it.
const (
	DefaultLimit = 500
	MaxLimit     = 1000
)

func (r *request) page() store.Page {
	p := store.Page{Limit: DefaultLimit}
	if f, ok := r.in.number("limit"); ok {
		if f != math.Trunc(f) || f < 1 || f > MaxLimit {
			r.in.bad("limit", "must be a whole number from 1 to %d", MaxLimit)
		} else {
			p.Limit = int(f)
		}
	}
	if s, ok := r.in.str("page_cursor"); ok && s != "" {
		var c store.Cursor
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil || json.Unmarshal(b, &c) != nil || c.ID == "" {
			r.in.bad("page_cursor", "is not a cursor this API returned")
		} else {
			p.After = &c
		}
	}
	return p
}

func (r *request) pagination(more bool, last store.Cursor) pagination {
	if !more {
		return pagination{}
	}
	b, _ := json.Marshal(last)
	cur := base64.RawURLEncoding.EncodeToString(b)
	u := r.url + "?page_cursor=" + url.QueryEscape(cur)
	return pagination{NextPageCursor: &cur, HasNextPage: true, NextPageURL: &u}
}

// inSystem reports whether the acs_system_id / acs_system_ids filters
// admit the workspace's system (a filter on another system lists nothing).
func (r *request) inSystem() bool {
	admit := true
	if id := r.in.uuid("acs_system_id", false); id != "" && id != r.ws.AcsSystemID {
		admit = false
	}
	if ids, present := r.in.uuids("acs_system_ids"); present && !slices.Contains(ids, r.ws.AcsSystemID) {
		admit = false
	}
	return admit
}

func (a *API) encoders(ctx context.Context, ws store.Workspace, list []store.Encoder) ([]seam.AcsEncoder, error) {
	bridges, err := a.cfg.Store.Q().Bridges(ctx, ws.ID)
	if err != nil {
		return nil, err
	}
	byID := map[string]store.Bridge{}
	for _, b := range bridges {
		byID[b.ID] = b
	}
	out := make([]seam.AcsEncoder, 0, len(list))
	// Once per bridge: with several instances presence is a query.
	online := map[string]bool{}
	for _, e := range list {
		on, known := online[e.BridgeID]
		if !known {
			on = a.online(e.BridgeID)
			online[e.BridgeID] = on
		}
		out = append(out, seam.Encoder(e, ws, byID[e.BridgeID], on))
	}
	return out, nil
}

func (a *API) online(bridgeID string) bool {
	return a.cfg.Presence != nil && a.cfg.Presence.Online(bridgeID)
}

func (a *API) listEncoders(ctx context.Context, r *request) (any, error) {
	admit := r.inSystem()
	ids, present := r.in.uuids("acs_encoder_ids")
	p := r.page()
	if err := r.in.check(); err != nil {
		return nil, err
	}
	var f store.EncoderFilter
	if present {
		f.IDs = nonNilIDs(ids)
	}
	var list []store.Encoder
	var more bool
	if admit {
		var err error
		if list, more, err = a.cfg.Store.Q().ListEncoders(ctx, r.ws.ID, f, p); err != nil {
			return nil, err
		}
	}
	out, err := a.encoders(ctx, r.ws, list)
	if err != nil {
		return nil, err
	}
	var last store.Cursor
	if len(list) > 0 {
		e := list[len(list)-1]
		last = store.Cursor{CreatedAt: e.CreatedAt.UnixMilli(), ID: e.ID}
	}
	m := ok("acs_encoders", out)
	m["pagination"] = r.pagination(more, last)
	return m, nil
}

func (a *API) getEncoder(ctx context.Context, r *request) (any, error) {
	id := r.in.uuid("acs_encoder_id", true)
	if err := r.in.check(); err != nil {
		return nil, err
	}
	e, err := a.cfg.Store.Q().Encoder(ctx, r.ws.ID, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound("acs_encoder")
	}
	if err != nil {
		return nil, err
	}
	out, err := a.encoders(ctx, r.ws, []store.Encoder{e})
	if err != nil {
		return nil, err
	}
	return ok("acs_encoder", out[0]), nil
}

func attempt(a store.ActionAttempt) map[string]any {
	return ok("action_attempt", seam.Attempt(a))
}

func (a *API) encodeCredential(ctx context.Context, r *request) (any, error) {
	req := jobs.EncodeRequest{
		EncoderID:      r.in.uuid("acs_encoder_id", true),
		CredentialID:   r.in.uuid("acs_credential_id", false),
		AccessMethodID: r.in.uuid("access_method_id", false),
	}
	r.in.exactlyOne("acs_credential_id", req.CredentialID, "access_method_id", req.AccessMethodID)
	if err := r.in.check(); err != nil {
		return nil, err
	}
	att, err := a.cfg.Jobs.Encode(ctx, r.ws.ID, req)
	if err != nil {
		return nil, err
	}
	return attempt(a.settle(ctx, r, att)), nil
}

func (a *API) scanCredential(ctx context.Context, r *request) (any, error) {
	req := jobs.ScanRequest{EncoderID: r.in.uuid("acs_encoder_id", true)}
	r.in.unsupported("salto_ks_metadata")
	if err := r.in.check(); err != nil {
		return nil, err
	}
	att, err := a.cfg.Jobs.Scan(ctx, r.ws.ID, req)
	if err != nil {
		return nil, err
	}
	return attempt(a.settle(ctx, r, att)), nil
}

func (a *API) scanToAssignCredential(ctx context.Context, r *request) (any, error) {
	req := jobs.ScanRequest{
		EncoderID:      r.in.uuid("acs_encoder_id", true),
		Assign:         true,
		AcsUserID:      r.in.uuid("acs_user_id", false),
		UserIdentityID: r.in.uuid("user_identity_id", false),
	}
	r.in.exactlyOne("acs_user_id", req.AcsUserID, "user_identity_id", req.UserIdentityID)
	r.in.unsupported("salto_ks_metadata")
	if err := r.in.check(); err != nil {
		return nil, err
	}
	att, err := a.cfg.Jobs.Scan(ctx, r.ws.ID, req)
	if err != nil {
		return nil, err
	}
	return attempt(a.settle(ctx, r, att)), nil
}

func (a *API) simulate(ctx context.Context, r *request, encoderID string, sim jobs.Simulation) (any, error) {
	if err := r.in.check(); err != nil {
		return nil, err
	}
	if err := a.cfg.Jobs.Simulate(ctx, r.ws.ID, encoderID, sim); err != nil {
		return nil, err
	}
	return ok("", nil), nil
}

func (a *API) simulateEncodeFail(ctx context.Context, r *request) (any, error) {
	id := r.in.uuid("acs_encoder_id", true)
	credID := r.in.uuid("acs_credential_id", false)
	code, given := r.in.enum("error_code", string(protocol.ErrorNoCredentialOnEncoder), string(protocol.ErrorEncodingInterrupted), string(protocol.ErrorUncategorized), string(protocol.ErrorActionAttemptExpired))
	if !given && !r.in.errs.has("error_code") {
		code = string(protocol.ErrorNoCredentialOnEncoder)
	}
	// Seam's two request shapes: a credential may be named only with
	// uncategorized_error or action_attempt_expired.
	if credID != "" && (code == string(protocol.ErrorNoCredentialOnEncoder) || code == string(protocol.ErrorEncodingInterrupted)) {
		r.in.bad("acs_credential_id", "may be given only with error_code uncategorized_error or action_attempt_expired")
	}
	return a.simulate(ctx, r, id, jobs.Simulation{Encode: true, ErrorCode: code, CredentialID: credID})
}

func (a *API) simulateEncodeSucceed(ctx context.Context, r *request) (any, error) {
	id := r.in.uuid("acs_encoder_id", true)
	r.in.enum("scenario", jobs.ScenarioCredentialIsIssued)
	return a.simulate(ctx, r, id, jobs.Simulation{Encode: true, Scenario: jobs.ScenarioCredentialIsIssued})
}

func (a *API) simulateScanFail(ctx context.Context, r *request) (any, error) {
	id := r.in.uuid("acs_encoder_id", true)
	credID := r.in.uuid("acs_credential_id_on_seam", false)
	code, given := r.in.enum("error_code", string(protocol.ErrorNoCredentialOnEncoder), string(protocol.ErrorUncategorized), string(protocol.ErrorActionAttemptExpired))
	if !given && !r.in.errs.has("error_code") {
		code = string(protocol.ErrorNoCredentialOnEncoder)
	}
	if credID != "" && code == string(protocol.ErrorNoCredentialOnEncoder) {
		r.in.bad("acs_credential_id_on_seam", "may be given only with error_code uncategorized_error or action_attempt_expired")
	}
	return a.simulate(ctx, r, id, jobs.Simulation{ErrorCode: code})
}

func (a *API) simulateScanSucceed(ctx context.Context, r *request) (any, error) {
	id := r.in.uuid("acs_encoder_id", true)
	credID := r.in.uuid("acs_credential_id_on_seam", false)
	scenario, given := r.in.enum("scenario", jobs.ScenarioCredentialExistsOnSeam, jobs.ScenarioCredentialOnEncoderNeedsUpdate,
		jobs.ScenarioCredentialDoesNotExistOnSeam, jobs.ScenarioCredentialOnEncoderIsEmpty)
	if !given && !r.in.errs.has("scenario") {
		scenario = jobs.ScenarioCredentialExistsOnSeam
	}
	if credID != "" && (scenario == jobs.ScenarioCredentialDoesNotExistOnSeam || scenario == jobs.ScenarioCredentialOnEncoderIsEmpty) {
		r.in.bad("acs_credential_id_on_seam", "may not be given with scenario %s", scenario)
	}
	return a.simulate(ctx, r, id, jobs.Simulation{Scenario: scenario, CredentialIDOnSeam: credID})
}

// Card function types a credential may have (the record format's).
var cardFunctionTypes = []string{"guest", "staff", "master", "maintenance", "emergency"}

// Bounds of card validity: the card stores Unix seconds in 32 bits.
var maxCardTime = time.Unix(math.MaxUint32, 0).UTC()

// MaxEntrances is how many entrances one card can hold.
const MaxEntrances = 32

func (a *API) createCredential(ctx context.Context, r *request) (any, error) {
	in := r.in
	method, given := in.enum("access_method", "code", "card", "mobile_key", "cloud_key")
	if !given && !in.errs.has("access_method") {
		in.required("access_method")
	} else if given && method != "card" {
		in.bad("access_method", "only card credentials are supported by this access system")
	}
	userID := in.uuid("acs_user_id", false)
	identityID := in.uuid("user_identity_id", false)
	systemID := in.uuid("acs_system_id", false)
	if userID == "" && systemID == "" && !in.errs.has("acs_user_id") && !in.errs.has("acs_system_id") {
		in.bad("acs_user_id", "give acs_user_id, or acs_system_id (with user_identity_id if you use identities)")
		in.bad("acs_system_id", "give acs_user_id, or acs_system_id (with user_identity_id if you use identities)")
	}
	now := a.clk.Now().UTC()
	starts, hasStart := in.time("starts_at")
	ends, hasEnd := in.time("ends_at")
	if !hasStart && !in.errs.has("starts_at") {
		starts, hasStart = now, true
	}
	starts, ends = starts.Truncate(time.Second), ends.Truncate(time.Second)
	switch {
	case !hasEnd && !in.errs.has("ends_at"):
		in.bad("ends_at", "required for a card: the card carries its end of validity")
	case hasEnd && !ends.After(now):
		in.bad("ends_at", "must be in the future")
	case hasEnd && hasStart && !ends.After(starts):
		in.bad("ends_at", "must be after starts_at")
	case hasEnd && ends.After(maxCardTime):
		in.bad("ends_at", "must be before %s", maxCardTime.Format(time.RFC3339))
	}
	if hasStart && starts.Unix() < 0 {
		in.bad("starts_at", "must be after 1970-01-01T00:00:00Z")
	}
	ents, _ := in.uuids("allowed_acs_entrance_ids")
	if len(ents) > MaxEntrances {
		in.bad("allowed_acs_entrance_ids", "a card holds at most %d entrances", MaxEntrances)
	}
	for i, e := range ents {
		if slices.Contains(ents[:i], e) {
			in.bad("allowed_acs_entrance_ids", "%s is listed twice", e)
		}
	}
	function := "guest"
	if md := in.object("encoder_bridge_metadata"); md != nil {
		if f, ok := md.enum("card_function_type", cardFunctionTypes...); ok {
			function = f
		}
		md.unknown()
	}
	if multi, ok := in.boolean("is_multi_phone_sync_credential"); ok && multi {
		in.bad("is_multi_phone_sync_credential", "not supported by this access system")
	}
	in.unsupported("code", "credential_manager_acs_system_id", "visionline_metadata", "salto_space_metadata",
		"assa_abloy_vostio_metadata", "hotek_metadata")
	if err := in.check(); err != nil {
		return nil, err
	}
	if systemID != "" && systemID != r.ws.AcsSystemID {
		return nil, notFound("acs_system")
	}
	c := store.Credential{
		ID:               uuid.NewString(),
		WorkspaceID:      r.ws.ID,
		AccessMethodID:   uuid.NewString(),
		AcsUserID:        userID,
		UserIdentityID:   identityID,
		CardFunctionType: function,
		StartsAt:         starts,
		EndsAt:           ends,
		EntranceIDs:      nonNilIDs(ents),
		CreatedAt:        now.Truncate(time.Millisecond),
	}
	err := a.cfg.Store.Update(ctx, func(tx *store.Tx) error {
		n, err := tx.NextCardNumber(ctx, r.ws.ID)
		if err != nil {
			return err
		}
		c.CardNumber = strconv.FormatInt(n, 10)
		if c.IssueSequence, err = tx.NextIssueSequence(ctx, r.ws.ID); err != nil {
			return err
		}
		if err := tx.CreateCredential(ctx, c); err != nil {
			return err
		}
		return credentialCreated(ctx, tx, r.ws, c)
	})
	if err != nil {
		return nil, fmt.Errorf("create credential: %w", err)
	}
	if a.cfg.OnEvents != nil {
		a.cfg.OnEvents()
	}
	return ok("acs_credential", seam.Credential(c, r.ws)), nil
}

func (a *API) getCredential(ctx context.Context, r *request) (any, error) {
	id := r.in.uuid("acs_credential_id", true)
	if err := r.in.check(); err != nil {
		return nil, err
	}
	c, err := a.cfg.Store.Q().Credential(ctx, r.ws.ID, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound("acs_credential")
	}
	if err != nil {
		return nil, err
	}
	return ok("acs_credential", seam.Credential(c, r.ws)), nil
}

func (a *API) listCredentials(ctx context.Context, r *request) (any, error) {
	admit := r.inSystem()
	f := store.CredentialFilter{
		AcsUserID:      r.in.uuid("acs_user_id", false),
		UserIdentityID: r.in.uuid("user_identity_id", false),
	}
	if t, ok := r.in.time("created_before"); ok {
		f.CreatedBefore = &t
	}
	if multi, ok := r.in.boolean("is_multi_phone_sync_credential"); ok && multi {
		admit = false // no card credential is one
	}
	if s, ok := r.in.str("search"); ok {
		switch n := utf8.RuneCountInString(s); {
		case n == 0:
			r.in.bad("search", "must not be empty")
		case n > MaxSearchLength:
			// SQLite refuses LIKE patterns beyond 50,000 bytes with an
			// error; nothing searched for here is near this long.
			r.in.bad("search", "must be at most %d characters", MaxSearchLength)
		default:
			f.Search = s
		}
	}
	p := r.page()
	if err := r.in.check(); err != nil {
		return nil, err
	}
	var list []store.Credential
	var more bool
	if admit {
		var err error
		if list, more, err = a.cfg.Store.Q().ListCredentials(ctx, r.ws.ID, f, p); err != nil {
			return nil, err
		}
	}
	out := make([]seam.AcsCredential, 0, len(list))
	for _, c := range list {
		out = append(out, seam.Credential(c, r.ws))
	}
	var last store.Cursor
	if len(list) > 0 {
		c := list[len(list)-1]
		last = store.Cursor{CreatedAt: c.CreatedAt.UnixMilli(), ID: c.ID}
	}
	m := ok("acs_credentials", out)
	m["pagination"] = r.pagination(more, last)
	return m, nil
}

func (a *API) listSystems(ctx context.Context, r *request) (any, error) {
	admit := true
	if id := r.in.uuid("connected_account_id", false); id != "" && id != r.ws.ConnectedAccountID {
		admit = false
	}
	if err := r.in.check(); err != nil {
		return nil, err
	}
	out := []seam.AcsSystem{}
	if admit {
		out = append(out, seam.System(r.ws))
	}
	return ok("acs_systems", out), nil
}

func (a *API) getSystem(ctx context.Context, r *request) (any, error) {
	id := r.in.uuid("acs_system_id", true)
	if err := r.in.check(); err != nil {
		return nil, err
	}
	if id != r.ws.AcsSystemID {
		return nil, notFound("acs_system")
	}
	return ok("acs_system", seam.System(r.ws)), nil
}

func (a *API) getAccessMethod(ctx context.Context, r *request) (any, error) {
	id := r.in.uuid("access_method_id", true)
	if err := r.in.check(); err != nil {
		return nil, err
	}
	c, err := a.cfg.Store.Q().CredentialByAccessMethod(ctx, r.ws.ID, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound("access_method")
	}
	if err != nil {
		return nil, err
	}
	return ok("access_method", seam.AccessMethodOf(c, r.ws)), nil
}

func (a *API) getActionAttempt(ctx context.Context, r *request) (any, error) {
	id := r.in.uuid("action_attempt_id", true)
	if err := r.in.check(); err != nil {
		return nil, err
	}
	att, err := a.cfg.Store.Q().ActionAttempt(ctx, r.ws.ID, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound("action_attempt")
	}
	if err != nil {
		return nil, err
	}
	return attempt(att), nil
}

func nonNilIDs(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
