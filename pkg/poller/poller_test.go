package poller_test

import (
	"context"
	"encoding/pem"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/dispatch"
	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
	"gitlab-serverless-runner/pkg/invoke/invoketest"
	"gitlab-serverless-runner/pkg/poller"
	"gitlab-serverless-runner/pkg/runner"
	"gitlab-serverless-runner/pkg/seal"
)

func TestPollHandsJobToExecutor(t *testing.T) {
	e := newEnv(t)
	r, gr := e.addRunner(2, nil)
	job := e.enqueue(gitlabtest.JobSpec{Cache: []gitlab.Cache{
		{Key: "deps-$CI_COMMIT_REF_NAME", Paths: []string{"vendor"}, FallbackKeys: []string{"deps-main"}},
		{Key: "pull-only", Policy: gitlab.CachePolicyPull, Paths: []string{"x"}},
	}})

	got := e.poll(r)
	if want := (poller.Result{Jobs: 1, Stop: poller.StopNoJob}); got != want {
		t.Errorf("Poll() = %+v, want %+v", got, want)
	}
	calls := executorCalls(t, e.inv)
	if len(calls) != 1 {
		t.Fatalf("executor invocations = %d, want 1", len(calls))
	}
	c := calls[0]
	// A tenant of the dispatch's own, unguessable: 128 random bits.
	if c.Function != "executor-provided" || !regexp.MustCompile(`^job-[0-9a-f]{32}$`).MatchString(c.Opts.TenantID) {
		t.Errorf("invoked %q with tenant %q, want executor-provided with a tenant id of its own", c.Function, c.Opts.TenantID)
	}
	ev := c.Event
	if ev.GitLabURL != e.gl.URL() || ev.Job == nil || ev.Job.ID != job.ID || ev.Job.Token == "" || !ev.TwoPhase {
		t.Errorf("event = gitlab_url %q job %+v two_phase %v, want the fake's URL, job %d with its token, two-phase", ev.GitLabURL, ev.Job != nil, ev.TwoPhase, job.ID)
	}
	if ev.Runner.ID != r.GitLabRunnerID || ev.Runner.Description != "lambda runner" || ev.Runner.ShortToken != gitlab.ShortToken(gr.Token) {
		t.Errorf("event runner = %+v, want GitLab id %d, the description and the short token", ev.Runner, r.GitLabRunnerID)
	}
	if strings.Contains(mustJSON(ev), gr.Token) {
		t.Error("executor event holds the runner token")
	}
	d := ev.Dispatch
	if d.RunnerID != r.ID || d.JobID != job.ID || d.SlotToken == "" || d.Function != "executor-provided" || d.TimeoutSec != 3600 {
		t.Errorf("dispatch = %+v, want runner %s, job %d, a slot token, the function and the timeout", d, r.ID, job.ID)
	}
	prefix := "https://cache.example/runner/" + r.ID + "/project/" + mustJSON(e.project.ID) + "/"
	// GitLab suffixes keys with -non_protected on unprotected refs.
	wantCache := map[string][2]string{ // key → GET, PUT (object suffix, "" for none)
		"deps-$CI_COMMIT_REF_NAME-non_protected": {"deps-main-non_protected", "deps-main-non_protected"},
		"deps-main-non_protected":                {"deps-main-non_protected", ""},
		"pull-only-non_protected":                {"pull-only-non_protected", ""},
	}
	if len(ev.Cache) != len(wantCache) {
		t.Errorf("cache keys = %v, want %d keys", ev.Cache, len(wantCache))
	}
	for key, want := range wantCache {
		u := ev.Cache[key]
		for i, got := range []string{u.GetURL, u.PutURL} {
			switch {
			case want[i] == "" && got != "":
				t.Errorf("cache %q URL %d = %q, want none", key, i, got)
			case want[i] != "" && !strings.HasPrefix(got, prefix+want[i]+"?"):
				t.Errorf("cache %q URL %d = %q, want under %s%s", key, i, got, prefix, want[i])
			}
		}
	}

	rec, err := e.store.GetJob(context.Background(), r.ID, job.ID)
	if err != nil {
		t.Fatalf("GetJob: %v", err)
	}
	if rec.State != runner.JobRunning || rec.ProjectPath != "group/demo" || rec.WebURL != e.gl.URL()+"/group/demo/-/jobs/"+mustJSON(job.ID) {
		t.Errorf("job record = %+v, want running in group/demo with its web URL", rec)
	}
	if !rec.DispatchedWith(d.SlotToken) || rec.SlotIndex != d.SlotIndex || strings.Contains(mustJSON(rec), d.SlotToken) {
		t.Errorf("job record proof = %q, slot %d; want the hash of the dispatch's slot token (not the token), slot %d", rec.DispatchTokenHash, rec.SlotIndex, d.SlotIndex)
	}
	if got, want := e.freeSlots(r), 1; got != want {
		t.Errorf("free slots = %d, want %d (one held by the job)", got, want)
	}
	after := e.runnerNow(r.ID)
	if after.Health.LastContactAt == nil || !after.Health.Healthy() {
		t.Errorf("health = %+v, want a recorded contact", after.Health)
	}
	if after.LastUpdate == "" {
		t.Error("last_update not saved after GitLab's 204")
	}
	if reqs := e.gl.RequestsTo(gitlabtest.EndpointJobRequest); len(reqs) != 2 {
		t.Errorf("job requests = %d, want 2 (one job, then 204)", len(reqs))
	}
	now, _ := e.gl.Runner(r.GitLabRunnerID)
	if len(now.Managers) != 1 || now.Managers[0].SystemID != r.SystemID || !now.Managers[0].Info.Features.TwoPhaseJobCommit || now.Managers[0].Info.Features.Image {
		t.Errorf("runner managers = %+v, want one with the runner's system id, two-phase commit and no image support", now.Managers)
	}
	e.gl.AssertNoViolations(t)
}

