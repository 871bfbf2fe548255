package seam

import (
	"strings"
	"testing"
	"time"

	"github.com/encoder-bridge/encoder-bridge/cloud/store"
	"github.com/encoder-bridge/encoder-bridge/protocol"
)

func TestNormalizeErrorType(t *testing.T) {
	cases := []struct {
		action   string
		in, want protocol.ErrorType
	}{
		{ActionEncodeCredential, protocol.ErrorEncodingInterrupted, protocol.ErrorEncodingInterrupted},
		{ActionEncodeCredential, "invalid_credential", protocol.ErrorUncategorized},
		{ActionScanCredential, protocol.ErrorIncompatibleCardFormat, protocol.ErrorUncategorized},
		{ActionScanCredential, protocol.ErrorBridgeDisconnected, protocol.ErrorBridgeDisconnected},
		{ActionScanToAssignCredential, protocol.ErrorEncoderNotOnline, protocol.ErrorUncategorized},
		{"OTHER", protocol.ErrorEncodingInterrupted, protocol.ErrorUncategorized},
	}
	for _, c := range cases {
		if got := NormalizeErrorType(c.action, c.in); got != c.want {
			t.Errorf("%s %s: %s, want %s", c.action, c.in, got, c.want)
		}
	}
}

func TestDifferences(t *testing.T) {
	start := time.Date(2026, 3, 1, 15, 0, 0, 0, time.UTC)
	c := store.Credential{ID: "c", CardNumber: "100001", CardFunctionType: "guest", StartsAt: start, EndsAt: start.Add(48 * time.Hour),
		EntranceIDs: []string{"A", "B"}, IssueSequence: 4, IsIssued: true, CardUID: "04AA"}
	seq := func(v uint32) *uint32 { return &v }
	card := func() *protocol.Credential {
		return &protocol.Credential{CredentialID: "c", CardNumber: "100001", CardFunctionType: "guest", StartsAt: "2026-03-01T15:00:00Z",
			EndsAt: "2026-03-03T15:00:00Z", EntranceIDs: []string{"b", "a"}, IssueSequence: seq(4)}
	}
	if d := Differences(card(), "04aa", c); len(d) != 0 {
		t.Fatalf("same card differs: %v", d)
	}
	mutations := map[string]func(p *protocol.Credential){
		"card_number":           func(p *protocol.Credential) { p.CardNumber = "1" },
		"card_function_type":    func(p *protocol.Credential) { p.CardFunctionType = "staff" },
		"starts_at":             func(p *protocol.Credential) { p.StartsAt = "2026-03-01T15:00:01Z" },
		"ends_at":               func(p *protocol.Credential) { p.EndsAt = "garbage" },
		"entrance_ids":          func(p *protocol.Credential) { p.EntranceIDs = []string{"a"} },
		"older issue":           func(p *protocol.Credential) { p.IssueSequence = seq(3) },
		"newer than":            func(p *protocol.Credential) { p.IssueSequence = seq(5) },
		"has no issue sequence": func(p *protocol.Credential) { p.IssueSequence = nil },
	}
	for want, mutate := range mutations {
		p := card()
		mutate(p)
		d := Differences(p, "04aa", c)
		if len(d) != 1 || !strings.Contains(d[0], want) {
			t.Errorf("%s: %v", want, d)
		}
	}
	if d := Differences(card(), "04BB", c); len(d) != 1 || !strings.Contains(d[0], "another card") {
		t.Errorf("other UID: %v", d)
	}
	c.IsIssued = false
	if d := Differences(card(), "04aa", c); len(d) != 1 || !strings.Contains(d[0], "not recorded as issued") {
		t.Errorf("not issued: %v", d)
	}
}
