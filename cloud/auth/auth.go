// Package auth is who may talk to the cloud: it creates workspaces, API
// keys and bridge tokens, and checks a presented key or token against the
// stored hash. Plain keys and tokens exist only in the return value of
// the call that made them; they are never stored or logged.
//
// It must not import api, hub or jobs.
package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"

	"github.com/encoder-bridge/encoder-bridge/cloud/clock"
	"github.com/encoder-bridge/encoder-bridge/cloud/secret"
	"github.com/encoder-bridge/encoder-bridge/cloud/store"
)

// ErrUnauthorized is a key or token that is missing, malformed, unknown or
// revoked. Callers do not learn which. Any other error of Workspace or
// Bridge is the cloud's own failure (the database), not the caller's.
var ErrUnauthorized error = unauthorized{}

type unauthorized struct{}

func (unauthorized) Error() string { return "unauthorized" }

// Unauthorized lets packages that do not import this one (hub, api) tell
// a refused secret from a failure: they test for this method.
func (unauthorized) Unauthorized() bool { return true }

// Auth creates and checks credentials of the cloud itself.
type Auth struct {
	st  *store.Store
	clk clock.Clock
}

// New makes an Auth.
func New(st *store.Store, clk clock.Clock) *Auth {
	if clk == nil {
		clk = clock.Real{}
	}
	return &Auth{st: st, clk: clk}
}

// ErrEmptyName refuses a bridge without a name.
var ErrEmptyName = errors.New("bridge name is empty")

// Workspace returns the workspace of an API key.
func (a *Auth) Workspace(ctx context.Context, apiKey string) (store.Workspace, error) {
	id, err := secret.APIKey.Parse(apiKey)
	if err != nil {
		return store.Workspace{}, ErrUnauthorized
	}
	k, err := a.st.Q().APIKey(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		// Hash anyway, so an unknown id costs what a known one does.
		secret.Matches(apiKey, make([]byte, 32))
		return store.Workspace{}, ErrUnauthorized
	}
	if err != nil {
		return store.Workspace{}, err
	}
	if !secret.Matches(apiKey, k.Hash) || k.RevokedAt != nil {
		return store.Workspace{}, ErrUnauthorized
	}
	return a.st.Q().Workspace(ctx, k.WorkspaceID)
}

// Bridge returns the bridge of a bridge token.
func (a *Auth) Bridge(ctx context.Context, token string) (store.Bridge, error) {
	id, err := secret.BridgeToken.Parse(token)
	if err != nil {
		return store.Bridge{}, ErrUnauthorized
	}
	b, err := a.st.Q().BridgeByToken(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		secret.Matches(token, make([]byte, 32))
		return store.Bridge{}, ErrUnauthorized
	}
	if err != nil {
		return store.Bridge{}, err
	}
	if !secret.Matches(token, b.TokenHash) || b.RevokedAt != nil {
		return store.Bridge{}, ErrUnauthorized
	}
	return b, nil
}

// WorkspaceOptions are optional settings of a new workspace.
type WorkspaceOptions struct {
	// Sandbox allows the simulate routes.
	Sandbox bool
}

// CreateWorkspace makes a workspace with its access control system and
// connected account.
func (a *Auth) CreateWorkspace(ctx context.Context, name string, opt WorkspaceOptions) (store.Workspace, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		return store.Workspace{}, errors.New("workspace name is empty")
	}
	w := store.Workspace{
		ID:                 uuid.NewString(),
		Name:               name,
		AcsSystemID:        uuid.NewString(),
		ConnectedAccountID: uuid.NewString(),
		IsSandbox:          opt.Sandbox,
		CreatedAt:          a.clk.Now().UTC(),
	}
	return w, a.st.Update(ctx, func(tx *store.Tx) error { return tx.CreateWorkspace(ctx, w) })
}

// CreateAPIKey makes an API key for a workspace and returns it in plain:
// the only time it is available.
func (a *Auth) CreateAPIKey(ctx context.Context, workspaceID string) (string, error) {
	id, plain, hash := secret.APIKey.New()
	err := a.st.Update(ctx, func(tx *store.Tx) error {
		if _, err := tx.Workspace(ctx, workspaceID); err != nil {
			return fmt.Errorf("workspace %s: %w", workspaceID, err)
		}
		return tx.CreateAPIKey(ctx, store.APIKey{ID: id, WorkspaceID: workspaceID, Hash: hash, CreatedAt: a.clk.Now().UTC()})
	})
	if err != nil {
		return "", err
	}
	return plain, nil
}

// CreateBridge registers a bridge in a workspace and returns it with its
// token in plain: the only time the token is available.
func (a *Auth) CreateBridge(ctx context.Context, workspaceID, name string) (store.Bridge, string, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		return store.Bridge{}, "", ErrEmptyName
	}
	id, plain, hash := secret.BridgeToken.New()
	b := store.Bridge{ID: uuid.NewString(), WorkspaceID: workspaceID, Name: name, TokenID: id, TokenHash: hash, CreatedAt: a.clk.Now().UTC()}
	err := a.st.Update(ctx, func(tx *store.Tx) error {
		if _, err := tx.Workspace(ctx, workspaceID); err != nil {
			return fmt.Errorf("workspace %s: %w", workspaceID, err)
		}
		return tx.CreateBridge(ctx, b)
	})
	if err != nil {
		return store.Bridge{}, "", err
	}
	return b, plain, nil
}

// CreateBridges registers one bridge per name in a workspace, in one
// transaction (a fleet of thousands in a second rather than one commit
// each), and returns them with their tokens in plain, in names' order.
func (a *Auth) CreateBridges(ctx context.Context, workspaceID string, names []string) ([]store.Bridge, []string, error) {
	now := a.clk.Now().UTC()
	bridges := make([]store.Bridge, len(names))
	tokens := make([]string, len(names))
	for i, name := range names {
		name = strings.TrimSpace(name)
		if name == "" {
			return nil, nil, fmt.Errorf("bridge %d of %d: %w", i+1, len(names), ErrEmptyName)
		}
		id, plain, hash := secret.BridgeToken.New()
		bridges[i] = store.Bridge{ID: uuid.NewString(), WorkspaceID: workspaceID, Name: name, TokenID: id, TokenHash: hash, CreatedAt: now}
		tokens[i] = plain
	}
	err := a.st.Update(ctx, func(tx *store.Tx) error {
		if _, err := tx.Workspace(ctx, workspaceID); err != nil {
			return fmt.Errorf("workspace %s: %w", workspaceID, err)
		}
		for _, b := range bridges {
			if err := tx.CreateBridge(ctx, b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return bridges, tokens, nil
}

// RevokeBridge revokes a bridge's token: its next connection is refused.
func (a *Auth) RevokeBridge(ctx context.Context, bridgeID string) error {
	return a.st.Update(ctx, func(tx *store.Tx) error { return tx.RevokeBridge(ctx, bridgeID, a.clk.Now().UTC()) })
}

// RevokeAPIKey revokes an API key given in plain or by its public id.
func (a *Auth) RevokeAPIKey(ctx context.Context, keyOrID string) error {
	id := keyOrID
	if parsed, err := secret.APIKey.Parse(keyOrID); err == nil {
		id = parsed
	}
	return a.st.Update(ctx, func(tx *store.Tx) error { return tx.RevokeAPIKey(ctx, id, a.clk.Now().UTC()) })
}
