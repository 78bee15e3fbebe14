package main_test

import (
	"context"
	"regexp"
	"strconv"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/lambdatest"
)

var initReport = regexp.MustCompile(`INIT REPORT\(durationMs: ([0-9.]+)\)`)

// BenchmarkExecutorNewEnvironment measures what one tenant id per job costs:
// every job starts the executor in a new execution environment. Each
// iteration invokes the real executor bootstrap under a tenant id never
// seen, with an event it refuses at once (no job to report), so the time is
// the environment's start, the executor's init (reported by the emulator
// as INIT REPORT, as Lambda reports Init Duration) and one trivial
// invocation. Compare BenchmarkHarnessInvoke in pkg/lambdatest: the same
// for a bootstrap that does nothing.
func BenchmarkExecutorNewEnvironment(b *testing.B) {
	h := lambdatest.NewHarness(b, lambdatest.HarnessOptions{
		Bootstrap: lambdatest.Build(b, "./functions/executor"), Name: "executor",
		TenantIsolation: true, Timeout: 30 * time.Second,
		Env: map[string]string{"AWS_REGION": "eu-west-1"},
	})
	ctx := context.Background()
	n := 0
	var initMS float64
	for b.Loop() {
		n++
		inv, err := h.Invoke(ctx, "job-"+strconv.Itoa(n), []byte(`{}`))
		if err != nil {
			b.Fatalf("Invoke: %v", err)
		}
		if m := initReport.FindStringSubmatch(inv.Environment.Logs()); m != nil {
			ms, _ := strconv.ParseFloat(m[1], 64)
			initMS += ms
		}
	}
	b.ReportMetric(initMS/float64(n), "init-ms")
}
