package executor

import (
	"strconv"
	"strings"
	"time"

	"gitlab-serverless-runner/pkg/gitlab"
)

// settings are the job's variables that tune how the executor runs it, as
// gitlab-runner reads them.
type settings struct {
	// debugTrace is CI_DEBUG_TRACE: shell tracing in every step.
	debugTrace bool
	// scriptTimeout is RUNNER_SCRIPT_TIMEOUT (0: none but the job's);
	// afterScriptTimeout is RUNNER_AFTER_SCRIPT_TIMEOUT (0: the
	// executor's default, 5 minutes).
	scriptTimeout, afterScriptTimeout time.Duration
	// The attempts variables, 1 to 10.
	artifactAttempts, cacheAttempts, sectionAttempts int
}

// attemptWait is the pause between two attempts of a stage, gitlab-runner's
// shortest back-off.
const attemptWait = time.Second

// readSettings reads the job's settings. A malformed attempts value fails
// the job (runner_configuration_error), with an error line naming the
// variable; a malformed timeout is ignored with a warning, as
// gitlab-runner ignores it.
func (j *jobRun) readSettings() (settings, bool) {
	vars := j.job.Variables
	s := settings{debugTrace: boolVar(vars, "CI_DEBUG_TRACE"), afterScriptTimeout: j.e.cfg.AfterScriptTimeout}
	var err error
	for _, a := range []struct {
		name string
		dst  *int
	}{
		{"ARTIFACT_DOWNLOAD_ATTEMPTS", &s.artifactAttempts},
		{"RESTORE_CACHE_ATTEMPTS", &s.cacheAttempts},
		{"EXECUTOR_JOB_SECTION_ATTEMPTS", &s.sectionAttempts},
	} {
		if *a.dst, err = attemptsVar(vars, a.name); err != nil {
			j.w.Errorf("%v", err)
			return s, false
		}
	}
	s.scriptTimeout = j.stageTimeout("RUNNER_SCRIPT_TIMEOUT")
	if d := j.stageTimeout("RUNNER_AFTER_SCRIPT_TIMEOUT"); d > 0 {
		s.afterScriptTimeout = d
	}
	return s, true
}

// stageTimeout reads RUNNER_SCRIPT_TIMEOUT or RUNNER_AFTER_SCRIPT_TIMEOUT
// (a Go duration such as "10m" or "1h30m"); 0 when unset or ignored.
func (j *jobRun) stageTimeout(name string) time.Duration {
	raw := strings.TrimSpace(j.job.Variables.Get(name))
	if raw == "" {
		return 0
	}
	d, err := time.ParseDuration(raw)
	switch {
	case err != nil:
		j.w.Warningf("Ignoring malformed %s timeout: %s", name, raw)
		return 0
	case d < 0:
		j.w.Warningf("Ignoring relative %s timeout: %s", name, raw)
		return 0
	case d > j.timeout:
		j.w.Warningf("%s timeout: %s is longer than job timeout. Setting to job timeout", name, raw)
		return 0
	}
	return d
}

// boolVar reads a boolean variable as gitlab-runner does (1, t, true, …);
// anything else is false.
func boolVar(vars gitlab.Variables, name string) bool {
	b, err := strconv.ParseBool(strings.TrimSpace(vars.Get(name)))
	return err == nil && b
}
