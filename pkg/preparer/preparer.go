package preparer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"gitlab-serverless-runner/pkg/dispatch"
	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/imagefn"
	"gitlab-serverless-runner/pkg/invoke"
	"gitlab-serverless-runner/pkg/jobimage"
	"gitlab-serverless-runner/pkg/logging"
	"gitlab-serverless-runner/pkg/runner"
	"gitlab-serverless-runner/pkg/urlpolicy"
)

// Defaults for the zero Config.
const (
	DefaultKeepAlive = 30 * time.Second
	DefaultMargin    = 30 * time.Second
)

// RuntimeImage is the runtime the dispatch data names for a job on an
// image function.
const RuntimeImage = "image"

// Functions finds and creates image executor functions; *imagefn.Functions
// implements it.
type Functions interface {
	Touch(ctx context.Context, v imagefn.Variant) (imagefn.Function, error)
	Ensure(ctx context.Context, v imagefn.Variant, image string) (imagefn.Function, error)
}

var _ Functions = (*imagefn.Functions)(nil)

// Jobs closes a job the preparation failed; runner.JobStore implements it.
type Jobs interface {
	FinishJob(ctx context.Context, runnerID string, jobID int64, o runner.JobOutcome) error
	ReleaseSlot(ctx context.Context, slot runner.Slot) error
}

// Deps are the preparer's collaborators; all are required.
type Deps struct {
	Resolver  *jobimage.Resolver
	Deriver   *jobimage.Deriver
	Functions Functions
	Executors Executors
	Invoker   invoke.Invoker
	Jobs      Jobs
	Logger    *slog.Logger
}

// Config configures a Preparer. The zero value of every field is a usable
// default.
type Config struct {
	// Bounds limit the compute a job may choose.
	Bounds Bounds
	// KeepAlive is how often a job taken with two-phase commit is kept
	// assigned in GitLab (PUT state=pending) while it is prepared
	// (DefaultKeepAlive; GitLab re-queues a job after 2 minutes without).
	KeepAlive time.Duration
	// Margin is kept before the invocation's deadline to fail the job
	// when the preparation takes too long (DefaultMargin).
	Margin time.Duration
	// GitLab configures the GitLab clients.
	GitLab gitlab.Options
	// URLPolicy, when set, checks every address the GitLab clients dial
	// (unless GitLab brings its own HTTPClient or DialContext).
	URLPolicy *urlpolicy.Policy
	// HTTPClient fetches events passed by reference (payload_url); nil
	// dials through urlpolicy.Storage.
	HTTPClient *http.Client
	// Now returns the current time (time.Now).
	Now func() time.Time
}

// Preparer prepares the image functions of jobs and hands the jobs to
// them. It is safe for concurrent use.
type Preparer struct {
	d   Deps
	cfg Config
	log *slog.Logger
}

// New returns a Preparer, or an error naming what is missing.
func New(d Deps, cfg Config) (*Preparer, error) {
	if d.Resolver == nil || d.Deriver == nil || d.Functions == nil || d.Executors == nil || d.Invoker == nil || d.Jobs == nil {
		return nil, errors.New("preparer: new: resolver, deriver, functions, executors, invoker and jobs are required")
	}
	if err := cfg.Bounds.Validate(); err != nil {
		return nil, err
	}
	cfg.Bounds = cfg.Bounds.withDefaults()
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = DefaultKeepAlive
	}
	if cfg.Margin <= 0 {
		cfg.Margin = DefaultMargin
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Transport: urlpolicy.Storage.Transport()}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := logging.OrDiscard(d.Logger)
	cfg.GitLab = cfg.URLPolicy.GitLab(cfg.GitLab, log)
	return &Preparer{d: d, cfg: cfg, log: log}, nil
}

// Outcome is what one preparation did.
type Outcome struct {
	RunnerID string `json:"runner_id,omitempty"`
	JobID    int64  `json:"job_id,omitempty"`
	// Function is the image function the job was handed to.
	Function string `json:"function,omitempty"`
	// Image is what the preparation did (the event's image field).
	Image *dispatch.Image `json:"image,omitempty"`
	// Failed: the job was failed in GitLab, with FailureReason and
	// Message (the trace line).
	Failed        bool                 `json:"failed,omitempty"`
	FailureReason gitlab.FailureReason `json:"failure_reason,omitempty"`
	Message       string               `json:"message,omitempty"`
	// Aborted: GitLab no longer wanted the job (canceled while it was
	// prepared); it was closed without a failure.
	Aborted bool `json:"aborted,omitempty"`
}

// failure is a preparation that ends the job.
type failure struct {
	reason gitlab.FailureReason
	msg    string
	cause  error
}

func (f *failure) Error() string { return f.msg }

