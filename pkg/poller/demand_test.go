package poller_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/dispatch"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
	"gitlab-serverless-runner/pkg/invoke/invoketest"
	"gitlab-serverless-runner/pkg/poller"
	"gitlab-serverless-runner/pkg/runner"
)

// takeDemand takes the runner's poll demand as a finisher does, and
// reports whether there was one.
func (e *env) takeDemand(r *runner.Runner) bool {
	e.t.Helper()
	ok, err := e.store.TakePollDemand(context.Background(), r.ID)
	if err != nil {
		e.t.Fatalf("TakePollDemand: %v", err)
	}
	return ok
}

// TestPollDemand: a poll that finds every slot held, or that stops while
// GitLab still hands out jobs, leaves the runner's demand for the next
// freed slot; a poll that GitLab answered "no job" leaves none; a poll
// that got a job goes on asking while slots are free.
func TestPollDemand(t *testing.T) {
	tests := []struct {
		name        string
		concurrency int
		jobs        int
		window      time.Duration
		// slow makes each executor invocation take longer than the window.
		slow       bool
		want       poller.Result
		wantDemand bool
	}{
		{"every slot taken", 2, 3, 0, false, poller.Result{Jobs: 2, Stop: poller.StopNoSlot}, true},
		{"GitLab has no more", 4, 3, 0, false, poller.Result{Jobs: 3, Stop: poller.StopNoJob}, false},
		{"window over while jobs come", 4, 3, time.Second, true, poller.Result{Jobs: 1, Stop: poller.StopWindow}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			inv := &invoketest.Recorder{}
			if tt.slow {
				inv.Then = func(context.Context, invoketest.Invocation) error {
					time.Sleep(2 * tt.window)
					return nil
				}
			}
			p, err := poller.New(poller.Deps{Runners: e.store, Jobs: e.store, Sealer: e.sealer, Invoker: inv},
				poller.Config{ExecutorFunctions: map[string]string{"provided.al2023": "executor-provided"}, GitLab: e.glOpts, Window: tt.window})
			if err != nil {
				t.Fatal(err)
			}
			r, _ := e.addRunner(tt.concurrency, nil)
			for range tt.jobs {
				e.enqueue(gitlabtest.JobSpec{})
			}
			got, err := p.Poll(context.Background(), dispatch.Poll{RunnerID: r.ID, Reason: dispatch.PollWebhook})
			if err != nil || got != tt.want {
				t.Errorf("Poll() = %+v, %v; want %+v", got, err, tt.want)
			}
			if got := e.takeDemand(r); got != tt.wantDemand {
				t.Errorf("poll demand recorded = %v, want %v", got, tt.wantDemand)
			}
			e.gl.AssertNoViolations(t)
		})
	}
}

// racingJobs is the job store with a finisher squeezed in at the worst
// moment: right after a poll found every slot held, before it records the
// demand, the finisher frees the runner's slot and takes the demand.
type racingJobs struct {
	runner.JobStore
	finisher func()
	once     sync.Once
}

func (j *racingJobs) AcquireSlot(ctx context.Context, runnerID string, concurrency int, lease time.Duration) (runner.Slot, bool, error) {
	slot, ok, err := j.JobStore.AcquireSlot(ctx, runnerID, concurrency, lease)
	if err == nil && !ok {
		j.once.Do(j.finisher)
	}
	return slot, ok, err
}

// TestNoLostWakeup: a slot freed between a poll's "every slot is held"
// and its record of the demand is not lost. The finisher that freed it
// found no demand and started no poll, so the poll itself takes it: it
// looks for a slot once more after recording the demand.
func TestNoLostWakeup(t *testing.T) {
	e := newEnv(t)
	r, _ := e.addRunner(1, nil)
	ctx := context.Background()
	held, ok, err := e.store.AcquireSlot(ctx, r.ID, 1, time.Hour)
	if err != nil || !ok {
		t.Fatalf("AcquireSlot = %v, %v; want the runner's one slot", ok, err)
	}
	job := e.enqueue(gitlabtest.JobSpec{})

	finisherSawDemand, finisherRan := false, false
	jobs := &racingJobs{JobStore: e.store, finisher: func() {
		finisherRan = true
		if err := e.store.ReleaseSlot(ctx, held); err != nil {
			t.Errorf("ReleaseSlot: %v", err)
		}
		finisherSawDemand = e.takeDemand(r)
	}}
	p, err := poller.New(poller.Deps{Runners: e.store, Jobs: jobs, Sealer: e.sealer, Invoker: e.inv},
		poller.Config{ExecutorFunctions: map[string]string{"provided.al2023": "executor-provided"}, GitLab: e.glOpts})
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.Poll(ctx, dispatch.Poll{RunnerID: r.ID, Reason: dispatch.PollWebhook})
	if !finisherRan || finisherSawDemand {
		t.Fatalf("the finisher ran: %v, saw a demand: %v; want it to run before the demand was recorded", finisherRan, finisherSawDemand)
	}
	if err != nil || got.Jobs != 1 {
		t.Errorf("Poll() = %+v, %v; want the job taken in the slot freed meanwhile", got, err)
	}
	if calls := executorCalls(t, e.inv); len(calls) != 1 || calls[0].Event.Job.ID != job.ID {
		t.Errorf("executor invocations = %d, want 1 for job %d", len(calls), job.ID)
	}
	e.gl.AssertNoViolations(t)
}
