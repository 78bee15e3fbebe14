package executor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gitlab-serverless-runner/pkg/dispatch"
	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/releasecli"
	"gitlab-serverless-runner/pkg/retry"
	"gitlab-serverless-runner/pkg/runner"
	"gitlab-serverless-runner/pkg/sandbox"
	"gitlab-serverless-runner/pkg/shell"
	"gitlab-serverless-runner/pkg/trace"
)

// errCanceled is the cause of the work context when GitLab asks to cancel.
var errCanceled = errors.New("executor: job canceled in GitLab")

// errAborted is the cause when GitLab no longer accepts the job.
var errAborted = errors.New("executor: job aborted by GitLab")

// errScriptTimeout ends the script steps at RUNNER_SCRIPT_TIMEOUT.
var errScriptTimeout = errors.New("executor: script timeout")

// outcome is how the job ends.
type outcome struct {
	// reason is empty on success.
	reason   gitlab.FailureReason
	exitCode int
	// message follows "ERROR: Job failed" in the trace.
	message  string
	canceled bool
}

func (o outcome) failed() bool { return o.reason != "" }

// jobRun is the state of one job.
type jobRun struct {
	e     *Executor
	ev    dispatch.Event
	job   *gitlab.Job
	log   *slog.Logger
	start time.Time

	client *gitlab.Client
	http   *http.Client // pre-signed cache URLs, trusting the runner's CA
	buf    *trace.Buffer
	w      *trace.Writer
	up     *trace.Uploader
	sess   *shell.Session
	image  *PreparedImage // nil: the steps run on this machine

	projectDir string
	set        settings
	timeout    time.Duration // the job's timeout
	// byLambda is true when the invocation's deadline, not the job's
	// timeout, bounds the job.
	byLambda bool
	// jobDeadline ends the work; finalAt is when the final update must
	// start at the latest.
	jobDeadline, finalAt time.Time
}

func (j *jobRun) run(ctx context.Context) dispatch.Result {
	res := dispatch.Result{JobID: j.job.ID}
	fail := func(err error) dispatch.Result {
		j.log.Error("executor: cannot start the job", "error", err)
		res.Error = err.Error()
		return res
	}
	var err error
	if p := j.e.cfg.URLPolicy; p != nil {
		if _, err := p.Check(ctx, j.ev.GitLabURL); err != nil {
			return fail(fmt.Errorf("executor: the job's GitLab URL is refused: %s", runner.ErrorMessage(err)))
		}
	}
	if j.client, err = j.e.client(j.ev.GitLabURL, j.ev.CAPEM, j.log); err != nil {
		return fail(err)
	}
	if j.http, err = httpClientWithCA(j.e.http, j.ev.CAPEM); err != nil {
		return fail(err)
	}
	if j.ev.TwoPhase {
		r, err := j.client.UpdateJob(ctx, j.job.ID, gitlab.UpdateJobRequest{Token: j.job.Token, State: gitlab.StateRunning})
		switch {
		case err != nil:
			return fail(fmt.Errorf("executor: accept the job: %w", err))
		case r.Aborted():
			return fail(fmt.Errorf("executor: accept the job: GitLab says the job is %s", r.JobStatus))
		}
	}
	if j.buf, err = trace.NewBuffer(j.e.cfg.ScratchDir); err != nil {
		return fail(fmt.Errorf("executor: create trace buffer: %w", err))
	}
	defer j.buf.Close()
	limit := j.ev.OutputLimit
	if limit <= 0 {
		limit = dispatch.DefaultOutputLimitKiB
	}
	j.w = trace.NewWriter(j.buf, trace.WriterOptions{Mask: trace.MaskOptionsFor(j.job), Limit: limit * 1024,
		Timestamps: boolVar(j.job.Variables, "FF_TIMESTAMPS")})
	ucfg := trace.ConfigFor(j.job, j.client, j.buf)
	ucfg.Interval = j.e.cfg.TraceInterval
	ucfg.ForceSendInterval = j.e.cfg.KeepAliveInterval
	ucfg.Logger = j.log
	if j.up, err = trace.NewUploader(ucfg); err != nil {
		return fail(fmt.Errorf("executor: create trace uploader: %w", err))
	}
	j.up.Start(ctx)
	j.setDeadlines(ctx)

	o := j.execute(ctx)
	j.releaseImage()

	// The final update.
	if o.failed() {
		j.w.Errorf("Job failed%s", o.message)
	} else {
		j.w.Notef("Job succeeded")
	}
	_ = j.w.Close()
	res.State = gitlab.StateSuccess
	if o.failed() {
		res.State, res.FailureReason, res.ExitCode = gitlab.StateFailed, o.reason.For(j.job.Features.FailureReasons), o.exitCode
	}
	if o.canceled {
		res.State = gitlab.StatusCanceled
	}
	var ferr error
	if o.failed() {
		ferr = j.up.Fail(ctx, o.reason, o.exitCode)
	} else {
		ferr = j.up.Success(ctx)
	}
	switch {
	case ferr == nil:
		res.Reported = true
	case errors.Is(ferr, trace.ErrAborted):
		// GitLab ended the job itself (canceled, failed, 403).
		res.Reported = true
		if o.canceled || !o.failed() {
			res.State = gitlab.StatusCanceled
		}
	default:
		j.log.Error("executor: send the final update", "error", ferr)
		res.Error = ferr.Error()
	}
	return res
}

