package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/executor"
	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
	"gitlab-serverless-runner/pkg/lambdatest"
)

// Credentials as Lambda puts them in the function's environment.
var lambdaCredentials = map[string]string{
	"AWS_ACCESS_KEY_ID":     "ASIAEXECUTORTESTKEY01",
	"AWS_SECRET_ACCESS_KEY": "executor-test-secret-access-key-value",
	"AWS_SESSION_TOKEN":     "executor-test-session-token-value",
}

// fixture is a fake GitLab and the executor under the emulator.
type fixture struct {
	t      testing.TB
	srv    *gitlabtest.Server
	client *gitlab.Client
	runner gitlabtest.Runner
	proj   *gitlabtest.Project
	fn     *lambdatest.Function
	dirs   string
}

func start(t testing.TB, extraEnv map[string]string) *fixture {
	t.Helper()
	srv := gitlabtest.New(t, gitlabtest.WithTraceUpdateInterval(1, 1))
	c, err := gitlab.New(srv.URL(), gitlab.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dirs := t.TempDir()
	env := map[string]string{
		"EXECUTOR_BUILDS_DIR":         filepath.Join(dirs, "builds"),
		"EXECUTOR_HOME_DIR":           filepath.Join(dirs, "home"),
		"EXECUTOR_DEADLINE_MARGIN":    "5s",
		"AWS_LAMBDA_FUNCTION_TIMEOUT": "120",
		"AWS_REGION":                  "eu-west-1",
	}
	for k, v := range lambdaCredentials {
		env[k] = v
	}
	for k, v := range extraEnv {
		env[k] = v
	}
	return &fixture{
		t: t, srv: srv, client: c, dirs: dirs,
		runner: srv.CreateRunner(gitlabtest.RunnerOptions{Description: "emulated"}),
		proj:   srv.CreateProject("group/demo", map[string]string{"README.md": "hi\n"}),
		fn:     lambdatest.Start(t, lambdatest.Build(t, "./functions/executor"), lambdatest.Options{Env: env}),
	}
}

// invoke enqueues a job, takes it as the poller would and invokes the
// function with it, returning the Result and GitLab's view of the job.
func (f *fixture) invoke(spec gitlabtest.JobSpec) (executor.Result, gitlabtest.Job) {
	f.t.Helper()
	job := f.srv.EnqueueJob(f.proj, spec)
	r, err := f.client.RequestJob(context.Background(), gitlab.JobRequest{Token: f.runner.Token, SystemID: "s_emulator0001",
		Info: gitlab.NewInfo("test", gitlab.Features{Variables: true, Artifacts: true, Cache: true, Refspecs: true, Masking: true,
			MultiBuildSteps: true, TraceChecksum: true, TraceSize: true, ReturnExitCode: true, RawVariables: true})})
	if err != nil || r.Job == nil || r.Job.ID != job.ID {
		f.t.Fatalf("request job %d: %+v, %v", job.ID, r, err)
	}
	payload, err := json.Marshal(executor.Event{GitLabURL: f.srv.URL(), Job: *r.Job,
		Runner: executor.Runner{ID: f.runner.ID, Description: "emulated", ShortToken: gitlab.ShortToken(f.runner.Token)}})
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	resp, err := f.fn.Invoke(ctx, payload)
	if err != nil || resp.FunctionError != "" {
		f.t.Fatalf("invoke: %v %s\nlogs:\n%s", err, resp.FunctionError, f.fn.Logs())
	}
	var res executor.Result
	if err := json.Unmarshal(resp.Payload, &res); err != nil {
		f.t.Fatalf("decode result %s: %v", resp.Payload, err)
	}
	return res, f.srv.Job(job.ID)
}

func TestJobsUnderTheEmulator(t *testing.T) {
	f := start(t, nil)

	// A process of this machine outside the function's tree: the clean-up
	// must never reach it.
	bystander := exec.Command("sleep", "1000")
	if err := bystander.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bystander.Process.Kill(); bystander.Wait() })

	t.Run("success and failure are reported", func(t *testing.T) {
		for _, tt := range []struct {
			script        []string
			state, reason string
			exit          int
			wantTrace     string
		}{
			{[]string{"echo fine"}, "success", "", 0, "Job succeeded"},
			{[]string{"exit 4"}, "failed", "script_failure", 4, "ERROR: Job failed: exit code 4"},
		} {
			res, got := f.invoke(gitlabtest.JobSpec{Script: tt.script})
			if res.State != tt.state || res.FailureReason != tt.reason || res.ExitCode != tt.exit || !res.Reported || res.JobID != got.ID {
				t.Errorf("result = %+v, want %s/%q/exit %d reported for job %d", res, tt.state, tt.reason, tt.exit, got.ID)
			}
			if got.State != tt.state || got.FailureReason != tt.reason || got.ExitCode != tt.exit {
				t.Errorf("GitLab job = %s/%q/exit %d, want %s/%q/exit %d", got.State, got.FailureReason, got.ExitCode, tt.state, tt.reason, tt.exit)
			}
			if !strings.Contains(string(got.Trace), tt.wantTrace) {
				t.Errorf("trace lacks %q:\n%s", tt.wantTrace, got.Trace)
			}
		}
	})

	t.Run("the job sees no AWS credentials", func(t *testing.T) {
		_, got := f.invoke(gitlabtest.JobSpec{Script: []string{"env | sort"}})
		if got.State != "success" {
			t.Fatalf("job = %s; trace:\n%s", got.State, got.Trace)
		}
		names := []string{"AWS_LAMBDA_RUNTIME_API="}
		for k, v := range lambdaCredentials {
			names = append(names, k+"=", v)
		}
		for _, s := range names {
			if strings.Contains(string(got.Trace), s) {
				t.Errorf("the job's environment shows %q; trace:\n%s", s, got.Trace)
			}
		}
		if !strings.Contains(string(got.Trace), "AWS_REGION=eu-west-1") {
			t.Errorf("the job's environment lacks AWS_REGION (printing env did not work?); trace:\n%s", got.Trace)
		}
	})

	t.Run("a warm environment shows the next job nothing", func(t *testing.T) { warmEnvironmentIsClean(t, f, true) })

	// The emulator starts the bootstrap at the first invocation.
	if !strings.Contains(f.fn.Logs(), `"cleanup":"descendants"`) {
		t.Errorf("under the emulator with a parent other than PID 1 the clean-up mode is not descendants; logs:\n%s", f.fn.Logs())
	}
	if err := bystander.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("a process outside the function was killed by the clean-up: %v", err)
	}
}

