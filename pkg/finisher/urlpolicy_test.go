package finisher_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/dispatch"
	"gitlab-serverless-runner/pkg/finisher"
	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
	"gitlab-serverless-runner/pkg/invoke"
	"gitlab-serverless-runner/pkg/poller"
	"gitlab-serverless-runner/pkg/runner"
	"gitlab-serverless-runner/pkg/seal"
	"gitlab-serverless-runner/pkg/store"
	"gitlab-serverless-runner/pkg/store/dynamotest"
	"gitlab-serverless-runner/pkg/urlpolicy"
)

// TestFinisherRefusesARefusedGitLabAddress: a job was dispatched while its
// GitLab's host name ("localhost" here, where the fake GitLab listens)
// was allowed; when its executor dies, the finisher's client, whose every
// dial the operator's URL policy checks, refuses to fail it at 127.0.0.1.
// The error says why in plain words, nothing reaches GitLab, and the
// record is left to be delivered again (the job record stays running, its
// slot held).
func TestFinisherRefusesARefusedGitLabAddress(t *testing.T) {
	st := dynamotest.Store(t, store.Config{})
	sealer, _ := seal.ParseKeys("1:" + seal.GenerateKey())
	gl := gitlabtest.New(t)
	u, _ := url.Parse(gl.URL())
	gr := gl.CreateRunner(gitlabtest.RunnerOptions{})
	r := &runner.Runner{ID: runner.NewID(), Owner: "alice", GitLabURL: "http://localhost:" + u.Port(), GitLabRunnerID: gr.ID,
		Runtime: "provided.al2023", Concurrency: 1, RunUntagged: true}
	r.SealedToken, _ = sealer.Seal(seal.RunnerToken(r.ID), gr.Token)
	if err := st.CreateRunner(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	noWait := func(ctx context.Context, _ time.Duration) error { return ctx.Err() }

	strict := urlpolicy.Policy{AllowHTTP: true}
	f := finisher.New(st, finisher.Config{URLPolicy: &strict, GitLab: gitlab.Options{Sleep: noWait}})
	local := invoke.NewLocal(invoke.LocalConfig{})
	var mu sync.Mutex
	var finishErr error
	local.Register("executor", func(context.Context, []byte) ([]byte, error) {
		return nil, errors.New("executor crashed")
	}, invoke.FunctionConfig{Timeout: time.Minute, Destinations: invoke.Destinations{OnSuccess: "finisher", OnFailure: "finisher"}})
	local.Register("finisher", func(ctx context.Context, payload []byte) ([]byte, error) {
		_, err := f.Handle(ctx, payload)
		mu.Lock()
		finishErr = err
		mu.Unlock()
		return nil, err
	}, invoke.FunctionConfig{})
	p, err := poller.New(poller.Deps{Runners: st, Jobs: st, Sealer: sealer, Invoker: local},
		poller.Config{ExecutorFunctions: map[string]string{"provided.al2023": "executor"}, GitLab: gitlab.Options{Sleep: noWait}})
	if err != nil {
		t.Fatal(err)
	}

	job := gl.EnqueueJob(gl.CreateProject("group/demo", map[string]string{"README.md": "hi\n"}), gitlabtest.JobSpec{Script: []string{"make"}})
	if res, err := p.Poll(context.Background(), dispatch.Poll{RunnerID: r.ID}); err != nil || res.Jobs != 1 {
		t.Fatalf("Poll() = %+v, %v; want the job dispatched", res, err)
	}
	requests, state := len(gl.Requests()), gl.Job(job.ID).State
	local.Wait()

	mu.Lock()
	defer mu.Unlock()
	if !errors.Is(finishErr, urlpolicy.ErrRefused) ||
		!strings.Contains(finishErr.Error(), "127.0.0.1 is a loopback address, which this installation does not contact") {
		t.Errorf("finisher error = %v, want a refused dial saying why", finishErr)
	}
	if reqs := gl.Requests(); len(reqs) != requests {
		t.Errorf("GitLab received %d requests after the dispatch (first %s %s), want none", len(reqs)-requests, reqs[requests].Method, reqs[requests].Path)
	}
	if got := gl.Job(job.ID); got.State != state {
		t.Errorf("job in GitLab = %s, want it untouched (%s)", got.State, state)
	}
	rec, err := st.GetJob(context.Background(), r.ID, job.ID)
	if err != nil || rec.State != runner.JobRunning {
		t.Errorf("job record = %+v, %v; want it still running, for the record's next delivery", rec, err)
	}
}

func TestConfigFromEnvReadsTheURLPolicy(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want urlpolicy.Policy
	}{
		{nil, urlpolicy.Policy{}},
		{map[string]string{"ALLOW_HTTP_GITLAB": "true", "ALLOW_PRIVATE_GITLAB": "true"}, urlpolicy.Policy{AllowHTTP: true, AllowPrivate: true}},
	}
	for _, tt := range tests {
		cfg, err := finisher.ConfigFromEnv(func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok })
		if err != nil || cfg.URLPolicy == nil || *cfg.URLPolicy != tt.want {
			t.Errorf("ConfigFromEnv(%v) policy = %+v, %v; want %+v", tt.env, cfg.URLPolicy, err, tt.want)
		}
	}
	if _, err := finisher.ConfigFromEnv(func(k string) (string, bool) { return "maybe", k == "ALLOW_PRIVATE_GITLAB" }); err == nil ||
		!strings.Contains(err.Error(), "ALLOW_PRIVATE_GITLAB") {
		t.Errorf("ALLOW_PRIVATE_GITLAB=maybe: error %v, want one naming the variable", err)
	}
}
