package sweeper_test

import (
	"context"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/poller"
	"gitlab-serverless-runner/pkg/runner"
	"gitlab-serverless-runner/pkg/sweeper"
	"gitlab-serverless-runner/pkg/urlpolicy"
)

// TestSweepDialsGitLabOnlyThroughTheURLPolicy: a lost job whose GitLab is
// on an address the operator's policy refuses (here loopback) is not failed
// there: nothing reaches GitLab, the job stays open for the next sweep, and
// a policy that allows the address closes it.
func TestSweepDialsGitLabOnlyThroughTheURLPolicy(t *testing.T) {
	w := newWorld(t, 1)
	ctx := context.Background()
	job := w.lose(600)
	after := time.Now().Add(10*time.Minute + poller.DefaultLeaseMargin + time.Minute)
	sweep := func(p urlpolicy.Policy) sweeper.Result {
		t.Helper()
		s := sweeper.New(w.st, w.st, w.sealer, sweeper.Config{
			URLPolicy: &p,
			GitLab:    gitlab.Options{Sleep: func(ctx context.Context, _ time.Duration) error { return ctx.Err() }},
			Now:       func() time.Time { return after },
		})
		res, err := s.Sweep(ctx)
		if err != nil {
			t.Fatalf("Sweep: %v", err)
		}
		return res
	}

	before, state := len(w.gl.Requests()), w.gl.Job(job.ID).State
	if res := sweep(urlpolicy.Policy{AllowHTTP: true}); res.Swept != 0 || res.Failed != 1 {
		t.Errorf("Sweep() with loopback refused = %+v, want the job not closed", res)
	}
	if n := len(w.gl.Requests()) - before; n != 0 {
		t.Errorf("GitLab received %d requests, want none", n)
	}
	if got := w.gl.Job(job.ID).State; got != state {
		t.Errorf("job in GitLab = %s, want it untouched (%s)", got, state)
	}
	if rec, err := w.st.GetJob(ctx, w.runner.ID, job.ID); err != nil || rec.State != runner.JobRunning {
		t.Errorf("job record = %+v, %v; want it still open for the next sweep", rec, err)
	}

	if res := sweep(urlpolicy.Policy{AllowHTTP: true, AllowPrivate: true}); res.Swept != 1 {
		t.Errorf("Sweep() with loopback allowed = %+v, want the job closed", res)
	}
	if got := w.gl.Job(job.ID).State; got != "failed" {
		t.Errorf("job in GitLab = %s, want failed by the sweep", got)
	}
}