func TestTwoPhaseCommit(t *testing.T) {
	t.Run("accepted when the executor says running", func(t *testing.T) {
		e := newEnv(t)
		r, _ := e.addRunner(1, nil)
		job := e.enqueue(gitlabtest.JobSpec{})
		e.poll(r)
		if got := e.gl.Job(job.ID).State; got != "pending" {
			t.Errorf("job state after the poll = %q, want pending until the executor accepts it", got)
		}
		ev := executorCalls(t, e.inv)[0].Event
		c, err := gitlab.New(ev.GitLabURL, e.glOpts)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.UpdateJob(context.Background(), job.ID, gitlab.UpdateJobRequest{Token: ev.Job.Token, State: gitlab.StateRunning}); err != nil {
			t.Fatalf("executor's PUT running: %v", err)
		}
		if got := e.gl.Job(job.ID).State; got != "running" {
			t.Errorf("job state after PUT running = %q, want running", got)
		}
		e.gl.AssertNoViolations(t)
	})
	t.Run("re-queued when the executor never starts", func(t *testing.T) {
		e := newEnv(t, gitlabtest.WithAckWindow(50*time.Millisecond))
		r, _ := e.addRunner(1, nil)
		job := e.enqueue(gitlabtest.JobSpec{})
		e.poll(r)
		if len(executorCalls(t, e.inv)) != 1 {
			t.Fatalf("executor invocations = %d, want 1", len(executorCalls(t, e.inv)))
		}
		waitFor(t, "the job to return to the queue", func() bool { return e.gl.Job(job.ID).Requeued > 0 })
		if got := e.gl.Job(job.ID); got.State != "pending" || got.Payload != nil {
			t.Errorf("job = state %q, picked %v; want pending and back in the queue", got.State, got.Payload != nil)
		}
		e.gl.AssertNoViolations(t)
	})
}

