package poller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"gitlab-serverless-runner/pkg/dispatch"
	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/invoke"
	"gitlab-serverless-runner/pkg/logging"
	"gitlab-serverless-runner/pkg/runner"
	"gitlab-serverless-runner/pkg/seal"
	"gitlab-serverless-runner/pkg/urlpolicy"
)

// Defaults for the zero Config.
const (
	DefaultWindow      = 5 * time.Second
	DefaultMaxLongPoll = 60 * time.Second
	DefaultLeaseMargin = 5 * time.Minute
)

// Health messages, shown to the runner's owner.
const (
	MsgTokenRejected = "GitLab rejected the runner token (invalid or expired)"
	MsgTokenUnsealed = "The runner token cannot be decrypted; register the runner again"
)

// Sealer opens and seals runner and job tokens; *seal.Keyring implements
// it.
type Sealer interface {
	Open(p seal.Purpose, sealed []byte) (string, error)
	Seal(p seal.Purpose, plaintext string) ([]byte, error)
	// NeedsReseal reports whether sealed was sealed with a key other than
	// the one Seal uses now.
	NeedsReseal(sealed []byte) bool
}

// Deps are the poller's collaborators. Cache may be nil (no cache URLs).
type Deps struct {
	Runners runner.RunnerStore
	Jobs    runner.JobStore
	Sealer  Sealer
	Invoker invoke.Invoker
	Cache   Presigner
	Logger  *slog.Logger
}

// Config configures a Poller. The zero value of every field but
// ExecutorFunctions is a usable default.
type Config struct {
	// ExecutorFunctions maps a runtime (runner.Runtime) to the name of the
	// executor function that offers it.
	ExecutorFunctions map[string]string
	// PreparerFunction is the image preparation function (pkg/preparer):
	// a job with `image:` is handed to it, whatever the runner's runtime,
	// and it hands the job on to the image's executor function. Empty
	// sends such jobs to the runtime's executor, like any other.
	PreparerFunction string
	// Version is the product version sent to GitLab.
	Version string
	// Window is how long one poll keeps asking for jobs with short polls
	// (DefaultWindow).
	Window time.Duration
	// MaxLongPoll caps a runner's LongPollSeconds (DefaultMaxLongPoll).
	MaxLongPoll time.Duration
	// LeaseMargin is added to a job's timeout for its slot lease and
	// record lease (DefaultLeaseMargin).
	LeaseMargin time.Duration
	// S3Endpoint replaces S3's endpoint for the cache and payload buckets
	// (S3_ENDPOINT), e.g. a local S3-compatible server; read by the
	// function's main.
	S3Endpoint string
	// CacheBucket holds the runners' caches; empty means no cache. Read by
	// the function's main, which builds Deps.Cache.
	CacheBucket string
	// PayloadBucket holds executor events too large to send inline
	// (default CacheBucket); read by the function's main, which builds
	// the invoker.
	PayloadBucket string
	// GitLab configures the GitLab clients (HTTP client, retries).
	GitLab gitlab.Options
	// URLPolicy, when set, is checked against the runner's GitLab URL at
	// every poll, and at every dial of the GitLab clients (unless GitLab
	// brings its own HTTPClient or DialContext). Nil checks nothing.
	URLPolicy *urlpolicy.Policy
	// Now returns the current time (time.Now).
	Now func() time.Time
}

// Poller polls GitLab for one runner at a time. It is safe for concurrent
// use; overlapping polls of one runner share its concurrency slots.
type Poller struct {
	d   Deps
	cfg Config
	log *slog.Logger
}

