package executor_test

import (
	"context"
	"debug/buildinfo"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/dispatch"
	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
	"gitlab-serverless-runner/pkg/lambdatest"
)

// These tests run the executor function's real bootstrap
// (./functions/executor, built as SAM builds it) under the Lambda Runtime
// Interface Emulator against the fake GitLab. One emulator stays warm for a
// group of tests, as one Lambda environment serves job after job (the
// emulator serialises invocations); the group runs the same cases as the
// in-process tests.

// Credentials as Lambda puts them in the function's environment.
var lambdaCredentials = map[string]string{
	"AWS_ACCESS_KEY_ID":     "ASIAEXECUTORTESTKEY01",
	"AWS_SECRET_ACCESS_KEY": "executor-test-secret-access-key-value",
	"AWS_SESSION_TOKEN":     "executor-test-session-token-value",
}

// emulator is the executor function under the emulator, with the builds
// and home directories it was configured with.
type emulator struct {
	fn                 *lambdatest.Function
	buildsDir, homeDir string
}

// startEmulator starts the function with Lambda's credentials in its
// environment, a 120 s function timeout and a 5 s deadline margin; extra
// adds to or replaces those settings.
func startEmulator(t testing.TB, extra map[string]string) *emulator {
	t.Helper()
	return startEmulatorWith(t, lambdatest.Build(t, "./functions/executor"), extra)
}

// startEmulatorWith is startEmulator with another bootstrap, such as a
// script that starts the real one in namespaces of its own.
func startEmulatorWith(t testing.TB, bootstrap string, extra map[string]string) *emulator {
	t.Helper()
	dirs := t.TempDir()
	em := &emulator{buildsDir: filepath.Join(dirs, "builds"), homeDir: filepath.Join(dirs, "home")}
	env := map[string]string{
		"EXECUTOR_BUILDS_DIR":         em.buildsDir,
		"EXECUTOR_HOME_DIR":           em.homeDir,
		"EXECUTOR_MARGIN_SECONDS":     "5",
		"EXECUTOR_KEEPALIVE_INTERVAL": "1s",
		"AWS_LAMBDA_FUNCTION_TIMEOUT": "120",
		"AWS_REGION":                  "eu-west-1",
		// The fake GitLab listens on loopback over http, as under make local.
		"ALLOW_HTTP_GITLAB":    "true",
		"ALLOW_PRIVATE_GITLAB": "true",
	}
	maps.Copy(env, lambdaCredentials)
	maps.Copy(env, extra)
	em.fn = lambdatest.Start(t, bootstrap, lambdatest.Options{Env: env})
	return em
}

// env is the emulator's envMaker: a fresh fake GitLab whose jobs the warm
// function runs.
func (em *emulator) env(t testing.TB, opts ...gitlabtest.Option) *env {
	t.Helper()
	e := newEnvIn(t, em.buildsDir, em.homeDir, opts...)
	e.fn = em.fn
	// The bootstrap is built without -X main.version: "dev-<revision>".
	e.cfg.Version = "dev"
	// CI_RUNNER_REVISION is the commit the bootstrap was built from.
	e.cfg.Revision = buildRevision(t)
	return e
}

// buildRevision is the revision the emulated bootstrap reports: the first
// 8 characters of the commit its build recorded, "unknown" when the build
// recorded none (as with GOFLAGS=-buildvcs=false).
func buildRevision(t testing.TB) string {
	t.Helper()
	bi, err := buildinfo.ReadFile(lambdatest.Build(t, "./functions/executor"))
	if err != nil {
		t.Fatalf("read the bootstrap's build info: %v", err)
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 8 {
			return s.Value[:8]
		}
	}
	return "unknown"
}

