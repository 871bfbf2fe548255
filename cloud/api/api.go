// Package api serves the cloud's HTTP API in Seam Connect's dialect, so
// Seam's SDKs drive it unchanged: the /acs/encoders, /acs/credentials,
// /acs/systems, /access_methods, /action_attempts, /events and /webhooks
// routes, with Seam's request fields, response wrappers and error shape.
//
// Every route needs an API key (Authorization: Bearer seam_...) and sees
// only that key's workspace: an id of another workspace is answered like
// an id that does not exist (404).
//
// It starts encode and scan jobs through the Dispatcher interface
// (package jobs) and reads state from the store. It must not import hub.
package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/encoder-bridge/encoder-bridge/cloud/clock"
	"github.com/encoder-bridge/encoder-bridge/cloud/jobs"
	"github.com/encoder-bridge/encoder-bridge/cloud/secret"
	"github.com/encoder-bridge/encoder-bridge/cloud/store"
)

// Dispatcher starts jobs.
type Dispatcher interface {
	Encode(ctx context.Context, workspaceID string, req jobs.EncodeRequest) (store.ActionAttempt, error)
	Scan(ctx context.Context, workspaceID string, req jobs.ScanRequest) (store.ActionAttempt, error)
	Simulate(ctx context.Context, workspaceID, encoderID string, sim jobs.Simulation) error
	// Await waits up to within for an action attempt to leave pending
	// and returns it as it stands then.
	Await(ctx context.Context, workspaceID, attemptID string, within time.Duration) (store.ActionAttempt, error)
}

// Authenticator checks API keys.
type Authenticator interface {
	// Workspace returns the workspace of an API key. A key that is
	// unknown, malformed or revoked gives an error with an Unauthorized
	// method reporting true; any other error is a failure of the check.
	Workspace(ctx context.Context, apiKey string) (store.Workspace, error)
}

// Presence tells whether a bridge is connected.
type Presence interface {
	Online(bridgeID string) bool
}

// Config configures the API.
type Config struct {
	Store    *store.Store
	Auth     Authenticator
	Jobs     Dispatcher
	Presence Presence
	Clock    clock.Clock // nil: the real clock
	Log      *zap.Logger // nil: no logging
	// SettleWait is how long encode_credential, scan_credential and
	// scan_to_assign_credential hold their answer for the action attempt
	// to finish (see DefaultSettleWait); zero or less answers pending at
	// once, as Seam does.
	SettleWait time.Duration
	// MaxSettling bounds the answers held at once; beyond it they answer
	// pending at once. Zero or less: DefaultMaxSettling.
	MaxSettling int
	// AllowLoopbackWebhooks accepts webhook URLs on loopback addresses,
	// http included: for development and tests only (webhook.CheckURL).
	AllowLoopbackWebhooks bool
	// OnEvents, when set, is called after a commit that recorded events.
	OnEvents func()
}

// API is the HTTP handler.
type API struct {
	cfg    Config
	log    *zap.Logger
	clk    clock.Clock
	routes map[string]route

	held        atomic.Int64 // answers held now
	maxHeld     int
	quit        context.Context // done: hold nothing more
	stopHolding context.CancelFunc
}

type route struct {
	get     bool // GET with query parameters is allowed beside POST
	handler func(ctx context.Context, r *request) (any, error)
}

// request is one authenticated API call.
type request struct {
	ws  store.Workspace
	in  *input
	url string // for next_page_url
	// wait is the client's Prefer: wait, if hasWait.
	wait    time.Duration
	hasWait bool
}

// MaxBodySize bounds a request body.
const MaxBodySize = 1 << 20

