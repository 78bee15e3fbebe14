package sandbox

import (
	"fmt"
	"os"
)

// Cleanup says how far the clean-up before and after each job reaches.
type Cleanup int

const (
	// CleanupLocal leaves the machine alone: only the job's own process
	// groups are stopped, and Wipe refuses top-level directories and the
	// user's home. It is the zero value, for tests and development.
	CleanupLocal Cleanup = iota
	// CleanupDescendants kills every process descending from the caller,
	// which must be a child subreaper (PR_SET_CHILD_SUBREAPER) so that
	// what a job detached (setsid, nohup, double fork) is re-parented to
	// it and stays its descendant: nothing a job starts can leave the
	// tree, and nothing outside it is ever signalled. This is the mode
	// under the Lambda Runtime Interface Emulator on a shared machine.
	CleanupDescendants
	// CleanupSystem kills every process but the caller, its ancestors,
	// kernel threads and the Keep list (see Sandbox.Baseline), and lets
	// Wipe empty top-level directories such as /tmp. Only for an
	// environment that belongs to the executor alone (a Lambda execution
	// environment), where everything else is what a job left.
	CleanupSystem
)

// String returns the mode's name, as ParseCleanup reads it.
func (c Cleanup) String() string {
	switch c {
	case CleanupDescendants:
		return "descendants"
	case CleanupSystem:
		return "system"
	default:
		return "local"
	}
}

// ParseCleanup reads a mode name: "local", "descendants" or "system".
func ParseCleanup(s string) (Cleanup, error) {
	switch s {
	case "local":
		return CleanupLocal, nil
	case "descendants":
		return CleanupDescendants, nil
	case "system":
		return CleanupSystem, nil
	}
	return CleanupLocal, fmt.Errorf("sandbox: parse clean-up mode %q: want local, descendants or system", s)
}

// initPIDNamespace is the inode of the machine's initial PID namespace
// (PROC_PID_INIT_INO), the one every process is in unless put in another.
const initPIDNamespace = "pid:[4026531836]"

// host is what ChooseCleanup checks about the process.
type host struct {
	pid, ppid int
	// ownPIDNamespace is true when the process is not in the machine's
	// initial PID namespace.
	ownPIDNamespace bool
}

func thisHost() host {
	ns, err := os.Readlink("/proc/self/ns/pid")
	return host{pid: os.Getpid(), ppid: os.Getppid(), ownPIDNamespace: err == nil && ns != initPIDNamespace}
}

// ChooseCleanup returns the clean-up mode for this process and, in plain
// words for the log, the rule that decided it. setting is the operator's
// choice, the executor function's EXECUTOR_CLEANUP, which the deployed
// functions set; getenv reads the process's environment. The rules:
//
//   - a setting decides (an unknown name is an error);
//   - outside a Lambda runtime (AWS_LAMBDA_RUNTIME_API unset): local;
//   - as PID 1 of a PID namespace: system, every other process in it
//     having been started after us;
//   - as the child of PID 1 (the runtime's init) in a PID namespace other
//     than the machine's: system, the namespace being the environment's;
//   - otherwise, under a runtime that shares the machine's PID namespace
//     (the emulator on a developer's machine): descendants.
//
// The parent pid alone never selects system: a process whose parent died
// is re-parented to PID 1 on any machine.
func ChooseCleanup(setting string, getenv func(string) string) (Cleanup, string, error) {
	return decideCleanup(setting, getenv, thisHost())
}

func decideCleanup(setting string, getenv func(string) string, h host) (Cleanup, string, error) {
	if setting != "" {
		c, err := ParseCleanup(setting)
		if err != nil {
			return CleanupLocal, "", err
		}
		return c, "set by the operator", nil
	}
	switch {
	case getenv("AWS_LAMBDA_RUNTIME_API") == "":
		return CleanupLocal, "not under a Lambda runtime (AWS_LAMBDA_RUNTIME_API is not set)", nil
	case h.pid == 1:
		return CleanupSystem, "PID 1 of its PID namespace under a Lambda runtime: every other process in it is a job's", nil
	case h.ppid == 1 && h.ownPIDNamespace:
		return CleanupSystem, "child of PID 1 (the runtime's init) in a PID namespace of its own under a Lambda runtime", nil
	case h.ppid == 1:
		return CleanupDescendants, "child of PID 1 in the machine's initial PID namespace under a Lambda runtime: only its own descendants are a job's", nil
	default:
		return CleanupDescendants, fmt.Sprintf("under a Lambda runtime with parent pid %d, neither PID 1 nor the child of PID 1: only its own descendants are a job's", h.ppid), nil
	}
}