// TestUnderTheEmulator runs the executor's cases through one warm function.
func TestUnderTheEmulator(t *testing.T) {
	t.Parallel() // a function of its own; much of the time goes to sleeping jobs
	em := startEmulator(t, nil)

	// A process of this machine outside the function's tree: the clean-up
	// between jobs must never reach it.
	bystander := exec.Command("sleep", "1000")
	if err := bystander.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bystander.Process.Kill(); bystander.Wait() })

	for _, tt := range []struct {
		name string
		run  func(*testing.T, envMaker)
	}{
		{"outcomes, sections, checksum", testJobOutcomes},
		{"two-phase acceptance", testTwoPhaseAcceptsTheJob},
		{"sandbox: no AWS credentials", testNoCredentials},
		{"sandbox: a warm environment shows the next job nothing", func(t *testing.T, mk envMaker) { warmEnvironmentIsClean(t, mk(t), true) }},
		{"sources", testGitStrategies},
		{"dependencies", testDependencies},
		{"cache", testCache},
		{"after_script", testAfterScript},
		{"variables and masking", testVariablesAndMasking},
		{"output limit", testOutputLimit},
		{"cancellation", testCancellation},
		{"abort", testAbortWhenGitLabCancelsOutright},
		{"job timeout", testJobTimeout},
		{"artifacts", testArtifacts},
		{"image and services", testImageAndServicesLine},
		{"run steps refused", testRunStepsAreRefused},
		{"malformed events", testMalformedEvents},
		{"payload_url", testPayloadURL},
		{"variables in artifact and cache paths and names", testVariablesInPathsAndNames},
		{"untracked takes ignored files", testUntrackedTakesIgnoredFiles},
		{"release keyword", testReleaseKeyword},
		{"CI_DEBUG_TRACE", testDebugTrace},
		{"FF_TIMESTAMPS", testTimestamps},
		{"RUNNER_SCRIPT_TIMEOUT and RUNNER_AFTER_SCRIPT_TIMEOUT", testStageTimeouts},
		{"attempts", testAttempts},
		{"predefined variables", testPredefinedVariables},
		{"custom CA", testCustomCA},
		{"git: LFS, forced HTTPS submodules, extra flags", testGitSemantics},
	} {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, em.env) })
	}

	if !strings.Contains(em.fn.Logs(), `"cleanup":"descendants","cleanup_rule":"under a Lambda runtime with parent pid`) {
		t.Errorf("under the emulator with a parent other than PID 1 the clean-up mode is not descendants by the parent rule; logs:\n%s", em.fn.Logs())
	}
	if err := bystander.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("a process outside the function was killed by the clean-up: %v", err)
	}
}

// TestLambdaDeadlineUnderTheEmulator gives the function a 10 s timeout and
// a 5 s margin: the invocation's deadline comes long before the job's
// hour, and the executor must report the job before the emulator kills
// the function.
func TestLambdaDeadlineUnderTheEmulator(t *testing.T) {
	t.Parallel() // mostly waiting for sleeping jobs
	em := startEmulator(t, map[string]string{"AWS_LAMBDA_FUNCTION_TIMEOUT": "10", "EXECUTOR_MARGIN_SECONDS": "5"})
	e := em.env(t)
	ev := e.take(project(e, nil), lambdaDeadlineJob)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// invoke fails the test when the function was killed (a timeout is a
	// function error) instead of returning its Result.
	res := e.exec(ctx, ev)
	got := e.srv.Job(ev.Job.ID)
	wantLambdaDeadline(t, res, got)
	if logs := em.fn.Logs(); strings.Contains(logs, "Task timed out") {
		t.Errorf("the emulator timed the function out, want the executor to end first; logs:\n%s", logs)
	}
	e.srv.AssertNoViolations(t)
}

