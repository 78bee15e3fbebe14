package executor_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/dispatch"
	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
)

// waitTrace waits until the job's stored trace contains s.
func waitTrace(t *testing.T, e *env, id int64, s string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for !strings.Contains(string(e.srv.Job(id).Trace), s) {
		select {
		case <-ctx.Done():
			t.Fatalf("trace of job %d never showed %q:\n%s", id, s, e.srv.Job(id).Trace)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func TestCancellation(t *testing.T) {
	t.Parallel() // mostly waiting for sleeping jobs
	testCancellation(t, inProcess)
}

// cancelWithin bounds how long a canceled job may take to stop: less than
// the 60 s trace interval GitLab answers while nobody watches the log, so
// the status check, not a trace PATCH, must notice a silent job's cancel.
const cancelWithin = 45 * time.Second

func testCancellation(t *testing.T, mk envMaker) {
	tests := []struct {
		name string
		opts []gitlabtest.Option
		// streamed waits for the script's echo in GitLab's trace, which
		// shows the trace streams while the job runs.
		streamed bool
	}{
		{"noticed while the trace streams", nil, true},
		{"a silent job and GitLab's 60 s trace interval", []gitlabtest.Option{gitlabtest.WithTraceUpdateInterval(60, 60)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := mk(t, tt.opts...)
			marker := filepath.Join(t.TempDir(), "sleeping")
			ev := e.take(project(e, nil), gitlabtest.JobSpec{
				Variables:   []gitlab.Variable{{Key: "MARKER", Value: marker}},
				Script:      []string{`sleep 300 & echo "sleep=$!" > "$MARKER.new" && mv "$MARKER.new" "$MARKER"; wait`},
				AfterScript: []string{"echo after status=$CI_JOB_STATUS"},
			})
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			done := e.start(ctx, ev)
			if tt.streamed {
				waitTrace(t, e, ev.Job.ID, "$ sleep 300 &")
			} else {
				// After the first PATCH GitLab asks for the next one in 60 s.
				waitTrace(t, e, ev.Job.ID, "Running with")
			}
			pid := waitPID(t, marker, "sleep")
			if err := e.srv.CancelJob(ev.Job.ID); err != nil {
				t.Fatal(err)
			}
			var res dispatch.Result
			select {
			case res = <-done:
			case <-time.After(cancelWithin):
				t.Fatalf("the job was not stopped within %s of the cancel, before GitLab's next trace PATCH would notice it (sleep 300 still running?)", cancelWithin)
			}
			got := e.srv.Job(ev.Job.ID)
			if got.State != "canceled" || res.State != gitlab.StatusCanceled || !res.Reported {
				t.Errorf("job = %s, result %+v, want canceled and reported", got.State, res)
			}
			if alive(pid) {
				t.Errorf("the script's sleep (pid %d) still runs after the job ended", pid)
			}
			wantContains(t, got.Trace, "after status=canceled", "ERROR: Job failed: canceled")
			// The status checks stop before the final update, which stays
			// the last PUT.
			if last := got.Updates[len(got.Updates)-1].Request; last.State != "failed" || last.Output.Checksum == "" {
				t.Errorf("last update = %+v, want the final failed update with a checksum", last)
			}
			e.srv.AssertNoViolations(t)
		})
	}
}

// waitPID waits for the job to write name=<pid> to path and returns the
// pid.
func waitPID(t *testing.T, path, name string) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, err := os.ReadFile(path); err == nil {
			if v, ok := strings.CutPrefix(strings.TrimSpace(string(b)), name+"="); ok {
				pid, err := strconv.Atoi(v)
				if err != nil {
					t.Fatalf("%s holds %q, want %s=<pid>", path, b, name)
				}
				return pid
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the job never wrote %s=<pid> to %s", name, path)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// alive reports whether pid runs and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func TestAbortWhenGitLabCancelsOutright(t *testing.T) {
	t.Parallel() // mostly waiting for sleeping jobs
	testAbortWhenGitLabCancelsOutright(t, inProcess)
}

func testAbortWhenGitLabCancelsOutright(t *testing.T, mk envMaker) {
	e := mk(t)
	ev := e.take(project(e, nil), gitlabtest.JobSpec{Script: []string{"sleep 300"}, AfterScript: []string{"echo after"}})
	done := e.start(context.Background(), ev)
	waitTrace(t, e, ev.Job.ID, "$ sleep 300")
	// canceling, then canceled: the second cancel is a forced one.
	for range 2 {
		if err := e.srv.CancelJob(ev.Job.ID); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case res := <-done:
		if res.State != gitlab.StatusCanceled {
			t.Errorf("result = %+v, want canceled", res)
		}
	case <-time.After(time.Minute):
		t.Fatal("the executor did not abort within a minute")
	}
	if got := e.srv.Job(ev.Job.ID); got.State != "canceled" {
		t.Errorf("job = %s, want canceled", got.State)
	}
	e.srv.AssertNoViolations(t)
}

// lambdaDeadlineJob is a job that outlives the invocation's deadline.
var lambdaDeadlineJob = gitlabtest.JobSpec{Script: []string{"sleep 300"}, AfterScript: []string{"echo after"}}

// wantLambdaDeadline checks a job stopped by the invocation's deadline.
func wantLambdaDeadline(t *testing.T, res dispatch.Result, got gitlabtest.Job) {
	t.Helper()
	if got.State != "failed" || got.FailureReason != "job_execution_timeout" || res.FailureReason != "job_execution_timeout" || !res.Reported {
		t.Errorf("job = %s/%s, result %+v, want failed/job_execution_timeout reported", got.State, got.FailureReason, res)
	}
	wantContains(t, got.Trace, "AWS Lambda stops functions at 15 minutes", "the job's own timeout is 1h0m0s")
}

func TestLambdaDeadline(t *testing.T) {
	t.Parallel() // mostly waiting for sleeping jobs
	e := newEnv(t)
	e.cfg.DeadlineMargin = 2 * time.Second
	ev := e.take(project(e, nil), lambdaDeadlineJob)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res := e.executor().Run(ctx, ev)
	if err := ctx.Err(); err != nil {
		t.Errorf("Run returned after the invocation's deadline (ctx: %v), want before it", err)
	}
	wantLambdaDeadline(t, res, e.srv.Job(ev.Job.ID))
}

func TestJobTimeout(t *testing.T) {
	t.Parallel() // mostly waiting for sleeping jobs
	testJobTimeout(t, inProcess)
}

func testJobTimeout(t *testing.T, mk envMaker) {
	e := mk(t)
	ev := e.take(project(e, nil), gitlabtest.JobSpec{Script: []string{"sleep 300"}, AfterScript: []string{"echo after status=$CI_JOB_STATUS"}, Timeout: 2})
	_, got := e.run(ev)
	if got.State != "failed" || got.FailureReason != "job_execution_timeout" {
		t.Errorf("job = %s/%s, want failed/job_execution_timeout", got.State, got.FailureReason)
	}
	wantContains(t, got.Trace, "ERROR: Job failed: execution took longer than 2s seconds", "after status=timedout")
	wantNotContains(t, got.Trace, "AWS Lambda stops")
	e.srv.AssertNoViolations(t)
}

func TestImageAndServicesLine(t *testing.T) { testImageAndServicesLine(t, inProcess) }

func testImageAndServicesLine(t *testing.T, mk envMaker) {
	e := mk(t)
	_, got := e.run(e.take(project(e, nil), gitlabtest.JobSpec{
		Script:   []string{"true"},
		Image:    &gitlab.Image{Name: "golang:1.23"},
		Services: []gitlab.Image{{Name: "postgres:16"}},
	}))
	if got.State != "success" {
		t.Fatalf("job = %s", got.State)
	}
	wantContains(t, got.Trace, `WARNING: This job asks for image "golang:1.23", but this runner does not run images: the job runs directly on the function's provided.al2023 runtime.`,
		`WARNING: services: (postgres:16) cannot run on AWS Lambda: the job runs without them.`)
}

func TestOutputLimit(t *testing.T) { testOutputLimit(t, inProcess) }

func testOutputLimit(t *testing.T, mk envMaker) {
	e := mk(t)
	out := t.TempDir()
	ev := e.take(project(e, nil), gitlabtest.JobSpec{
		Variables: []gitlab.Variable{{Key: "OUT", Value: out}},
		Script:    []string{"head -c 20000 /dev/zero | tr '\\0' x", `echo still-running > "$OUT/after-limit"`},
	})
	ev.OutputLimit = 4 // KiB
	_, got := e.run(ev)
	if got.State != "success" {
		t.Fatalf("job = %s", got.State)
	}
	wantContains(t, got.Trace, "Job's log exceeded limit of 4096 bytes.")
	if n := len(got.Trace); n > 6000 {
		t.Errorf("trace is %d bytes, want about the 4096-byte limit", n)
	}
	if s := readFile(t, filepath.Join(out, "after-limit")); s != "still-running\n" {
		t.Errorf("job output after the limit: %q, want the job to carry on", s)
	}
	e.srv.AssertNoViolations(t)
}

func TestMalformedEvents(t *testing.T) { testMalformedEvents(t, inProcess) }

func testMalformedEvents(t *testing.T, mk envMaker) {
	e := mk(t)
	p := project(e, nil)
	t.Run("readable job id and token: failed in GitLab", func(t *testing.T) {
		ev := e.take(p, gitlabtest.JobSpec{Script: []string{"true"}})
		var m map[string]any
		b, _ := json.Marshal(ev)
		json.Unmarshal(b, &m)
		m["job"].(map[string]any)["steps"] = "not a list"
		res := e.handle(m)
		got := e.srv.Job(ev.Job.ID)
		if got.State != "failed" || got.FailureReason != "runner_system_failure" || res.FailureReason != "runner_system_failure" || !res.Reported {
			t.Errorf("job = %s/%s, result %+v, want failed/runner_system_failure reported", got.State, got.FailureReason, res)
		}
		wantContains(t, got.Trace, "ERROR: Job failed (system failure): the executor could not run this job: invalid executor event: decode JSON: field job.steps has the wrong type")
		wantNotContains(t, got.Trace, ev.Job.Token)
	})
	t.Run("missing repo URL", func(t *testing.T) {
		ev := e.take(p, gitlabtest.JobSpec{Script: []string{"true"}})
		ev.Job.GitInfo.RepoURL = ""
		res := e.handle(ev)
		if got := e.srv.Job(ev.Job.ID); got.State != "failed" || got.FailureReason != "runner_system_failure" || res.JobID != ev.Job.ID {
			t.Errorf("job = %s/%s, result %+v, want failed/runner_system_failure", got.State, got.FailureReason, res)
		}
	})
	for _, tt := range []struct {
		name string
		raw  []byte
	}{
		{"not JSON", []byte("{not json")},
		{"no job", []byte(`{"gitlab_url": "http://127.0.0.1:1"}`)},
		{"no gitlab_url", []byte(`{"job": {"id": 5, "token": "glcbt-x"}}`)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if e.fn != nil && !json.Valid(tt.raw) {
				// Lambda's payloads are JSON: the runtime client refuses
				// this one before the handler runs, as a function error.
				resp, err := e.fn.Invoke(t.Context(), tt.raw)
				if err != nil || !strings.Contains(resp.FunctionError, "SyntaxError") {
					t.Errorf("invoke with %q: %+v, %v; want a function error", tt.raw, resp, err)
				}
				return
			}
			res := e.handle(tt.raw)
			if res.State != "" || res.Reported || !strings.Contains(res.Error, "invalid executor event") {
				t.Errorf("result = %+v, want no state, not reported, an invalid event error", res)
			}
		})
	}
	e.srv.AssertNoViolations(t)
}

func TestPayloadURL(t *testing.T) { testPayloadURL(t, inProcess) }

func testPayloadURL(t *testing.T, mk envMaker) {
	e := mk(t)
	ev := e.take(project(e, nil), gitlabtest.JobSpec{Script: []string{"echo from the large payload"}})
	body, _ := json.Marshal(ev)
	store := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(body)
	}))
	defer store.Close()
	res := e.handle(dispatch.Event{PayloadURL: store.URL + "/payloads/1?X-Amz-Signature=abc"})
	got := e.srv.Job(ev.Job.ID)
	if res.State != "success" || got.State != "success" {
		t.Errorf("result %+v, job %s, want success", res, got.State)
	}
	if !bytes.Contains(got.Trace, []byte("from the large payload\n")) {
		t.Errorf("trace lacks the script's output:\n%s", got.Trace)
	}
}

