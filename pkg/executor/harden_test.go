package executor_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
	"gitlab-serverless-runner/pkg/lambdatest"
)

// peekAtTheExecutor walks up the job's ancestors and, for the executor's
// process (the bootstrap), tries what a job running as the same Unix user
// could do to it: read its environment and open its memory (the kernel
// applies the ptrace access check to both). It then checks that the job's
// own /proc files still work, as a dumpable process of its own.
var peekAtTheExecutor = []string{
	`grep '^CapEff:' /proc/self/status`,
	`pid=$$
	while [ "$pid" -gt 1 ]; do
		pid=$(sed -n 's/^PPid:[[:space:]]*//p' "/proc/$pid/status")
		[ "$pid" -gt 0 ] || break
		[ "$(cat "/proc/$pid/comm")" = bootstrap ] || continue
		echo "executor=$pid"
		if environ=$(2>/dev/null tr '\0' '\n' <"/proc/$pid/environ"); then echo "executor-environ=read"; echo "$environ"; else echo "executor-environ=refused"; fi
		if (exec 3<"/proc/$pid/mem") 2>/dev/null; then echo "executor-mem=open"; else echo "executor-mem=refused"; fi
	done`,
	`cat /proc/self/environ | tr '\0' '\n' | grep -q '^CI_JOB_ID=' && echo "own-environ=read"`,
}

// TestExecutorIsClosedToItsJobs runs a job under the emulator that tries to
// read the executor's environment, where Lambda put the role's
// credentials, and its memory. On Lambda the function runs as an
// unprivileged user without capabilities; the emulator runs here with an
// empty capability set for the same effect (root's CAP_SYS_PTRACE would
// otherwise open any process).
//
// The emulator, the job's grandparent here, holds the credentials too and
// stays readable: on Lambda that parent is Lambda's own init, outside the
// function's code. So the test asserts on the executor's process only.
func TestExecutorIsClosedToItsJobs(t *testing.T) {
	if os.Geteuid() == 0 {
		rie, err := lambdatest.EmulatorPath()
		if err != nil {
			t.Fatal(err)
		}
		setpriv, err := exec.LookPath("setpriv")
		if err != nil {
			t.Fatalf("this test needs setpriv (util-linux) to drop root's capabilities: %v", err)
		}
		wrapper := filepath.Join(t.TempDir(), "rie-without-capabilities")
		script := fmt.Sprintf("#!/bin/sh\nexec %s --inh-caps=-all --ambient-caps=-all --bounding-set=-all -- %s \"$@\"\n", setpriv, rie)
		if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		t.Setenv("AWS_LAMBDA_RIE", wrapper)
	}
	e := startEmulator(t, nil).env(t)
	_, got := e.run(e.take(project(e, nil), gitlabtest.JobSpec{Script: peekAtTheExecutor}))
	if got.State != "success" {
		t.Fatalf("job = %s, want success; trace:\n%s", got.State, got.Trace)
	}
	// The conditions of Lambda: no capabilities, and the executor found.
	wantContains(t, got.Trace, "CapEff:\t0000000000000000\n", "executor=")
	if pid := pidFrom(t, got.Trace, "executor"); pid <= 1 {
		t.Errorf("executor pid = %d, want the bootstrap's", pid)
	}
	for _, tt := range []struct {
		name          string
		want, notWant string
	}{
		{"environment", "executor-environ=refused", "executor-environ=read"},
		{"memory (ptrace check)", "executor-mem=refused", "executor-mem=open"},
		{"the job's own environment", "own-environ=read", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			wantContains(t, got.Trace, tt.want)
			wantNotContains(t, got.Trace, tt.notWant)
		})
	}
	t.Run("credentials", func(t *testing.T) {
		for k, v := range lambdaCredentials {
			if strings.Contains(string(got.Trace), v) {
				t.Errorf("the job read %s's value; trace:\n%s", k, got.Trace)
			}
		}
	})
}
