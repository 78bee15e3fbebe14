// Package sandbox owns the clean-up between jobs: how far it reaches (the
// Cleanup modes and how a process picks one), killing the processes a job
// left behind and wiping the directories it wrote, so that an execution
// environment shows the next job nothing of the previous one.
//
// Three modes keep this safe. CleanupSystem, for an environment that
// belongs to the executor alone, kills every process but the executor, its
// ancestors, kernel threads and a baseline recorded before the first job.
// CleanupDescendants kills only what descends from the executor (a child
// subreaper). CleanupLocal, for a developer's machine or a test run, kills
// only the job's own process groups and wipes only directories that cannot
// be a top-level or home directory; nothing else on the machine is touched.
package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"gitlab-serverless-runner/pkg/retry"
)

// DefaultGrace is how long processes get between SIGTERM and SIGKILL.
const DefaultGrace = 2 * time.Second

// DefaultKillTimeout bounds the rounds of SIGSTOP and SIGKILL that follow
// the grace period.
const DefaultKillTimeout = 5 * time.Second

// maxKillRounds bounds the rounds of SIGSTOP and SIGKILL, however fast
// they go.
const maxKillRounds = 50

// pollInterval is how often the clean-up checks whether processes are gone.
const pollInterval = 20 * time.Millisecond

// Sandbox cleans up between jobs. The zero value is a CleanupLocal sandbox
// with the default grace reading /proc. A Sandbox is not safe for
// concurrent use.
type Sandbox struct {
	// Cleanup selects which processes KillOthers reaches and how strictly
	// Wipe checks its directories.
	Cleanup Cleanup
	// Grace is the time between SIGTERM and SIGKILL; zero means DefaultGrace.
	Grace time.Duration
	// KillTimeout bounds the rounds of SIGSTOP and SIGKILL after the
	// grace period; zero means DefaultKillTimeout.
	KillTimeout time.Duration
	// ProcRoot is where the proc file system is mounted; "" means "/proc".
	ProcRoot string
	// Keep lists processes that survive a system-wide clean-up; see Baseline.
	Keep []Key
	// Logger receives one line per clean-up; nil means slog.Default().
	Logger *slog.Logger
}

func (s *Sandbox) grace() time.Duration {
	if s.Grace > 0 {
		return s.Grace
	}
	return DefaultGrace
}

func (s *Sandbox) killTimeout() time.Duration {
	if s.KillTimeout > 0 {
		return s.KillTimeout
	}
	return DefaultKillTimeout
}

func (s *Sandbox) procRoot() string {
	if s.ProcRoot != "" {
		return s.ProcRoot
	}
	return "/proc"
}

func (s *Sandbox) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

// Baseline records every process running now in Keep, so that a later
// system-wide KillOthers spares them. Call it once at start-up, before the
// first job: in Lambda this protects the runtime's init and any extensions.
func (s *Sandbox) Baseline() error {
	procs, err := ListProcesses(s.procRoot())
	if err != nil {
		return fmt.Errorf("sandbox: record baseline: %w", err)
	}
	s.Keep = s.Keep[:0]
	for _, p := range procs {
		s.Keep = append(s.Keep, p.Key())
	}
	return nil
}

