package main_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/dynamolocal"
	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
	"gitlab-serverless-runner/pkg/seal"
)

// TestJobsRunEndToEnd registers a runner through the UI and lets the local
// system take jobs from the fake GitLab: the scheduler's ticker starts the
// poller, the poller hands each job to an in-process executor, and the
// finisher records the outcome that the runner's page shows.
func TestJobsRunEndToEnd(t *testing.T) {
	gl, proj, glRunner := newFakeGitLab(t)
	dataDir := t.TempDir()
	// The product's secrets are in this process's environment, as when
	// someone exports them before `make local`.
	sessionKey, sealingKey := seal.GenerateKey(), seal.GenerateKey()
	t.Setenv("SESSION_KEY", sessionKey)
	t.Setenv("TOKEN_SEALING_KEY", sealingKey)
	r := startSystem(t, env{"LOCAL_DATA_DIR": dataDir, "SESSION_KEY": sessionKey, "TOKEN_SEALING_KEY": sealingKey})
	b := newBrowser(t, r.sys.URL())
	b.signIn()
	id := b.registerRunner(gl.URL(), glRunner.Token, "laptop")

	cache := []gitlab.Cache{{Key: "deps", Paths: []string{"vendor"}, Policy: "pull-push", When: "on_success"}}
	tests := []struct {
		name       string
		spec       gitlabtest.JobSpec
		wantState  string
		wantReason gitlab.FailureReason
		wantTrace  []string
		notInTrace []string
	}{
		{
			name: "success",
			spec: gitlabtest.JobSpec{Script: []string{
				"echo hello-from-local-mode", "cat README.md",
				"mkdir -p vendor && echo cached-content > vendor/dep.txt",
			}, Cache: cache},
			wantState: "success",
			wantTrace: []string{"hello-from-local-mode", "hello from the repository", "Job succeeded"},
		},
		{
			name:      "cache from the previous job",
			spec:      gitlabtest.JobSpec{Script: []string{"cat vendor/dep.txt"}, Cache: cache},
			wantState: "success",
			wantTrace: []string{"cached-content"},
		},
		{
			name:       "product secrets stay out of the job's environment",
			spec:       gitlabtest.JobSpec{Script: []string{"env | sort"}},
			wantState:  "success",
			wantTrace:  []string{"CI_JOB_ID="},
			notInTrace: []string{"SESSION_KEY", "TOKEN_SEALING_KEY", sessionKey, sealingKey},
		},
		{
			name:       "script failure",
			spec:       gitlabtest.JobSpec{Script: []string{"echo about-to-fail", "exit 3"}},
			wantState:  "failed",
			wantReason: "script_failure",
			wantTrace:  []string{"about-to-fail", "exit code 3"},
		},
	}
	ctx := t.Context()
	var jobIDs []int64
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			job := gl.EnqueueJob(proj, tt.spec)
			jobIDs = append(jobIDs, job.ID)
			got, err := gl.WaitJob(ctx, job.ID)
			if err != nil {
				t.Fatalf("WaitJob(%d): %v", job.ID, err)
			}
			if got.State != tt.wantState || got.FailureReason != tt.wantReason {
				t.Errorf("job %d ended %s (%q), want %s (%q); trace:\n%s", job.ID, got.State, got.FailureReason, tt.wantState, tt.wantReason, got.Trace)
			}
			for _, w := range tt.wantTrace {
				if !strings.Contains(string(got.Trace), w) {
					t.Errorf("trace of job %d lacks %q:\n%s", job.ID, w, got.Trace)
				}
			}
			for _, w := range tt.notInTrace {
				if strings.Contains(string(got.Trace), w) {
					t.Errorf("trace of job %d contains %q", job.ID, w)
				}
			}
			if got.RunnerID != glRunner.ID {
				t.Errorf("job %d ran on runner %d, want %d", job.ID, got.RunnerID, glRunner.ID)
			}
			// The finisher's record shows on the runner's page.
			want := []string{"#" + strconv.FormatInt(job.ID, 10), `class="badge ` + tt.wantState + `"`}
			if tt.wantReason != "" {
				want = append(want, string(tt.wantReason))
			}
			b.waitPage(ctx, "/runners/"+id, want...)
		})
	}
	gl.AssertNoViolations(t)

	// Each job ran in a directory of its own, removed afterwards; the
	// cache lives beside them.
	entries, err := os.ReadDir(filepath.Join(dataDir, "jobs"))
	if err != nil {
		t.Fatalf("read jobs directory: %v", err)
	}
	if len(entries) != 0 {
		t.Errorf("jobs directory keeps %d entries after the jobs ended, want none", len(entries))
	}
	if strings.Contains(r.logs.String(), glRunner.Token) {
		t.Errorf("the runner token appears in the logs")
	}
	for _, id := range jobIDs {
		if tok := gl.Job(id).Token; tok != "" && strings.Contains(r.logs.String(), tok) {
			t.Errorf("the token of job %d appears in the logs", id)
		}
	}
}

