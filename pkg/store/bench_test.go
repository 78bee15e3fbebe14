package store_test

import (
	"context"
	"fmt"
	"testing"

	"gitlab-serverless-runner/pkg/runner"
	"gitlab-serverless-runner/pkg/store"
)

// BenchmarkListRunners100 lists the runners page of an owner with 100
// runners, through the owner index.
func BenchmarkListRunners100(b *testing.B) {
	ctx := context.Background()
	s := newStore(b, store.Config{})
	for i := range 100 {
		mustCreate(b, s, newRunner("alice", fmt.Sprint(i)))
	}
	for b.Loop() {
		list, err := s.ListRunnersByOwner(ctx, "alice")
		if err != nil {
			b.Fatalf("ListRunnersByOwner: %v", err)
		}
		if len(list) != 100 {
			b.Fatalf("listed %d runners, want 100", len(list))
		}
	}
}

// BenchmarkScanRunners1000 is the scheduler's scan of 1,000 runners, by
// number of parallel segments.
func BenchmarkScanRunners1000(b *testing.B) {
	ctx := context.Background()
	for _, segments := range []int{1, 4} {
		b.Run(fmt.Sprintf("segments=%d", segments), func(b *testing.B) {
			s := newStore(b, store.Config{ScanSegments: segments})
			createMany(b, s, 1000, func(int) bool { return false })
			for b.Loop() {
				n := 0
				err := s.ScanEnabledRunners(ctx, func(*runner.Runner) error { n++; return nil })
				if err != nil {
					b.Fatalf("ScanEnabledRunners: %v", err)
				}
				if n != 1000 {
					b.Fatalf("scanned %d runners, want 1000", n)
				}
			}
		})
	}
}
