package poller_test

import (
	"testing"

	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
	"gitlab-serverless-runner/pkg/poller"
)

// A job with image: goes to the preparation function, with the event a
// runtime's executor would get and its dispatch data; a job without one
// goes to the runtime's executor as before.
func TestPollHandsImageJobsToThePreparer(t *testing.T) {
	e := newEnv(t)
	p, err := poller.New(poller.Deps{Runners: e.store, Jobs: e.store, Sealer: e.sealer, Invoker: e.inv, Cache: fakePresigner{}},
		poller.Config{
			ExecutorFunctions: map[string]string{"provided.al2023": "executor-provided"},
			PreparerFunction:  "image-preparer",
			GitLab:            e.glOpts,
		})
	if err != nil {
		t.Fatal(err)
	}
	e.poller = p
	r, _ := e.addRunner(3, nil)
	withImage := e.enqueue(gitlabtest.JobSpec{Image: &gitlab.Image{Name: "golang:1.23", Entrypoint: []string{""}}})
	plain := e.enqueue(gitlabtest.JobSpec{})

	if got := e.poll(r); got.Jobs != 2 {
		t.Fatalf("Poll() = %+v, want 2 jobs handed over", got)
	}
	calls := executorCalls(t, e.inv)
	if len(calls) != 2 {
		t.Fatalf("invocations = %d, want 2", len(calls))
	}
	byJob := map[int64]invocation{}
	for _, c := range calls {
		byJob[c.Event.Job.ID] = c
	}
	img := byJob[withImage.ID]
	if img.Function != "image-preparer" || img.Event.Dispatch.Function != "image-preparer" {
		t.Errorf("image job invoked %q (dispatch function %q), want image-preparer", img.Function, img.Event.Dispatch.Function)
	}
	if img.Opts.TenantID != "" {
		t.Errorf("preparer invoked with tenant %q; it is not tenant-isolated (the image function's invocation gets the tenant)", img.Opts.TenantID)
	}
	if img.Event.Job.Image == nil || img.Event.Job.Image.Name != "golang:1.23" || img.Event.Dispatch.SlotToken == "" || !img.Event.TwoPhase {
		t.Errorf("image job event = image %+v, slot token set %v, two-phase %v", img.Event.Job.Image, img.Event.Dispatch.SlotToken != "", img.Event.TwoPhase)
	}
	if c := byJob[plain.ID]; c.Function != "executor-provided" || c.Opts.TenantID == "" {
		t.Errorf("plain job invoked %q with tenant %q, want executor-provided with a tenant", c.Function, c.Opts.TenantID)
	}
}

func TestConfigReadsThePreparer(t *testing.T) {
	cfg, err := poller.ConfigFromEnv(func(k string) (string, bool) {
		v, ok := map[string]string{"EXECUTOR_FUNCTIONS": "provided.al2023=x", "PREPARER_FUNCTION": " gsr-preparer "}[k]
		return v, ok
	})
	if err != nil || cfg.PreparerFunction != "gsr-preparer" {
		t.Errorf("ConfigFromEnv = %q, %v; want gsr-preparer", cfg.PreparerFunction, err)
	}
}