// errAborted is the cause of a preparation stopped because GitLab no
// longer runs the job.
var errAborted = errors.New("preparer: GitLab no longer runs the job")

// Handle decodes the poller's executor event (fetching it when passed by
// reference), prepares the job's image function and invokes it. The error
// is non-nil only when the job could be neither handed over nor failed and
// closed (the finisher, on the preparation's failure destination, or the
// sweep then closes it).
func (p *Preparer) Handle(ctx context.Context, raw json.RawMessage) (Outcome, error) {
	ev, _, err := dispatch.Open(ctx, p.cfg.HTTPClient, raw)
	if err == nil {
		err = ev.Validate()
	}
	d := ev.Dispatch
	out := Outcome{RunnerID: d.RunnerID, JobID: d.JobID}
	if err != nil || d.RunnerID == "" || d.SlotToken == "" {
		if err == nil {
			err = errors.New("the event has no dispatch data")
		}
		p.log.ErrorContext(ctx, "invalid preparation event", "error", err, "runner_id", d.RunnerID, "job_id", d.JobID)
		if ev.Job == nil || ev.Job.Token == "" || ev.GitLabURL == "" {
			return out, fmt.Errorf("preparer: %w", err)
		}
		return p.fail(ctx, ev, out, &failure{reason: gitlab.ReasonRunnerSystemFailure,
			msg: "The runner could not prepare the job's image: its event is invalid.", cause: err})
	}
	log := p.log.With("runner_id", d.RunnerID, "job_id", d.JobID)
	start := p.cfg.Now()

	// The preparation ends Margin before the invocation's, or at GitLab's
	// word that the job is over.
	work, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if dl, ok := ctx.Deadline(); ok {
		var stop context.CancelFunc
		work, stop = context.WithDeadline(work, dl.Add(-p.cfg.Margin))
		defer stop()
	}
	client, err := p.client(ev)
	if err != nil {
		return out, fmt.Errorf("preparer: job %d: %w", d.JobID, err)
	}
	stopKeepAlive := func() {}
	if ev.TwoPhase {
		stopKeepAlive = p.keepAlive(work, log, client, ev.Job, func() { cancel(errAborted) })
	}
	im, fn, perr := p.prepare(work, log, ev)
	out.Image = im
	// No keep-alive may follow the executor's acceptance or the job's
	// final update: the last one was at most KeepAlive ago, well within
	// GitLab's two minutes.
	stopKeepAlive()
	if perr == nil {
		perr = p.handOver(work, ev, im, fn)
	}
	switch {
	case perr == nil:
		out.Function = fn.Name
		log.InfoContext(ctx, "job handed to its image function", "function", fn.Name, "image", im.Ref,
			"digest", im.Digest, "arch", im.Arch, "prepared", im.Prepared, "duration_ms", p.cfg.Now().Sub(start).Milliseconds())
		return out, nil
	case errors.Is(context.Cause(work), errAborted):
		out.Aborted = true
		log.InfoContext(ctx, "GitLab no longer runs the job; preparation stopped")
		return out, p.close(ctx, ev, gitlab.ReasonJobCanceled, start)
	}
	var f *failure
	if !errors.As(perr, &f) {
		f = &failure{reason: gitlab.ReasonRunnerSystemFailure, msg: "The runner could not prepare the job's image.", cause: perr}
	}
	if work.Err() != nil && ctx.Err() == nil && errors.Is(perr, context.DeadlineExceeded) {
		f = &failure{reason: gitlab.ReasonRunnerSystemFailure, cause: perr, msg: fmt.Sprintf(
			"Preparing the image %s took longer than the preparation function may run; the job was not started. Try again: what was prepared is kept.", imageName(ev.Job))}
	}
	log.WarnContext(ctx, "image preparation failed", "error", f.cause, "reason", f.reason)
	return p.fail(ctx, ev, out, f)
}