func TestDuplicateDispatchRunsOnce(t *testing.T) {
	e := newEnv(t)
	r, _ := e.addRunner(2, nil)
	e.enqueue(gitlabtest.JobSpec{})
	e.poll(r)
	first := executorCalls(t, e.inv)
	if len(first) != 1 {
		t.Fatalf("executor invocations = %d, want 1", len(first))
	}
	// The same job handed to the poller's dispatch path again.
	ctx := context.Background()
	slot, ok, err := e.store.AcquireSlot(ctx, r.ID, r.Concurrency, time.Minute)
	if err != nil || !ok {
		t.Fatalf("AcquireSlot = %v, %v", ok, err)
	}
	client, err := gitlab.New(e.gl.URL(), e.glOpts)
	if err != nil {
		t.Fatal(err)
	}
	handed, err := e.poller.Dispatch(ctx, client, e.runnerNow(r.ID), slot, first[0].Event.Job)
	if err != nil || handed {
		t.Errorf("second Dispatch() = %v, %v; want not handed, no error", handed, err)
	}
	if got := len(executorCalls(t, e.inv)); got != 1 {
		t.Errorf("executor invocations = %d, want 1", got)
	}
	if got, want := e.freeSlots(r), 1; got != want {
		t.Errorf("free slots = %d, want %d (the duplicate's slot released)", got, want)
	}
}

func TestOverlappingPollsRespectConcurrency(t *testing.T) {
	e := newEnv(t)
	r, _ := e.addRunner(2, nil)
	var jobs []gitlabtest.Job
	for range 5 {
		jobs = append(jobs, e.enqueue(gitlabtest.JobSpec{}))
	}
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			if _, err := e.poller.Poll(context.Background(), dispatch.Poll{RunnerID: r.ID, Reason: dispatch.PollWebhook}); err != nil {
				t.Errorf("Poll() error = %v", err)
			}
		})
	}
	wg.Wait()
	if got, want := len(executorCalls(t, e.inv)), 2; got != want {
		t.Errorf("executor invocations = %d, want %d", got, want)
	}
	picked := 0
	for _, j := range jobs {
		if e.gl.Job(j.ID).Payload != nil {
			picked++
		}
	}
	if picked != 2 {
		t.Errorf("jobs taken from GitLab = %d, want 2 (3 left in the queue)", picked)
	}
	if got := e.freeSlots(r); got != 0 {
		t.Errorf("free slots = %d, want 0", got)
	}
	e.gl.AssertNoViolations(t)
}

func TestInvokeFailureFailsJob(t *testing.T) {
	tests := []struct {
		name    string
		runtime string
		fail    error
		wantMsg string
	}{
		{"executor refused", "provided.al2023", errThrottled, "could not start the executor function"},
		{"runtime not offered", "ruby3.4", nil, `The runtime "ruby3.4" is not offered`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			inv := &invoketest.Recorder{Fail: func(invoketest.Invocation) error { return tt.fail }}
			e.poller = e.newPoller(inv)
			r, _ := e.addRunner(1, func(r *runner.Runner) { r.Runtime = tt.runtime })
			job := e.enqueue(gitlabtest.JobSpec{})
			got := e.poll(r)
			if want := (poller.Result{Failed: 1, Stop: poller.StopNoJob}); got != want {
				t.Errorf("Poll() = %+v, want %+v", got, want)
			}
			final := e.gl.Job(job.ID)
			if final.State != "failed" || final.FailureReason != gitlab.ReasonRunnerSystemFailure {
				t.Errorf("job in GitLab = %s (%s), want failed (runner_system_failure)", final.State, final.FailureReason)
			}
			if !hasLine(final.Trace, tt.wantMsg) {
				t.Errorf("trace = %q, want a line saying %q", final.Trace, tt.wantMsg)
			}
			rec, err := e.store.GetJob(context.Background(), r.ID, job.ID)
			if err != nil || rec.State != runner.JobFailed || rec.FailureReason != string(gitlab.ReasonRunnerSystemFailure) {
				t.Errorf("job record = %+v, %v; want failed with runner_system_failure", rec, err)
			}
			if got := e.freeSlots(r); got != 1 {
				t.Errorf("free slots = %d, want 1", got)
			}
			e.gl.AssertNoViolations(t)
		})
	}
}

