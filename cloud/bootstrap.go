package cloud

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/encoder-bridge/encoder-bridge/cloud/store"
	"github.com/encoder-bridge/encoder-bridge/internal/durable"
	"github.com/encoder-bridge/encoder-bridge/protocol"
)

// Bootstrap is everything a script needs to wire a bridge and a client to
// a fresh cloud: a workspace, an API key and a bridge with its token. It is
// written as JSON with mode 0600, because it holds both secrets.
type Bootstrap struct {
	// Endpoint is the API's base URL, WebsocketURL the bridges' URL. Both
	// are empty when the listen address is not known yet.
	Endpoint           string `json:"endpoint"`
	WebsocketURL       string `json:"websocket_url"`
	WorkspaceID        string `json:"workspace_id"`
	WorkspaceName      string `json:"workspace_name"`
	Sandbox            bool   `json:"sandbox"`
	AcsSystemID        string `json:"acs_system_id"`
	ConnectedAccountID string `json:"connected_account_id"`
	APIKey             string `json:"api_key"`
	BridgeID           string `json:"bridge_id"`
	BridgeName         string `json:"bridge_name"`
	BridgeToken        string `json:"bridge_token"`
}

// BootstrapOptions name what Bootstrap makes.
type BootstrapOptions struct {
	WorkspaceName string // default "Demo hotel"
	BridgeName    string // default "Front desk"
	Sandbox       bool
	// Endpoint is the API base URL to record, e.g. http://127.0.0.1:8080.
	Endpoint string
}

// Bootstrap creates a workspace, an API key and a bridge token.
func (s *Server) Bootstrap(ctx context.Context, opt BootstrapOptions) (Bootstrap, error) {
	if opt.WorkspaceName == "" {
		opt.WorkspaceName = "Demo hotel"
	}
	if opt.BridgeName == "" {
		opt.BridgeName = "Front desk"
	}
	ws, err := s.CreateWorkspace(ctx, opt.WorkspaceName, WorkspaceOptions{Sandbox: opt.Sandbox})
	if err != nil {
		return Bootstrap{}, err
	}
	key, err := s.CreateAPIKey(ctx, ws.ID)
	if err != nil {
		return Bootstrap{}, err
	}
	bridgeID, token, err := s.CreateBridgeToken(ctx, ws.ID, opt.BridgeName)
	if err != nil {
		return Bootstrap{}, err
	}
	b := Bootstrap{
		WorkspaceID: ws.ID, WorkspaceName: ws.Name, Sandbox: ws.IsSandbox,
		AcsSystemID: ws.AcsSystemID, ConnectedAccountID: ws.ConnectedAccountID,
		APIKey: key, BridgeID: bridgeID, BridgeName: opt.BridgeName, BridgeToken: token,
	}
	b.SetEndpoint(opt.Endpoint)
	return b, nil
}

// SetEndpoint records the API base URL and derives the websocket URL.
func (b *Bootstrap) SetEndpoint(endpoint string) {
	endpoint = strings.TrimRight(endpoint, "/")
	b.Endpoint, b.WebsocketURL = endpoint, ""
	switch {
	case strings.HasPrefix(endpoint, "https://"):
		b.WebsocketURL = "wss://" + strings.TrimPrefix(endpoint, "https://") + protocol.Path
	case strings.HasPrefix(endpoint, "http://"):
		b.WebsocketURL = "ws://" + strings.TrimPrefix(endpoint, "http://") + protocol.Path
	}
}

// Check tells whether the bootstrap's workspace and bridge still exist in
// the server's database (a file kept from another database does not).
func (s *Server) Check(ctx context.Context, b Bootstrap) error {
	if _, err := s.store.Q().Workspace(ctx, b.WorkspaceID); err != nil {
		return fmt.Errorf("workspace %s: %w", b.WorkspaceID, err)
	}
	br, err := s.store.Q().Bridge(ctx, b.BridgeID)
	if err != nil {
		return fmt.Errorf("bridge %s: %w", b.BridgeID, err)
	}
	if br.WorkspaceID != b.WorkspaceID {
		return fmt.Errorf("bridge %s: %w", b.BridgeID, store.ErrNotFound)
	}
	return nil
}

// ReadBootstrap reads a bootstrap file.
func ReadBootstrap(path string) (Bootstrap, error) {
	var b Bootstrap
	data, err := os.ReadFile(path)
	if err != nil {
		return b, err
	}
	if err := json.Unmarshal(data, &b); err != nil {
		return b, fmt.Errorf("%s: %w", path, err)
	}
	if b.WorkspaceID == "" || b.APIKey == "" || b.BridgeID == "" || b.BridgeToken == "" {
		return b, fmt.Errorf("%s: incomplete bootstrap file", path)
	}
	return b, nil
}

// WriteBootstrap writes b to path atomically, owner-only (mode 0600; a
// protected ACL on Windows).
func WriteBootstrap(path string, b Bootstrap) error {
	data, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	return durable.WriteSecret(path, data)
}