// prepare runs the steps of a preparation and returns the image report
// and the function to invoke.
func (p *Preparer) prepare(ctx context.Context, log *slog.Logger, ev dispatch.Event) (*dispatch.Image, imagefn.Function, error) {
	job := ev.Job
	im := &dispatch.Image{Ref: imageName(job)}
	if im.Ref == "" {
		return im, imagefn.Function{}, &failure{reason: gitlab.ReasonRunnerSystemFailure, msg: "The job names no image; it was sent to the image preparation by mistake."}
	}
	c, err := p.cfg.Bounds.Choose(job.Variables)
	if err != nil {
		return im, imagefn.Function{}, &failure{reason: gitlab.ReasonRunnerConfigurationError, cause: err, msg: err.Error()}
	}
	im.Arch, im.MemoryMB, im.StorageMB = string(c.Arch), c.MemoryMB, c.StorageMB
	exe, exeDigest, err := p.d.Executors.Executor(c.Arch)
	if err != nil {
		return im, imagefn.Function{}, &failure{reason: gitlab.ReasonRunnerSystemFailure, cause: err,
			msg: fmt.Sprintf("The runner has no executor for %s; the job was not started.", c.Arch)}
	}
	creds, err := credentials(job)
	if err != nil {
		return im, imagefn.Function{}, &failure{reason: gitlab.ReasonImagePullFailure, cause: err,
			msg: fmt.Sprintf("The image %s cannot be pulled: %v", im.Ref, err)}
	}

	t := time.Now()
	res, err := p.d.Resolver.Resolve(ctx, im.Ref, c.Arch, creds)
	if err != nil {
		return im, imagefn.Function{}, pullFailure(im.Ref, err)
	}
	im.Digest, im.Platform = res.Digest.String(), res.Platform.String()
	im.Entrypoint, im.Env = res.Config.Config.Entrypoint, res.Config.Config.Env
	im.Took("resolve", fmt.Sprintf("%s for %s, %d layers, %s", short(res.Digest.String()), im.Platform, res.Layers, mib(res.Size)), t)

	v := imagefn.Variant{Base: im.Digest, Arch: c.Arch, MemoryMB: int32(c.MemoryMB), StorageMB: int32(c.StorageMB), Executor: exeDigest}
	t = time.Now()
	fn, err := p.d.Functions.Touch(ctx, v)
	switch {
	case err == nil:
		im.Executor, im.Function = fn.Image, fn.Name
		im.Took("lookup", "function "+fn.Name+" is ready", t)
		return im, fn, nil
	case !errors.Is(err, imagefn.ErrNotActive):
		return im, imagefn.Function{}, err
	}
	// None yet, or being made or swept: prepare it.

	im.Prepared = true
	derived, err := p.d.Deriver.Derive(ctx, res, exe)
	if err != nil {
		var je *jobimage.Error
		if errors.As(err, &je) {
			return im, imagefn.Function{}, &failure{reason: gitlab.ReasonImagePullFailure, cause: err,
				msg: "The image cannot be prepared for Lambda: " + je.Error()}
		}
		return im, imagefn.Function{}, err
	}
	im.Executor = derived.Image.String()
	im.Steps = append(im.Steps,
		dispatch.Step{Name: "derive", Detail: "the image plus the executor as its entrypoint", DurationMS: derived.DeriveTime.Milliseconds()},
		dispatch.Step{Name: "push", Detail: pushDetail(derived), DurationMS: derived.PushTime.Milliseconds()})

	t = time.Now()
	fn, err = p.d.Functions.Ensure(ctx, v, im.Executor)
	if err != nil {
		return im, imagefn.Function{}, err
	}
	im.Function = fn.Name
	im.Took("function", fmt.Sprintf("%s, %s, %d MB memory, %d MB /tmp", fn.Name, c.Arch, c.MemoryMB, c.StorageMB), t)
	log.InfoContext(ctx, "image function ready", "function", fn.Name, "base", im.Digest, "derived", im.Executor)
	return im, fn, nil
}

// handOver invokes the image function with the job's event.
func (p *Preparer) handOver(ctx context.Context, ev dispatch.Event, im *dispatch.Image, fn imagefn.Function) error {
	ev.Image = im
	ev.Dispatch.Function, ev.Dispatch.Runtime, ev.Dispatch.MemoryMB = fn.Name, RuntimeImage, im.MemoryMB
	payload, err := ev.Marshal()
	if err != nil {
		return err
	}
	// A tenant of its own, as the poller gives every dispatch: no other
	// invocation reaches an environment this job ran in.
	err = p.d.Invoker.Invoke(ctx, fn.Name, payload, invoke.Options{TenantID: dispatch.NewTenantID(), Keep: []string{"dispatch"}})
	if err != nil {
		return &failure{reason: gitlab.ReasonRunnerSystemFailure, cause: err,
			msg: "The runner could not start the image's executor function; the job was not run."}
	}
	return nil
}

// keepAlive keeps a two-phase job assigned while it is prepared: a pending
// keep-alive at once, which it waits for (a job GitLab no longer runs is
// not prepared), then every KeepAlive. aborted is called when GitLab no
// longer runs the job. The returned func stops it.
func (p *Preparer) keepAlive(ctx context.Context, log *slog.Logger, client *gitlab.Client, job *gitlab.Job, aborted func()) func() {
	send := func() bool {
		res, err := client.UpdateJob(ctx, job.ID, gitlab.UpdateJobRequest{Token: job.Token, State: gitlab.StatePending})
		switch {
		case gitlab.AbortsJob(err) || err == nil && res.Aborted():
			aborted()
			return false
		case err != nil && ctx.Err() == nil:
			log.WarnContext(ctx, "keep-alive of the job's assignment failed", "error", err)
		}
		return true
	}
	if !send() {
		return func() {}
	}
	ctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(p.cfg.KeepAlive)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if !send() {
					return
				}
			}
		}
	}()
	return func() { stop(); <-done }
}

