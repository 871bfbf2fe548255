package cloud_test

import (
	"errors"
	"testing"

	"github.com/encoder-bridge/encoder-bridge/cloud/auth"
	"github.com/encoder-bridge/encoder-bridge/cloud/cloudtest"
	"github.com/encoder-bridge/encoder-bridge/cloud/store"
	"github.com/encoder-bridge/encoder-bridge/protocol"
)

// TestCreateBridgeTokens registers bridges in bulk: every token connects
// as its own bridge, and a bad name registers none of them.
func TestCreateBridgeTokens(t *testing.T) {
	env := cloudtest.New(t, cloudtest.Options{})
	ctx := t.Context()
	names := []string{"Desk 1", "Desk 2", "Desk 3"}
	got, err := env.Server.CreateBridgeTokens(ctx, env.Workspace.ID, names)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(names) {
		t.Fatalf("%d tokens for %d names", len(got), len(names))
	}
	seen := map[string]bool{env.BridgeID: true}
	for i, bt := range got {
		if seen[bt.BridgeID] || bt.Token == "" {
			t.Fatalf("bridge %d: id %q repeated or token empty", i, bt.BridgeID)
		}
		seen[bt.BridgeID] = true
		b, _, err := env.Dial(bt.BridgeID, bt.Token)
		if err != nil {
			t.Fatalf("bridge %d: %v", i, err)
		}
		b.Hello([]protocol.Encoder{cloudtest.Encoder("e1")}, nil)
		if !env.Server.Online(bt.BridgeID) {
			t.Fatalf("bridge %d not online after its welcome", i)
		}
	}

	for _, tc := range []struct {
		name  string
		names []string
		ws    string
	}{
		{"empty name", []string{"Desk 4", "  "}, env.Workspace.ID},
		{"unknown workspace", []string{"Desk 5"}, "no-such-workspace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := bridgeCount(t, env)
			if before != 1+len(names) {
				t.Fatalf("%d bridges, want %d", before, 1+len(names))
			}
			if _, err := env.Server.CreateBridgeTokens(ctx, tc.ws, tc.names); err == nil {
				t.Fatal("no error")
			} else if tc.name == "empty name" && !errors.Is(err, auth.ErrEmptyName) {
				t.Fatalf("error %v, want auth.ErrEmptyName", err)
			}
			if after := bridgeCount(t, env); after != before {
				t.Fatalf("%d bridges after a refused batch, %d before", after, before)
			}
		})
	}
}

func bridgeCount(t *testing.T, env *cloudtest.Env) int {
	t.Helper()
	st, err := store.Open(t.Context(), env.DB)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	bs, err := st.Q().Bridges(t.Context(), env.Workspace.ID)
	if err != nil {
		t.Fatal(err)
	}
	return len(bs)
}
