package poller_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
	"gitlab-serverless-runner/pkg/invoke/invoketest"
	"gitlab-serverless-runner/pkg/runner"
)

// losingInvoker loses the first invocation (as if Lambda dropped the
// executor run and its destination record) and acknowledges every later
// one in GitLab the way a started executor does (PUT state=running).
func losingInvoker(glOpts gitlab.Options, acks *[]error) *invoketest.Recorder {
	rec := &invoketest.Recorder{}
	rec.Then = func(ctx context.Context, inv invoketest.Invocation) error {
		if len(rec.Calls()) == 1 {
			return nil // lost
		}
		ev, err := inv.Event()
		if err != nil {
			return err
		}
		c, err := gitlab.New(ev.GitLabURL, glOpts)
		if err == nil {
			_, err = c.UpdateJob(ctx, ev.Job.ID, gitlab.UpdateJobRequest{Token: ev.Job.Token, State: gitlab.StateRunning})
		}
		*acks = append(*acks, err)
		return nil
	}
	return rec
}

func TestRequeuedJobIsClaimedAgain(t *testing.T) {
	e := newEnv(t, gitlabtest.WithAckWindow(200*time.Millisecond))
	var acks []error
	inv := losingInvoker(e.glOpts, &acks)
	e.poller = e.newPoller(inv)
	// Three slots: the lost executor's (held until its lease ends), the
	// second executor's, and one for a duplicate delivery.
	r, _ := e.addRunner(3, nil)
	job := e.enqueue(gitlabtest.JobSpec{})
	ctx := context.Background()

	e.poll(r)
	if got := len(executorCalls(t, inv)); got != 1 {
		t.Fatalf("executor invocations after the first poll = %d, want 1", got)
	}
	firstEv := executorCalls(t, inv)[0].Event
	waitFor(t, "the unacknowledged job to return to the queue", func() bool { return e.gl.Job(job.ID).Requeued > 0 })

	e.poll(r)
	calls := executorCalls(t, inv)
	if len(calls) != 2 {
		t.Fatalf("executor invocations after the job was re-queued = %d, want 2", len(calls))
	}
	second := calls[1].Event
	if second.Job.ID != job.ID || second.Job.Token == firstEv.Job.Token || second.Job.Token != e.gl.Job(job.ID).Token {
		t.Errorf("second invocation: job %d with a new token %v, GitLab's current token %v; want job %d with GitLab's new token",
			second.Job.ID, second.Job.Token != firstEv.Job.Token, second.Job.Token == e.gl.Job(job.ID).Token, job.ID)
	}
	if len(acks) != 1 || acks[0] != nil {
		t.Fatalf("executor acknowledgements = %v, want one accepted", acks)
	}
	if got := e.gl.Job(job.ID).State; got != "running" {
		t.Errorf("job state in GitLab = %q, want running after the second executor accepted it", got)
	}

	rec, err := e.store.GetJob(ctx, r.ID, job.ID)
	if err != nil {
		t.Fatalf("GetJob: %v", err)
	}
	if rec.State != runner.JobRunning || rec.JobTokenHash != runner.HashJobToken(second.Job.Token) ||
		!rec.DispatchedWith(second.Dispatch.SlotToken) || rec.DispatchedWith(firstEv.Dispatch.SlotToken) ||
		rec.SlotIndex != second.Dispatch.SlotIndex {
		t.Errorf("job record = %+v; want running, with the hashes of the new job token and the new dispatch's slot token, and its slot", rec)
	}
	if s := mustJSON(rec); strings.Contains(s, second.Job.Token) || strings.Contains(s, firstEv.Job.Token) {
		t.Error("job record holds a job token in clear")
	}
	// The lost dispatch's slot was freed by the re-claim: only the new
	// dispatch holds one.
	if got, want := e.freeSlots(r), 2; got != want {
		t.Errorf("free slots after the re-claim = %d, want %d", got, want)
	}

	// The new assignment delivered again is a duplicate: not run twice.
	slot, ok, err := e.store.AcquireSlot(ctx, r.ID, r.Concurrency, time.Minute)
	if err != nil || !ok {
		t.Fatalf("AcquireSlot = %v, %v", ok, err)
	}
	client, err := gitlab.New(e.gl.URL(), e.glOpts)
	if err != nil {
		t.Fatal(err)
	}
	handed, err := e.poller.Dispatch(ctx, client, e.runnerNow(r.ID), slot, second.Job)
	if err != nil || handed {
		t.Errorf("Dispatch() of the same assignment again = %v, %v; want not handed, no error", handed, err)
	}
	if got := len(executorCalls(t, inv)); got != 2 {
		t.Errorf("executor invocations = %d, want 2", got)
	}
	e.gl.AssertNoViolations(t)
}

func TestConcurrentReclaimsRunOnce(t *testing.T) {
	e := newEnv(t)
	r, _ := e.addRunner(3, nil)
	e.enqueue(gitlabtest.JobSpec{})
	e.poll(r)
	first := executorCalls(t, e.inv)
	if len(first) != 1 {
		t.Fatalf("executor invocations = %d, want 1", len(first))
	}
	// The same job offered again as a new assignment (a new job token),
	// reaching two polls at once.
	requeued := *first[0].Event.Job
	requeued.Token = "glcbt-64_requeued0000000000000000"
	ctx := context.Background()
	client, err := gitlab.New(e.gl.URL(), e.glOpts)
	if err != nil {
		t.Fatal(err)
	}
	rn := e.runnerNow(r.ID)
	var slots []runner.Slot
	for range 2 {
		slot, ok, err := e.store.AcquireSlot(ctx, r.ID, r.Concurrency, time.Minute)
		if err != nil || !ok {
			t.Fatalf("AcquireSlot = %v, %v", ok, err)
		}
		slots = append(slots, slot)
	}
	var wg sync.WaitGroup
	var handed atomic.Int32
	for _, slot := range slots {
		wg.Go(func() {
			job := requeued
			ok, err := e.poller.Dispatch(ctx, client, rn, slot, &job)
			if err != nil {
				t.Errorf("Dispatch() error = %v", err)
			}
			if ok {
				handed.Add(1)
			}
		})
	}
	wg.Wait()
	if got := handed.Load(); got != 1 {
		t.Errorf("handed over by two concurrent re-claims = %d, want 1", got)
	}
	calls := executorCalls(t, e.inv)
	if len(calls) != 2 || calls[1].Event.Job.Token != requeued.Token {
		t.Fatalf("executor invocations = %d, want 2, the second with the new job token", len(calls))
	}
	if got, want := e.freeSlots(r), 2; got != want {
		t.Errorf("free slots = %d, want %d (the winning dispatch holds one; the loser's and the first dispatch's, whose job GitLab re-queued, are released)", got, want)
	}
}
