package deptest

import (
	"slices"
	"testing"
)

func TestViolations(t *testing.T) {
	// cardfmt depends on nothing of ours but itself: banning it from the
	// cardfmt/classic directory must be reported, banning cloud must not.
	bad, err := Violations("../../cardfmt/classic", "cardfmt", "cloud")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(bad, Module+"/cardfmt") || slices.ContainsFunc(bad, func(s string) bool { return s == Module+"/cloud" }) {
		t.Fatalf("violations %v", bad)
	}
	// A prefix of another package's name is not that package.
	if bad, _ := Violations("../../cardfmt/classic", "card"); len(bad) != 0 {
		t.Fatalf("prefix matched: %v", bad)
	}
	if _, err := Violations("/nonexistent"); err == nil {
		t.Fatal("go list in a missing directory succeeded")
	}
}
