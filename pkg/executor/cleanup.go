package executor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"golang.org/x/sys/unix"

	"gitlab-serverless-runner/pkg/sandbox"
)

// cleaner performs the clean-up before and after each job, as far as
// Config.Cleanup reaches (see pkg/sandbox).
type cleaner struct {
	mode sandbox.Cleanup
	dirs []string
	sb   *sandbox.Sandbox
	log  *slog.Logger
}

func newCleaner(cfg Config) (*cleaner, error) {
	c := &cleaner{mode: cfg.Cleanup, log: cfg.Logger}
	if c.mode == sandbox.CleanupLocal {
		return c, nil
	}
	c.dirs = append([]string{cfg.BuildsDir, cfg.HomeDir}, cfg.WipeDirs...)
	// Orphans of the job are re-parented to us instead of to init, so the
	// descendants clean-up finds them and we can reap them.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("executor: become child subreaper: %w", err)
	}
	c.sb = &sandbox.Sandbox{Cleanup: c.mode, Grace: cfg.KillGrace, Logger: cfg.Logger}
	if c.mode == sandbox.CleanupSystem {
		if err := c.sb.Baseline(); err != nil {
			return nil, fmt.Errorf("executor: record baseline processes: %w", err)
		}
	}
	return c, nil
}

// run kills what jobs left and wipes their directories. An error means
// something a job left may still be there.
func (c *cleaner) run(ctx context.Context) error {
	if c.mode == sandbox.CleanupLocal {
		return nil
	}
	var errs []error
	killed, err := c.sb.KillOthers(ctx)
	if err != nil {
		errs = append(errs, fmt.Errorf("kill leftover processes: %w", err))
	}
	reapChildren()
	if err := c.sb.Wipe(c.dirs...); err != nil {
		errs = append(errs, fmt.Errorf("wipe directories: %w", err))
	}
	if len(errs) > 0 {
		return fmt.Errorf("executor: clean up: %w", errors.Join(errs...))
	}
	c.log.Info("executor: clean-up done", "mode", c.mode.String(), "killed", len(killed))
	return nil
}

// reapChildren collects exited children: as a subreaper (or PID 1) we
// inherit the job's orphans and must wait for them. It runs only between
// jobs, when no step's shell (an os/exec child) is running.
func reapChildren() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