func TestRunStepsAreRefused(t *testing.T) { testRunStepsAreRefused(t, inProcess) }

func testRunStepsAreRefused(t *testing.T, mk envMaker) {
	e := mk(t)
	_, got := e.run(e.take(project(e, nil), gitlabtest.JobSpec{Script: []string{"true"}, Payload: func(j *gitlab.Job) {
		j.Steps = nil
		j.Run = `[{"name":"hello","script":"echo hi"}]`
	}}))
	if got.State != "failed" || got.FailureReason != "runner_configuration_error" {
		t.Errorf("job = %s/%s, want failed/runner_configuration_error", got.State, got.FailureReason)
	}
	wantContains(t, got.Trace, "does not support")
}

// TestNothingFollowsARefusedStatusCheck: GitLab answers the job's status
// check with 403 (the job was canceled outright). No request for the job
// follows that answer: no trace PATCH from the uploader, no final update,
// no artifacts. The trace loop is slow here (GitLab asks for a PATCH a
// minute), so the status check is what hears the 403.
func TestNothingFollowsARefusedStatusCheck(t *testing.T) {
	t.Parallel() // mostly waiting for a sleeping job
	e := newEnv(t, gitlabtest.WithTraceUpdateInterval(60, 60))
	e.cfg.StatusInterval = 200 * time.Millisecond
	ev := e.take(project(e, nil), gitlabtest.JobSpec{
		Script: []string{"sleep 300"}, AfterScript: []string{"echo after"},
		Artifacts: []gitlab.Artifact{{Paths: []string{"out"}, When: "always"}},
	})
	done := e.start(context.Background(), ev)
	waitTrace(t, e, ev.Job.ID, "$ sleep 300")
	for range 2 { // canceling, then canceled: the second cancel is a forced one
		if err := e.srv.CancelJob(ev.Job.ID); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case res := <-done:
		if res.State != gitlab.StatusCanceled || !res.Reported {
			t.Errorf("result = %+v, want canceled and reported", res)
		}
	case <-time.After(time.Minute):
		t.Fatal("the executor did not abort within a minute")
	}

	jobPath := fmt.Sprintf("/api/v4/jobs/%d", ev.Job.ID)
	var forJob []gitlabtest.Request
	for _, r := range e.srv.Requests() {
		if r.Path == jobPath || strings.HasPrefix(r.Path, jobPath+"/") {
			forJob = append(forJob, r)
		}
	}
	refused := slices.IndexFunc(forJob, func(r gitlabtest.Request) bool { return r.Status == http.StatusForbidden })
	if refused < 0 {
		t.Fatalf("GitLab never answered 403 for the job; requests: %s", describeRequests(forJob))
	}
	if r := forJob[refused]; r.Endpoint != gitlabtest.EndpointUpdateJob {
		t.Errorf("the first 403 answered %s %s, want the status check (PUT %s)", r.Method, r.Path, jobPath)
	}
	if after := forJob[refused+1:]; len(after) > 0 {
		t.Errorf("requests after GitLab's 403: %s", describeRequests(after))
	}
	if got := e.srv.Job(ev.Job.ID); got.State != "canceled" {
		t.Errorf("job = %s, want canceled", got.State)
	}
}

func describeRequests(rs []gitlabtest.Request) string {
	var out []string
	for _, r := range rs {
		out = append(out, fmt.Sprintf("%s %s → %d", r.Method, r.Path, r.Status))
	}
	return strings.Join(out, "; ")
}