// setDeadlines computes the job's deadline: the job timeout
// (gitlab.Job.Timeout) or the invocation's
// deadline minus the margin, whichever comes first.
func (j *jobRun) setDeadlines(ctx context.Context) {
	j.timeout = j.job.Timeout()
	j.jobDeadline = j.start.Add(j.timeout)
	j.finalAt = j.jobDeadline.Add(DefaultAfterScriptReserve)
	if d, ok := ctx.Deadline(); ok {
		lambdaEnd := d.Add(-j.e.cfg.DeadlineMargin)
		if lambdaEnd.Before(j.jobDeadline) {
			j.jobDeadline, j.byLambda = lambdaEnd, true
		}
		if lambdaEnd.Before(j.finalAt) {
			j.finalAt = lambdaEnd
		}
	}
}

// DefaultAfterScriptReserve is how long after a job timeout after_script
// and the failure-path uploads may still run, when the invocation has
// time left.
const DefaultAfterScriptReserve = 5 * time.Minute

// execute runs the stages and returns the job's outcome.
func (j *jobRun) execute(ctx context.Context) outcome {
	// jobCtx bounds the work by the job deadline; workCtx also stops on
	// cancellation. postCtx bounds after_script and the uploads after the
	// script: it survives a graceful cancel but not an abort.
	jobCtx, cancelJob := context.WithDeadline(ctx, j.jobDeadline)
	defer cancelJob()
	workCtx, cancelWork := context.WithCancelCause(jobCtx)
	defer cancelWork(nil)
	postCtx, cancelPost := context.WithDeadline(ctx, j.finalAt)
	defer cancelPost()
	done := make(chan struct{})
	defer close(done)
	// The status check stops before the final update, which must be the
	// last PUT GitLab sees.
	defer j.watchStatus(ctx)()
	// GitLab's word, from the trace loop's answers or the status check,
	// reaches the uploader's Canceling and Aborted.
	go func() {
		select {
		case <-j.up.Canceling():
			cancelWork(errCanceled)
		case <-j.up.Aborted():
		case <-done:
			return
		}
		select {
		case <-j.up.Aborted():
			cancelWork(errAborted)
			cancelPost()
		case <-done:
		}
	}()

	j.prepare()
	if j.job.Run != "" && len(j.job.Steps) == 0 {
		j.w.Errorf("This job uses run: (CI steps), which this runner does not support")
		return outcome{reason: gitlab.ReasonRunnerConfigurationError, message: ": run: steps are not supported"}
	}
	var ok bool
	if j.set, ok = j.readSettings(); !ok {
		return outcome{reason: gitlab.ReasonRunnerConfigurationError, message: ": invalid job settings"}
	}
	o, ok := j.setup(workCtx)
	if !ok {
		return j.finish(postCtx, workCtx, o)
	}
	defer j.cleanupFileVariables()
	if o, ok = j.getSources(workCtx); !ok {
		return j.finish(postCtx, workCtx, o)
	}
	j.restoreCache(workCtx)
	if o, ok = j.downloadArtifacts(workCtx); !ok {
		return j.finish(postCtx, workCtx, o)
	}
	status, o := j.steps(workCtx)
	o = j.classify(workCtx, o)
	if j.up.IsAborted() {
		return outcome{reason: gitlab.ReasonJobCanceled, message: ": canceled", canceled: true}
	}
	if ar, ran := j.afterScript(postCtx, status); ran && ar.Outcome != shell.Succeeded && !o.failed() &&
		j.job.Variables.Get("AFTER_SCRIPT_IGNORE_ERRORS") == "false" {
		o = outcome{reason: gitlab.ReasonScriptFailure, exitCode: ar.ExitCode, message: fmt.Sprintf(": after_script failed: exit code %d", ar.ExitCode)}
	}
	j.archiveCache(postCtx, !o.failed())
	if uo := j.uploadArtifacts(postCtx, !o.failed()); uo.failed() && !o.failed() {
		o = uo
	}
	return o
}

