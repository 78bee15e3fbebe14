package finisher_test

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/dispatch"
	"gitlab-serverless-runner/pkg/finisher"
	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
	"gitlab-serverless-runner/pkg/invoke"
	"gitlab-serverless-runner/pkg/invoke/invoketest"
	"gitlab-serverless-runner/pkg/runner"
)

// forgedRecord is a destination record anyone allowed to invoke the
// finisher could send: an invocation of an executor for d, which crashed
// (the finisher would fail the job in GitLab) or, when reported, says the
// job succeeded (the finisher would record it).
func forgedRecord(t *testing.T, gitlabURL string, d dispatch.Dispatch, reported bool) invoke.Record {
	t.Helper()
	ev, err := json.Marshal(dispatch.Event{GitLabURL: gitlabURL, Job: &gitlab.Job{ID: d.JobID, Token: "glcbt-forged"}, Dispatch: d})
	if err != nil {
		t.Fatal(err)
	}
	rec := invoke.Record{Version: "1.0", Timestamp: time.Now(), RequestPayload: ev,
		RequestContext: invoke.RequestContext{RequestID: "forged", FunctionARN: "arn:aws:lambda:us-east-1:1:function:executor",
			Condition: invoke.ConditionRetriesExhausted},
		ResponseContext: invoke.ResponseContext{StatusCode: 200, FunctionError: "Unhandled"},
		ResponsePayload: json.RawMessage(`{"errorMessage":"Runtime exited with error: signal: killed","errorType":"Runtime.ExitError"}`)}
	if reported {
		rec.RequestContext.Condition = invoke.ConditionSuccess
		rec.ResponseContext.FunctionError = ""
		rec.ResponsePayload = fmt.Appendf(nil, `{"job_id":%d,"state":"success","duration_ms":1,"reported":true}`, d.JobID)
	}
	return rec
}

