package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/encoder-bridge/encoder-bridge/cloud/seam"
	"github.com/encoder-bridge/encoder-bridge/cloud/store"
	"github.com/encoder-bridge/encoder-bridge/cloud/webhook"
)

// Limits of the webhook and event routes.
const (
	// MaxWebhooks bounds a workspace's webhooks.
	MaxWebhooks = 20
	// MaxWebhookURL bounds a webhook URL, in bytes.
	MaxWebhookURL = 2048
	// MaxEventTypes bounds the event types of a webhook or a filter.
	MaxEventTypes = 100
	// DefaultEventLimit is Seam's default page of /events/list.
	DefaultEventLimit = 500
)

// eventTypeRE is the form of Seam's event types (acs_credential.issued,
// access_code.unmanaged.created): a webhook may subscribe to any of them,
// as on Seam, even those this cloud never records.
var eventTypeRE = regexp.MustCompile(`^[a-z][a-z_]*(\.[a-z][a-z_]*)+$`)

// strs reads an array of strings: a JSON array, or repeated query values.
func (in *input) strs(field string) (vals []string, present bool) {
	j, q, ok := in.raw(field)
	if !ok {
		return nil, false
	}
	if q != nil {
		for _, v := range q {
			if v != "" {
				vals = append(vals, v)
			}
		}
		return vals, true
	}
	if err := json.Unmarshal(j, &vals); err != nil {
		in.bad(field, "must be an array of strings")
		return nil, true
	}
	return vals, true
}

func (in *input) eventTypes(field string, allowStar bool) ([]string, bool) {
	types, present := in.strs(field)
	if len(types) > MaxEventTypes {
		in.bad(field, "at most %d event types", MaxEventTypes)
		return nil, present
	}
	for i, t := range types {
		if !(allowStar && t == "*") && !eventTypeRE.MatchString(t) {
			in.bad(fmt.Sprintf("%s[%d]", field, i), "is not an event type such as acs_credential.issued%s", map[bool]string{true: ", or *"}[allowStar])
		}
	}
	return types, present
}

