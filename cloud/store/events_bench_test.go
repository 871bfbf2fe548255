package store

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkDueBacklog reads the due deliveries with 5000 events queued
// behind each of 4 webhooks (receivers down): what every instance does
// each second and after each commit with events.
func BenchmarkDueBacklog(b *testing.B) {
	s, err := Open(context.Background(), b.TempDir()+"/c.db")
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	err = s.Update(ctx, func(tx *Tx) error {
		if err := tx.CreateWorkspace(ctx, Workspace{ID: "w1", Name: "w", AcsSystemID: "s", ConnectedAccountID: "c", CreatedAt: t0}); err != nil {
			return err
		}
		for h := 0; h < 4; h++ {
			if err := tx.CreateWebhook(ctx, Webhook{ID: fmt.Sprint("h", h), WorkspaceID: "w1", URL: "https://x/", EventTypes: []string{"*"}, Secret: "whsec_AAAA", CreatedAt: t0}); err != nil {
				return err
			}
		}
		for i := 0; i < 5000; i++ {
			if _, err := tx.RecordEvent(ctx, event("w1", fmt.Sprint("e", i), "acs_encoder.added", t0)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d, err := s.Q().DueDeliveries(ctx, t0.Add(time.Hour), 256)
		if err != nil || len(d) != 4 {
			b.Fatal(err, len(d))
		}
	}
}
