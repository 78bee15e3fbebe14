// Package sweeper closes the jobs nothing else will: a job whose lease (its
// timeout plus a margin) ran out without a destination record, because the
// executor's invocation and its record were lost, or the finisher could not
// process the record. On the scheduler's tick it fails each such job in
// GitLab with a trace line that says why, records it failed and frees its
// slot, so no job is left running in GitLab and no slot stays taken.
package sweeper

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"gitlab-serverless-runner/pkg/dispatch"
	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/logging"
	"gitlab-serverless-runner/pkg/runner"
	"gitlab-serverless-runner/pkg/seal"
	"gitlab-serverless-runner/pkg/urlpolicy"
)

// DefaultBatch is how many lost jobs one Sweep closes at most.
const DefaultBatch = 100

// Message is the trace line of a swept job.
const Message = "The job's executor never reported its end, and the job's lease (its timeout plus a margin) ran out: the runner failed the job rather than leave it running."

// Jobs is the part of the job store the sweeper uses.
type Jobs interface {
	LeaseExpired(ctx context.Context, now time.Time, limit int) ([]*runner.Job, error)
	FinishJob(ctx context.Context, runnerID string, jobID int64, o runner.JobOutcome) error
	ReleaseSlotOfJob(ctx context.Context, runnerID string, index int, jobID int64) error
}

// Runners is the part of the runner store the sweeper reads.
type Runners interface {
	GetRunner(ctx context.Context, id string) (*runner.Runner, error)
}

// Opener opens sealed job tokens; *seal.Keyring is one.
type Opener interface {
	Open(p seal.Purpose, sealed []byte) (string, error)
}

var (
	_ Jobs    = runner.JobStore(nil)
	_ Runners = runner.RunnerStore(nil)
	_ Opener  = (*seal.Keyring)(nil)
)

// Config configures a Sweeper; the zero value is usable.
type Config struct {
	// Batch bounds the jobs one Sweep closes (DefaultBatch).
	Batch int
	// GitLab configures the GitLab clients.
	GitLab gitlab.Options
	// URLPolicy, when set, checks every address the GitLab clients dial
	// (unless GitLab brings its own HTTPClient or DialContext). Nil checks
	// nothing.
	URLPolicy *urlpolicy.Policy
	// Now returns the current time (time.Now).
	Now func() time.Time
	// Logger receives a line per swept job; nil discards.
	Logger *slog.Logger
}

// Sweeper closes jobs whose lease ran out. Safe for concurrent use:
// every write is conditional, so two sweeps close a job once.
type Sweeper struct {
	jobs    Jobs
	runners Runners
	tokens  Opener
	cfg     Config
	log     *slog.Logger
}

// New returns a Sweeper.
func New(jobs Jobs, runners Runners, tokens Opener, cfg Config) *Sweeper {
	if cfg.Batch <= 0 {
		cfg.Batch = DefaultBatch
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := logging.OrDiscard(cfg.Logger)
	cfg.GitLab = cfg.URLPolicy.GitLab(cfg.GitLab, log)
	return &Sweeper{jobs: jobs, runners: runners, tokens: tokens, cfg: cfg, log: log}
}

// Result counts what one Sweep did.
type Result struct {
	// Swept jobs were closed: failed in GitLab (when it still knew them
	// running), recorded failed, their slots freed.
	Swept int `json:"swept"`
	// Failed jobs could not be closed this time; the next sweep tries
	// again.
	Failed int `json:"failed"`
	// Runners lists the runners whose slots were freed, for a new poll.
	Runners []string `json:"runners,omitempty"`
}

// Sweep closes the running jobs whose lease ended before now. The error
// is a failure to list them; a job that cannot be closed is counted and
// logged, and is tried again by the next sweep.
func (s *Sweeper) Sweep(ctx context.Context) (Result, error) {
	now := s.cfg.Now()
	lost, err := s.jobs.LeaseExpired(ctx, now, s.cfg.Batch)
	if err != nil {
		return Result{}, fmt.Errorf("sweeper: %w", err)
	}
	var res Result
	seen := map[string]bool{}
	for _, j := range lost {
		log := s.log.With("runner_id", j.RunnerID, "job_id", j.JobID)
		if err := s.close(ctx, j, now); err != nil {
			res.Failed++
			log.ErrorContext(ctx, "cannot close a job whose lease ran out; the next sweep tries again", "error", err)
			continue
		}
		res.Swept++
		if !seen[j.RunnerID] {
			seen[j.RunnerID] = true
			res.Runners = append(res.Runners, j.RunnerID)
		}
		log.WarnContext(ctx, "job lease ran out without a record; job failed and slot freed", "lease_expired_at", j.LeaseExpiresAt, "slot", j.SlotIndex)
	}
	return res, nil
}

// close fails j in GitLab, records it and frees its slot.
func (s *Sweeper) close(ctx context.Context, j *runner.Job, now time.Time) error {
	reason := gitlab.ReasonRunnerSystemFailure
	if err := s.failInGitLab(ctx, j, reason); err != nil {
		return err
	}
	err := s.jobs.FinishJob(ctx, j.RunnerID, j.JobID, runner.JobOutcome{
		State: runner.JobFailed, FailureReason: string(reason), FinishedAt: now, Duration: now.Sub(j.StartedAt),
		DispatchTokenHash: j.DispatchTokenHash,
	})
	switch {
	case runner.ErrorCode(err) == runner.ECONFLICT:
		// The finisher closed it meanwhile, or GitLab re-queued it and
		// a poll claimed it anew: nothing of this dispatch is left.
		return nil
	case err != nil:
		return err
	}
	return s.jobs.ReleaseSlotOfJob(ctx, j.RunnerID, j.SlotIndex, j.JobID)
}

// failInGitLab fails the job in GitLab, unless GitLab no longer runs it.
// A runner that is gone, or a token that cannot be opened, leaves nothing
// to tell GitLab: the job is closed here only.
func (s *Sweeper) failInGitLab(ctx context.Context, j *runner.Job, reason gitlab.FailureReason) error {
	r, err := s.runners.GetRunner(ctx, j.RunnerID)
	if runner.ErrorCode(err) == runner.ENOTFOUND {
		return nil
	}
	if err != nil {
		return err
	}
	if len(j.SealedJobToken) == 0 {
		return nil
	}
	token, err := s.tokens.Open(seal.JobToken(j.RunnerID, j.JobID), j.SealedJobToken)
	if err != nil {
		s.log.WarnContext(ctx, "cannot open the job token; the job is closed here only", "runner_id", j.RunnerID, "job_id", j.JobID)
		return nil
	}
	opts := s.cfg.GitLab
	if opts.HTTPClient == nil {
		// A CA without a certificate leaves the system's roots.
		if trusting, err := opts.TrustCA(r.CAPEM); err == nil {
			opts = trusting
		}
	}
	client, err := gitlab.New(r.GitLabURL, opts)
	if err != nil {
		return err
	}
	// TwoPhase: a job never accepted is accepted first, since GitLab
	// refuses to fail a pending job; for a running job it changes nothing.
	return dispatch.FailJob(ctx, client, dispatch.Failure{JobID: j.JobID, Token: token, TwoPhase: true, Reason: reason, Message: Message})
}