func (a *API) listEvents(ctx context.Context, r *request) (any, error) {
	in := r.in
	var f store.EventFilter
	filtered := false
	if t, ok := in.time("since"); ok {
		f.After, filtered = &t, true
	}
	if b, present := in.strs("between"); present {
		if len(b) != 2 {
			in.bad("between", "must be two date-times: the exclusive lower and upper bounds")
		} else {
			lo, err1 := time.Parse(time.RFC3339Nano, b[0])
			hi, err2 := time.Parse(time.RFC3339Nano, b[1])
			if err1 != nil || err2 != nil {
				in.bad("between", "must be two ISO 8601 date-times such as 2026-11-23T15:00:00Z")
			} else {
				if f.After == nil || lo.After(*f.After) {
					f.After = &lo
				}
				f.Before, filtered = &hi, true
			}
		}
	}
	if t, ok := in.str("event_type"); ok {
		f.Types, filtered = append(f.Types, t), true
	}
	if ts, present := in.eventTypes("event_types", false); present {
		f.Types, filtered = append(f.Types, ts...), true
	}
	if ids, present := in.uuids("event_ids"); present {
		f.IDs, filtered = nonNilIDs(ids), true
		if len(ids) == 0 {
			f.IDs = []string{""} // an empty list matches nothing
		}
	}
	if id := in.uuid("acs_encoder_id", false); id != "" {
		f.AcsEncoderID, filtered = id, true
	}
	if id := in.uuid("acs_credential_id", false); id != "" {
		f.AcsCredentialID, filtered = id, true
	}
	if id := in.uuid("access_method_id", false); id != "" {
		f.AccessMethodIDs, filtered = append(f.AccessMethodIDs, id), true
	}
	if ids, present := in.uuids("access_method_ids"); present {
		f.AccessMethodIDs, filtered = append(f.AccessMethodIDs, ids...), true
	}
	admit := true
	// The system and account filters admit the events that name this
	// workspace's system: every event but the access_method ones.
	if id := in.uuid("acs_system_id", false); id != "" {
		admit, f.WithSystem, filtered = admit && id == r.ws.AcsSystemID, true, true
	}
	if ids, present := in.uuids("acs_system_ids"); present {
		admit, f.WithSystem, filtered = admit && containsID(ids, r.ws.AcsSystemID), true, true
	}
	if id := in.uuid("connected_account_id", false); id != "" {
		admit, f.WithSystem, filtered = admit && id == r.ws.ConnectedAccountID, true, true
	}
	// Filters on resources this cloud has none of: no event matches.
	for _, field := range []string{"device_id", "access_code_id", "access_grant_id", "acs_access_group_id", "acs_entrance_id",
		"acs_user_id", "connect_webview_id", "space_id", "user_identity_id"} {
		if id := in.uuid(field, false); id != "" {
			admit, filtered = false, true
		}
	}
	for _, field := range []string{"device_ids", "access_code_ids", "access_grant_ids", "space_ids"} {
		if _, present := in.uuids(field); present {
			admit, filtered = false, true
		}
	}
	if k, ok := in.str("customer_key"); ok && k != "" {
		admit, filtered = false, true
	}
	f.Limit = DefaultEventLimit
	if n, ok := in.number("limit"); ok {
		if n != math.Trunc(n) || n < 1 || n > MaxLimit {
			in.bad("limit", "must be a whole number from 1 to %d", MaxLimit)
		} else {
			f.Limit = int(n)
		}
	}
	if n, ok := in.number("unstable_offset"); ok {
		if n != math.Trunc(n) || n < 0 || n > math.MaxInt32 {
			in.bad("unstable_offset", "must be a whole number, 0 or more")
		} else {
			f.Offset = int(n)
		}
	}
	if !filtered && !in.errs.wrong() {
		in.bad("since", "give since or between (or another filter)")
	}
	if err := in.check(); err != nil {
		return nil, err
	}
	out := []any{}
	if admit {
		list, err := a.cfg.Store.Q().ListEvents(ctx, r.ws.ID, f)
		if err != nil {
			return nil, err
		}
		for _, e := range list {
			out = append(out, e.Body)
		}
	}
	return ok("events", out), nil
}

func containsID(ids []string, id string) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

func (a *API) getEvent(ctx context.Context, r *request) (any, error) {
	id := r.in.uuid("event_id", false)
	typ, hasType := r.in.str("event_type")
	device := r.in.uuid("device_id", false)
	if id == "" && !hasType && device == "" && !r.in.errs.wrong() {
		r.in.bad("event_id", "give event_id, event_type or device_id")
	}
	if err := r.in.check(); err != nil {
		return nil, err
	}
	if device != "" {
		return nil, notFound("event") // no device here has events
	}
	var e store.Event
	var err error
	if id != "" {
		e, err = a.cfg.Store.Q().Event(ctx, r.ws.ID, id)
		if err == nil && hasType && e.Type != typ {
			err = store.ErrNotFound
		}
	} else {
		// The latest event of the type.
		var list []store.Event
		list, err = a.cfg.Store.Q().ListEvents(ctx, r.ws.ID, store.EventFilter{Types: []string{typ}, Limit: 1})
		if err == nil && len(list) == 0 {
			err = store.ErrNotFound
		}
		if err == nil {
			e = list[0]
		}
	}
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound("event")
	}
	if err != nil {
		return nil, err
	}
	return ok("event", e.Body), nil
}

// webhookOut is Seam's webhook. The secret is shown once, on create.
type webhookOut struct {
	WebhookID  string   `json:"webhook_id"`
	URL        string   `json:"url"`
	EventTypes []string `json:"event_types"`
	Secret     string   `json:"secret,omitempty"`
}

func renderWebhook(w store.Webhook) webhookOut {
	return webhookOut{WebhookID: w.ID, URL: w.URL, EventTypes: nonNilIDs(w.EventTypes)}
}