// New makes the API handler.
func New(cfg Config) *API {
	a := &API{cfg: cfg, log: cfg.Log, clk: cfg.Clock}
	if a.log == nil {
		a.log = zap.NewNop()
	}
	if a.clk == nil {
		a.clk = clock.Real{}
	}
	a.maxHeld = cfg.MaxSettling
	if a.maxHeld <= 0 {
		a.maxHeld = DefaultMaxSettling
	}
	a.quit, a.stopHolding = context.WithCancel(context.Background())
	a.routes = map[string]route{
		"/acs/encoders/list":                                         {true, a.listEncoders},
		"/acs/encoders/get":                                          {true, a.getEncoder},
		"/acs/encoders/encode_credential":                            {false, a.encodeCredential},
		"/acs/encoders/scan_credential":                              {false, a.scanCredential},
		"/acs/encoders/scan_to_assign_credential":                    {false, a.scanToAssignCredential},
		"/acs/encoders/simulate/next_credential_encode_will_fail":    {false, a.simulateEncodeFail},
		"/acs/encoders/simulate/next_credential_encode_will_succeed": {false, a.simulateEncodeSucceed},
		"/acs/encoders/simulate/next_credential_scan_will_fail":      {false, a.simulateScanFail},
		"/acs/encoders/simulate/next_credential_scan_will_succeed":   {false, a.simulateScanSucceed},
		"/acs/credentials/create":                                    {false, a.createCredential},
		"/acs/credentials/get":                                       {true, a.getCredential},
		"/acs/credentials/list":                                      {true, a.listCredentials},
		"/acs/systems/list":                                          {true, a.listSystems},
		"/acs/systems/get":                                           {true, a.getSystem},
		"/access_methods/get":                                        {true, a.getAccessMethod},
		"/action_attempts/get":                                       {true, a.getActionAttempt},
		"/events/list":                                               {true, a.listEvents},
		"/events/get":                                                {true, a.getEvent},
		"/webhooks/create":                                           {false, a.createWebhook},
		"/webhooks/get":                                              {true, a.getWebhook},
		"/webhooks/list":                                             {true, a.listWebhooks},
		"/webhooks/update":                                           {false, a.updateWebhook},
		"/webhooks/delete":                                           {false, a.deleteWebhook},
	}
	return a
}

// extraMethods are the methods Seam's SDK uses on a route beyond POST and
// GET: PUT sends a JSON body, DELETE query parameters.
var extraMethods = map[string]string{
	"/webhooks/update": http.MethodPut,
	"/webhooks/delete": http.MethodDelete,
}

// Routes lists the paths the API serves.
func (a *API) Routes() []string {
	out := make([]string, 0, len(a.routes))
	for p := range a.routes {
		out = append(out, p)
	}
	return out
}

// errorBody is Seam's error shape.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Type             string                         `json:"type"`
	Message          string                         `json:"message"`
	RequestID        string                         `json:"request_id,omitempty"`
	ValidationErrors map[string]map[string][]string `json:"validation_errors,omitempty"`
}

// apiError is an error with its HTTP status and Seam error type.
type apiError struct {
	status int
	typ    string
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func notFound(resource string) error {
	return &apiError{http.StatusNotFound, resource + "_not_found", resource + " not found"}
}

func badRequest(typ, msg string) error { return &apiError{http.StatusBadRequest, typ, msg} }

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	reqID := uuid.NewString()
	w.Header().Set("seam-request-id", reqID)
	status, wsID := a.serve(w, r, reqID)
	a.log.Info("api request",
		zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Int("status", status),
		zap.String("workspace_id", wsID), zap.String("request_id", reqID), zap.Duration("duration", time.Since(start)))
}