func TestPollGitLabFailures(t *testing.T) {
	tests := []struct {
		name     string
		setup    func(e *env, gr gitlabtest.Runner)
		wantStop string
		wantErr  string
	}{
		{"503 after retries", func(e *env, _ gitlabtest.Runner) {
			e.gl.Inject(gitlabtest.EndpointJobRequest, gitlabtest.Fault{Status: 503, Times: 5})
		}, poller.StopUnavailable, "GitLab is unavailable (503)"},
		{"429 after retries", func(e *env, _ gitlabtest.Runner) {
			e.gl.Inject(gitlabtest.EndpointJobRequest, gitlabtest.Fault{Status: 429, Header: gitlabtest.RetryAfter(time.Second), Times: 5})
		}, poller.StopUnavailable, "rate limiting"},
		{"expired token", func(e *env, gr gitlabtest.Runner) { e.gl.ExpireRunnerToken(gr.ID) },
			poller.StopForbidden, poller.MsgTokenRejected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			r, gr := e.addRunner(1, nil)
			job := e.enqueue(gitlabtest.JobSpec{})
			tt.setup(e, gr)
			got := e.poll(r)
			if got.Stop != tt.wantStop || got.Jobs != 0 {
				t.Errorf("Poll() = %+v, want stop %q and no job", got, tt.wantStop)
			}
			if n := len(executorCalls(t, e.inv)); n != 0 {
				t.Errorf("executor invocations = %d, want 0", n)
			}
			if j := e.gl.Job(job.ID); j.State != "pending" || j.Payload != nil {
				t.Errorf("job = %s, picked %v; want still queued in GitLab", j.State, j.Payload != nil)
			}
			h := e.runnerNow(r.ID).Health
			if h.Healthy() || !strings.Contains(h.LastError, tt.wantErr) {
				t.Errorf("health = %+v, want unhealthy with %q", h, tt.wantErr)
			}
			if got := e.freeSlots(r); got != 1 {
				t.Errorf("free slots = %d, want 1", got)
			}
			// Once GitLab is back, the next poll takes the job and heals.
			if tt.wantStop == poller.StopUnavailable {
				if got := e.poll(r); got.Jobs != 1 {
					t.Errorf("next Poll() = %+v, want the job", got)
				}
				if h := e.runnerNow(r.ID).Health; !h.Healthy() {
					t.Errorf("health after a good poll = %+v, want healthy", h)
				}
			}
		})
	}
}

func TestTokenRotation(t *testing.T) {
	for _, polls := range []int{1, 3} {
		t.Run(mustJSON(polls)+" concurrent polls", func(t *testing.T) {
			e := newEnv(t, gitlabtest.WithTokenExpiry(time.Hour))
			r, gr := e.addRunner(1, func(r *runner.Runner) {
				obtained := time.Now().Add(-4 * time.Hour) // expiring in an hour: past three quarters of its life
				r.TokenObtainedAt = &obtained
			})
			var wg sync.WaitGroup
			for range polls {
				wg.Go(func() {
					res, err := e.poller.Poll(context.Background(), dispatch.Poll{RunnerID: r.ID})
					if err != nil || res.Stop != poller.StopNoJob && res.Stop != poller.StopNoSlot {
						t.Errorf("Poll() = %+v, %v; want a poll that found no job or no free slot", res, err)
					}
				})
			}
			wg.Wait()
			after := e.runnerNow(r.ID)
			newToken, err := e.sealer.Open(seal.RunnerToken(r.ID), after.SealedToken)
			if err != nil {
				t.Fatalf("open the saved token: %v", err)
			}
			if newToken == gr.Token {
				t.Fatal("token not rotated")
			}
			now, _ := e.gl.Runner(gr.ID)
			if now.Token != newToken {
				t.Errorf("saved token is not GitLab's current token")
			}
			if after.TokenExpiresAt == nil || after.TokenObtainedAt == nil || !after.TokenExpiresAt.After(time.Now().Add(50*time.Minute)) {
				t.Errorf("token times = obtained %v expires %v, want a fresh hour", after.TokenObtainedAt, after.TokenExpiresAt)
			}
			if !after.Health.Healthy() {
				t.Errorf("health = %+v, want healthy", after.Health)
			}
			c, _ := gitlab.New(e.gl.URL(), e.glOpts)
			if _, err := c.VerifyRunner(context.Background(), gitlab.VerifyRequest{Token: gr.Token}); err == nil {
				t.Error("old token still accepted by GitLab")
			}
		})
	}
}

