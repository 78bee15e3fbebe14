package shell_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/sandbox"
	"gitlab-serverless-runner/pkg/shell"
)

const (
	green = "\x1b[32;1m"
	reset = "\x1b[0;m"
)

func TestCommandsAreEchoedThenRun(t *testing.T) {
	for _, sh := range shells {
		t.Run(sh, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Shell = sh
			s := open(t, cfg, nil)
			trace := mustSucceed(t, s,
				"echo hello",
				"   ",
				"echo 'it''s' \"%s\" \\\\",
				"if true; then\n  echo inside\nfi",
				"echo to-stderr >&2",
			)
			want := green + "$ echo hello" + reset + "\n" +
				"hello\n" +
				green + `$ echo 'it''s' "%s" \\` + reset + "\n" +
				`its %s \` + "\n" +
				green + "$ if true; then # collapsed multi-line command" + reset + "\n" +
				"inside\n" +
				green + "$ echo to-stderr >&2" + reset + "\n" +
				"to-stderr\n"
			if trace != want {
				t.Errorf("trace =\n%q\nwant\n%q", trace, want)
			}
		})
	}
}

func TestScriptStopsAtFirstFailure(t *testing.T) {
	for _, sh := range shells {
		t.Run(sh, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Shell = sh
			s := open(t, cfg, nil)
			r, trace := runScript(t, s, "echo one", "sh -c 'exit 7'", "echo never")
			if r.Outcome != shell.Failed || r.ExitCode != 7 {
				t.Errorf("result = %v exit %d, want failed exit 7", r.Outcome, r.ExitCode)
			}
			if !strings.Contains(trace, "one\n") || strings.Contains(trace, "never") {
				t.Errorf("trace = %q, want the first command's output and nothing after the failure", trace)
			}
		})
	}
}

func TestExitCodes(t *testing.T) {
	tests := []struct {
		name     string
		commands []string
		outcome  shell.Outcome
		code     int
	}{
		{"success", []string{"true"}, shell.Succeeded, 0},
		{"no commands", nil, shell.Succeeded, 0},
		{"explicit exit", []string{"exit 42"}, shell.Failed, 42},
		{"pipefail", []string{"false | true", "echo after"}, shell.Failed, 1},
		{"killed by a signal", []string{"kill -KILL $$"}, shell.Failed, 128 + 9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Shell = shell.Bash
			s := open(t, cfg, nil)
			r, trace := runScript(t, s, tt.commands...)
			if r.Outcome != tt.outcome || r.ExitCode != tt.code {
				t.Errorf("result = %v exit %d, want %v exit %d; trace:\n%s", r.Outcome, r.ExitCode, tt.outcome, tt.code, trace)
			}
		})
	}
}

func TestAfterScript(t *testing.T) {
	tests := []struct {
		name        string
		script      string
		afterScript string
		wantStatus  string
		wantWarning string
	}{
		{"after success", "true", "echo status=$CI_JOB_STATUS", "success", ""},
		{"after failure", "exit 3", "echo status=$CI_JOB_STATUS", "failed", ""},
		{"failing after_script", "true", "echo status=$CI_JOB_STATUS; exit 5", "success", "after_script failed, but job will continue unaffected: exit code 5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			s := open(t, cfg, nil)
			r, _ := runScript(t, s, "SHELL_STATE=leaked", tt.script)
			var trace bytes.Buffer
			after := s.RunAfterScript(context.Background(), []string{tt.afterScript, "echo state=${SHELL_STATE:-none}"}, r.JobStatus(), &trace)
			if !strings.Contains(trace.String(), "status="+tt.wantStatus+"\n") {
				t.Errorf("after_script trace = %q, want CI_JOB_STATUS %q", trace.String(), tt.wantStatus)
			}
			if tt.wantWarning == "" {
				if after.Outcome != shell.Succeeded {
					t.Errorf("after_script outcome = %v, want succeeded", after.Outcome)
				}
				if !strings.Contains(trace.String(), "state=none\n") {
					t.Errorf("after_script trace = %q, want no shell state from the script", trace.String())
				}
				return
			}
			if !strings.Contains(trace.String(), tt.wantWarning) {
				t.Errorf("after_script trace = %q, want warning %q", trace.String(), tt.wantWarning)
			}
			if got := r.JobStatus(); got != tt.wantStatus {
				t.Errorf("job status after a failing after_script = %q, want %q", got, tt.wantStatus)
			}
		})
	}
}

func TestAfterScriptTimeout(t *testing.T) {
	tests := []struct {
		name     string
		own      time.Duration
		deadline time.Duration
	}{
		{"its own timeout", 200 * time.Millisecond, time.Hour},
		{"the job deadline comes first", time.Hour, 200 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.AfterScriptTimeout = tt.own
			cfg.KillGrace = 200 * time.Millisecond
			s := open(t, cfg, nil)
			ctx, cancel := context.WithTimeout(context.Background(), tt.deadline)
			defer cancel()
			var trace bytes.Buffer
			r := s.RunAfterScript(ctx, []string{"sleep 1000"}, shell.StatusSuccess, &trace)
			if r.Outcome != shell.TimedOut {
				t.Errorf("outcome = %v, want timed out", r.Outcome)
			}
			if !strings.Contains(trace.String(), "after_script failed, but job will continue unaffected: timed out") {
				t.Errorf("trace = %q, want a timeout warning", trace.String())
			}
		})
	}
}

func TestStoppedStepKillsItsWholeProcessGroup(t *testing.T) {
	canceledByGitLab := errors.New("canceled by GitLab")
	tests := []struct {
		name    string
		trap    bool
		stop    func(cancel context.CancelCauseFunc)
		timeout time.Duration
		want    shell.Outcome
	}{
		{name: "cancel", stop: func(c context.CancelCauseFunc) { c(canceledByGitLab) }, want: shell.Canceled},
		{name: "cancel with ErrTimedOut", stop: func(c context.CancelCauseFunc) { c(shell.ErrTimedOut) }, want: shell.TimedOut},
		{name: "deadline", timeout: 2 * time.Second, want: shell.TimedOut},
		{name: "script ignoring SIGTERM", trap: true, stop: func(c context.CancelCauseFunc) { c(canceledByGitLab) }, want: shell.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.KillGrace = 300 * time.Millisecond
			s := open(t, cfg, nil)
			pidFile := filepath.Join(cfg.BuildsDir, "bg.pid")
			commands := []string{`sleep 1000 & echo $! > "` + pidFile + `"`, "sleep 1000"}
			if tt.trap {
				commands = []string{`trap '' TERM`, `sleep 1000 & echo $! > "` + pidFile + `"`, `while :; do sleep 1; done`}
			}
			ctx, cancel := context.WithCancelCause(context.Background())
			defer cancel(nil)
			if tt.timeout > 0 {
				var c context.CancelFunc
				ctx, c = context.WithTimeout(ctx, tt.timeout)
				defer c()
			}
			done := make(chan shell.Result, 1)
			var trace bytes.Buffer
			go func() { done <- s.Run(ctx, gitlab.Step{Name: gitlab.StepScript, Script: commands}, &trace) }()

			bg := waitForPID(t, pidFile)
			if tt.stop != nil {
				tt.stop(cancel)
			}
			var r shell.Result
			select {
			case r = <-done:
			case <-time.After(60 * time.Second):
				t.Fatal("Run did not return after the step was stopped")
			}
			if r.Outcome != tt.want {
				t.Errorf("outcome = %v (%v), want %v", r.Outcome, r.Err, tt.want)
			}
			if tt.want == shell.Canceled && !errors.Is(r.Err, canceledByGitLab) {
				t.Errorf("Err = %v, want the cancel cause", r.Err)
			}
			if alive(bg) {
				t.Errorf("background process %d survived the stopped step", bg)
			}
		})
	}
}

func TestBackgroundProcessesEndWithTheirStep(t *testing.T) {
	cfg := testConfig(t)
	cfg.KillGrace = 300 * time.Millisecond
	s := open(t, cfg, nil)
	pidFile := filepath.Join(cfg.BuildsDir, "bg.pid")
	mustSucceed(t, s, `sleep 1000 & echo $! > "`+pidFile+`"`, "echo done")
	if bg := waitForPID(t, pidFile); alive(bg) {
		t.Errorf("background process %d outlived its step", bg)
	}
}

func TestShFallback(t *testing.T) {
	shPath := lookPath(t, "sh")
	envPath := lookPath(t, "env")
	onlySh := t.TempDir()
	for name, target := range map[string]string{"sh": shPath, "env": envPath} {
		if err := os.Symlink(target, filepath.Join(onlySh, name)); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name  string
		force string
		path  string
		want  string
	}{
		{"bash by default", "", os.Getenv("PATH"), shell.Bash},
		{"forced sh", shell.Sh, os.Getenv("PATH"), shell.Sh},
		{"PATH without bash", "", onlySh, shell.Sh},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Shell = tt.force
			cfg.BaseEnv = []string{"PATH=" + tt.path}
			s := open(t, cfg, nil)
			if got := s.Shell(); got != tt.want {
				t.Errorf("Shell() = %q, want %q", got, tt.want)
			}
			trace := mustSucceed(t, s, `if [ -n "${BASH_VERSION:-}" ]; then echo ran=bash; else echo ran=sh; fi`)
			if !strings.Contains(trace, "ran="+tt.want+"\n") {
				t.Errorf("trace = %q, want ran=%s", trace, tt.want)
			}
			r, _ := runScript(t, s, "false", "echo never")
			if r.Outcome != shell.Failed || r.ExitCode != 1 {
				t.Errorf("set -e: result = %v exit %d, want failed exit 1", r.Outcome, r.ExitCode)
			}
		})
	}
}

func TestGitlabEnvCarriesVariablesBetweenSteps(t *testing.T) {
	for _, sh := range shells {
		t.Run(sh, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Shell = sh
			s := open(t, cfg, nil)
			mustSucceed(t, s,
				`echo 'FROM_SCRIPT="hello world"' >> "$GITLAB_ENV"`,
				`echo "SECOND=2" >> "$GITLAB_ENV"`,
			)
			var trace bytes.Buffer
			r := s.Run(context.Background(), gitlab.Step{Name: gitlab.StepRelease, Script: []string{
				`echo "release sees [$FROM_SCRIPT] [$SECOND]"`,
				`sh -c 'echo "child sees [$FROM_SCRIPT]"'`,
			}}, &trace)
			if r.Outcome != shell.Succeeded {
				t.Fatalf("release: %v (%v)", r.Outcome, r.Err)
			}
			for _, want := range []string{"release sees [hello world] [2]\n", "child sees [hello world]\n"} {
				if !strings.Contains(trace.String(), want) {
					t.Errorf("trace = %q, want %q", trace.String(), want)
				}
			}
			trace.Reset()
			s.RunAfterScript(context.Background(), []string{`echo "after sees [$FROM_SCRIPT]"`}, shell.StatusSuccess, &trace)
			if !strings.Contains(trace.String(), "after sees [hello world]\n") {
				t.Errorf("after_script trace = %q, want the dotenv variable", trace.String())
			}
		})
	}
}

func TestStepAfterCancellationDoesNotStart(t *testing.T) {
	cfg := testConfig(t)
	s := open(t, cfg, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	marker := filepath.Join(cfg.BuildsDir, "ran")
	var trace bytes.Buffer
	r := s.Run(ctx, gitlab.Step{Name: gitlab.StepScript, Script: []string{`touch "` + marker + `"`}}, &trace)
	if r.Outcome != shell.Canceled {
		t.Errorf("outcome = %v, want canceled", r.Outcome)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the step ran under a canceled context")
	}
}

// waitForPID waits for a pid file the job writes (generous bound, for a
// loaded machine) and returns the pid.
func waitForPID(t *testing.T, path string) int {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		b, err := os.ReadFile(path)
		if err == nil && strings.HasSuffix(string(b), "\n") {
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatalf("parse pid file %q: %v", b, err)
			}
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid file %s never written", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// alive reports whether pid exists and is not a zombie (`kill -0`, then
// /proc to tell a zombie from a live process).
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	procs, err := sandbox.ListProcesses("/proc")
	if err != nil {
		return true
	}
	for _, p := range procs {
		if p.PID == pid {
			return p.State != "Z"
		}
	}
	return false
}

func lookPath(t *testing.T, name string) string {
	t.Helper()
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	t.Fatalf("%s not found on PATH", name)
	return ""
}
