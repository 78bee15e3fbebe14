package sandbox_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"gitlab-serverless-runner/pkg/sandbox"
)

// respawnScript is what a job may leave to outrun a clean-up: on SIGTERM
// it starts a copy of itself and exits. Each copy appends its pid to the
// file $1; $2 marks the copies' command lines. Run it as
// sh -c "$RESPAWN" respawner <pid file> <marker>.
const respawnScript = `trap 'sh -c "$RESPAWN" respawner "$1" "$2" & exit 0' TERM; echo $$ >> "$1"; while :; do sleep 0.05; done`

// startRespawner starts respawnScript detached (setsid, and orphaned by a
// parent that exits at once) and waits until its first copy runs.
func startRespawner(t *testing.T, pidFile, marker string) {
	t.Helper()
	cmd := exec.Command("setsid", "sh", "-c", `sh -c "$RESPAWN" respawner "$1" "$2" >/dev/null 2>&1 </dev/null &`, "sh", pidFile, marker)
	cmd.Env = append(os.Environ(), "RESPAWN="+respawnScript)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("start the respawner: %v\n%s", err, out)
	}
	for deadline := time.Now().Add(30 * time.Second); len(readPIDs(t, pidFile)) == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the respawner never started")
		}
	}
	time.Sleep(100 * time.Millisecond) // its trap is set before its first sleep ends
}

func readPIDs(t *testing.T, pidFile string) []int {
	t.Helper()
	b, err := os.ReadFile(pidFile)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("pid file %s: %v", pidFile, err)
		}
		pids = append(pids, pid)
	}
	return pids
}

// wantRespawnerGone checks that the respawner ran at least two copies (it
// did respawn on SIGTERM) and that none of them, nor anything marked with
// marker, is alive.
func wantRespawnerGone(t *testing.T, pidFile, marker string) {
	t.Helper()
	time.Sleep(200 * time.Millisecond) // a survivor would have respawned by now
	pids := readPIDs(t, pidFile)
	if len(pids) < 2 {
		t.Errorf("respawner copies %v: want at least 2 (it respawns on SIGTERM)", pids)
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("respawner copy %d is alive after the clean-up (copies %v)", pid, pids)
		}
	}
	procs, err := sandbox.ListProcesses("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range procs {
		cmdline, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p.PID), "cmdline"))
		if p.State != "Z" && strings.Contains(string(cmdline), marker) {
			t.Errorf("process %d (%s) of the respawner is alive after the clean-up", p.PID, p.Comm)
		}
	}
}

const descendantsHelperEnv = "SANDBOX_TEST_DESCENDANTS_HELPER"

// TestDescendantsCleanupKillsRespawners runs, in a child process of its
// own, the descendants clean-up against a process that forks a copy of
// itself on SIGTERM, while a process of this test outside the child's tree
// must survive.
func TestDescendantsCleanupKillsRespawners(t *testing.T) {
	bystander, done := startDetached(t, "sleep", "1000")
	cmd := exec.Command(os.Args[0], "-test.run=^TestDescendantsHelper$", "-test.v")
	cmd.Env = append(os.Environ(), descendantsHelperEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "HELPER-OK") {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	select {
	case ws := <-done:
		t.Errorf("bystander %d outside the tree ended with %v, want it still running", bystander.Process.Pid, ws)
	default:
	}
}

// TestDescendantsHelper is the body of TestDescendantsCleanupKillsRespawners:
// a descendants clean-up kills every descendant of the test binary, so it
// runs only in the child process that test starts.
func TestDescendantsHelper(t *testing.T) {
	if os.Getenv(descendantsHelperEnv) != "1" {
		return // run only as the helper process
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	marker := fmt.Sprintf("respawn-marker-%d", os.Getpid())
	pidFile := filepath.Join(t.TempDir(), "pids")
	startRespawner(t, pidFile, marker)
	s := &sandbox.Sandbox{Cleanup: sandbox.CleanupDescendants, Grace: 300 * time.Millisecond}
	if _, err := s.KillOthers(context.Background()); err != nil {
		t.Fatalf("KillOthers: %v", err)
	}
	wantRespawnerGone(t, pidFile, marker)
	if !t.Failed() {
		fmt.Println("HELPER-OK")
	}
}

// TestKillOthersReportsWhatItCannotKill: a process that refuses every
// signal (as one of another user would) survives the rounds, and the
// clean-up says so instead of reporting success.
func TestKillOthersReportsWhatItCannotKill(t *testing.T) {
	job, done := startDetached(t, "sleep", "1000")
	restore := sandbox.RefuseSignals(job.Process.Pid)
	s := &sandbox.Sandbox{Cleanup: sandbox.CleanupLocal, Grace: 50 * time.Millisecond, KillTimeout: 300 * time.Millisecond}
	_, err := s.KillOthers(context.Background(), job.Process.Pid)
	restore()
	if err == nil || !strings.Contains(err.Error(), strconv.Itoa(job.Process.Pid)) {
		t.Fatalf("KillOthers() error = %v, want one naming the surviving pid %d", err, job.Process.Pid)
	}
	if _, err := s.KillOthers(context.Background(), job.Process.Pid); err != nil {
		t.Fatalf("KillOthers once signals work: %v", err)
	}
	if ws := waitStatus(t, done); !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
		t.Errorf("job ended with %v, want SIGTERM", ws)
	}
}