// KillOthers kills the processes a job left behind and returns the pids it
// signalled. Which processes that is depends on s.Cleanup: every process
// Victims selects system-wide (CleanupSystem), every descendant of the
// caller (CleanupDescendants), or only the members of groups, the job's
// own process groups (CleanupLocal: a call without groups kills nothing).
//
// The processes get SIGTERM (and SIGCONT, so stopped ones can act on it)
// and up to the grace period to exit; canceling ctx cuts the grace period
// short. Then, in rounds until none is left, whatever is still there or
// has appeared since (a process may fork on SIGTERM, and its children
// too) is frozen with SIGSTOP, the list taken again until no new process
// shows up, and everything on it killed with SIGKILL. The rounds are
// bounded by KillTimeout and a fixed count; processes still alive after
// them make an error that names them.
func (s *Sandbox) KillOthers(ctx context.Context, groups ...int) ([]int, error) {
	scope := Scope{
		SystemWide:  s.Cleanup == CleanupSystem,
		Descendants: s.Cleanup == CleanupDescendants,
		Groups:      groups,
		Keep:        s.Keep,
	}
	self := os.Getpid()
	victims, err := s.victims(self, scope)
	if err != nil || len(victims) == 0 {
		return nil, err
	}
	killed := map[int]bool{}
	for _, p := range victims {
		if signal(p, syscall.SIGTERM) {
			signal(p, syscall.SIGCONT)
			killed[p.PID] = true
		}
	}
	// Two empty lists in a row, not one, say that nothing is left: a
	// process forked while the first was read shows in the second.
	empty := 0
	deadline := time.Now().Add(s.grace())
	for time.Now().Before(deadline) && ctx.Err() == nil {
		left, err := s.victims(self, scope)
		if err != nil {
			return sortedKeys(killed), err
		}
		if empty = countEmpty(empty, left); empty == 2 {
			return s.done(killed, 0), nil
		}
		_ = retry.Sleep(ctx, pollInterval)
	}
	deadline = time.Now().Add(s.killTimeout())
	var left []Process
	empty = 0
	for round := 1; round <= maxKillRounds && time.Now().Before(deadline); round++ {
		left, err = s.freeze(self, scope, killed)
		if err != nil {
			return sortedKeys(killed), err
		}
		if empty = countEmpty(empty, left); empty == 2 {
			return s.done(killed, round), nil
		}
		for _, p := range left {
			if signal(p, syscall.SIGKILL) {
				killed[p.PID] = true
			}
		}
		time.Sleep(pollInterval)
	}
	if left, err = s.victims(self, scope); err == nil && len(left) == 0 {
		return s.done(killed, maxKillRounds), nil
	}
	names := make([]string, 0, len(left))
	for _, p := range left {
		names = append(names, fmt.Sprintf("%d (%s, state %s)", p.PID, p.Comm, p.State))
	}
	return sortedKeys(killed), fmt.Errorf("sandbox: kill leftover processes: %d still alive after SIGKILL: %s",
		len(left), strings.Join(names, ", "))
}

// freeze stops every victim with SIGSTOP and lists them again until no new
// one appears, so that none is left running to fork, and returns them. It
// gives up on a stable list after a few tries: what a stopped process
// cannot do, one stuck in the kernel may still do, and SIGKILL comes next
// anyway.
func (s *Sandbox) freeze(self int, scope Scope, killed map[int]bool) ([]Process, error) {
	left, err := s.victims(self, scope)
	for try := 0; try < 10 && err == nil && len(left) > 0; try++ {
		for _, p := range left {
			if !stopped(p) && signal(p, syscall.SIGSTOP) {
				killed[p.PID] = true
			}
		}
		time.Sleep(time.Millisecond)
		var again []Process
		again, err = s.victims(self, scope)
		if err != nil {
			break
		}
		known := make(map[Key]bool, len(left))
		for _, p := range left {
			known[p.Key()] = true
		}
		grew := false
		for _, p := range again {
			grew = grew || !known[p.Key()]
		}
		left = again
		if !grew {
			break
		}
	}
	return left, err
}

// countEmpty returns how many lists in a row have been empty, left being
// the latest.
func countEmpty(before int, left []Process) int {
	if len(left) == 0 {
		return before + 1
	}
	return 0
}

// stopped reports whether p was stopped (by a signal or a tracer) when it
// was listed.
func stopped(p Process) bool { return p.State == "T" || p.State == "t" }

// done logs a finished KillOthers and returns the pids it signalled.
func (s *Sandbox) done(killed map[int]bool, rounds int) []int {
	out := sortedKeys(killed)
	s.logger().Info("killed leftover processes", "cleanup", s.Cleanup.String(), "count", len(out), "kill_rounds", rounds)
	return out
}

// victims lists the processes and applies Victims, keeping whole records.
func (s *Sandbox) victims(self int, scope Scope) ([]Process, error) {
	procs, err := ListProcesses(s.procRoot())
	if err != nil {
		return nil, err
	}
	pids := Victims(procs, self, scope)
	byPID := make(map[int]Process, len(procs))
	for _, p := range procs {
		byPID[p.PID] = p
	}
	out := make([]Process, 0, len(pids))
	for _, pid := range pids {
		out = append(out, byPID[pid])
	}
	return out, nil
}

