// Package finisher owns the end of every job handed to an executor: it
// reads the Lambda destination record of each executor invocation (on
// success and on failure), records the job's outcome, duration and memory,
// frees the runner's concurrency slot, and fails the job in GitLab when the
// executor crashed, was killed at Lambda's time limit or ended without
// reporting, so that no job is left running in GitLab.
//
// A record is only trusted once it matches the store: the job must be a
// running job of that runner, and the slot token the poller put in the
// record's dispatch data must be the one whose hash the poller stored in
// the job record when it claimed the job. Anyone allowed to invoke the
// finisher (the executor's role, for its destinations) can send it a
// record; without that token, a random secret that never reaches a job, a
// record changes nothing and reaches no GitLab. The proof is bound to the
// job, not to the slot: a genuine record still closes its job after the
// slot's lease ran out and another poll took the slot, whose new holder
// keeps it.
package finisher

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
	"gitlab-serverless-runner/pkg/envvar"
	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/invoke"
	"gitlab-serverless-runner/pkg/runner"
)

// DefaultMemoryMB is the executor memory assumed when the executor's result
// does not report it (a crash, a timeout).
const DefaultMemoryMB = 2048

// Config configures a Finisher. The zero value is usable.
type Config struct {
	// DefaultMemoryMB is the executor memory used for the job's cost when
	// the executor's result does not report its own (DefaultMemoryMB).
	DefaultMemoryMB int
	// GitLab configures the GitLab clients.
	GitLab gitlab.Options
	// HTTPClient fetches payloads passed by reference
	// (http.DefaultClient).
	HTTPClient *http.Client
	// Now returns the current time (time.Now).
	Now func() time.Time
	// Logger receives one line per record; nil discards.
	Logger *slog.Logger
}

// Finisher closes jobs from destination records. It is safe for concurrent
// use, and a record delivered twice is closed once.
type Finisher struct {
	jobs runner.JobStore
	cfg  Config
	log  *slog.Logger
}

// ConfigFromEnv reads EXECUTOR_MEMORY_MB through lookup (os.LookupEnv when
// nil).
func ConfigFromEnv(lookup envvar.Lookup) (Config, error) {
	r := envvar.New(lookup)
	cfg := Config{DefaultMemoryMB: r.Int("EXECUTOR_MEMORY_MB", 128)}
	return cfg, r.Err("finisher")
}

