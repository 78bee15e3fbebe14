package scheduler_test

import (
	"context"
	"fmt"
	"testing"

	"gitlab-serverless-runner/pkg/scheduler"
)

// BenchmarkFanOut is one scheduler run over N enabled runners in DynamoDB
// Local with an invoker that only counts: the cost of the scan and the
// bounded fan-out, reported in seconds per run and runners per second.
func BenchmarkFanOut(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("runners=%d", n), func(b *testing.B) {
			s := newStore(b)
			createRunners(b, s, n, func(int) bool { return false })
			inv := &countingInvoker{}
			sch, err := scheduler.New(s, inv, scheduler.Config{PollerFunction: "poller"})
			if err != nil {
				b.Fatalf("New: %v", err)
			}
			var seconds float64
			for b.Loop() {
				sum, err := sch.Run(context.Background())
				if err != nil || sum.Invoked != n {
					b.Fatalf("Run() = %+v, %v; want %d invoked", sum, err, n)
				}
				seconds += sum.Duration.Seconds()
			}
			b.ReportMetric(seconds/float64(b.N), "s/run")
			b.ReportMetric(float64(n)*float64(b.N)/seconds, "runners/s")
		})
	}
}