// TestEventCarriesRunnerSettings: the runner's CA and output limit reach
// the executor with each job (the executor trusts the CA for GitLab, git,
// artifacts and cache, and caps the trace at the limit).
func TestEventCarriesRunnerSettings(t *testing.T) {
	e := newEnv(t)
	const pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
	r, _ := e.addRunner(1, func(r *runner.Runner) { r.CAPEM, r.OutputLimitKiB = pem, 8192 })
	e.enqueue(gitlabtest.JobSpec{})
	e.poll(r)
	calls := executorCalls(t, e.inv)
	if len(calls) != 1 {
		t.Fatalf("executor invocations = %d, want 1", len(calls))
	}
	ev := calls[0].Event
	if ev.CAPEM != pem || ev.OutputLimit != 8192 {
		t.Errorf("event ca_pem, output_limit = %q, %d; want the runner's %q, 8192", ev.CAPEM, ev.OutputLimit, pem)
	}
}

// TestPollTrustsTheRunnersCA: a runner whose GitLab a private CA vouches
// for is polled with that CA (the executor then uses it for the rest).
func TestPollTrustsTheRunnersCA(t *testing.T) {
	e := newEnv(t, gitlabtest.WithTLS())
	e.glOpts.HTTPClient = nil // the system's roots, as in production
	e.poller = e.newPoller(e.inv)
	ca := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.gl.Certificate().Raw}))
	without, _ := e.addRunner(1, nil)
	e.enqueue(gitlabtest.JobSpec{})
	e.poll(without)
	if n := len(executorCalls(t, e.inv)); n != 0 {
		t.Fatalf("executor invocations without the CA = %d, want 0", n)
	}
	with, _ := e.addRunner(1, func(r *runner.Runner) { r.CAPEM = ca })
	e.poll(with)
	calls := executorCalls(t, e.inv)
	if len(calls) != 1 || calls[0].Event.CAPEM != ca {
		t.Fatalf("executor invocations with the CA = %+v, want one carrying the CA", calls)
	}
}

// TestConcurrentIDIsTheSlot: CI_CONCURRENT_ID (the event's
// runner.concurrent_id) is the job's slot, so no two running jobs of a
// runner share it.
func TestConcurrentIDIsTheSlot(t *testing.T) {
	e := newEnv(t)
	r, _ := e.addRunner(3, nil)
	for range 3 {
		e.enqueue(gitlabtest.JobSpec{})
	}
	e.poll(r)
	calls := executorCalls(t, e.inv)
	if len(calls) != 3 {
		t.Fatalf("executor invocations = %d, want 3", len(calls))
	}
	seen := map[int]bool{}
	for _, c := range calls {
		id := c.Event.Runner.ConcurrentID
		if id != c.Event.Dispatch.SlotIndex || seen[id] || id < 0 || id >= 3 {
			t.Errorf("concurrent ids %v, then %d (slot %d): want each slot once, 0 to 2", seen, id, c.Event.Dispatch.SlotIndex)
		}
		seen[id] = true
	}
}