// fail fails the job in GitLab with the failure's line, records it failed
// and frees its slot.
func (p *Preparer) fail(ctx context.Context, ev dispatch.Event, out Outcome, f *failure) (Outcome, error) {
	ctx = context.WithoutCancel(ctx)
	reason := f.reason.For(ev.Job.Features.FailureReasons)
	out.Failed, out.FailureReason, out.Message = true, reason, f.msg
	client, err := p.client(ev)
	if err != nil {
		return out, fmt.Errorf("preparer: job %d: %w", ev.Job.ID, err)
	}
	err = dispatch.FailJob(ctx, client, dispatch.Failure{
		JobID: ev.Job.ID, Token: ev.Job.Token, TwoPhase: ev.TwoPhase,
		Reason: reason, Message: f.msg, TraceEmpty: true,
	})
	if err != nil {
		return out, fmt.Errorf("preparer: %w", err)
	}
	if ev.Dispatch.RunnerID == "" {
		return out, nil
	}
	return out, p.close(ctx, ev, reason, p.cfg.Now())
}

// close records the job's end and frees its slot.
func (p *Preparer) close(ctx context.Context, ev dispatch.Event, reason gitlab.FailureReason, start time.Time) error {
	ctx = context.WithoutCancel(ctx)
	d := ev.Dispatch
	now := p.cfg.Now()
	state := runner.JobFailed
	if reason == gitlab.ReasonJobCanceled {
		state = runner.JobCanceled
	}
	err := p.d.Jobs.FinishJob(ctx, d.RunnerID, d.JobID, runner.JobOutcome{
		State: state, FailureReason: string(reason), FinishedAt: now, Duration: now.Sub(d.StartedAt),
		DispatchTokenHash: runner.HashDispatchToken(d.SlotToken),
	})
	if err != nil && runner.ErrorCode(err) != runner.ECONFLICT && runner.ErrorCode(err) != runner.ENOTFOUND {
		return fmt.Errorf("preparer: record job %d of runner %s: %w", d.JobID, d.RunnerID, err)
	}
	if err := p.d.Jobs.ReleaseSlot(ctx, runner.Slot{RunnerID: d.RunnerID, Index: d.SlotIndex, Token: d.SlotToken}); err != nil {
		return fmt.Errorf("preparer: release slot %d of runner %s: %w", d.SlotIndex, d.RunnerID, err)
	}
	return nil
}

// client returns a GitLab client for the job's instance, trusting the
// runner's CA besides the system roots.
func (p *Preparer) client(ev dispatch.Event) (*gitlab.Client, error) {
	opts, err := p.cfg.GitLab.TrustCA(ev.CAPEM)
	if err != nil {
		return nil, errors.New("ca_pem holds no PEM certificate")
	}
	c, err := gitlab.New(ev.GitLabURL, opts)
	if err != nil {
		return nil, fmt.Errorf("build GitLab client: %w", err)
	}
	return c, nil
}

// credentials are the job's registry credentials (jobimage.JobCredentials),
// with an error that says only which variable is wrong.
func credentials(job *gitlab.Job) (*jobimage.DockerAuth, error) {
	creds, err := jobimage.JobCredentials(job.Variables)
	if err != nil {
		return nil, errors.New("DOCKER_AUTH_CONFIG is not a Docker config JSON object with an \"auths\" section")
	}
	return creds, nil
}

// pullFailure turns a resolution error into the job's failure.
func pullFailure(ref string, err error) error {
	var je *jobimage.Error
	if errors.As(err, &je) {
		return &failure{reason: gitlab.ReasonImagePullFailure, cause: err, msg: "The image cannot be pulled: " + je.Error()}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return &failure{reason: gitlab.ReasonImagePullFailure, cause: err,
		msg: fmt.Sprintf("The image %s cannot be pulled: its registry could not be read.", ref)}
}

func imageName(job *gitlab.Job) string {
	if job == nil || job.Image == nil {
		return ""
	}
	return strings.TrimSpace(job.Image.Name)
}

func pushDetail(d *jobimage.Derived) string {
	if d.Reused {
		return "already pushed"
	}
	counts := map[jobimage.LayerPlacement]int{}
	for _, l := range d.Layers {
		counts[l.How]++
	}
	var parts []string
	for _, how := range []jobimage.LayerPlacement{jobimage.LayerPresent, jobimage.LayerMounted, jobimage.LayerCopied, jobimage.LayerUploaded} {
		if n := counts[how]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, how))
		}
	}
	return "layers: " + strings.Join(parts, ", ")
}

func short(digest string) string {
	if len(digest) > 19 {
		return digest[:19]
	}
	return digest
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
