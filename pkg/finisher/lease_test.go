package finisher_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/dispatch"
	"gitlab-serverless-runner/pkg/finisher"
	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
	"gitlab-serverless-runner/pkg/invoke/invoketest"
	"gitlab-serverless-runner/pkg/poller"
	"gitlab-serverless-runner/pkg/runner"
	"gitlab-serverless-runner/pkg/store"
	"gitlab-serverless-runner/pkg/store/dynamotest"
)

// TestFinisherClosesJobWhoseSlotWasTaken delivers a job's own record after
// its slot's lease ran out and another poll took the slot for another job
// (the record waited in Lambda's queue past the job's timeout and the lease
// margin). The record still closes its job; the other job's slot stays
// with its holder.
func TestFinisherClosesJobWhoseSlotWasTaken(t *testing.T) {
	tests := []struct {
		name       string
		crash      bool
		wantState  runner.JobState
		wantReason gitlab.FailureReason
		wantGitLab string
		wantLine   string
	}{
		{"executor crashed", true, runner.JobFailed, gitlab.ReasonRunnerSystemFailure, "failed",
			"The executor function crashed before reporting the job's result (Runtime.ExitError)."},
		{"executor reported success", false, runner.JobSuccess, "", "success", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			events := make(chan dispatch.Event, 1)
			release := make(chan struct{})
			var w *world
			w = newWorld(t, func(ctx context.Context, p []byte) ([]byte, error) {
				ev, c := w.accept(ctx, p)
				events <- ev
				<-release
				if tt.crash {
					panic("runtime error: invalid memory address or nil pointer dereference")
				}
				return succeed(ctx, c, ev, 10)
			}, 0)
			ctx := context.Background()
			p := w.gl.CreateProject("group/demo", map[string]string{"README.md": "hi\n"})
			first := w.gl.EnqueueJob(p, gitlabtest.JobSpec{Name: "first", Script: []string{"make"}})
			if res, err := w.poller.Poll(ctx, dispatch.Poll{RunnerID: w.runner.ID}); err != nil || res.Jobs != 1 {
				t.Fatalf("Poll() = %+v, %v; want one job", res, err)
			}
			var ev dispatch.Event
			select {
			case ev = <-events:
			case <-time.After(time.Minute):
				t.Fatal("the first job never reached its executor")
			}

			// Another poll, two hours on (past the job's one-hour timeout
			// plus the lease margin), finds the slot's lease over and takes
			// it for a second job.
			later := func() time.Time { return time.Now().Add(2 * time.Hour) }
			st2 := dynamotest.Store(t, store.Config{Tables: w.store.TableNames(), Now: later})
			// The invocation is only recorded: the second job stays running in
			// GitLab and its slot stays held.
			held := &invoketest.Recorder{}
			p2, err := poller.New(poller.Deps{Runners: st2, Jobs: st2, Sealer: w.sealer, Invoker: held},
				poller.Config{ExecutorFunctions: map[string]string{"provided.al2023": "executor"}, GitLab: w.glOpts, Now: later})
			if err != nil {
				t.Fatalf("poller.New: %v", err)
			}
			second := w.gl.EnqueueJob(p, gitlabtest.JobSpec{Name: "second", Script: []string{"make"}})
			if res, err := p2.Poll(ctx, dispatch.Poll{RunnerID: w.runner.ID}); err != nil || res.Jobs != 1 {
				t.Fatalf("later Poll() = %+v, %v; want the second job taken in the expired slot", res, err)
			}
			heldEv, err := held.Accepted()[0].Event()
			if err != nil {
				t.Fatal(err)
			}
			other := heldEv.Dispatch
			if other.JobID != second.ID || other.SlotIndex != ev.Dispatch.SlotIndex || other.SlotToken == ev.Dispatch.SlotToken {
				t.Fatalf("second dispatch = job %d in slot %d; want job %d in the first job's slot %d, with a new token",
					other.JobID, other.SlotIndex, second.ID, ev.Dispatch.SlotIndex)
			}

			close(release) // the first job's record arrives now
			w.local.Wait()

			w.mu.Lock()
			outcomes := append([]finisher.Outcome(nil), w.outcomes...)
			w.mu.Unlock()
			if len(outcomes) != 1 || outcomes[0].Ignored != "" || outcomes[0].State != tt.wantState || outcomes[0].FailedInGitLab != tt.crash {
				t.Errorf("finisher outcomes = %+v; want the first job closed as %s (failed in GitLab: %v)", outcomes, tt.wantState, tt.crash)
			}
			job := w.gl.Job(first.ID)
			if job.State != tt.wantGitLab || job.FailureReason != tt.wantReason {
				t.Errorf("first job in GitLab = %s (%s), want %s (%s)", job.State, job.FailureReason, tt.wantGitLab, tt.wantReason)
			}
			if !strings.HasPrefix(string(job.Trace), started) || !strings.Contains(string(job.Trace), tt.wantLine) {
				t.Errorf("first job's trace = %q, want %q then a line saying %q", job.Trace, started, tt.wantLine)
			}
			rec, err := w.store.GetJob(ctx, w.runner.ID, first.ID)
			if err != nil || rec.State != tt.wantState || rec.FailureReason != string(tt.wantReason) || rec.FinishedAt == nil {
				t.Errorf("first job record = %+v, %v; want %s (%q), finished", rec, err, tt.wantState, tt.wantReason)
			}

			// The other holder keeps its slot: no one else can take it,
			// and its token still holds it.
			if w.slotFree() {
				t.Error("the second job's slot was freed by the first job's record")
			}
			slot := runner.Slot{RunnerID: other.RunnerID, Index: other.SlotIndex, Token: other.SlotToken}
			if err := st2.RenewSlot(ctx, &slot, other.JobID, later().Add(time.Hour)); err != nil {
				t.Errorf("RenewSlot(second job's token) = %v, want the slot still held by it", err)
			}
			if rec, err := w.store.GetJob(ctx, w.runner.ID, second.ID); err != nil || rec.State != runner.JobRunning {
				t.Errorf("second job record = %+v, %v; want running", rec, err)
			}
			// Two-phase commit: the second job stays pending until its
			// executor (held here) starts it; nothing may have ended it.
			if got := w.gl.Job(second.ID); got.State != "pending" {
				t.Errorf("second job in GitLab = %s, want pending (taken, not started)", got.State)
			}
			outsiderViolations(t, w.gl)
		})
	}
}