func (a *API) serve(w http.ResponseWriter, r *http.Request, reqID string) (status int, workspaceID string) {
	rt, ok := a.routes[r.URL.Path]
	if !ok {
		return a.fail(w, reqID, &apiError{http.StatusNotFound, "not_found", "no route " + clip(r.URL.Path)}), ""
	}
	extra := extraMethods[r.URL.Path]
	switch {
	case r.Method == http.MethodPost:
	case r.Method == http.MethodGet && rt.get:
	case r.Method == extra && extra != "":
	default:
		allow := "POST"
		if rt.get {
			allow = "GET, POST"
		}
		if extra != "" {
			allow += ", " + extra
		}
		w.Header().Set("Allow", allow)
		return a.fail(w, reqID, &apiError{http.StatusMethodNotAllowed, "method_not_allowed", r.Method + " is not allowed on " + r.URL.Path + " (use " + allow + ")"}), ""
	}
	// One answer for a missing, malformed, unknown or revoked key, so a
	// caller learns nothing about which keys exist. The key is never
	// logged or echoed.
	refused := &apiError{http.StatusUnauthorized, "unauthorized", "missing, invalid or revoked API key: send Authorization: Bearer <API key>"}
	token, ok := secret.Bearer(r.Header.Get("Authorization"))
	if !ok {
		return a.fail(w, reqID, refused), ""
	}
	ws, err := a.cfg.Auth.Workspace(r.Context(), token)
	if err != nil {
		var u interface{ Unauthorized() bool }
		if !errors.As(err, &u) || !u.Unauthorized() {
			return a.fail(w, reqID, fmt.Errorf("check API key: %w", err)), ""
		}
		return a.fail(w, reqID, refused), ""
	}
	var in *input
	if r.Method == http.MethodGet || r.Method == http.MethodDelete {
		q, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			// url.Values of r.URL.Query would drop the bad pair silently.
			e := &InputError{}
			e.add("query", "malformed query string: "+clip(err.Error()))
			return a.fail(w, reqID, e), ws.ID
		}
		in = newQueryInput(q)
	} else {
		var body []byte
		var err error
		if r.Body != nil {
			body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodySize))
		}
		if err != nil {
			return a.fail(w, reqID, badRequest("invalid_input", "request body unreadable or larger than 1 MiB")), ws.ID
		}
		if in, err = newBodyInput(body); err != nil {
			return a.fail(w, reqID, err), ws.ID
		}
	}
	req := &request{ws: ws, in: in, url: requestURL(r)}
	req.wait, req.hasWait = preferWait(r.Header)
	out, err := rt.handler(r.Context(), req)
	if err != nil {
		return a.fail(w, reqID, err), ws.ID
	}
	writeJSON(w, http.StatusOK, out)
	return http.StatusOK, ws.ID
}

func requestURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + r.URL.Path
}

func (a *API) fail(w http.ResponseWriter, reqID string, err error) int {
	body := errorBody{Error: errorDetail{RequestID: reqID}}
	status := http.StatusInternalServerError
	var ae *apiError
	var ie *InputError
	var nf *jobs.NotFoundError
	switch {
	case errors.As(err, &ie):
		status = http.StatusBadRequest
		body.Error.Type, body.Error.Message = "invalid_input", ie.Error()
		body.Error.ValidationErrors = map[string]map[string][]string{}
		for f, problems := range ie.Fields {
			body.Error.ValidationErrors[f] = map[string][]string{"_errors": problems}
		}
	case errors.As(err, &nf):
		status = http.StatusNotFound
		body.Error.Type, body.Error.Message = nf.Resource+"_not_found", nf.Resource+" not found"
	case errors.Is(err, jobs.ErrNotSandbox):
		status = http.StatusBadRequest
		body.Error.Type, body.Error.Message = "workspace_not_sandbox", err.Error()
	case errors.As(err, &ae):
		status = ae.status
		body.Error.Type, body.Error.Message = ae.typ, ae.msg
	default:
		a.log.Error("api request failed", zap.String("request_id", reqID), zap.Error(err))
		body.Error.Type, body.Error.Message = "internal_server_error", "internal error; request id "+reqID
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="encoder-bridge"`)
		// Close rather than read a body nobody authenticated: net/http
		// would otherwise wait for up to 256 KiB of it to reuse the
		// connection, and a client that never sends it holds the
		// connection. A read deadline in the past ends that wait.
		w.Header().Set("Connection", "close")
		_ = http.NewResponseController(w).SetReadDeadline(time.Now())
	}
	writeJSON(w, status, body)
	return status
}

// clip shortens text from the request that goes into an error message.
func clip(s string) string {
	const max = 200
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		status = http.StatusInternalServerError
		buf.Reset()
		buf.WriteString(`{"error":{"type":"internal_server_error","message":"response not encodable"}}` + "\n")
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}
