package executor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"gitlab-serverless-runner/pkg/sandbox"
)

// Cleanup says how far the clean-up before and after each job reaches.
type Cleanup int

const (
	// CleanupLocal leaves the machine alone: a step's process group is
	// stopped when the step ends (pkg/shell), the job's file variables are
	// removed, and the builds directory is kept so GIT_STRATEGY=fetch can
	// reuse it, as gitlab-runner's shell executor does. It is the zero
	// value, for tests and development.
	CleanupLocal Cleanup = iota
	// CleanupDescendants kills every process descending from the executor
	// and wipes the builds, home and WipeDirs directories. The executor
	// makes itself a child subreaper, so processes a job detached (setsid,
	// nohup, double fork) are re-parented to it and stay its descendants:
	// nothing a job starts can leave the tree, and nothing outside it is
	// ever signalled. This is the mode under the Lambda Runtime Interface
	// Emulator on a shared machine.
	CleanupDescendants
	// CleanupSystem kills every process but the executor, its ancestors,
	// kernel threads and those running at cold start (pkg/sandbox's Lambda
	// mode), then wipes like CleanupDescendants. Only for a real Lambda
	// execution environment, where everything else is what a job left.
	CleanupSystem
)

// String returns the mode's name.
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
	return CleanupLocal, fmt.Errorf("executor: parse clean-up mode %q: want local, descendants or system", s)
}

// CleanupFromEnv picks the clean-up mode for a function: outside Lambda
// (no AWS_LAMBDA_RUNTIME_API) CleanupLocal; under Lambda CleanupSystem only
// when our parent is PID 1, the runtime's init in a PID namespace of our
// own (as in a Lambda execution environment); otherwise, as under the
// emulator on a shared machine, CleanupDescendants.
func CleanupFromEnv(getenv func(string) string, ppid int) Cleanup {
	if sandbox.ModeFromEnv(getenv) != sandbox.Lambda {
		return CleanupLocal
	}
	if ppid == 1 {
		return CleanupSystem
	}
	return CleanupDescendants
}

// cleaner performs the clean-up between jobs.
type cleaner struct {
	mode  Cleanup
	grace time.Duration
	dirs  []string
	sb    *sandbox.Sandbox
	log   *slog.Logger
}

func newCleaner(cfg Config) (*cleaner, error) {
	c := &cleaner{mode: cfg.Cleanup, grace: cfg.KillGrace, log: cfg.Logger}
	if c.grace <= 0 {
		c.grace = sandbox.DefaultGrace
	}
	if c.mode == CleanupLocal {
		return c, nil
	}
	c.dirs = append([]string{cfg.BuildsDir, cfg.HomeDir}, cfg.WipeDirs...)
	// Orphans of the job are re-parented to us instead of to init, so the
	// descendants walk finds them and we can reap them.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("executor: become child subreaper: %w", err)
	}
	c.sb = &sandbox.Sandbox{Mode: sandbox.Lambda, Grace: c.grace, Logger: cfg.Logger}
	if c.mode == CleanupSystem {
		if err := c.sb.Baseline(); err != nil {
			return nil, fmt.Errorf("executor: record baseline processes: %w", err)
		}
	}
	return c, nil
}

// run kills what jobs left and wipes their directories.
func (c *cleaner) run(ctx context.Context) error {
	if c.mode == CleanupLocal {
		return nil
	}
	var errs []error
	var killed []int
	var err error
	switch c.mode {
	case CleanupSystem:
		killed, err = c.sb.KillOthers(ctx)
	case CleanupDescendants:
		killed, err = killDescendants(ctx, c.grace)
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("kill leftover processes: %w", err))
	}
	reapChildren()
	if err := c.sb.Wipe(c.dirs...); err != nil {
		errs = append(errs, fmt.Errorf("wipe directories: %w", err))
	}
	c.log.Info("executor: clean-up done", "mode", c.mode.String(), "killed", len(killed))
	if len(errs) > 0 {
		return fmt.Errorf("executor: clean up: %w", errors.Join(errs...))
	}
	return nil
}

// killDescendants sends SIGTERM (and SIGCONT) to every descendant of this
// process, waits up to grace for them to exit and sends SIGKILL to the rest.
// It returns the pids signalled.
func killDescendants(ctx context.Context, grace time.Duration) ([]int, error) {
	self := os.Getpid()
	procs, err := sandbox.ListProcesses("/proc")
	if err != nil {
		return nil, err
	}
	victims := descendants(procs, self)
	if len(victims) == 0 {
		return nil, nil
	}
	keys := make(map[int]sandbox.Key, len(victims))
	for _, p := range procs {
		if slices.Contains(victims, p.PID) {
			keys[p.PID] = p.Key()
		}
	}
	for _, pid := range victims {
		_ = syscall.Kill(pid, syscall.SIGTERM)
		_ = syscall.Kill(pid, syscall.SIGCONT)
	}
	deadline := time.Now().Add(grace)
	for {
		reapChildren()
		alive := stillAlive(keys)
		if len(alive) == 0 {
			return victims, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			for _, pid := range alive {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			reapChildren()
			return victims, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// descendants returns, sorted, the live non-kernel processes below self in
// procs, through any depth.
func descendants(procs []sandbox.Process, self int) []int {
	children := map[int][]int{}
	for _, p := range procs {
		children[p.PPID] = append(children[p.PPID], p.PID)
	}
	info := map[int]sandbox.Process{}
	for _, p := range procs {
		info[p.PID] = p
	}
	var out []int
	queue := []int{self}
	seen := map[int]bool{self: true}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		for _, c := range children[pid] {
			if seen[c] {
				continue
			}
			seen[c] = true
			queue = append(queue, c)
			if p := info[c]; !p.Kernel && p.State != "Z" && c > 1 {
				out = append(out, c)
			}
		}
	}
	slices.Sort(out)
	return out
}

// stillAlive returns the pids in keys whose process instance still runs
// (not exited, not a zombie, pid not reused).
func stillAlive(keys map[int]sandbox.Key) []int {
	procs, err := sandbox.ListProcesses("/proc")
	if err != nil {
		out := make([]int, 0, len(keys))
		for pid := range keys {
			out = append(out, pid)
		}
		return out
	}
	var out []int
	for _, p := range procs {
		if k, ok := keys[p.PID]; ok && k == p.Key() && p.State != "Z" {
			out = append(out, p.PID)
		}
	}
	return out
}

// reapChildren collects exited children: as a subreaper we inherit the
// job's orphans and must wait for them. It runs only between jobs, when no
// step's shell (an os/exec child) is running.
func reapChildren() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
