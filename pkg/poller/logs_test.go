package poller_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/dispatch"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
	"gitlab-serverless-runner/pkg/invoke"
	"gitlab-serverless-runner/pkg/logtest"
	"gitlab-serverless-runner/pkg/poller"
	"gitlab-serverless-runner/pkg/runner"
	"gitlab-serverless-runner/pkg/scheduler"
	"gitlab-serverless-runner/pkg/seal"
)

// TestNoTokenInLogs runs the scheduler and the poller, logging every level,
// through a token rotation, a job handed to an executor and GitLab's 403
// to an expired token: no runner token, old or new, and no job token may
// appear in the log.
func TestNoTokenInLogs(t *testing.T) {
	var logs logtest.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e := newEnv(t, gitlabtest.WithTokenExpiry(time.Hour))
	r, gr := e.addRunner(1, func(r *runner.Runner) {
		obtained := time.Now().Add(-4 * time.Hour) // past three quarters of its life: rotated on the next poll
		r.TokenObtainedAt = &obtained
	})
	p, err := poller.New(poller.Deps{Runners: e.store, Jobs: e.store, Sealer: e.sealer, Invoker: e.inv, Cache: fakePresigner{}, Logger: log},
		poller.Config{ExecutorFunctions: map[string]string{"provided.al2023": "executor-provided"}, Version: "test", GitLab: e.glOpts})
	if err != nil {
		t.Fatalf("poller.New: %v", err)
	}
	local := invoke.NewLocal(invoke.LocalConfig{})
	results := make(chan poller.Result, 2)
	local.Register("poller", func(ctx context.Context, payload []byte) ([]byte, error) {
		ev, err := dispatch.DecodePoll(payload)
		if err != nil {
			return nil, err
		}
		res, err := p.Poll(ctx, ev)
		results <- res
		return nil, err
	}, invoke.FunctionConfig{})
	sched, err := scheduler.New(e.store, local, scheduler.Config{PollerFunction: "poller", Logger: log})
	if err != nil {
		t.Fatalf("scheduler.New: %v", err)
	}
	runOnce := func(what string) poller.Result {
		t.Helper()
		if _, err := sched.Run(context.Background()); err != nil {
			t.Fatalf("%s: scheduler Run: %v", what, err)
		}
		local.Wait()
		select {
		case res := <-results:
			return res
		default:
			t.Fatalf("%s: the scheduler started no poll", what)
			return poller.Result{}
		}
	}

	e.enqueue(gitlabtest.JobSpec{})
	if res := runOnce("rotation and a job"); res.Jobs != 1 {
		t.Fatalf("first poll = %+v, want one job", res)
	}
	newToken, err := e.sealer.Open(seal.RunnerToken(r.ID), e.runnerNow(r.ID).SealedToken)
	if err != nil || newToken == gr.Token {
		t.Fatalf("token after the first poll: rotated %v, %v; want a new token", newToken != gr.Token, err)
	}
	calls := executorCalls(t, e.inv)
	if len(calls) != 1 || calls[0].Event.Job == nil || calls[0].Event.Job.Token == "" {
		t.Fatalf("executor invocations = %d, want one with a job token", len(calls))
	}
	jobToken := calls[0].Event.Job.Token

	// The job ends and frees its slot; GitLab then refuses the token.
	if err := e.store.ReleaseSlot(context.Background(), runner.Slot{RunnerID: r.ID, Index: calls[0].Event.Dispatch.SlotIndex, Token: calls[0].Event.Dispatch.SlotToken}); err != nil {
		t.Fatalf("ReleaseSlot: %v", err)
	}
	e.gl.ExpireRunnerToken(gr.ID)
	if res := runOnce("403"); res.Stop != poller.StopForbidden {
		t.Fatalf("second poll = %+v, want stop %q", res, poller.StopForbidden)
	}

	out := logs.String()
	for _, want := range []string{r.ID, `"runner token rotated"`, `"job taken"`, `"stop":"forbidden"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s; got:\n%s", want, out)
		}
	}
	secrets := []struct{ name, value string }{
		{"the old runner token", gr.Token},
		{"the new runner token", newToken},
		{"the job token", jobToken},
	}
	for _, s := range secrets {
		t.Run(s.name, func(t *testing.T) {
			if s.value == "" {
				t.Fatal("no token to look for")
			}
			if strings.Contains(out, s.value) {
				t.Errorf("log holds %s:\n%s", s.name, out)
			}
		})
	}
}
