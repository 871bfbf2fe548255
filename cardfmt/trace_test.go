package cardfmt

import (
	"context"
	"testing"
)

func TestTrace(t *testing.T) {
	TraceVerifying(context.Background()) // no trace: nothing happens
	TraceVerifying(WithTrace(context.Background(), &Trace{}))
	n := 0
	ctx := WithTrace(context.Background(), &Trace{Verifying: func() { n++ }})
	TraceVerifying(ctx)
	if n != 1 {
		t.Fatalf("Verifying called %d times", n)
	}
}