// New returns a Poller.
func New(d Deps, cfg Config) (*Poller, error) {
	if d.Runners == nil || d.Jobs == nil || d.Sealer == nil || d.Invoker == nil {
		return nil, errors.New("poller: new: runners, jobs, sealer and invoker are required")
	}
	if len(cfg.ExecutorFunctions) == 0 {
		return nil, errors.New("poller: new: no executor function is configured")
	}
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.MaxLongPoll <= 0 {
		cfg.MaxLongPoll = DefaultMaxLongPoll
	}
	if cfg.LeaseMargin <= 0 {
		cfg.LeaseMargin = DefaultLeaseMargin
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := logging.OrDiscard(d.Logger)
	cfg.GitLab = cfg.URLPolicy.GitLab(cfg.GitLab, log)
	return &Poller{d: d, cfg: cfg, log: log}, nil
}

// Why a poll stopped.
const (
	StopNoJob       = "no_job"       // GitLab had nothing (204)
	StopConflict    = "conflict"     // GitLab answered 409
	StopNoSlot      = "no_slot"      // every concurrency slot is taken
	StopWindow      = "window"       // the poll window is over
	StopPaused      = "paused"       // the runner is paused
	StopForbidden   = "forbidden"    // GitLab refused the token
	StopUnavailable = "unavailable"  // GitLab or the network failed
	StopBadToken    = "token_sealed" // the token cannot be opened
	StopRefused     = "refused"      // the URL policy refuses the GitLab URL or address
)

// Result is the outcome of one poll.
type Result struct {
	// Jobs is the number of jobs handed to an executor.
	Jobs int `json:"jobs"`
	// Failed is the number of jobs taken but failed in GitLab because
	// they could not be handed over.
	Failed int `json:"failed"`
	// Stop says why the poll ended (Stop* constants).
	Stop string `json:"stop"`
}

// Poll takes jobs for the runner of ev until GitLab has none, the runner's
// slots are full or the window ends. The error is non-nil only for a
// failure of the product itself (storage); GitLab's refusals and outages
// are recorded in the runner's health and end the poll normally.
func (p *Poller) Poll(ctx context.Context, ev dispatch.Poll) (Result, error) {
	log := p.log.With("runner_id", ev.RunnerID, "reason", ev.Reason)
	r, err := p.d.Runners.GetRunner(ctx, ev.RunnerID)
	if err != nil {
		if runner.ErrorCode(err) == runner.ENOTFOUND {
			log.InfoContext(ctx, "runner is gone; nothing to poll")
			return Result{Stop: StopPaused}, nil
		}
		return Result{}, fmt.Errorf("poller: poll runner %s: %w", ev.RunnerID, err)
	}
	if r.Paused {
		return Result{Stop: StopPaused}, nil
	}
	if p.cfg.URLPolicy != nil {
		if _, err := p.cfg.URLPolicy.Check(ctx, r.GitLabURL); err != nil {
			log.WarnContext(ctx, "the runner's GitLab URL is refused by the URL policy", "error", err)
			p.recordError(ctx, r, "The runner's GitLab URL is refused: "+runner.ErrorMessage(err))
			return Result{Stop: StopRefused}, nil
		}
	}
	opts := p.cfg.GitLab
	if opts.HTTPClient == nil {
		// The runner's custom CA, for a GitLab a private CA vouches for.
		if trusting, err := opts.TrustCA(r.CAPEM); err == nil {
			opts = trusting
		} else {
			log.WarnContext(ctx, "the runner's CA holds no certificate; polling with the system's", "error", err)
		}
	}
	client, err := gitlab.New(r.GitLabURL, opts)
	if err != nil {
		p.recordError(ctx, r, "The runner's GitLab URL is invalid")
		return Result{Stop: StopUnavailable}, nil
	}
	token, err := p.d.Sealer.Open(seal.RunnerToken(r.ID), r.SealedToken)
	if err != nil {
		log.ErrorContext(ctx, "cannot open the runner token", "error", err)
		p.recordError(ctx, r, MsgTokenUnsealed)
		return Result{Stop: StopBadToken}, nil
	}
	p.resealIfOld(ctx, log, r, token)
	token, stop := p.rotateIfDue(ctx, log, client, r, token)
	if stop != "" {
		return Result{Stop: stop}, nil
	}

	window := p.cfg.Window
	longPoll := r.LongPollSeconds > 0
	if longPoll {
		window = min(time.Duration(r.LongPollSeconds)*time.Second, p.cfg.MaxLongPoll)
	}
	pollCtx, cancel := context.WithTimeout(ctx, window)
	defer cancel()
	info := gitlab.NewInfo(p.cfg.Version, Features())
	lastUpdate := r.LastUpdate
	var res Result
	contacted := false
	// gotJob: GitLab's last answer was a job, so more may be waiting.
	gotJob := false
	defer func() {
		if contacted && res.Stop != StopForbidden && res.Stop != StopUnavailable {
			p.recordContact(ctx, r)
		}
		log.InfoContext(ctx, "poll finished", "jobs", res.Jobs, "failed", res.Failed, "stop", res.Stop)
	}()
	// stopUnsure ends a poll that stopped before GitLab said it had no
	// more jobs: the demand is remembered, so the next freed slot polls.
	stopUnsure := func(stop string) (Result, error) {
		res.Stop = stop
		if err := p.d.Jobs.RecordPollDemand(ctx, r.ID); err != nil {
			log.WarnContext(ctx, "cannot record the poll demand; the next scheduled poll takes the jobs left", "error", err)
		}
		return res, nil
	}
	// windowEnded ends a poll whose window ran out, unsure of what is left
	// if GitLab's last answer was a job.
	windowEnded := func() (Result, error) {
		if gotJob {
			return stopUnsure(StopWindow)
		}
		res.Stop = StopWindow
		return res, nil
	}
	for {
		if pollCtx.Err() != nil {
			return windowEnded()
		}
		slot, ok, err := p.acquire(ctx, r, window+time.Minute)
		if err != nil {
			return res, fmt.Errorf("poller: poll runner %s: %w", r.ID, err)
		}
		if !ok {
			res.Stop = StopNoSlot // the demand is recorded (acquire)
			return res, nil
		}
		jr, err := client.RequestJob(pollCtx, gitlab.JobRequest{Token: token, SystemID: r.SystemID, LastUpdate: lastUpdate, Info: info})
		if err != nil {
			p.release(ctx, log, slot)
			if pollCtx.Err() != nil && ctx.Err() == nil {
				return windowEnded() // a long poll held past the window
			}
			res.Stop = p.requestFailed(ctx, log, r, err)
			return res, nil
		}
		contacted = true
		gotJob = jr.Job != nil
		if jr.LastUpdate != "" && jr.LastUpdate != lastUpdate {
			lastUpdate = jr.LastUpdate
			if err := p.d.Runners.SetLastUpdate(ctx, r.ID, lastUpdate); err != nil {
				log.WarnContext(ctx, "cannot save last_update", "error", err)
			}
		}
		switch {
		case jr.Conflict:
			// GitLab could not hand out a job this time; jobs may wait.
			p.release(ctx, log, slot)
			return stopUnsure(StopConflict)
		case jr.Job == nil:
			p.release(ctx, log, slot)
			if !longPoll {
				res.Stop = StopNoJob
				return res, nil
			}
			continue
		}
		handed, err := p.Dispatch(ctx, client, r, slot, jr.Job)
		if handed {
			res.Jobs++
		} else {
			res.Failed++
		}
		if err != nil {
			return res, err
		}
	}
}

// acquire takes a free concurrency slot of r for lease. When every slot
// is held it records the runner's poll demand and then looks once more: a
// finisher that freed a slot between the first look and the record found
// no demand to act on, so this poll must find that slot
// (runner.JobStore.TakePollDemand). ok is false when every slot is still
// held; the demand then waits for the next freed slot.
func (p *Poller) acquire(ctx context.Context, r *runner.Runner, lease time.Duration) (runner.Slot, bool, error) {
	concurrency := max(r.Concurrency, 1)
	for attempt := 0; ; attempt++ {
		slot, ok, err := p.d.Jobs.AcquireSlot(ctx, r.ID, concurrency, lease)
		if err != nil {
			return slot, false, fmt.Errorf("acquire slot: %w", err)
		}
		if ok || attempt == 1 {
			return slot, ok, nil
		}
		if err := p.d.Jobs.RecordPollDemand(ctx, r.ID); err != nil {
			return slot, false, fmt.Errorf("record poll demand: %w", err)
		}
	}
}

// Dispatch claims job, taken from GitLab by runner r while holding slot,
// and hands it to the executor of r's runtime. It reports whether the job
// was handed over; a job already claimed with the same job token (a
// duplicate) is neither handed over nor failed, and frees the slot, while
// one claimed with another job token (GitLab re-queued it after no
// acknowledgement and assigned it anew) is claimed again and handed over. When the executor cannot be
// started the job is failed in GitLab, its record finished and the slot
// freed. The error is non-nil only when the job could not be recorded.
func (p *Poller) Dispatch(ctx context.Context, client *gitlab.Client, r *runner.Runner, slot runner.Slot, job *gitlab.Job) (handed bool, err error) {
	log := p.log.With("runner_id", r.ID, "job_id", job.ID)
	now := p.cfg.Now()
	timeout := job.Timeout()
	lease := now.Add(timeout + p.cfg.LeaseMargin)
	rec := &runner.Job{
		RunnerID:       r.ID,
		JobID:          job.ID,
		State:          runner.JobRunning,
		ProjectPath:    job.JobInfo.ProjectFullPath,
		Ref:            job.GitInfo.Ref,
		Sha:            job.GitInfo.Sha,
		Name:           job.JobInfo.Name,
		WebURL:         client.URL() + "/" + job.JobInfo.ProjectFullPath + "/-/jobs/" + strconv.FormatInt(job.ID, 10),
		StartedAt:      now,
		LeaseExpiresAt: lease,
		// The slot token, new for every slot taken, is the dispatch's
		// secret: the finisher accepts a record for this job only with
		// it, even once the slot has passed to another holder.
		DispatchTokenHash: runner.HashDispatchToken(slot.Token),
		SlotIndex:         slot.Index,
		// GitLab gives a job a new token when it re-queues it, so the
		// token's hash tells a new assignment from a duplicate.
		JobTokenHash: runner.HashJobToken(job.Token),
	}
	// Sealed for the sweeper, which fails the job if neither its executor
	// nor the finisher closes it before the lease ends.
	if sealed, err := p.d.Sealer.Seal(seal.JobToken(r.ID, job.ID), job.Token); err == nil {
		rec.SealedJobToken = sealed
	} else {
		log.WarnContext(ctx, "cannot seal the job token; the sweeper will not be able to fail this job", "error", err)
	}
	err = p.d.Jobs.ClaimJob(ctx, rec)
	if runner.ErrorCode(err) == runner.ECONFLICT {
		var reclaimed bool
		reclaimed, err = p.reclaim(ctx, log, rec, slot)
		if err == nil && !reclaimed {
			log.WarnContext(ctx, "job already claimed; not run twice")
			p.release(ctx, log, slot)
			return false, nil
		}
	}
	if err != nil {
		p.failJob(ctx, log, client, job, "The runner could not record the job; it was not started.")
		p.release(ctx, log, slot)
		return false, fmt.Errorf("poller: claim job %d of runner %s: %w", job.ID, r.ID, err)
	}
	if err := p.d.Jobs.RenewSlot(ctx, &slot, job.ID, lease); err != nil {
		// The slot's lease ran out while GitLab answered; the job runs
		// anyway rather than being dropped.
		log.WarnContext(ctx, "slot lost before the job started", "error", err)
	}
	log.InfoContext(ctx, "job taken", "project", job.JobInfo.ProjectFullPath, "ref", job.GitInfo.Ref, "slot", slot.Index)

	fail := func(msg string, cause error) (bool, error) {
		log.ErrorContext(ctx, "job not handed to an executor", "error", cause)
		p.failJob(ctx, log, client, job, msg)
		p.finishFailed(ctx, log, r.ID, job.ID, now)
		p.release(ctx, log, slot)
		return false, nil
	}
	function, ok := p.cfg.ExecutorFunctions[r.Runtime]
	// A job with `image:` runs on a function made from its image: the
	// preparation function makes it (in its own time budget) and hands
	// the job on with the same event.
	prepare := p.cfg.PreparerFunction != "" && job.Image != nil && strings.TrimSpace(job.Image.Name) != ""
	if prepare {
		function, ok = p.cfg.PreparerFunction, true
	}
	if !ok {
		return fail(fmt.Sprintf("The runtime %q is not offered by this installation; edit the runner to choose another.", r.Runtime), errors.New("unknown runtime "+r.Runtime))
	}
	cache, err := presignCache(ctx, p.d.Cache, r.ID, job, timeout+p.cfg.LeaseMargin)
	if err != nil {
		return fail("The runner could not prepare the job's cache.", err)
	}
	ev := dispatch.Event{
		GitLabURL:   client.URL(),
		Job:         job,
		Runner:      dispatch.Runner{ID: r.GitLabRunnerID, Description: r.Description, ShortToken: p.shortToken(r), ConcurrentID: slot.Index},
		Cache:       cache,
		OutputLimit: int64(r.OutputLimitKiB),
		CAPEM:       r.CAPEM,
		TwoPhase:    Features().TwoPhaseJobCommit,
		Dispatch: dispatch.Dispatch{
			RunnerID: r.ID, JobID: job.ID, GitLabURL: client.URL(),
			SlotIndex: slot.Index, SlotToken: slot.Token, TwoPhase: Features().TwoPhaseJobCommit,
			Function: function, Runtime: r.Runtime, StartedAt: now, TimeoutSec: int(timeout / time.Second),
		},
	}
	payload, err := ev.Marshal()
	if err != nil {
		return fail("The runner could not encode the job for the executor.", err)
	}
	// A tenant of its own: Lambda never routes another invocation into an
	// execution environment this job has run in (a job can reach the
	// Runtime API on loopback and ask for the next invocation). The
	// preparation function runs no job and is not tenant-isolated: the
	// preparer gives the image function's invocation its tenant id.
	opts := invoke.Options{TenantID: dispatch.NewTenantID(), Keep: []string{"dispatch"}}
	if prepare {
		opts.TenantID = ""
	}
	if err := p.d.Invoker.Invoke(ctx, function, payload, opts); err != nil {
		return fail("The runner could not start the executor function; the job was not run.", err)
	}
	log.InfoContext(ctx, "executor invoked", "function", function)
	return true, nil
}

// reclaim takes over the record of a job claimed before when GitLab offers
// it as a new assignment: with two-phase commit GitLab re-queues a job
// whose executor never acknowledged it and offers it again with a new job
// token. A record with the same job token hash is a duplicate delivery
// (false). The write is conditional on the stored hash, so of two polls
// re-claiming one assignment only one wins; the other sees a duplicate.
func (p *Poller) reclaim(ctx context.Context, log *slog.Logger, rec *runner.Job, slot runner.Slot) (bool, error) {
	stored, err := p.d.Jobs.GetJob(ctx, rec.RunnerID, rec.JobID)
	if err != nil {
		return false, fmt.Errorf("read the job's earlier claim: %w", err)
	}
	if stored.JobTokenHash == rec.JobTokenHash {
		return false, nil
	}
	err = p.d.Jobs.ReclaimJob(ctx, rec, stored.JobTokenHash)
	if runner.ErrorCode(err) == runner.ECONFLICT {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("re-claim the job: %w", err)
	}
	log.InfoContext(ctx, "job re-queued by GitLab and offered again; claimed anew",
		"previous_state", stored.State, "previous_slot", stored.SlotIndex, "slot", rec.SlotIndex)
	// The earlier dispatch's executor never ran (GitLab re-queued the job
	// because it was never accepted): its slot is free again, unless this
	// poll holds that very slot now.
	if stored.SlotIndex != slot.Index {
		if err := p.d.Jobs.ReleaseSlotOfJob(ctx, rec.RunnerID, stored.SlotIndex, rec.JobID); err != nil {
			log.WarnContext(ctx, "cannot free the earlier dispatch's slot; it frees itself when its lease ends", "slot", stored.SlotIndex, "error", err)
		}
	}
	return true, nil
}

// shortToken is CI_RUNNER_SHORT_TOKEN for the executor; "" if the token
// cannot be opened (the job then runs without it).
func (p *Poller) shortToken(r *runner.Runner) string {
	token, err := p.d.Sealer.Open(seal.RunnerToken(r.ID), r.SealedToken)
	if err != nil {
		return ""
	}
	return gitlab.ShortToken(token)
}

// failJob fails a job the poller took, before anything was traced.
func (p *Poller) failJob(ctx context.Context, log *slog.Logger, client *gitlab.Client, job *gitlab.Job, msg string) {
	err := dispatch.FailJob(context.WithoutCancel(ctx), client, dispatch.Failure{
		JobID: job.ID, Token: job.Token, TwoPhase: Features().TwoPhaseJobCommit,
		Reason: gitlab.ReasonRunnerSystemFailure, Message: msg, TraceEmpty: true,
	})
	if err != nil {
		log.ErrorContext(ctx, "cannot fail the job in GitLab", "error", err)
	}
}

func (p *Poller) finishFailed(ctx context.Context, log *slog.Logger, runnerID string, jobID int64, started time.Time) {
	now := p.cfg.Now()
	err := p.d.Jobs.FinishJob(ctx, runnerID, jobID, runner.JobOutcome{
		State: runner.JobFailed, FailureReason: string(gitlab.ReasonRunnerSystemFailure), FinishedAt: now, Duration: now.Sub(started),
	})
	if err != nil {
		log.ErrorContext(ctx, "cannot record the job's failure", "error", err)
	}
}

func (p *Poller) release(ctx context.Context, log *slog.Logger, slot runner.Slot) {
	if err := p.d.Jobs.ReleaseSlot(context.WithoutCancel(ctx), slot); err != nil {
		log.ErrorContext(ctx, "cannot release slot; it frees itself when its lease ends", "slot", slot.Index, "error", err)
	}
}

// requestFailed records a failed job request in the runner's health and
// returns why the poll stops.
func (p *Poller) requestFailed(ctx context.Context, log *slog.Logger, r *runner.Runner, err error) string {
	log.WarnContext(ctx, "job request failed", "error", err)
	if errors.Is(err, gitlab.ErrForbidden) {
		p.recordError(ctx, r, MsgTokenRejected)
		return StopForbidden
	}
	p.recordError(ctx, r, describe(err))
	if errors.Is(err, urlpolicy.ErrRefused) {
		return StopRefused
	}
	return StopUnavailable
}

// describe says what went wrong with a GitLab call, without any secret.
func describe(err error) string {
	var ge *gitlab.Error
	var refused *urlpolicy.RefusedError
	switch {
	case errors.As(err, &refused):
		return "GitLab's address is refused: " + refused.Error()
	case errors.As(err, &ge) && ge.StatusCode == 429:
		return "GitLab is rate limiting the runner (429); polling resumes on the next schedule"
	case errors.As(err, &ge) && ge.StatusCode >= 500:
		return fmt.Sprintf("GitLab is unavailable (%d); polling resumes on the next schedule", ge.StatusCode)
	case errors.As(err, &ge) && ge.StatusCode != 0:
		return fmt.Sprintf("GitLab answered %d to the job request", ge.StatusCode)
	default:
		return "GitLab cannot be reached (network error); polling resumes on the next schedule"
	}
}

func (p *Poller) recordContact(ctx context.Context, r *runner.Runner) {
	now := p.cfg.Now()
	h := r.Health
	h.LastContactAt = &now
	if err := p.d.Runners.UpdateHealth(context.WithoutCancel(ctx), r.ID, h); err != nil {
		p.log.WarnContext(ctx, "cannot record the runner's health", "runner_id", r.ID, "error", err)
	}
}

func (p *Poller) recordError(ctx context.Context, r *runner.Runner, msg string) {
	now := p.cfg.Now()
	h := r.Health
	h.LastError, h.LastErrorAt = msg, &now
	if err := p.d.Runners.UpdateHealth(context.WithoutCancel(ctx), r.ID, h); err != nil {
		p.log.WarnContext(ctx, "cannot record the runner's health", "runner_id", r.ID, "error", err)
	}
}
