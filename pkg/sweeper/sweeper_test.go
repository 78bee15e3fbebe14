package sweeper_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/dispatch"
	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
	"gitlab-serverless-runner/pkg/invoke/invoketest"
	"gitlab-serverless-runner/pkg/poller"
	"gitlab-serverless-runner/pkg/runner"
	"gitlab-serverless-runner/pkg/seal"
	"gitlab-serverless-runner/pkg/store"
	"gitlab-serverless-runner/pkg/store/dynamotest"
	"gitlab-serverless-runner/pkg/sweeper"
)

func TestMain(m *testing.M) { os.Exit(dynamotest.Main(m)) }

// world is a runner whose executor invocations are lost: the poller claims
// jobs and holds their slots, and nothing ever reports them.
type world struct {
	t      *testing.T
	gl     *gitlabtest.Server
	st     *store.Store
	sealer *seal.Keyring
	runner *runner.Runner
	poller *poller.Poller
	proj   *gitlabtest.Project
	glOpts gitlab.Options
}

func newWorld(t *testing.T, concurrency int) *world {
	t.Helper()
	st := dynamotest.Store(t, store.Config{})
	sealer, _ := seal.ParseKeys("1:" + seal.GenerateKey())
	gl := gitlabtest.New(t)
	w := &world{t: t, gl: gl, st: st, sealer: sealer,
		glOpts: gitlab.Options{HTTPClient: gl.Client(), Sleep: func(ctx context.Context, _ time.Duration) error { return ctx.Err() }}}
	var err error
	w.poller, err = poller.New(poller.Deps{Runners: st, Jobs: st, Sealer: sealer, Invoker: &invoketest.Recorder{}},
		poller.Config{ExecutorFunctions: map[string]string{"provided.al2023": "executor"}, GitLab: w.glOpts})
	if err != nil {
		t.Fatal(err)
	}
	gr := gl.CreateRunner(gitlabtest.RunnerOptions{})
	w.runner = &runner.Runner{ID: runner.NewID(), Owner: "alice", GitLabURL: gl.URL(), GitLabRunnerID: gr.ID,
		Runtime: "provided.al2023", Concurrency: concurrency, RunUntagged: true, SystemID: runner.NewSystemID()}
	w.runner.SealedToken, _ = sealer.Seal(seal.RunnerToken(w.runner.ID), gr.Token)
	if err := st.CreateRunner(context.Background(), w.runner); err != nil {
		t.Fatal(err)
	}
	w.proj = gl.CreateProject("group/demo", map[string]string{"README.md": "hi\n"})
	return w
}

// lose enqueues a job with the given timeout and lets the poller take it;
// its executor invocation goes nowhere.
func (w *world) lose(timeout int) gitlabtest.Job {
	w.t.Helper()
	job := w.gl.EnqueueJob(w.proj, gitlabtest.JobSpec{Script: []string{"make"}, Timeout: timeout})
	if res, err := w.poller.Poll(context.Background(), dispatch.Poll{RunnerID: w.runner.ID}); err != nil || res.Jobs != 1 {
		w.t.Fatalf("Poll() = %+v, %v; want one job taken", res, err)
	}
	return job
}

func (w *world) sweeper(at time.Time) *sweeper.Sweeper {
	return sweeper.New(w.st, w.st, w.sealer, sweeper.Config{GitLab: w.glOpts, Now: func() time.Time { return at }})
}

func (w *world) slotFree() bool {
	s, ok, err := w.st.AcquireSlot(context.Background(), w.runner.ID, w.runner.Concurrency, time.Minute)
	if err != nil {
		w.t.Fatal(err)
	}
	if ok {
		_ = w.st.ReleaseSlot(context.Background(), s)
	}
	return ok
}

func TestSweepClosesJobsWhoseLeaseRanOut(t *testing.T) {
	w := newWorld(t, 1)
	ctx := context.Background()
	job := w.lose(600)
	if w.slotFree() {
		t.Fatal("the lost job's slot is free before any sweep")
	}

	// Before the lease ends (timeout plus the poller's margin) nothing is
	// touched: the job may still be running.
	res, err := w.sweeper(time.Now().Add(10 * time.Minute)).Sweep(ctx)
	if err != nil || res.Swept != 0 {
		t.Fatalf("Sweep() before the lease ran out = %+v, %v; want nothing swept", res, err)
	}
	if got := w.gl.Job(job.ID).State; got != "pending" && got != "running" {
		t.Fatalf("job in GitLab = %s before its lease ran out", got)
	}

	after := time.Now().Add(10*time.Minute + poller.DefaultLeaseMargin + time.Minute)
	res, err = w.sweeper(after).Sweep(ctx)
	if err != nil || res.Swept != 1 || res.Failed != 0 || len(res.Runners) != 1 || res.Runners[0] != w.runner.ID {
		t.Fatalf("Sweep() = %+v, %v; want the one job swept for runner %s", res, err, w.runner.ID)
	}
	got := w.gl.Job(job.ID)
	if got.State != "failed" || got.FailureReason != gitlab.ReasonRunnerSystemFailure || !strings.Contains(string(got.Trace), "lease") {
		t.Errorf("job in GitLab = %s (%s), trace %q; want failed (runner_system_failure) with a line about the lease", got.State, got.FailureReason, got.Trace)
	}
	rec, err := w.st.GetJob(ctx, w.runner.ID, job.ID)
	if err != nil || rec.State != runner.JobFailed || rec.FailureReason != string(gitlab.ReasonRunnerSystemFailure) || len(rec.SealedJobToken) != 0 {
		t.Errorf("job record = %+v, %v; want failed, the sealed token gone", rec, err)
	}
	if !w.slotFree() {
		t.Error("the swept job's slot is still held")
	}
	if strings.Contains(string(got.Trace), got.Token) {
		t.Error("the trace holds the job token")
	}

	// A second sweep finds nothing: the job left the index of open jobs.
	if res, err := w.sweeper(after).Sweep(ctx); err != nil || res.Swept != 0 {
		t.Errorf("second Sweep() = %+v, %v; want nothing", res, err)
	}
}

// TestSweepLeavesJobsTheFinisherClosed: a job finished while its lease
// ran is not touched, though the index is only eventually consistent.
func TestSweepLeavesJobsTheFinisherClosed(t *testing.T) {
	w := newWorld(t, 2)
	ctx := context.Background()
	closed := w.lose(600)
	lost := w.lose(600)
	rec, err := w.st.GetJob(ctx, w.runner.ID, closed.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.st.FinishJob(ctx, w.runner.ID, closed.ID, runner.JobOutcome{State: runner.JobSuccess, DispatchTokenHash: rec.DispatchTokenHash}); err != nil {
		t.Fatal(err)
	}
	res, err := w.sweeper(time.Now().Add(time.Hour)).Sweep(ctx)
	if err != nil || res.Swept != 1 {
		t.Fatalf("Sweep() = %+v, %v; want only the lost job swept", res, err)
	}
	if got, _ := w.st.GetJob(ctx, w.runner.ID, closed.ID); got.State != runner.JobSuccess {
		t.Errorf("the finished job's record became %s", got.State)
	}
	if got := w.gl.Job(lost.ID).State; got != "failed" {
		t.Errorf("lost job in GitLab = %s, want failed", got)
	}
}
