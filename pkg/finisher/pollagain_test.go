package finisher_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"gitlab-serverless-runner/pkg/dispatch"
	"gitlab-serverless-runner/pkg/finisher"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
	"gitlab-serverless-runner/pkg/invoke"
	"gitlab-serverless-runner/pkg/invoke/invoketest"
)

// TestFreedSlotPollsAgain: three jobs wait for a runner of concurrency 1.
// One poll takes the first and finds the slot held for the others; from
// then on finished jobs' freed slots poll the runner at once, so every
// job runs without another scheduled poll.
func TestFreedSlotPollsAgain(t *testing.T) {
	var w *world
	w = newWorld(t, func(ctx context.Context, p []byte) ([]byte, error) {
		ev, c := w.accept(ctx, p)
		return succeed(ctx, c, ev, 10)
	}, 0)
	var mu sync.Mutex
	var reasons []dispatch.PollReason
	w.local.Register("poller", func(ctx context.Context, payload []byte) ([]byte, error) {
		ev, err := dispatch.DecodePoll(payload)
		if err != nil {
			return nil, err
		}
		mu.Lock()
		reasons = append(reasons, ev.Reason)
		mu.Unlock()
		_, err = w.poller.Poll(ctx, ev)
		return nil, err
	}, invoke.FunctionConfig{})
	w.finisher = finisher.New(w.store, finisher.Config{GitLab: w.glOpts, PollerFunction: "poller", Invoker: w.local})

	p := w.gl.CreateProject("group/demo", map[string]string{"README.md": "hi\n"})
	var jobs []gitlabtest.Job
	for range 3 {
		jobs = append(jobs, w.gl.EnqueueJob(p, gitlabtest.JobSpec{Script: []string{"make"}}))
	}
	if err := w.local.Invoke(context.Background(), "poller", dispatch.Poll{RunnerID: w.runner.ID, Reason: dispatch.PollWebhook}.Marshal(), invoke.Options{}); err != nil {
		t.Fatal(err)
	}
	w.local.Wait() // every invocation, and every one it caused

	for _, j := range jobs {
		if got := w.gl.Job(j.ID); got.State != "success" {
			t.Errorf("job %d = %s, want success", j.ID, got.State)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	// How many polls the freed slots start depends on timing (a poll
	// still asking when a slot frees takes the next job itself), but
	// every poll after the webhook's comes from a freed slot.
	freed := 0
	for _, r := range reasons[1:] {
		if r == dispatch.PollSlotFreed {
			freed++
		}
	}
	if len(reasons) < 2 || reasons[0] != dispatch.PollWebhook || freed != len(reasons)-1 {
		t.Errorf("polls = %v, want the webhook's, then only polls started by freed slots", reasons)
	}
	if !w.slotFree() {
		t.Error("slot still held after every job finished")
	}
	w.gl.AssertNoViolations(t)
}

// TestFreedSlotPollsOnlyOnDemand: a poll that filled the runner's last
// slot leaves a demand (GitLab may hold more jobs), which the slot's
// finisher takes to poll once; a slot freed with no demand left starts
// nothing; a poll that cannot be started puts the demand back for the
// next freed slot.
func TestFreedSlotPollsOnlyOnDemand(t *testing.T) {
	var w *world
	// The executor starts once the poll is over, so that the poll finds
	// the job's slot held.
	var pollDone chan struct{}
	w = newWorld(t, func(ctx context.Context, p []byte) ([]byte, error) {
		<-pollDone
		ev, c := w.accept(ctx, p)
		return succeed(ctx, c, ev, 10)
	}, 0)
	rec := &invoketest.Recorder{}
	w.finisher = finisher.New(w.store, finisher.Config{GitLab: w.glOpts, PollerFunction: "poller", Invoker: rec})
	ctx := context.Background()
	p := w.gl.CreateProject("group/demo", map[string]string{"README.md": "hi\n"})
	run := func() {
		t.Helper()
		job := w.gl.EnqueueJob(p, gitlabtest.JobSpec{Script: []string{"make"}})
		pollDone = make(chan struct{})
		if _, err := w.poller.Poll(ctx, dispatch.Poll{RunnerID: w.runner.ID}); err != nil {
			t.Fatalf("Poll: %v", err)
		}
		close(pollDone)
		w.local.Wait()
		if got := w.gl.Job(job.ID); got.State != "success" {
			t.Fatalf("job = %s, want success", got.State)
		}
	}
	wantPolls := func(n int) {
		t.Helper()
		calls := rec.Calls()
		if len(calls) != n {
			t.Fatalf("poller invocations = %d, want %d", len(calls), n)
		}
		for _, c := range calls {
			if p, err := c.Poll(); err != nil || c.Function != "poller" || p.RunnerID != w.runner.ID || p.Reason != dispatch.PollSlotFreed {
				t.Errorf("invocation of %s with %+v, %v; want the poller, runner %s, reason slot_freed", c.Function, p, err, w.runner.ID)
			}
		}
	}

	run()
	wantPolls(1)
	if ok, _ := w.store.TakePollDemand(ctx, w.runner.ID); ok {
		t.Error("the finisher polled but left the demand")
	}

	// The same record again frees the slot again (a redelivery after a
	// failed release): no demand, no poll.
	w.mu.Lock()
	first := w.records[0]
	w.mu.Unlock()
	if out, err := w.finisher.Finish(ctx, first); err != nil || !out.Duplicate {
		t.Fatalf("Finish(again) = %+v, %v; want a duplicate", out, err)
	}
	wantPolls(1)

	rec.Fail = func(invoketest.Invocation) error { return errors.New("TooManyRequestsException") }
	run()
	wantPolls(2)
	if ok, _ := w.store.TakePollDemand(ctx, w.runner.ID); !ok {
		t.Error("the demand of a poll that could not be started is lost")
	}
	w.gl.AssertNoViolations(t)
}
