package sandbox_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/sandbox"
)

// helperEnv marks the re-executed test binary that runs inside a fresh PID
// namespace.
const helperEnv = "SANDBOX_TEST_PIDNS_HELPER"

// TestSystemWideKillInPIDNamespace exercises the Lambda-mode, system-wide
// KillOthers for real, but only inside a new PID namespace with its own
// /proc (unshare, mapped to root in a user namespace), where the test binary
// is PID 1 and sees nothing of this machine's other processes.
func TestSystemWideKillInPIDNamespace(t *testing.T) {
	cmd := exec.Command("unshare", "--user", "--map-root-user", "--pid", "--fork", "--mount-proc",
		os.Args[0], "-test.run=^TestPIDNamespaceHelper$", "-test.v")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper in a PID namespace: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "HELPER-OK") {
		t.Fatalf("helper did not report success:\n%s", out)
	}
}

// TestPIDNamespaceHelper is the body of TestSystemWideKillInPIDNamespace. It
// does nothing unless it is PID 1 of a namespace and was asked to run: a
// system-wide kill anywhere else would take down the machine's processes.
func TestPIDNamespaceHelper(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		return // run only as the helper process
	}
	if os.Getpid() != 1 {
		t.Fatalf("helper is pid %d, want 1 (inside a fresh PID namespace)", os.Getpid())
	}
	start := func(setsid bool, args ...string) *exec.Cmd {
		c := exec.Command(args[0], args[1:]...)
		c.SysProcAttr = &syscall.SysProcAttr{Setsid: setsid}
		if err := c.Start(); err != nil {
			t.Fatalf("start %v: %v", args, err)
		}
		go func() { _ = c.Wait() }()
		return c
	}
	survivor := start(false, "sleep", "1000")
	s := &sandbox.Sandbox{Cleanup: sandbox.CleanupSystem, Grace: 500 * time.Millisecond}
	if err := s.Baseline(); err != nil {
		t.Fatal(err)
	}
	child := start(false, "sleep", "1000")
	detached := start(true, "sleep", "1000")
	// An orphan: its parent exits at once and it is re-parented to us.
	start(true, "sh", "-c", "sleep 1000 & echo started")
	stubborn := start(true, "sh", "-c", `trap "" TERM; while :; do sleep 1; done`)
	pidFile := filepath.Join(t.TempDir(), "pids")
	startRespawner(t, pidFile, "respawn-marker-pidns")

	killed, err := s.KillOthers(context.Background())
	if err != nil {
		t.Fatalf("KillOthers: %v", err)
	}
	for _, c := range []*exec.Cmd{child, detached, stubborn} {
		if !slices.Contains(killed, c.Process.Pid) {
			t.Errorf("KillOthers() = %v, want it to contain %d (%v)", killed, c.Process.Pid, c.Args)
		}
	}
	if slices.Contains(killed, survivor.Process.Pid) {
		t.Errorf("KillOthers() = %v, killed baseline process %d", killed, survivor.Process.Pid)
	}
	procs, err := sandbox.ListProcesses("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var live []string
	for _, p := range procs {
		if p.State != "Z" && p.PID != 1 && p.PID != survivor.Process.Pid {
			live = append(live, fmt.Sprintf("%d %s", p.PID, p.Comm))
		}
	}
	if len(live) > 0 {
		t.Errorf("processes alive after a system-wide KillOthers: %v", live)
	}
	wantRespawnerGone(t, pidFile, "respawn-marker-pidns")
	if !t.Failed() {
		fmt.Println("HELPER-OK")
	}
}