// finish ends a job that failed before its script: classify the error
// (timeout, cancellation) and run the failure-path uploads.
func (j *jobRun) finish(postCtx, workCtx context.Context, o outcome) outcome {
	o = j.classify(workCtx, o)
	if j.up.IsAborted() || j.sess == nil {
		return o
	}
	j.uploadArtifacts(postCtx, false)
	return o
}

// classify turns a failure caused by the work context ending into a
// timeout or a cancellation.
func (j *jobRun) classify(workCtx context.Context, o outcome) outcome {
	if !o.failed() && workCtx.Err() == nil {
		return o
	}
	switch cause := context.Cause(workCtx); {
	case errors.Is(cause, errCanceled), errors.Is(cause, errAborted):
		return outcome{reason: gitlab.ReasonJobCanceled, message: ": canceled", canceled: true}
	case errors.Is(cause, context.DeadlineExceeded):
		return j.timeoutOutcome()
	}
	return o
}

func (j *jobRun) timeoutOutcome() outcome {
	if j.byLambda {
		left := j.jobDeadline.Sub(j.start).Round(time.Second)
		return outcome{reason: gitlab.ReasonJobExecutionTimeout, message: fmt.Sprintf(
			": execution took longer than the %s this AWS Lambda invocation allowed (AWS Lambda stops functions at 15 minutes; %s are kept to report the job); the job's own timeout is %s",
			left, j.e.cfg.DeadlineMargin, j.timeout)}
	}
	return outcome{reason: gitlab.ReasonJobExecutionTimeout, message: fmt.Sprintf(": execution took longer than %s seconds", j.timeout)}
}

// section runs fn inside a trace section.
func (j *jobRun) section(name, header string, fn func()) {
	if j.job.Features.TraceSections {
		j.w.SectionStart(name, header)
		defer j.w.SectionEnd(name)
	} else {
		j.w.Printf("%s%s%s\n", trace.ANSIBoldCyan, header, trace.ANSIReset)
	}
	fn()
}

