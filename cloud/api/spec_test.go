package api_test

import (
	"testing"

	"github.com/encoder-bridge/encoder-bridge/cloud/api"
	"github.com/encoder-bridge/encoder-bridge/cloud/cloudtest"
)

// Every route served is one Seam describes, so the response checks of
// the route tests (cloud/api_test.go, cloud/events_test.go) have a schema
// to check against.
func TestRoutesAreSeams(t *testing.T) {
	oa := cloudtest.LoadOpenAPI(t)
	routes := api.New(api.Config{}).Routes()
	if len(routes) < 20 {
		t.Fatalf("only %d routes", len(routes))
	}
	for _, p := range routes {
		if _, err := oa.ResponseSchema(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}
