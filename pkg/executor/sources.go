package executor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"gitlab-serverless-runner/pkg/checkout"
	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/shell"
	"gitlab-serverless-runner/pkg/trace"
)

// Failures before the script are reported as gitlab-runner reports them:
// get_sources, download_artifacts and upload failures are the job's
// (script_failure, no exit code, since the user's script did not run), a bad
// GIT_* setting is runner_configuration_error, and the executor's own faults
// are runner_system_failure.

// hook runs the job's pre/post get-sources hook, if any.
func (j *jobRun) hook(ctx context.Context, name string) (outcome, bool) {
	for _, h := range j.job.Hooks {
		if h.Name != name || len(h.Script) == 0 {
			continue
		}
		r := j.sess.Run(ctx, gitlab.Step{Name: name, Script: h.Script}, j.w.Stream(trace.StreamWork))
		if r.Outcome != shell.Succeeded {
			return outcome{reason: gitlab.ReasonScriptFailure, exitCode: r.ExitCode, message: fmt.Sprintf(": %s failed: %v", name, r.Err)}, false
		}
	}
	return outcome{}, true
}

// getSources checks out the job's commit.
func (j *jobRun) getSources(ctx context.Context) (o outcome, ok bool) {
	ok = true
	j.section("get_sources", "Getting source from Git repository", func() {
		opts, err := checkout.FromJob(j.job, j.projectDir)
		if err != nil {
			j.w.Errorf("%v", err)
			o, ok = outcome{reason: gitlab.ReasonRunnerConfigurationError, message: fmt.Sprintf(": %v", err)}, false
			return
		}
		if o, ok = j.hook(ctx, "pre_get_sources_script"); !ok {
			return
		}
		opts.Trace = j.w
		opts.CAPEM = []byte(j.ev.CAPEM)
		opts.HTTPClient = j.e.git
		attempts, err := attemptsVar(j.job.Variables, "GET_SOURCES_ATTEMPTS")
		if err != nil {
			j.w.Errorf("%v", err)
			o, ok = outcome{reason: gitlab.ReasonRunnerConfigurationError, message: fmt.Sprintf(": %v", err)}, false
			return
		}
		for attempt := 1; ; attempt++ {
			_, err = checkout.Get(ctx, opts)
			if err == nil || ctx.Err() != nil || attempt >= attempts {
				break
			}
			j.w.Warningf("Getting source from Git repository failed (attempt %d of %d): %v", attempt, attempts, err)
			// gitlab-runner's clear_worktree: start the next attempt afresh.
			if rerr := removeContents(j.projectDir); rerr != nil {
				j.log.Warn("executor: clear the worktree before another attempt", "error", rerr)
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				o, ok = outcome{reason: gitlab.ReasonScriptFailure}, false
				return
			}
			j.w.Errorf("Getting source from Git repository failed: %v", err)
			o, ok = outcome{reason: gitlab.ReasonScriptFailure, message: fmt.Sprintf(": get sources: %v", err)}, false
			return
		}
		if o, ok = j.hook(ctx, "post_get_sources_script"); !ok {
			return
		}
	})
	return o, ok
}

// attemptsVar reads an attempts variable such as GET_SOURCES_ATTEMPTS:
// 1 to 10, default 1.
func attemptsVar(vars gitlab.Variables, name string) (int, error) {
	v := strings.TrimSpace(vars.Get(name))
	if v == "" {
		return 1, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 10 {
		return 0, fmt.Errorf("read %s: %q is not a number from 1 to 10", name, v)
	}
	return n, nil
}

// removeContents empties dir, keeping dir itself.
func removeContents(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return err
	}
	var errs []error
	for _, e := range entries {
		errs = append(errs, os.RemoveAll(filepath.Join(dir, e.Name())))
	}
	return errors.Join(errs...)
}