// prepare writes the trace's header, the prepare_image section of a job
// on its image's function and the prepare_executor section.
func (j *jobRun) prepare() {
	desc := j.ev.Runner.Description
	if desc == "" {
		desc = "an unnamed runner"
	}
	if st := j.ev.Runner.ShortToken; st != "" {
		desc += " " + st
	}
	j.w.Printf("Running with gitlab-serverless-runner %s on %s\n", j.e.cfg.Version, desc)
	if im := j.ev.Image; im != nil {
		j.section("prepare_image", fmt.Sprintf("Preparing the image %s for AWS Lambda", im.Ref), func() { j.imageReport(im) })
	}
	j.section("prepare_executor", `Preparing the "lambda" executor`, func() {
		fn := os.Getenv("AWS_LAMBDA_FUNCTION_NAME")
		switch {
		case j.ev.Image != nil:
			j.w.Printf("Using the image %s on AWS Lambda (function %s)\n", j.ev.Image.Ref, j.ev.Image.Function)
		case j.localImage():
			j.w.Printf("Using the image %s, run on this machine as AWS Lambda would run it\n", j.job.Image.Name)
		case fn != "":
			j.w.Printf("Using AWS Lambda runtime %s (function %s)\n", j.e.cfg.Runtime, fn)
		default:
			j.w.Printf("Using AWS Lambda runtime %s\n", j.e.cfg.Runtime)
		}
		if j.ev.Image == nil && !j.localImage() {
			if img := j.job.Image; img != nil && img.Name != "" {
				j.w.Warningf("This job asks for image %q, but this runner does not run images: the job runs directly on the function's %s runtime.", img.Name, j.e.cfg.Runtime)
			}
			var set []string
			for _, k := range []string{"LAMBDA_MEMORY", "LAMBDA_EPHEMERAL_STORAGE", "LAMBDA_ARCH"} {
				if j.job.Variables.Get(k) != "" {
					set = append(set, k)
				}
			}
			if len(set) > 0 {
				j.w.Warningf("%s choose the function of a job with image: only; this job runs on the %s runtime's function as it is.", strings.Join(set, ", "), j.e.cfg.Runtime)
			}
		}
		var services []string
		for _, s := range j.job.Services {
			if s.Name != "" {
				services = append(services, s.Name)
			}
		}
		if len(services) > 0 {
			j.w.Warningf("services: (%s) cannot run on AWS Lambda: the job runs without them.", strings.Join(services, ", "))
		}
	})
}

// imageReport writes what the preparation of the job's image did.
func (j *jobRun) imageReport(im *dispatch.Image) {
	j.w.Printf("Image %s, %s for %s\n", im.Ref, im.Digest, im.Platform)
	j.w.Printf("Function %s: %s, %d MB memory, %d MB of /tmp\n", im.Function, im.Arch, im.MemoryMB, im.StorageMB)
	var total int64
	for _, st := range im.Steps {
		total += st.DurationMS
		j.w.Printf("  %-9s %7.2fs  %s\n", st.Name, float64(st.DurationMS)/1000, st.Detail)
	}
	if im.Prepared {
		j.w.Printf("Prepared in %.2fs; the next jobs on this image start at once\n", float64(total)/1000)
	} else {
		j.w.Printf("The image's function was ready (%.2fs)\n", float64(total)/1000)
	}
	for _, n := range im.Notes {
		j.w.Printf("%s\n", n)
	}
}

// entrypoint is the entrypoint a job's scripts run through in its image,
// as gitlab-runner chooses it: image:entrypoint when the job sets it
// ([""] or [] for none), else the image's own.
func (j *jobRun) entrypoint() []string {
	var own []string
	switch {
	case j.ev.Image != nil:
		own = j.ev.Image.Entrypoint
	case j.image != nil:
		own = j.image.Entrypoint
	default:
		return nil
	}
	if img := j.job.Image; img != nil && img.Entrypoint != nil {
		if len(img.Entrypoint) == 0 || len(img.Entrypoint) == 1 && strings.TrimSpace(img.Entrypoint[0]) == "" {
			return nil
		}
		return img.Entrypoint
	}
	return own
}