func (a *API) createWebhook(ctx context.Context, r *request) (any, error) {
	u, hasURL := r.in.str("url")
	switch {
	case !hasURL && !r.in.errs.has("url"):
		r.in.required("url")
	case hasURL && len(u) > MaxWebhookURL:
		r.in.bad("url", "must be at most %d bytes", MaxWebhookURL)
	case hasURL:
		if err := webhook.CheckURL(u, a.cfg.AllowLoopbackWebhooks); err != nil {
			r.in.bad("url", "%s", strings.TrimPrefix(err.Error(), "webhook: "))
		}
	}
	types, present := r.in.eventTypes("event_types", true)
	if !present {
		types = []string{"*"}
	}
	if err := r.in.check(); err != nil {
		return nil, err
	}
	secret, err := webhook.NewSecret()
	if err != nil {
		return nil, err
	}
	w := store.Webhook{ID: uuid.NewString(), WorkspaceID: r.ws.ID, URL: u, EventTypes: dedupe(types), Secret: secret,
		CreatedAt: a.clk.Now().UTC().Truncate(time.Millisecond)}
	err = a.cfg.Store.Update(ctx, func(tx *store.Tx) error {
		n, err := tx.CountWebhooks(ctx, r.ws.ID)
		if err != nil {
			return err
		}
		if n >= MaxWebhooks {
			return &apiError{http.StatusBadRequest, "max_webhooks_reached", fmt.Sprintf("a workspace has at most %d webhooks: delete one first", MaxWebhooks)}
		}
		return tx.CreateWebhook(ctx, w)
	})
	if err != nil {
		return nil, err
	}
	out := renderWebhook(w)
	out.Secret = w.Secret
	return ok("webhook", out), nil
}

func dedupe(s []string) []string {
	out := make([]string, 0, len(s))
	for _, v := range s {
		if !containsID(out, v) {
			out = append(out, v)
		}
	}
	return out
}

func (a *API) webhookID(r *request) string {
	// Seam's webhook ids are free-form strings; ours are UUIDs.
	return r.in.uuid("webhook_id", true)
}

func (a *API) getWebhook(ctx context.Context, r *request) (any, error) {
	id := a.webhookID(r)
	if err := r.in.check(); err != nil {
		return nil, err
	}
	w, err := a.cfg.Store.Q().Webhook(ctx, r.ws.ID, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound("webhook")
	}
	if err != nil {
		return nil, err
	}
	return ok("webhook", renderWebhook(w)), nil
}

func (a *API) listWebhooks(ctx context.Context, r *request) (any, error) {
	if err := r.in.check(); err != nil {
		return nil, err
	}
	list, err := a.cfg.Store.Q().Webhooks(ctx, r.ws.ID)
	if err != nil {
		return nil, err
	}
	out := make([]webhookOut, 0, len(list))
	for _, w := range list {
		out = append(out, renderWebhook(w))
	}
	return ok("webhooks", out), nil
}

func (a *API) updateWebhook(ctx context.Context, r *request) (any, error) {
	id := a.webhookID(r)
	types, present := r.in.eventTypes("event_types", true)
	if !present && !r.in.errs.has("event_types") {
		r.in.required("event_types")
	}
	if err := r.in.check(); err != nil {
		return nil, err
	}
	err := a.cfg.Store.Update(ctx, func(tx *store.Tx) error { return tx.UpdateWebhookTypes(ctx, r.ws.ID, id, dedupe(types)) })
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound("webhook")
	}
	if err != nil {
		return nil, err
	}
	return ok("", nil), nil
}

func (a *API) deleteWebhook(ctx context.Context, r *request) (any, error) {
	id := a.webhookID(r)
	if err := r.in.check(); err != nil {
		return nil, err
	}
	err := a.cfg.Store.Update(ctx, func(tx *store.Tx) error { return tx.DeleteWebhook(ctx, r.ws.ID, id, a.clk.Now().UTC()) })
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound("webhook")
	}
	if err != nil {
		return nil, err
	}
	return ok("", nil), nil
}

// credentialCreated records access_method.created for a new credential:
// its card access method exists from now and needs a card encoded.
func credentialCreated(ctx context.Context, tx *store.Tx, ws store.Workspace, c store.Credential) error {
	_, err := tx.RecordEvent(ctx, seam.AccessMethodEvent(uuid.NewString(), seam.EventAccessMethodCreated, ws, c, c.CreatedAt, c.CreatedAt))
	return err
}
