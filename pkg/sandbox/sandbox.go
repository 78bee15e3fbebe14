// Package sandbox owns the clean-up between jobs: killing the processes a job
// left behind and wiping the directories it wrote, so that a warm Lambda
// execution environment shows the next job nothing of the previous one.
//
// Two modes keep this safe. In Lambda mode (AWS_LAMBDA_RUNTIME_API set) the
// environment belongs to the executor alone, and the clean-up is system-wide:
// every process but the executor, its ancestors, kernel threads and a
// baseline recorded before the first job is killed. In Local mode (a
// developer's machine, a test run) only the job's own process groups are
// killed and only the directories named by the caller are wiped; nothing else
// on the machine is touched.
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
)

// Mode says how far a clean-up may reach.
type Mode int

const (
	// Local confines the clean-up to the job's own process groups and
	// directories. It is the zero value: safe unless asked otherwise.
	Local Mode = iota
	// Lambda makes the process clean-up system-wide.
	Lambda
)

// String returns "local" or "lambda".
func (m Mode) String() string {
	if m == Lambda {
		return "lambda"
	}
	return "local"
}

// ModeFromEnv returns Lambda when AWS_LAMBDA_RUNTIME_API is set, else Local.
func ModeFromEnv(getenv func(string) string) Mode {
	if getenv("AWS_LAMBDA_RUNTIME_API") != "" {
		return Lambda
	}
	return Local
}

// DefaultGrace is how long processes get between SIGTERM and SIGKILL.
const DefaultGrace = 2 * time.Second

// pollInterval is how often the clean-up checks whether processes are gone.
const pollInterval = 20 * time.Millisecond

// Sandbox cleans up between jobs. The zero value is a Local sandbox with the
// default grace reading /proc. A Sandbox is not safe for concurrent use.
type Sandbox struct {
	// Mode selects system-wide (Lambda) or scoped (Local) clean-up.
	Mode Mode
	// Grace is the time between SIGTERM and SIGKILL; zero means DefaultGrace.
	Grace time.Duration
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
// signalled. In Lambda mode that is every process Victims selects
// system-wide; in Local mode only the members of groups (the job's own
// process groups), so a call without groups kills nothing. Processes get
// SIGTERM (and SIGCONT, so stopped ones can act on it), then SIGKILL after
// the grace period. Canceling ctx skips the rest of the grace period.
func (s *Sandbox) KillOthers(ctx context.Context, groups ...int) ([]int, error) {
	scope := Scope{SystemWide: s.Mode == Lambda, Groups: groups, Keep: s.Keep}
	self := os.Getpid()
	victims, err := s.victims(self, scope)
	if err != nil || len(victims) == 0 {
		return nil, err
	}
	killed := map[int]bool{}
	for _, p := range victims {
		if signalProcess(p, syscall.SIGTERM) {
			signalProcess(p, syscall.SIGCONT)
			killed[p.PID] = true
		}
	}
	deadline := time.Now().Add(s.grace())
	for time.Now().Before(deadline) && ctx.Err() == nil {
		left, err := s.victims(self, scope)
		if err != nil {
			return sortedKeys(killed), err
		}
		if len(left) == 0 {
			break
		}
		sleep(ctx, pollInterval)
	}
	// New processes may be forked while we kill; a few rounds catch them.
	for range 20 {
		left, err := s.victims(self, scope)
		if err != nil {
			return sortedKeys(killed), err
		}
		if len(left) == 0 {
			out := sortedKeys(killed)
			s.logger().Info("killed leftover processes", "mode", s.Mode.String(), "count", len(out))
			return out, nil
		}
		for _, p := range left {
			if signalProcess(p, syscall.SIGKILL) {
				killed[p.PID] = true
			}
		}
		time.Sleep(pollInterval)
	}
	return sortedKeys(killed), errors.New("sandbox: kill leftover processes: some survived SIGKILL")
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
		sleep(ctx, pollInterval)
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
// first. Each dir must be absolute and clean and may not be "/"; in Local
// mode it must also be at least two levels deep and not the invoking user's
// home directory, so a mistake cannot empty /tmp or a home.
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
	if s.Mode == Local {
		if strings.Count(dir, "/") < 2 {
			return fmt.Errorf("sandbox: wipe %q: refusing a top-level directory outside Lambda", dir)
		}
		if home, err := os.UserHomeDir(); err == nil && filepath.Clean(home) == dir {
			return fmt.Errorf("sandbox: wipe %q: refusing the user's home directory outside Lambda", dir)
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

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func sortedKeys(m map[int]bool) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