// TestCtrlCCancelsRunningJob stops the system while a job runs: the job is
// reported to GitLab as failed rather than left running, and nothing the
// system started stays behind.
func TestCtrlCCancelsRunningJob(t *testing.T) {
	gl, proj, glRunner := newFakeGitLab(t)
	r := startSystem(t, nil)
	br := newBrowser(t, r.sys.URL())
	br.signIn()
	br.registerRunner(gl.URL(), glRunner.Token, "laptop")

	marker := filepath.Join(t.TempDir(), "started")
	job := gl.EnqueueJob(proj, gitlabtest.JobSpec{Script: []string{"echo $$ > " + marker + ".tmp && mv " + marker + ".tmp " + marker, "sleep 600"}})
	ctx := t.Context()
	if _, err := gl.WaitJobState(ctx, job.ID, "running"); err != nil {
		t.Fatalf("job never started: %v", err)
	}
	waitFile(ctx, t, marker)
	b, err := os.ReadFile(marker)
	if err != nil {
		t.Fatal(err)
	}
	scriptPID, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("marker holds %q, want the script's pid", b)
	}
	r.stop(t)
	if processExists(scriptPID) {
		t.Errorf("the job's script (pid %d) still runs after Ctrl-C", scriptPID)
	}

	// As on Lambda when an invocation dies, the finisher fails the job:
	// GitLab never keeps it running.
	got := gl.Job(job.ID)
	if got.State != "failed" || got.FailureReason != "runner_system_failure" {
		t.Errorf("job %d is %s (%q) after Ctrl-C, want failed (runner_system_failure); trace:\n%s", job.ID, got.State, got.FailureReason, got.Trace)
	}
	// The finisher fails a job whose trace it did not write: it finds the
	// trace's end with a PATCH answered 416 and cannot send the checksum
	// of bytes it never saw. Nothing else may deviate from the protocol.
	for _, v := range gl.Violations() {
		if !strings.Contains(v, "Content-Range starts at 0") && !strings.Contains(v, "without output.checksum") {
			t.Errorf("protocol violation: %s", v)
		}
	}
}

// waitFile waits until the job's script has created path.
func waitFile(ctx context.Context, t *testing.T, path string) {
	t.Helper()
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s never appeared", path)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

var webhookSecretRE = regexp.MustCompile(`<code class="secret">([^<]+)</code>`)

// TestWebhookStartsJobAtOnce: with the scheduler's ticker far away, a job
// still starts because GitLab's job webhook announces it, as configured
// from the runner page's Webhook section.
func TestWebhookStartsJobAtOnce(t *testing.T) {
	gl, proj, glRunner := newFakeGitLab(t)
	r := startSystem(t, env{"LOCAL_POLL_INTERVAL": "1h"}) // one run at start, none after
	b := newBrowser(t, r.sys.URL())
	b.signIn()
	id := b.registerRunner(gl.URL(), glRunner.Token, "laptop")

	hookURL := r.sys.URL() + "/webhooks/gitlab/" + id
	if page := addWebhook(t, b, gl, r.sys.URL(), id); !strings.Contains(page, hookURL) {
		t.Errorf("runner page does not show the webhook URL %s:\n%s", hookURL, page)
	}

	job := gl.EnqueueJob(proj, gitlabtest.JobSpec{Script: []string{"echo started-by-webhook"}})
	got, err := gl.WaitJob(t.Context(), job.ID)
	if err != nil {
		t.Fatalf("WaitJob: %v", err)
	}
	if got.State != "success" || !strings.Contains(string(got.Trace), "started-by-webhook") {
		t.Errorf("job ended %s, want success with its output; trace:\n%s", got.State, got.Trace)
	}
	accepted := false
	for _, d := range gl.HookDeliveries() {
		if d.JobID == job.ID && d.Status == "pending" && d.Code == http.StatusAccepted {
			accepted = true
		}
	}
	if !accepted {
		t.Errorf("no pending-job delivery was answered 202; deliveries: %+v", gl.HookDeliveries())
	}
	gl.AssertNoViolations(t)
}

// TestRelativeDataDirRunsJobs starts the system as `make local` does, from
// the repository root with a relative LOCAL_DATA_DIR that an earlier run
// left behind, and runs a job to success: every per-job directory is
// absolute, as the shell session requires.
func TestRelativeDataDirRunsJobs(t *testing.T) {
	gl, proj, glRunner := newFakeGitLab(t)
	root, err := dynamolocal.RepoRoot("")
	if err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	rel, err := filepath.Rel(root, data)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(data, "jobs", "job-1-stale"), 0o700); err != nil {
		t.Fatal(err)
	}
	t.Chdir(root)
	r := startSystem(t, env{"LOCAL_DATA_DIR": rel})
	b := newBrowser(t, r.sys.URL())
	b.signIn()
	b.registerRunner(gl.URL(), glRunner.Token, "laptop")

	job := gl.EnqueueJob(proj, gitlabtest.JobSpec{Script: []string{"echo builds-in=$CI_BUILDS_DIR"}})
	got, err := gl.WaitJob(t.Context(), job.ID)
	if err != nil {
		t.Fatalf("WaitJob(%d): %v", job.ID, err)
	}
	if got.State != "success" {
		t.Fatalf("job %d ended %s (%q), want success; trace:\n%s", job.ID, got.State, got.FailureReason, got.Trace)
	}
	want := "builds-in=" + filepath.Join(data, "jobs")
	if !strings.Contains(string(got.Trace), want) {
		t.Errorf("trace lacks %q (the builds directory under the absolute data directory):\n%s", want, got.Trace)
	}
}