// testNoCredentials checks that a job's environment has neither the
// function's AWS credentials nor the runtime API.
func testNoCredentials(t *testing.T, mk envMaker) {
	e := mk(t)
	_, got := e.run(e.take(project(e, nil), gitlabtest.JobSpec{Script: []string{"env | sort"}}))
	if got.State != "success" {
		t.Fatalf("job = %s; trace:\n%s", got.State, got.Trace)
	}
	names := []string{"AWS_LAMBDA_RUNTIME_API="}
	for k, v := range lambdaCredentials {
		names = append(names, k+"=", v)
	}
	wantNotContains(t, got.Trace, names...)
	wantContains(t, got.Trace, "AWS_REGION=eu-west-1") // printing the environment worked
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

// warmEnvironmentIsClean runs two jobs in one warm environment: the first
// leaves processes (detached and not) and files in the project, HOME and
// builds directories; the second must find none of them. hostPIDs says the
// job's pids are this test's pids (no PID namespace).
//
// The first job also leaves a process that starts a copy of itself when it
// gets SIGTERM, and every copy does the same: the second job must find no
// copy alive.
func warmEnvironmentIsClean(t *testing.T, e *env, hostPIDs bool) {
	p := project(e, nil)
	// Processes are told apart by a tag of this call's own in their
	// command lines: tests run in parallel on one machine, and the
	// executor may end its environment (and a PID namespace with it) after
	// the first job, so pids can be reused.
	tag := gitlab.Variable{Key: "TAG", Value: fmt.Sprintf("left-%d-%d", time.Now().UnixNano(), rand.Int63())}
	ev := e.take(p, gitlabtest.JobSpec{Variables: []gitlab.Variable{tag}, Script: []string{
		`setsid sh -c 'sleep 1000; :' "detached-$TAG" >/dev/null 2>&1 </dev/null & echo "detached=$!"`,
		`nohup sh -c 'sleep 1001; :' "nohup-$TAG" >/dev/null 2>&1 </dev/null & echo "nohup=$!"`,
		`export RESPAWN='trap '\''sh -c "$RESPAWN" "respawn-$TAG" & exit 0'\'' TERM; while :; do sleep 0.05; done'`,
		`setsid sh -c "$RESPAWN" "respawn-$TAG" >/dev/null 2>&1 </dev/null &`,
		`echo left > left-in-project; echo left > "$HOME/left-in-home"; echo left > "$CI_BUILDS_DIR/left-in-builds"`,
		`echo "pid file" > "$HOME/pid"`,
		`echo left > "${TMPDIR:-/nonexistent}/left-in-tmp" 2>/dev/null || true`,
		`sleep 0.2`, // the respawner has set its trap
	}})
	_, first := e.run(ev)
	if first.State != "success" {
		t.Fatalf("first job = %s; trace:\n%s", first.State, first.Trace)
	}
	detached := pidFrom(t, first.Trace, "detached")
	nohup := pidFrom(t, first.Trace, "nohup")
	_, second := e.run(e.take(p, gitlabtest.JobSpec{
		Variables: []gitlab.Variable{tag},
		Script: []string{
			`for d in /proc/[0-9]*; do c=$(tr '\0' ' ' < "$d/cmdline" 2>/dev/null) || continue; case "$c" in *"-$TAG"*) echo "left alive: $d $c"; exit 3;; esac; done`,
			`for f in left-in-project "$HOME/left-in-home" "$HOME/pid" "$CI_BUILDS_DIR/left-in-builds" "${TMPDIR:-/nonexistent}/left-in-tmp"; do if test -e "$f"; then echo "found $f"; exit 2; fi; done`,
			`echo "home has: $(ls -A "$HOME")"`,
		},
	}))
	if second.State != "success" {
		t.Errorf("second job = %s/exit %d, want success (nothing left over); trace:\n%s", second.State, second.ExitCode, second.Trace)
	}
	for _, pid := range []int{detached, nohup} {
		if hostPIDs && alive(pid) {
			t.Errorf("process %d from the first job is still alive", pid)
		}
	}
	wantContains(t, second.Trace, "home has: \n")
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
	em := startEmulator(t, map[string]string{"TMPDIR": t.TempDir()})
	e := em.env(t)
	warmEnvironmentIsClean(t, e, false)
	if !strings.Contains(em.fn.Logs(), `"cleanup":"system","cleanup_rule":"child of PID 1`) {
		t.Errorf("as the child of PID 1 the executor did not pick the system clean-up by the child-of-PID-1 rule; logs:\n%s", em.fn.Logs())
	}
	e = em.env(t)
	if res, got := e.run(e.take(project(e, nil), gitlabtest.JobSpec{Script: []string{"exit 5"}})); res.ExitCode != 5 || got.State != "failed" {
		t.Errorf("failing job: result %+v, GitLab %s, want exit code 5 failed", res, got.State)
	}
}

// unshareBootstrap returns a bootstrap that starts the real one (built as
// SAM builds it) through unshare with args, so that the emulator runs it in
// namespaces of its own; before is shell run first, in those namespaces.
func unshareBootstrap(t *testing.T, before string, args ...string) string {
	t.Helper()
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Fatalf("this test needs unshare (util-linux): %v", err)
	}
	real := lambdatest.Build(t, "./functions/executor")
	inner := "exec " + real
	if before != "" {
		inner = before + "\n" + inner
	}
	path := filepath.Join(t.TempDir(), "bootstrap")
	script := fmt.Sprintf("#!/bin/sh\nexec %s %s /bin/sh -c '%s'\n", unshare, strings.Join(args, " "), inner)
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestSystemCleanupAsPID1 runs the bootstrap itself as PID 1 of a fresh
// PID namespace (with its own /proc), as a container image may run it: it
// picks the system-wide clean-up by the PID 1 rule, and a warm environment
// shows the next job nothing.
func TestSystemCleanupAsPID1(t *testing.T) {
	t.Parallel()
	bootstrap := unshareBootstrap(t, "", "--user", "--map-root-user", "--pid", "--fork", "--mount-proc", "--kill-child")
	// TMPDIR is wiped by the system clean-up: a test directory, never /tmp.
	em := startEmulatorWith(t, bootstrap, map[string]string{"TMPDIR": t.TempDir()})
	warmEnvironmentIsClean(t, em.env(t), false)
	if !strings.Contains(em.fn.Logs(), `"cleanup":"system","cleanup_rule":"PID 1 of its PID namespace`) {
		t.Errorf("as PID 1 the executor did not pick the system clean-up by the PID 1 rule; logs:\n%s", em.fn.Logs())
	}
}

// TestFailedCleanupEndsTheEnvironment: a job leaves what the clean-up
// cannot remove (a file system mounted in the builds directory, in the
// function's own user and mount namespaces). The job is still reported,
// then the bootstrap exits with status 1, and the next job starts in a
// fresh process. A clean-up that fails before a job refuses the job: it
// is failed in GitLab with a trace line that says why, and the process
// exits too.
func TestFailedCleanupEndsTheEnvironment(t *testing.T) {
	t.Parallel()
	exitLine := regexp.MustCompile(`Runtime exited with error: exit status 1`)
	ready := `"msg":"executor: ready"`
	ending := `executor: ending the execution environment after reporting the job`
	// The emulator logs the exit once the response has gone out.
	exited := func(fn *lambdatest.Function) bool {
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if exitLine.MatchString(fn.Logs()) {
				return true
			}
		}
		return false
	}
	invoke := func(t *testing.T, e *env, ev dispatch.Event) lambdatest.Response {
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		resp, err := e.fn.Invoke(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}

	t.Run("after the job", func(t *testing.T) {
		em := startEmulatorWith(t, unshareBootstrap(t, "", "--user", "--map-root-user", "--mount"), nil)
		e := em.env(t)
		p := project(e, nil)
		ev := e.take(p, gitlabtest.JobSpec{Script: []string{
			`mkdir "$CI_BUILDS_DIR/stuck" && mount -t tmpfs tmpfs "$CI_BUILDS_DIR/stuck" && echo mounted`,
		}})
		resp := invoke(t, e, ev)
		got := e.srv.Job(ev.Job.ID)
		if got.State != "success" {
			t.Fatalf("job = %s, want success reported before the environment ends; trace:\n%s", got.State, got.Trace)
		}
		wantContains(t, got.Trace, "mounted")
		var res dispatch.Result
		if err := json.Unmarshal(resp.Payload, &res); err != nil || !res.Reported || res.State != "success" {
			t.Errorf("response %s (%v): want the reported result", resp.Payload, err)
		}
		ok := exited(em.fn)
		logs := em.fn.Logs()
		if !resp.RuntimeExited || !ok || !strings.Contains(logs, ending) {
			t.Errorf("runtime exited %v; want the process to exit with status 1 after the response; logs:\n%s", resp.RuntimeExited, logs)
		}
		if n := strings.Count(logs, ready); n != 1 {
			t.Errorf("executor started %d times before the next job, want 1", n)
		}

		res, next := e.run(e.take(p, gitlabtest.JobSpec{Script: []string{"echo next"}}))
		if next.State != "success" || !res.Reported {
			t.Errorf("next job = %s (result %+v), want success in a fresh environment; trace:\n%s", next.State, res, next.Trace)
		}
		if n := strings.Count(em.fn.Logs(), ready); n != 2 {
			t.Errorf("executor started %d times, want 2 (the next job in a fresh process); logs:\n%s", n, em.fn.Logs())
		}
	})

	t.Run("before the job", func(t *testing.T) {
		dirs := t.TempDir()
		builds := filepath.Join(dirs, "builds")
		if err := os.MkdirAll(filepath.Join(builds, "stuck"), 0o755); err != nil {
			t.Fatal(err)
		}
		bootstrap := unshareBootstrap(t, "mount -t tmpfs tmpfs "+filepath.Join(builds, "stuck"), "--user", "--map-root-user", "--mount")
		em := startEmulatorWith(t, bootstrap, map[string]string{"EXECUTOR_BUILDS_DIR": builds})
		em.buildsDir = builds
		e := em.env(t)
		ev := e.take(project(e, nil), gitlabtest.JobSpec{Script: []string{"echo should not run"}})
		resp := invoke(t, e, ev)
		got := e.srv.Job(ev.Job.ID)
		if got.State != "failed" || got.FailureReason != "runner_system_failure" {
			t.Errorf("job = %s (%s), want failed with runner_system_failure", got.State, got.FailureReason)
		}
		wantContains(t, got.Trace, "could not be cleaned up, so this job was not run in it")
		wantNotContains(t, got.Trace, "should not run\n")
		if !exited(em.fn) || !resp.RuntimeExited {
			t.Errorf("runtime exited %v; want the process to exit with status 1; logs:\n%s", resp.RuntimeExited, em.fn.Logs())
		}
	})
}

// BenchmarkInvokeTrivialJob measures, under the emulator with a warm
// function, the time from taking the job (the poller's job request plus the
// invocation) to the first script line and to the result (the final update
// is applied before the handler returns).
func BenchmarkInvokeTrivialJob(b *testing.B) {
	e := startEmulator(b, nil).env(b)
	p := project(e, nil)
	e.run(e.take(p, gitlabtest.JobSpec{Script: []string{"true"}})) // cold start
	var toFirst, toResult time.Duration
	n := 0
	for b.Loop() {
		begin := time.Now()
		res, got := e.run(e.take(p, gitlabtest.JobSpec{Script: []string{`echo "first=$(date +%s%N)"`}}))
		toResult += time.Since(begin)
		if res.State != "success" {
			b.Fatalf("result %+v", res)
		}
		m := pidLine.FindSubmatch(got.Trace)
		if m == nil {
			b.Fatalf("no first=<ns> line in the trace:\n%s", got.Trace)
		}
		ns, err := strconv.ParseInt(string(m[2]), 10, 64)
		if err != nil {
			b.Fatal(err)
		}
		toFirst += time.Unix(0, ns).Sub(begin)
		n++
	}
	b.ReportMetric(float64(toFirst.Milliseconds())/float64(n), "ms-to-first-script-line")
	b.ReportMetric(float64(toResult.Milliseconds())/float64(n), "ms-to-result")
}