// setup prepares the job's image when it runs in one on this machine,
// and opens the job's shell session: directories, variables, file
// variables.
func (j *jobRun) setup(ctx context.Context) (outcome, bool) {
	if o, ok := j.prepareImage(ctx); !ok {
		return o, false
	}
	j.projectDir = ProjectDir(j.buildsDir(), j.job)
	var runnerVars gitlab.Variables
	if st := j.ev.Runner.ShortToken; st != "" {
		runnerVars = append(runnerVars, gitlab.Variable{Key: "CI_RUNNER_SHORT_TOKEN", Value: st, Public: true})
	}
	if img := j.job.Image; img != nil && img.Name != "" {
		// As gitlab-runner: the name of the image the job asked for, with
		// the job's variables expanded (prepare_executor says where the
		// job runs instead).
		runnerVars = append(runnerVars, gitlab.Variable{Key: "CI_JOB_IMAGE", Value: j.job.Variables.Expand(img.Name), Public: true, Raw: true})
	}
	base := j.e.cfg.BaseEnv
	if j.image != nil {
		// The image's own environment; never nil, which would mean this
		// machine's.
		base = append([]string{}, j.image.Env...)
	}
	if j.ev.Image != nil || j.image != nil {
		// In the job's image, tools install under the writable home.
		if base == nil {
			base = shell.SanitizedBaseEnv(os.Environ())
		}
		var changed []string
		base, changed = shell.ToolEnv(base, j.homeDir(), filepath.Dir(j.homeDir()), func(name string) bool {
			_, set := j.job.Variables.Lookup(name)
			return set
		})
		if len(changed) > 0 {
			j.w.Printf("Tools install under %s, the only writable place (%s), and what they install is on PATH\n", j.homeDir(), strings.Join(changed, ", "))
		}
	}
	var tools map[string]string
	if j.e.cfg.ReleaseCLI != "" {
		tools = map[string]string{releasecli.Name: j.e.cfg.ReleaseCLI}
	}
	cfg := shell.Config{
		BuildsDir:           j.e.cfg.BuildsDir,
		ProjectDir:          j.projectDir,
		HomeDir:             j.e.cfg.HomeDir,
		BaseEnv:             base,
		Entrypoint:          j.entrypoint(),
		KillGrace:           j.e.cfg.KillGrace,
		AfterScriptTimeout:  j.set.afterScriptTimeout,
		JobTimeout:          j.timeout,
		ConcurrentID:        j.ev.Runner.ConcurrentID,
		ConcurrentProjectID: j.ev.Runner.ConcurrentID,
		RunnerVersion:       j.e.cfg.Version,
		RunnerRevision:      j.e.cfg.Revision,
		ServerCA:            []byte(j.ev.CAPEM),
		Disposable:          j.e.cfg.Cleanup != sandbox.CleanupLocal,
		RunnerVariables:     runnerVars,
		DebugTrace:          j.set.debugTrace,
		Tools:               tools,
	}
	if p := j.job.Variables.Get("GIT_CLONE_PATH"); p != "" {
		j.w.Warningf("GIT_CLONE_PATH is ignored: this runner checks every project out in %s", j.projectDir)
	}
	var err error
	if j.sess, err = shell.Open(j.inImage(cfg), j.job.Variables); err != nil {
		return outcome{reason: gitlab.ReasonRunnerSystemFailure, message: fmt.Sprintf(" (system failure): prepare the job environment: %v", err)}, false
	}
	if j.ev.Image != nil {
		if _, err := os.Stat(j.sess.ShellPath()); err != nil {
			j.w.Errorf("The image %s has no shell: the job's scripts run with bash or /bin/sh from the image, and it has neither. Use an image with a shell (for a distroless image, its debug variant).", j.ev.Image.Ref)
			return outcome{reason: gitlab.ReasonScriptFailure, message: ": the image has no shell"}, false
		}
	}
	return outcome{}, ctx.Err() == nil
}

