package scheduler_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"

	"gitlab-serverless-runner/pkg/invoke"
	"gitlab-serverless-runner/pkg/poller"
	"gitlab-serverless-runner/pkg/runner"
	"gitlab-serverless-runner/pkg/scheduler"
	"gitlab-serverless-runner/pkg/store"
	"gitlab-serverless-runner/pkg/store/dynamotest"
)

func TestMain(m *testing.M) { os.Exit(dynamotest.Main(m)) }

func newStore(t testing.TB) *store.Store {
	t.Helper()
	srv := dynamotest.Start(t)
	s, err := store.New(srv.Client(), store.Config{Tables: store.Prefixed(dynamotest.Prefix(t))})
	if err != nil {
		t.Fatalf("store.New: %v", err)
	}
	if err := s.CreateTables(context.Background()); err != nil {
		t.Fatalf("CreateTables: %v", err)
	}
	return s
}

// createRunners creates n runners, 8 at a time; paused(i) pauses the i-th.
// It returns the ids of the enabled ones.
func createRunners(t testing.TB, s *store.Store, n int, paused func(int) bool) []string {
	t.Helper()
	var mu sync.Mutex
	var ids []string
	var wg sync.WaitGroup
	work := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range work {
				r := &runner.Runner{
					Owner: fmt.Sprintf("owner-%d", i%100), GitLabURL: "https://gitlab.example.com",
					SealedToken: []byte{1}, Description: fmt.Sprint(i), Runtime: "provided.al2023",
					Concurrency: 1, Paused: paused(i),
				}
				if err := s.CreateRunner(context.Background(), r); err != nil {
					t.Errorf("CreateRunner: %v", err)
					continue
				}
				if !r.Paused {
					mu.Lock()
					ids = append(ids, r.ID)
					mu.Unlock()
				}
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return ids
}

// countingInvoker records every invocation; fail decides which fail.
type countingInvoker struct {
	mu    sync.Mutex
	calls map[string]int // runner id → invocations
	fail  func(runnerID string) bool
	bad   []string // problems seen
}

func (c *countingInvoker) Invoke(_ context.Context, function string, payload []byte, _ invoke.Options) error {
	ev, err := poller.DecodeEvent(payload)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.calls == nil {
		c.calls = map[string]int{}
	}
	switch {
	case err != nil:
		c.bad = append(c.bad, err.Error())
	case function != "poller":
		c.bad = append(c.bad, "function "+function)
	case ev.Reason != poller.ReasonSchedule:
		c.bad = append(c.bad, "reason "+ev.Reason)
	}
	c.calls[ev.RunnerID]++
	if c.fail != nil && c.fail(ev.RunnerID) {
		return errors.New("throttled")
	}
	return nil
}

func TestRunFansOutToEnabledRunners(t *testing.T) {
	s := newStore(t)
	enabled := createRunners(t, s, 40, func(i int) bool { return i%4 == 0 })
	failing := map[string]bool{enabled[0]: true, enabled[7]: true}
	tests := []struct {
		name        string
		parallelism int
		fail        func(string) bool
		want        scheduler.Summary
	}{
		{"all succeed", 0, nil, scheduler.Summary{Runners: 30, Invoked: 30}},
		{"two invocations fail, the rest go on", 3, func(id string) bool { return failing[id] }, scheduler.Summary{Runners: 30, Invoked: 28, Failed: 2}},
		{"one at a time", 1, nil, scheduler.Summary{Runners: 30, Invoked: 30}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv := &countingInvoker{fail: tt.fail}
			sch, err := scheduler.New(s, inv, scheduler.Config{PollerFunction: "poller", Parallelism: tt.parallelism})
			if err != nil {
				t.Fatalf("New() error = %v", err)
			}
			got, err := sch.Run(context.Background())
			if err != nil {
				t.Fatalf("Run() error = %v", err)
			}
			got.Duration = 0
			if got != tt.want {
				t.Errorf("Run() = %+v, want %+v", got, tt.want)
			}
			if len(inv.bad) > 0 {
				t.Errorf("bad invocations: %v", inv.bad)
			}
			if got, want := len(inv.calls), len(enabled); got != want {
				t.Errorf("runners invoked = %d, want %d", got, want)
			}
			for _, id := range enabled {
				if n := inv.calls[id]; n != 1 {
					t.Errorf("runner %s invoked %d times, want 1", id, n)
				}
			}
		})
	}
}

// failingScan is a Runners whose scan fails after some runners.
type failingScan struct{ after int }

func (f failingScan) ScanEnabledRunners(_ context.Context, fn func(*runner.Runner) error) error {
	for i := range f.after {
		if err := fn(&runner.Runner{ID: fmt.Sprint(i)}); err != nil {
			return err
		}
	}
	return errors.New("ProvisionedThroughputExceeded")
}

func TestRunReportsScanFailure(t *testing.T) {
	inv := &countingInvoker{}
	sch, err := scheduler.New(failingScan{after: 3}, inv, scheduler.Config{PollerFunction: "poller"})
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	got, err := sch.Run(context.Background())
	if err == nil {
		t.Fatal("Run() error = nil, want the scan's error")
	}
	if got.Invoked != 3 || got.Runners != 3 {
		t.Errorf("Run() = %+v, want the 3 runners seen before the failure invoked", got)
	}
}

func TestNewRequiresPollerFunction(t *testing.T) {
	if _, err := scheduler.New(failingScan{}, &countingInvoker{}, scheduler.Config{}); err == nil {
		t.Error("New() without PollerFunction: error = nil, want one")
	}
}