var pidLine = regexp.MustCompile(`(?m)^(\w+)=(\d+)$`)

func pidFrom(t *testing.T, trace []byte, name string) int {
	t.Helper()
	for _, m := range pidLine.FindAllSubmatch(trace, -1) {
		if string(m[1]) == name {
			pid, _ := strconv.Atoi(string(m[2]))
			return pid
		}
	}
	t.Fatalf("trace has no %s=<pid> line:\n%s", name, trace)
	return 0
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

// warmEnvironmentIsClean runs two jobs in one warm environment: the first
// leaves processes (detached and not) and files in the project, HOME and
// builds directories; the second must find none of them.
// hostPIDs says the job's pids are this test's pids (no PID namespace).
func warmEnvironmentIsClean(t *testing.T, f *fixture, hostPIDs bool) {
	_, first := f.invoke(gitlabtest.JobSpec{Script: []string{
		`setsid sleep 1000 >/dev/null 2>&1 </dev/null & echo "detached=$!"`,
		`nohup sleep 1001 >/dev/null 2>&1 </dev/null & echo "nohup=$!"`,
		`echo left > left-in-project; echo left > "$HOME/left-in-home"; echo left > "$CI_BUILDS_DIR/left-in-builds"`,
		`echo "pid file" > "$HOME/pid"`,
		`echo left > "${TMPDIR:-/nonexistent}/left-in-tmp" 2>/dev/null || true`,
	}})
	if first.State != "success" {
		t.Fatalf("first job = %s; trace:\n%s", first.State, first.Trace)
	}
	detached := pidFrom(t, first.Trace, "detached")
	nohup := pidFrom(t, first.Trace, "nohup")
	_, second := f.invoke(gitlabtest.JobSpec{
		Variables: []gitlab.Variable{{Key: "PIDS", Value: fmt.Sprintf("%d %d", detached, nohup)}},
		Script: []string{
			`for p in $PIDS; do if kill -0 "$p" 2>/dev/null; then echo "process $p is still alive"; exit 1; fi; done`,
			`for f in left-in-project "$HOME/left-in-home" "$HOME/pid" "$CI_BUILDS_DIR/left-in-builds" "${TMPDIR:-/nonexistent}/left-in-tmp"; do if test -e "$f"; then echo "found $f"; exit 2; fi; done`,
			`echo "home has: $(ls -A "$HOME")"`,
		},
	})
	if second.State != "success" {
		t.Errorf("second job = %s/exit %d, want success (nothing left over); trace:\n%s", second.State, second.ExitCode, second.Trace)
	}
	for _, pid := range []int{detached, nohup} {
		if hostPIDs && alive(pid) {
			t.Errorf("process %d from the first job is still alive", pid)
		}
	}
	if !strings.Contains(string(second.Trace), "home has: \n") {
		t.Errorf("the second job's HOME is not empty; trace:\n%s", second.Trace)
	}
}

// TestSystemCleanupInAPIDNamespace runs the emulator as PID 1 of a fresh PID
// namespace (with its own /proc), as Lambda runs its init: the executor then
// picks the system-wide clean-up, which can only see the namespace's
// processes, and wipes $TMPDIR, pointed at a test directory.
func TestSystemCleanupInAPIDNamespace(t *testing.T) {
	rie, err := lambdatest.EmulatorPath()
	if err != nil {
		t.Fatal(err)
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Fatalf("this test needs unshare (util-linux): %v", err)
	}
	wrapper := filepath.Join(t.TempDir(), "rie-in-pid-namespace")
	script := fmt.Sprintf("#!/bin/sh\nexec %s --user --map-root-user --pid --fork --mount-proc --kill-child %s \"$@\"\n", unshare, rie)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_LAMBDA_RIE", wrapper)
	tmp := t.TempDir()
	f := start(t, map[string]string{"TMPDIR": tmp})
	warmEnvironmentIsClean(t, f, false)
	if !strings.Contains(f.fn.Logs(), `"cleanup":"system"`) {
		t.Errorf("as the child of PID 1 the executor did not pick the system clean-up; logs:\n%s", f.fn.Logs())
	}
	if res, got := f.invoke(gitlabtest.JobSpec{Script: []string{"exit 5"}}); res.ExitCode != 5 || got.State != "failed" {
		t.Errorf("failing job: result %+v, GitLab %s, want exit code 5 failed", res, got.State)
	}
}

// BenchmarkInvokeTrivialJob measures, under the emulator with a warm
// function, the time from taking the job (the poller's job request plus the
// invocation) to the first script line and to the result (the final update
// is applied before the handler returns).
func BenchmarkInvokeTrivialJob(b *testing.B) {
	f := start(b, nil)
	f.invoke(gitlabtest.JobSpec{Script: []string{"true"}}) // cold start
	var toFirst, toResult time.Duration
	n := 0
	for b.Loop() {
		begin := time.Now()
		res, got := f.invoke(gitlabtest.JobSpec{Script: []string{`echo "first=$(date +%s%N)"`}})
		toResult += time.Since(begin)
		if res.State != "success" {
			b.Fatalf("result %+v", res)
		}
		ns, err := strconv.ParseInt(pidLine.FindStringSubmatch(string(got.Trace))[2], 10, 64)
		if err != nil {
			b.Fatal(err)
		}
		toFirst += time.Unix(0, ns).Sub(begin)
		n++
	}
	b.ReportMetric(float64(toFirst.Milliseconds())/float64(n), "ms-to-first-script-line")
	b.ReportMetric(float64(toResult.Milliseconds())/float64(n), "ms-to-result")
}