// signal is signalProcess; tests replace it to stand for a process that
// cannot be signalled.
var signal = signalProcess

// signalProcess signals p if it is still the same process (same start time):
// the pidfd behind os.FindProcess pins the process, so a pid reused after
// the listing is never hit. It reports whether the signal was delivered.
func signalProcess(p Process, sig syscall.Signal) bool {
	proc, err := os.FindProcess(p.PID)
	if err != nil {
		return false
	}
	defer proc.Release()
	now, err := readProcess("/proc", p.PID)
	if err != nil || now.StartTime != p.StartTime {
		return false
	}
	return proc.Signal(sig) == nil
}

// StopGroup ends process group pgid: SIGTERM and SIGCONT to the group, up to
// grace for its live members to exit, then SIGKILL. It refuses pgid 0 and 1
// and the caller's own group. Zombies count as gone: they are dead and
// waiting to be reaped by their parent.
func StopGroup(ctx context.Context, pgid int, grace time.Duration) error {
	if pgid <= 1 || pgid == syscall.Getpgrp() {
		return fmt.Errorf("sandbox: stop process group %d: refusing to signal that group", pgid)
	}
	if !groupAlive(pgid) {
		return nil
	}
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	_ = syscall.Kill(-pgid, syscall.SIGCONT)
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if !groupAlive(pgid) {
			return nil
		}
		_ = retry.Sleep(ctx, pollInterval)
	}
	for range 20 {
		if err := syscall.Kill(-pgid, syscall.SIGKILL); errors.Is(err, syscall.ESRCH) || !groupAlive(pgid) {
			return nil
		}
		time.Sleep(pollInterval)
	}
	return fmt.Errorf("sandbox: stop process group %d: members survived SIGKILL", pgid)
}

// groupAlive reports whether process group pgid has a member that is not a
// zombie.
func groupAlive(pgid int) bool {
	if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	procs, err := ListProcesses("/proc")
	if err != nil {
		return true
	}
	for _, p := range procs {
		if p.PGID == pgid && p.State != "Z" {
			return true
		}
	}
	return false
}

// Wipe removes everything inside each of dirs, leaving the directories
// themselves (so a HOME stays valid), and creates those that are missing.
// Files made read-only by the job (a Go module cache) are made writable
// first. Each dir must be absolute and clean and may not be "/"; unless
// s.Cleanup is CleanupSystem it must also be at least two levels deep and
// not the invoking user's home directory, so a mistake cannot empty /tmp or
// a home.
func (s *Sandbox) Wipe(dirs ...string) error {
	var errs []error
	for _, dir := range dirs {
		if err := s.checkWipe(dir); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := wipeDir(dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (s *Sandbox) checkWipe(dir string) error {
	if !filepath.IsAbs(dir) || filepath.Clean(dir) != dir || dir == "/" {
		return fmt.Errorf("sandbox: wipe %q: not a clean absolute directory below /", dir)
	}
	if s.Cleanup != CleanupSystem {
		if strings.Count(dir, "/") < 2 {
			return fmt.Errorf("sandbox: wipe %q: refusing a top-level directory outside the system clean-up", dir)
		}
		if home, err := os.UserHomeDir(); err == nil && filepath.Clean(home) == dir {
			return fmt.Errorf("sandbox: wipe %q: refusing the user's home directory outside the system clean-up", dir)
		}
	}
	return nil
}

func wipeDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("sandbox: create %s: %w", dir, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("sandbox: wipe %s: %w", dir, err)
	}
	var errs []error
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		if err := os.RemoveAll(path); err != nil {
			makeWritable(path)
			if err := os.RemoveAll(path); err != nil {
				errs = append(errs, fmt.Errorf("sandbox: wipe %s: %w", path, err))
			}
		}
	}
	return errors.Join(errs...)
}

// makeWritable gives the owner write and search permission on every
// directory under path, so that their entries can be removed. Symbolic links
// are not followed.
func makeWritable(path string) {
	_ = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if d != nil && d.IsDir() {
			if info, ierr := d.Info(); ierr == nil {
				_ = os.Chmod(p, info.Mode().Perm()|0o700)
			}
		}
		return nil
	})
}

func sortedKeys(m map[int]bool) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