// cleanupFileVariables removes file variables, GITLAB_ENV and the
// generated scripts.
func (j *jobRun) cleanupFileVariables() {
	if j.sess == nil {
		return
	}
	j.section("cleanup_file_variables", "Cleaning up project directory and file based variables", func() {
		if err := j.sess.Close(); err != nil {
			j.log.Warn("executor: remove file variables", "error", err)
		}
	})
}

// steps runs the script steps (script, release) until one fails, and
// returns the CI_JOB_STATUS after_script should see. RUNNER_SCRIPT_TIMEOUT
// bounds them together; a step that could not be run at all is tried
// again up to EXECUTOR_JOB_SECTION_ATTEMPTS times.
func (j *jobRun) steps(ctx context.Context) (string, outcome) {
	scriptCtx := ctx
	if d := j.set.scriptTimeout; d > 0 {
		var cancel context.CancelFunc
		scriptCtx, cancel = context.WithTimeoutCause(ctx, d, errScriptTimeout)
		defer cancel()
	}
	out := j.w.Stream(trace.StreamWork)
	for _, st := range j.job.Steps {
		if st.Name == gitlab.StepAfterScript {
			continue
		}
		var r shell.Result
		root := newRootDetector(out)
		j.section("step_"+st.Name, fmt.Sprintf("Executing %q stage of the job script", "step_"+st.Name), func() {
			for attempt := 1; ; attempt++ {
				r = j.sess.Run(scriptCtx, st, root)
				if r.Outcome == shell.Failed && root.found() != "" {
					j.w.Errorf(RootHint, root.found())
				}
				if r.Outcome != shell.SystemFailure || attempt >= j.set.sectionAttempts || scriptCtx.Err() != nil {
					return
				}
				j.w.Warningf("Executing %q stage of the job script failed (attempt %d of %d): %v", "step_"+st.Name, attempt, j.set.sectionAttempts, r.Err)
				if retry.Sleep(scriptCtx, attemptWait) != nil {
					return
				}
			}
		})
		switch r.Outcome {
		case shell.Succeeded:
			continue
		case shell.Failed:
			return r.JobStatus(), outcome{reason: gitlab.ReasonScriptFailure, exitCode: r.ExitCode, message: fmt.Sprintf(": exit code %d", r.ExitCode)}
		case shell.Canceled:
			return r.JobStatus(), outcome{reason: gitlab.ReasonJobCanceled, message: ": canceled", canceled: true}
		case shell.TimedOut:
			if ctx.Err() == nil && errors.Is(context.Cause(scriptCtx), errScriptTimeout) {
				return r.JobStatus(), outcome{reason: gitlab.ReasonJobExecutionTimeout,
					message: fmt.Sprintf(": script timeout: the script ran longer than RUNNER_SCRIPT_TIMEOUT (%s)", j.set.scriptTimeout)}
			}
			return r.JobStatus(), j.timeoutOutcome()
		default:
			return shell.StatusFailed, outcome{reason: gitlab.ReasonRunnerSystemFailure, message: fmt.Sprintf(" (system failure): run step %s: %v", st.Name, r.Err)}
		}
	}
	return shell.StatusSuccess, outcome{}
}

// afterScript runs after_script in its own shell; ran is false when there
// was none or no time was left for it.
func (j *jobRun) afterScript(ctx context.Context, status string) (r shell.Result, ran bool) {
	var script []string
	for _, st := range j.job.Steps {
		if st.Name == gitlab.StepAfterScript {
			script = append(script, st.Script...)
		}
	}
	if len(script) == 0 {
		return r, false
	}
	j.section("after_script", "Running after_script", func() {
		if ctx.Err() != nil {
			j.w.Warningf("after_script skipped: no time left before the job's deadline")
			return
		}
		r, ran = j.sess.RunAfterScript(ctx, script, status, j.w.Stream(trace.StreamWork)), true
	})
	return r, ran
}
