package store

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/encoder-bridge/encoder-bridge/internal/pgtest"
)

// The store's two commonest operations on each backend: creating a
// credential (a transaction taking a card number and an issue sequence,
// then an insert) and reading one back. docs/benchmarks.md has results.
func BenchmarkStore(b *testing.B) {
	for _, be := range []struct {
		name  string
		fresh func(b *testing.B) string
	}{
		{"sqlite", func(b *testing.B) string { return filepath.Join(b.TempDir(), "c.db") }},
		{"postgres", func(b *testing.B) string { return pgtest.DSN(b) }},
	} {
		b.Run(be.name, func(b *testing.B) {
			ctx := context.Background()
			s, err := Open(ctx, be.fresh(b))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			w := Workspace{ID: "w", Name: "w", AcsSystemID: "sys", ConnectedAccountID: "ca", CreatedAt: t0}
			if err := s.Update(ctx, func(tx *Tx) error { return tx.CreateWorkspace(ctx, w) }); err != nil {
				b.Fatal(err)
			}
			n := 0
			b.Run("create_credential", func(b *testing.B) {
				for b.Loop() {
					n++
					err := s.Update(ctx, func(tx *Tx) error {
						num, err := tx.NextCardNumber(ctx, w.ID)
						if err != nil {
							return err
						}
						seq, err := tx.NextIssueSequence(ctx, w.ID)
						if err != nil {
							return err
						}
						return tx.CreateCredential(ctx, Credential{ID: fmt.Sprint("c", n), WorkspaceID: w.ID, AccessMethodID: fmt.Sprint("am", n),
							CardNumber: strconv.FormatInt(num, 10), CardFunctionType: "guest", StartsAt: t0, EndsAt: t0.Add(time.Hour),
							EntranceIDs: []string{"e1"}, IssueSequence: seq, CreatedAt: t0})
					})
					if err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("get_credential", func(b *testing.B) {
				for b.Loop() {
					if _, err := s.Q().Credential(ctx, w.ID, "c1"); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
