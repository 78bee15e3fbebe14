package lambdatest_test

import (
	"context"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/dispatch"
	"gitlab-serverless-runner/pkg/finisher"
	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
	"gitlab-serverless-runner/pkg/invoke"
	"gitlab-serverless-runner/pkg/lambdatest"
	"gitlab-serverless-runner/pkg/poller"
	"gitlab-serverless-runner/pkg/runner"
	"gitlab-serverless-runner/pkg/seal"
	"gitlab-serverless-runner/pkg/store"
	"gitlab-serverless-runner/pkg/store/dynamotest"
)

func TestMain(m *testing.M) { os.Exit(dynamotest.Main(m)) }

// TestHarnessRunsThePipeline wires the product as it runs on Lambda, with
// the harness as the executor function: the poller invokes the executor
// through invoke.Local with the dispatch's tenant id, the executor's real
// bootstrap runs each job in an environment of that tenant, and its
// destination record reaches the finisher. This is the wiring the
// adversarial tests build on.
func TestHarnessRunsThePipeline(t *testing.T) {
	gl := gitlabtest.New(t)
	glURL, _ := url.Parse(gl.URL())
	h := lambdatest.NewHarness(t, lambdatest.HarnessOptions{
		Bootstrap:       lambdatest.Build(t, "./functions/executor"),
		Name:            "executor",
		TenantIsolation: true,
		Timeout:         60 * time.Second,
		Forward:         []string{glURL.Host},
		Env: map[string]string{
			"EXECUTOR_MARGIN_SECONDS":     "5",
			"EXECUTOR_KEEPALIVE_INTERVAL": "1s",
			"AWS_REGION":                  "eu-west-1",
			// The fake GitLab listens on loopback over http.
			"ALLOW_HTTP_GITLAB":    "true",
			"ALLOW_PRIVATE_GITLAB": "true",
		},
		EnvFor: func(dir string) map[string]string {
			return map[string]string{"EXECUTOR_BUILDS_DIR": filepath.Join(dir, "builds"), "EXECUTOR_HOME_DIR": filepath.Join(dir, "home")}
		},
	})

	db := dynamotest.Start(t)
	st, err := store.New(db.Client(), store.Config{Tables: store.Prefixed(dynamotest.Prefix(t))})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateTables(context.Background()); err != nil {
		t.Fatal(err)
	}
	sealer, _ := seal.ParseKeys("1:" + seal.GenerateKey())
	glOpts := gitlab.Options{HTTPClient: gl.Client()}

	local := invoke.NewLocal(invoke.LocalConfig{})
	h.Register(local, "executor", invoke.Destinations{OnSuccess: "finisher", OnFailure: "finisher"})
	fin := finisher.New(st, finisher.Config{GitLab: glOpts})
	var mu sync.Mutex
	var records []invoke.Record
	local.Register("finisher", func(ctx context.Context, payload []byte) ([]byte, error) {
		_, err := fin.Handle(ctx, payload)
		if err != nil {
			t.Errorf("finisher: %v", err)
		}
		var rec invoke.Record
		_ = json.Unmarshal(payload, &rec)
		mu.Lock()
		records = append(records, rec)
		mu.Unlock()
		return nil, err
	}, invoke.FunctionConfig{})
	p, err := poller.New(poller.Deps{Runners: st, Jobs: st, Sealer: sealer, Invoker: local},
		poller.Config{ExecutorFunctions: map[string]string{"provided.al2023": "executor"}, GitLab: glOpts})
	if err != nil {
		t.Fatal(err)
	}

	gr := gl.CreateRunner(gitlabtest.RunnerOptions{})
	r := &runner.Runner{ID: runner.NewID(), Owner: "alice", GitLabURL: gl.URL(), GitLabRunnerID: gr.ID,
		Runtime: "provided.al2023", Concurrency: 1, RunUntagged: true}
	r.SealedToken, _ = sealer.Seal(seal.RunnerToken(r.ID), gr.Token)
	if err := st.CreateRunner(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	project := gl.CreateProject("group/demo", map[string]string{"README.md": "hi\n"})

	for i, script := range []string{`cat README.md`, `echo "second job"`} {
		job := gl.EnqueueJob(project, gitlabtest.JobSpec{Script: []string{script}})
		if _, err := p.Poll(context.Background(), dispatch.Poll{RunnerID: r.ID}); err != nil {
			t.Fatalf("Poll: %v", err)
		}
		local.Wait()
		got := gl.Job(job.ID)
		if got.State != "success" {
			t.Fatalf("job %d = %s; trace:\n%s\nenvironments:\n%s", i+1, got.State, got.Trace, envLogs(h))
		}
		rec, err := st.GetJob(context.Background(), r.ID, job.ID)
		if err != nil || rec.State != runner.JobSuccess {
			t.Errorf("job %d record = %+v, %v; want success", i+1, rec, err)
		}
	}
	invs := h.Invocations()
	if len(invs) != 2 || len(records) != 2 {
		t.Fatalf("%d invocations, %d finisher records; want 2 and 2", len(invs), len(records))
	}
	for i, inv := range invs {
		if inv.TenantID == "" || inv.Environment.TenantID != inv.TenantID {
			t.Errorf("invocation %d: tenant %q in %s of tenant %q", i+1, inv.TenantID, inv.Environment.ID, inv.Environment.TenantID)
		}
		if records[i].RequestContext.RequestID != inv.RequestID {
			t.Errorf("record %d is for request %s, invocation %s", i+1, records[i].RequestContext.RequestID, inv.RequestID)
		}
	}
	t.Logf("2 jobs: %d environments for %d tenant ids", len(h.Environments()), len(tenants(invs)))
}

func tenants(invs []*lambdatest.Invocation) map[string]bool {
	m := map[string]bool{}
	for _, inv := range invs {
		m[inv.TenantID] = true
	}
	return m
}

func envLogs(h *lambdatest.Harness) string {
	var b strings.Builder
	for _, e := range h.Environments() {
		b.WriteString("== " + e.ID + " (" + string(e.State()) + ")\n" + e.Logs())
	}
	return b.String()
}