// A job record without a dispatch token hash holds no proof a record could
// match: every record for it is ignored, even one carrying the token of the
// slot it holds (the poller always claims with the hash).
func TestFinisherIgnoresRecordsForJobsWithoutDispatchHash(t *testing.T) {
	w := newWorld(t, func(context.Context, []byte) ([]byte, error) { return nil, nil }, 0)
	ctx := context.Background()
	slot, ok, err := w.store.AcquireSlot(ctx, w.runner.ID, 1, time.Hour)
	if err != nil || !ok {
		t.Fatalf("AcquireSlot() = %v, %v; want a slot", ok, err)
	}
	const jobID = 4242
	if err := w.store.ClaimJob(ctx, &runner.Job{RunnerID: w.runner.ID, JobID: jobID, LeaseExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatalf("ClaimJob: %v", err)
	}
	d := dispatch.Dispatch{RunnerID: w.runner.ID, JobID: jobID, GitLabURL: w.gl.URL(), SlotIndex: slot.Index, Function: "executor", StartedAt: time.Now()}
	for _, token := range []string{"0123456789abcdef0123456789abcdef", slot.Token} {
		d.SlotToken = token
		out, err := w.finisher.Finish(ctx, forgedRecord(t, w.gl.URL(), d, true))
		if err != nil || out.Ignored == "" {
			t.Errorf("Finish() = %+v, %v; want the record ignored", out, err)
		}
		if rec, err := w.store.GetJob(ctx, w.runner.ID, jobID); err != nil || rec.State != runner.JobRunning {
			t.Errorf("job record = %+v, %v; want it still running", rec, err)
		}
	}
	if w.slotFree() {
		t.Error("slot freed by an ignored record")
	}
	if got := w.gl.Requests(); len(got) != 0 {
		t.Errorf("GitLab got %d requests, want none: %+v", len(got), got)
	}
}