// TestFinisherIgnoresForgedRecords sends records that do not match the
// store while one job of the runner has finished and another is running:
// none may change a job record or a slot, or reach GitLab. The running
// job's own record then still closes it.
func TestFinisherIgnoresForgedRecords(t *testing.T) {
	events := make(chan dispatch.Event, 1)
	release := make(chan struct{})
	var w *world
	w = newWorld(t, func(ctx context.Context, p []byte) ([]byte, error) {
		ev, c := w.accept(ctx, p)
		if ev.Job.JobInfo.Name == "running" {
			events <- ev
			<-release
		}
		return succeed(ctx, c, ev, 10)
	}, 0)
	ctx := context.Background()
	// A freed slot would poll the runner again: forged records must not.
	polls := &invoketest.Recorder{}
	w.finisher = finisher.New(w.store, finisher.Config{DefaultMemoryMB: 3008, GitLab: w.glOpts, PollerFunction: "poller", Invoker: polls})

	finished := w.run() // a job run to its end
	p := w.gl.CreateProject("group/other", map[string]string{"README.md": "hi\n"})
	job := w.gl.EnqueueJob(p, gitlabtest.JobSpec{Name: "running", Script: []string{"sleep 1000"}})
	if _, err := w.poller.Poll(ctx, dispatch.Poll{RunnerID: w.runner.ID}); err != nil {
		t.Fatalf("Poll: %v", err)
	}
	var ev dispatch.Event
	select {
	case ev = <-events:
	case <-time.After(time.Minute):
		t.Fatal("the running job never reached its executor")
	}
	real := ev.Dispatch
	if real.JobID != job.ID || real.SlotToken == "" {
		t.Fatalf("dispatch = %+v, want job %d with a slot token", real, job.ID)
	}

	records := func() []*runner.Job {
		var out []*runner.Job
		for _, id := range []int64{finished.ID, job.ID} {
			j, err := w.store.GetJob(ctx, w.runner.ID, id)
			if err != nil {
				t.Fatalf("GetJob(%d): %v", id, err)
			}
			out = append(out, j)
		}
		return out
	}
	before := records()
	if before[0].State != runner.JobSuccess || before[1].State != runner.JobRunning {
		t.Fatalf("job states = %s, %s; want success, running", before[0].State, before[1].State)
	}

	forge := func(edit func(*dispatch.Dispatch)) dispatch.Dispatch {
		d := real
		d.SlotToken = "0123456789abcdef0123456789abcdef"
		edit(&d)
		return d
	}
	tests := []struct {
		name      string
		d         dispatch.Dispatch
		reported  bool
		duplicate bool
	}{
		{"unknown job", forge(func(d *dispatch.Dispatch) { d.JobID = 987654 }), false, false},
		{"unknown runner", forge(func(d *dispatch.Dispatch) { d.RunnerID = runner.NewID() }), false, false},
		{"running job, wrong slot token, crashed", forge(func(*dispatch.Dispatch) {}), false, false},
		{"running job, wrong slot token, reported success", forge(func(*dispatch.Dispatch) {}), true, false},
		{"running job, no slot token", forge(func(d *dispatch.Dispatch) { d.SlotToken = "" }), false, false},
		{"running job, right token of another slot index", forge(func(d *dispatch.Dispatch) { d.SlotToken, d.SlotIndex = real.SlotToken, real.SlotIndex+1 }), false, false},
		{"finished job, wrong slot token", forge(func(d *dispatch.Dispatch) { d.JobID = finished.ID }), false, false},
		{"finished job, the slot token that holds the slot now", forge(func(d *dispatch.Dispatch) { d.JobID, d.SlotToken = finished.ID, real.SlotToken }), false, false},
	}
	// The running job's poll found the runner's one slot held: a demand
	// waits for the slot, which only the job's own record may free.
	pollsBefore := len(polls.Calls())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			requests := len(w.gl.Requests())
			out, err := w.finisher.Finish(ctx, forgedRecord(t, w.gl.URL(), tt.d, tt.reported))
			if err != nil || out.Ignored == "" || out.FailedInGitLab || out.Duplicate != tt.duplicate {
				t.Errorf("Finish() = %+v, %v; want ignored (duplicate %v), nothing sent to GitLab", out, err, tt.duplicate)
			}
			if got := w.gl.Requests()[requests:]; len(got) != 0 {
				t.Errorf("GitLab got %d requests, want none: %+v", len(got), got)
			}
			if got := records(); !reflect.DeepEqual(got, before) {
				t.Errorf("job records = %+v, %+v; want unchanged %+v, %+v", got[0], got[1], before[0], before[1])
			}
			if _, err := w.store.GetJob(ctx, tt.d.RunnerID, tt.d.JobID); tt.d.JobID != finished.ID && tt.d.JobID != job.ID && runner.ErrorCode(err) != runner.ENOTFOUND {
				t.Errorf("GetJob(forged job) error = %v, want ENOTFOUND", err)
			}
			if w.slotFree() {
				t.Error("the running job's slot was freed")
			}
			if got := len(polls.Calls()); got != pollsBefore {
				t.Errorf("poller invocations = %d, want %d: a forged record started a poll", got, pollsBefore)
			}
			if got := w.gl.Job(job.ID); got.State != "running" {
				t.Errorf("running job in GitLab = %s, want running", got.State)
			}
		})
	}

	close(release)
	w.local.Wait()
	if got := w.gl.Job(job.ID); got.State != "success" {
		t.Errorf("job in GitLab after its own record = %s, want success", got.State)
	}
	rec, err := w.store.GetJob(ctx, w.runner.ID, job.ID)
	if err != nil || rec.State != runner.JobSuccess {
		t.Errorf("job record after its own record = %+v, %v; want success", rec, err)
	}
	if !w.slotFree() {
		t.Error("slot still held after the job's own record")
	}
	if got := len(polls.Calls()); got != pollsBefore+1 {
		t.Errorf("poller invocations after the job's own record = %d, want %d: its freed slot polls for the waiting demand", got, pollsBefore+1)
	}
	w.gl.AssertNoViolations(t)
}