// New returns a Finisher.
func New(jobs runner.JobStore, cfg Config) *Finisher {
	if cfg.DefaultMemoryMB <= 0 {
		cfg.DefaultMemoryMB = DefaultMemoryMB
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.GitLab.Logger == nil {
		cfg.GitLab.Logger = log
	}
	return &Finisher{jobs: jobs, cfg: cfg, log: log}
}

// Outcome is what the finisher did with one record.
type Outcome struct {
	RunnerID string `json:"runner_id,omitempty"`
	JobID    int64  `json:"job_id,omitempty"`
	// State is the recorded state.
	State runner.JobState `json:"state,omitempty"`
	// FailureReason is the recorded failure reason.
	FailureReason gitlab.FailureReason `json:"failure_reason,omitempty"`
	// FailedInGitLab: the finisher reported the job failed itself.
	FailedInGitLab bool `json:"failed_in_gitlab,omitempty"`
	// Duplicate: the job was already finished (a redelivered record), so
	// nothing was done.
	Duplicate bool `json:"duplicate,omitempty"`
	// Ignored says why the record did not match the store (an unknown
	// job, a finished one, or a token that is not the job's dispatch
	// token): nothing was changed and GitLab was not called.
	Ignored string `json:"ignored,omitempty"`
}

// Handle decodes a destination record and finishes its job.
func (f *Finisher) Handle(ctx context.Context, raw []byte) (Outcome, error) {
	var rec invoke.Record
	if err := json.Unmarshal(raw, &rec); err != nil {
		return Outcome{}, fmt.Errorf("finisher: decode destination record: %w", err)
	}
	return f.Finish(ctx, rec)
}

// Finish closes the job of one executor invocation. An error means the job
// could not be closed (GitLab or the store failed) and the record should
// be delivered again; a record without dispatch data is logged and
// dropped, and one that does not match the store (see verify) is logged
// and ignored.
func (f *Finisher) Finish(ctx context.Context, rec invoke.Record) (Outcome, error) {
	ev, err := dispatch.Decode(rec.RequestPayload)
	d := ev.Dispatch
	if err != nil || d.RunnerID == "" || d.JobID == 0 {
		f.log.ErrorContext(ctx, "destination record without a dispatched job; dropped", "request_id", rec.RequestContext.RequestID, "error", err)
		return Outcome{}, nil
	}
	log := f.log.With("runner_id", d.RunnerID, "job_id", d.JobID, "request_id", rec.RequestContext.RequestID)
	out := Outcome{RunnerID: d.RunnerID, JobID: d.JobID}
	ignored, duplicate, err := f.verify(ctx, d)
	if err != nil {
		return out, fmt.Errorf("finisher: verify record of job %d: %w", d.JobID, err)
	}
	if ignored != "" {
		out.Ignored, out.Duplicate = ignored, duplicate
		// The slot token is the record's credential: never logged.
		log.WarnContext(ctx, "destination record does not match the store; ignored", "reason", ignored,
			"slot", d.SlotIndex, "function", rec.FunctionName(), "condition", rec.RequestContext.Condition)
		return out, nil
	}
	now := f.cfg.Now()
	duration := now.Sub(d.StartedAt)

	var res dispatch.Result
	reported := false
	if !rec.Failed() && len(rec.ResponsePayload) > 0 && json.Unmarshal(rec.ResponsePayload, &res) == nil && res.Reported {
		reported = true
		out.State, out.FailureReason = stateOf(res)
		if res.DurationMS > 0 {
			duration = time.Duration(res.DurationMS) * time.Millisecond
		}
	}
	if !reported {
		reason, msg := diagnose(rec, res)
		out.State, out.FailureReason = runner.JobFailed, reason
		log.WarnContext(ctx, "executor ended without reporting the job", "condition", rec.RequestContext.Condition,
			"function_error", rec.ResponseContext.FunctionError, "reason", reason)
		job, err := f.jobOf(ctx, rec)
		if err != nil {
			return out, fmt.Errorf("finisher: fail job %d: %w", d.JobID, err)
		}
		client, err := gitlab.New(d.GitLabURL, f.cfg.GitLab)
		if err != nil {
			return out, fmt.Errorf("finisher: fail job %d: %w", d.JobID, err)
		}
		if err := dispatch.FailJob(ctx, client, dispatch.Failure{
			JobID: d.JobID, Token: job.Token, TwoPhase: d.TwoPhase, Reason: reason, Message: msg,
		}); err != nil {
			return out, fmt.Errorf("finisher: %w", err)
		}
		out.FailedInGitLab = true
	}

	// The executor reports its function's memory; a crashed one cannot.
	memory := f.cfg.DefaultMemoryMB
	if res.MemoryMB > 0 {
		memory = res.MemoryMB
	}
	err = f.jobs.FinishJob(ctx, d.RunnerID, d.JobID, runner.JobOutcome{
		State: out.State, FailureReason: string(out.FailureReason), FinishedAt: now, Duration: duration,
		MemoryMB: memory, BilledDuration: duration.Round(time.Millisecond),
	})
	switch {
	case runner.ErrorCode(err) == runner.ECONFLICT:
		out.Duplicate = true
	case runner.ErrorCode(err) == runner.ENOTFOUND:
		log.WarnContext(ctx, "job was never recorded; nothing to finish")
	case err != nil:
		return out, fmt.Errorf("finisher: record job %d of runner %s: %w", d.JobID, d.RunnerID, err)
	}
	// Conditional on the token: when the lease ran out and another poll
	// took the slot, this frees nothing and the new holder keeps it.
	slot := runner.Slot{RunnerID: d.RunnerID, Index: d.SlotIndex, Token: d.SlotToken}
	if err := f.jobs.ReleaseSlot(ctx, slot); err != nil {
		return out, fmt.Errorf("finisher: release slot %d of runner %s: %w", d.SlotIndex, d.RunnerID, err)
	}
	log.InfoContext(ctx, "job finished", "state", out.State, "failure_reason", out.FailureReason,
		"failed_in_gitlab", out.FailedInGitLab, "duplicate", out.Duplicate, "duration_ms", duration.Milliseconds(), "memory_mb", memory)
	return out, nil
}

// verify checks a record's dispatch data against the store before anything
// is done with it, without writing. It returns why the record must be
// ignored ("" when it matches) and whether that is because the job was
// finished before (a redelivery, or a replay of an old record). err is a
// store failure: the record may be delivered again.
//
// The job must be a running job of the runner named, and the record's slot
// token must be the job's dispatch token: its SHA-256 is the one the
// poller stored with the claim (compared in constant time), and the slot
// index is the job's. Whether the token still holds the slot does not
// matter: a record that waited in Lambda's queue past the slot's lease
// still closes its job.
func (f *Finisher) verify(ctx context.Context, d dispatch.Dispatch) (ignored string, duplicate bool, err error) {
	job, err := f.jobs.GetJob(ctx, d.RunnerID, d.JobID)
	switch {
	case runner.ErrorCode(err) == runner.ENOTFOUND:
		return "the runner has no such job", false, nil
	case err != nil:
		return "", false, err
	case job.State != runner.JobRunning:
		return "the job is not running (finished before)", true, nil
	case d.SlotToken == "":
		return "the record names no dispatch token", false, nil
	case !job.DispatchedWith(d.SlotToken):
		return "the record's token is not the job's dispatch token", false, nil
	case d.SlotIndex != job.SlotIndex:
		return "the record names another slot than the job's", false, nil
	}
	return "", false, nil
}

// stateOf maps the executor's reported state to the record's.
func stateOf(res dispatch.Result) (runner.JobState, gitlab.FailureReason) {
	switch res.State {
	case gitlab.StateSuccess:
		return runner.JobSuccess, ""
	case gitlab.StatusCanceled:
		return runner.JobCanceled, ""
	default:
		return runner.JobFailed, res.FailureReason
	}
}

// diagnose says why a job was not reported and with which reason to fail
// it. The message goes to the job's trace: it names the kind of failure,
// never the function's error text, which could quote job data.
func diagnose(rec invoke.Record, res dispatch.Result) (reason gitlab.FailureReason, msg string) {
	e, _ := rec.Error()
	switch {
	case rec.RequestContext.Condition == invoke.ConditionEventAgeExceeded:
		return gitlab.ReasonRunnerSystemFailure, "The executor function never started: the job waited too long in Lambda's queue."
	case strings.Contains(e.ErrorMessage, "Task timed out"):
		return gitlab.ReasonJobExecutionTimeout, "The executor was stopped by Lambda's time limit (15 minutes at most) before it could report the job's result."
	case rec.Failed():
		kind := e.ErrorType
		if kind == "" {
			kind = "unknown error"
		}
		return gitlab.ReasonRunnerSystemFailure, "The executor function crashed before reporting the job's result (" + kind + ")."
	case res.Error != "":
		return gitlab.ReasonRunnerSystemFailure, "The executor ended without reporting the job's result: " + res.Error
	default:
		return gitlab.ReasonRunnerSystemFailure, "The executor ended without reporting the job's result."
	}
}

// jobOf returns the job of the event, fetching the event when it was
// passed by reference.
func (f *Finisher) jobOf(ctx context.Context, rec invoke.Record) (*gitlab.Job, error) {
	ev, _, err := dispatch.Open(ctx, f.cfg.HTTPClient, rec.RequestPayload)
	if err != nil {
		return nil, err
	}
	if ev.Job == nil || ev.Job.Token == "" {
		return nil, errors.New("the executor event holds no job token")
	}
	return ev.Job, nil
}
