package shell_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/shell"
)

// recordingLauncher runs steps on this machine and records what the
// session asked of it.
type recordingLauncher struct {
	shell.Direct
	mu      sync.Mutex
	looked  []string
	cmds    []shell.Command
	refuse  error
	pathArg string
}

func (l *recordingLauncher) LookPath(name, path string) string {
	l.mu.Lock()
	l.looked, l.pathArg = append(l.looked, name), path
	l.mu.Unlock()
	return l.Direct.LookPath(name, path)
}

func (l *recordingLauncher) Run(ctx context.Context, c shell.Command) error {
	l.mu.Lock()
	l.cmds = append(l.cmds, c)
	l.mu.Unlock()
	if l.refuse != nil {
		return l.refuse
	}
	return l.Direct.Run(ctx, c)
}

func envValue(env []string, key string) string {
	v := ""
	for _, kv := range env {
		if k, val, _ := strings.Cut(kv, "="); k == key {
			v = val
		}
	}
	return v
}

// Every step, after_script included, goes through the configured Launcher,
// which also picks the shell.
func TestLauncherStartsEveryStep(t *testing.T) {
	l := &recordingLauncher{}
	cfg := testConfig(t)
	cfg.Launcher = l
	s := open(t, cfg, gitlab.Variables{{Key: "GREETING", Value: "hi"}})
	if len(l.looked) == 0 || l.looked[0] != shell.Bash || l.pathArg != envValue(s.Env(), "PATH") {
		t.Errorf("LookPath calls %v with PATH %q, want bash first in the job's PATH %q", l.looked, l.pathArg, envValue(s.Env(), "PATH"))
	}
	trace := mustSucceed(t, s, `echo "$GREETING from $PWD"`)
	var after bytes.Buffer
	if r := s.RunAfterScript(context.Background(), []string{"echo after"}, shell.StatusSuccess, &after); r.Outcome != shell.Succeeded {
		t.Fatalf("after_script: %v (%v)", r.Outcome, r.Err)
	}
	if !strings.Contains(trace, "hi from "+cfg.ProjectDir+"\n") || !strings.Contains(after.String(), "after\n") {
		t.Errorf("the steps' output did not reach the trace:\n%s\n%s", trace, after.String())
	}
	if len(l.cmds) != 2 {
		t.Fatalf("Launcher ran %d commands, want 2 (script, after_script)", len(l.cmds))
	}
	for i, want := range []string{shell.StatusRunning, shell.StatusSuccess} {
		c := l.cmds[i]
		if c.Path != l.Direct.LookPath(s.Shell(), envValue(s.Env(), "PATH")) || c.Dir != cfg.ProjectDir {
			t.Errorf("command %d: path %q in %q, want the session's shell in the project directory", i, c.Path, c.Dir)
		}
		if got := envValue(c.Env, "CI_JOB_STATUS"); got != want {
			t.Errorf("command %d: CI_JOB_STATUS=%q, want %q", i, got, want)
		}
		if !slices.Contains(c.Env, "GREETING=hi") {
			t.Errorf("command %d: the job's variables are missing from its environment", i)
		}
	}
}

// A Launcher that cannot start the shell makes a system failure that says
// why, never a script failure.
func TestLauncherStartFailureIsASystemFailure(t *testing.T) {
	cfg := testConfig(t)
	cfg.Launcher = &recordingLauncher{refuse: errors.New("user namespaces are not allowed")}
	r, _ := runScript(t, open(t, cfg, nil), "true")
	if r.Outcome != shell.SystemFailure || r.Err == nil || !strings.Contains(r.Err.Error(), "user namespaces are not allowed") {
		t.Errorf("outcome %v (%v), want a system failure naming the cause", r.Outcome, r.Err)
	}
}
