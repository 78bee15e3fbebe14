package lambdatest_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/lambdatest"
)

// BenchmarkHarnessInvoke measures one invocation of testdata/jobs in a new
// environment (a tenant id never seen, as one tenant id per job gives) and
// in a warm one (the same tenant id again), including the freeze after it.
func BenchmarkHarnessInvoke(b *testing.B) {
	h := lambdatest.NewHarness(b, lambdatest.HarnessOptions{
		Bootstrap: lambdatest.Build(b, "./pkg/lambdatest/testdata/jobs"), TenantIsolation: true, Timeout: 30 * time.Second})
	ctx := context.Background()
	invoke := func(b *testing.B, tenant string) {
		inv, err := h.Invoke(ctx, tenant, []byte(`{}`))
		if err != nil || inv.Error != nil {
			b.Fatalf("Invoke: %v %+v", err, inv)
		}
	}
	b.Run("cold", func(b *testing.B) {
		n := 0
		for b.Loop() {
			n++
			invoke(b, "cold-"+strconv.Itoa(n))
		}
	})
	b.Run("warm", func(b *testing.B) {
		invoke(b, "warm")
		for b.Loop() {
			invoke(b, "warm")
		}
	})
}
