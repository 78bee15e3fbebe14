package scheduler_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"

	"gitlab-serverless-runner/pkg/dispatch"
	"gitlab-serverless-runner/pkg/invoke/invoketest"
	"gitlab-serverless-runner/pkg/runner"
	"gitlab-serverless-runner/pkg/scheduler"
	"gitlab-serverless-runner/pkg/store"
	"gitlab-serverless-runner/pkg/store/dynamotest"
)

func TestMain(m *testing.M) { os.Exit(dynamotest.Main(m)) }

func newStore(t testing.TB) *store.Store {
	t.Helper()
	return dynamotest.Store(t, store.Config{})
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

// refusing refuses the polls of the runners fail names (nil refuses none),
// as a throttled Lambda would.
func refusing(fail func(runnerID string) bool) *invoketest.Recorder {
	return &invoketest.Recorder{Fail: func(inv invoketest.Invocation) error {
		p, err := inv.Poll()
		if err == nil && fail != nil && fail(p.RunnerID) {
			return errors.New("throttled")
		}
		return nil
	}}
}

// pollsByRunner counts the invocations of each runner, refused ones
// included, and lists those that are not schedule polls of the poller.
func pollsByRunner(rec *invoketest.Recorder) (calls map[string]int, bad []string) {
	calls = map[string]int{}
	for _, c := range rec.Calls() {
		p, err := c.Poll()
		switch {
		case err != nil:
			bad = append(bad, err.Error())
		case c.Function != "poller":
			bad = append(bad, "function "+c.Function)
		case p.Reason != dispatch.PollSchedule:
			bad = append(bad, "reason "+string(p.Reason))
		}
		calls[p.RunnerID]++
	}
	return calls, bad
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
			inv := refusing(tt.fail)
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
			calls, bad := pollsByRunner(inv)
			if len(bad) > 0 {
				t.Errorf("bad invocations: %v", bad)
			}
			if got, want := len(calls), len(enabled); got != want {
				t.Errorf("runners invoked = %d, want %d", got, want)
			}
			for _, id := range enabled {
				if n := calls[id]; n != 1 {
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
	inv := &invoketest.Recorder{}
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
	if _, err := scheduler.New(failingScan{}, &invoketest.Recorder{}, scheduler.Config{}); err == nil {
		t.Error("New() without PollerFunction: error = nil, want one")
	}
}
