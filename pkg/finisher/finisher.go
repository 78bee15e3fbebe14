// Package finisher owns the end of every job handed to an executor: it
// reads the Lambda destination record of each executor invocation (on
// success and on failure), records the job's outcome, duration and memory,
// frees the runner's concurrency slot, and fails the job in GitLab when the
// executor crashed, was killed at Lambda's time limit or ended without
// reporting, so that no job is left running in GitLab. A freed slot whose
// runner has jobs waiting (a poll found every slot held: the runner's poll
// demand) starts a poll of the runner at once, so a burst of jobs drains
// at the speed of its jobs rather than one wave per scheduled poll.
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
	"gitlab-serverless-runner/pkg/logging"
	"gitlab-serverless-runner/pkg/runner"
	"gitlab-serverless-runner/pkg/urlpolicy"
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
	// HTTPClient fetches payloads passed by reference (a client dialling
	// through urlpolicy.Storage).
	HTTPClient *http.Client
	// URLPolicy, when set, checks every address the GitLab clients dial
	// (unless GitLab brings its own HTTPClient or DialContext). Nil checks
	// nothing.
	URLPolicy *urlpolicy.Policy
	// Now returns the current time (time.Now).
	Now func() time.Time
	// Logger receives one line per record; nil discards.
	Logger *slog.Logger
	// PollerFunction is the poller function a freed slot invokes when its
	// runner has a poll demand (POLLER_FUNCTION); empty, or a nil
	// Invoker, leaves freed slots to the next scheduled poll.
	PollerFunction string
	// Invoker invokes PollerFunction.
	Invoker invoke.Invoker
}

// Finisher closes jobs from destination records. It is safe for concurrent
// use, and a record delivered twice is closed once.
type Finisher struct {
	jobs runner.JobStore
	cfg  Config
	log  *slog.Logger
}

// ConfigFromEnv reads EXECUTOR_MEMORY_MB, POLLER_FUNCTION and the URL
// policy's ALLOW_HTTP_GITLAB and ALLOW_PRIVATE_GITLAB
// (urlpolicy.Read) through lookup (os.LookupEnv when nil).
func ConfigFromEnv(lookup envvar.Lookup) (Config, error) {
	r := envvar.New(lookup)
	cfg := Config{DefaultMemoryMB: r.Int("EXECUTOR_MEMORY_MB", 128), PollerFunction: r.String("POLLER_FUNCTION"), URLPolicy: urlpolicy.Read(r)}
	return cfg, r.Err("finisher")
}

// New returns a Finisher.
func New(jobs runner.JobStore, cfg Config) *Finisher {
	if cfg.DefaultMemoryMB <= 0 {
		cfg.DefaultMemoryMB = DefaultMemoryMB
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Transport: urlpolicy.Storage.Transport()}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := logging.OrDiscard(cfg.Logger)
	cfg.GitLab = cfg.URLPolicy.GitLab(cfg.GitLab, log)
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
		if duplicate {
			// A record delivered again after its job was closed: the
			// first delivery may have failed before it freed the slot.
			return out, f.release(ctx, log, d)
		}
		return out, nil
	}
	now := f.cfg.Now()
	duration := now.Sub(d.StartedAt)

	// The result is the executor's word, and a job runs beside the
	// executor: it may have written it. It gives the duration, memory and
	// failure reason shown; GitLab gives the outcome.
	var res dispatch.Result
	if !rec.Failed() && len(rec.ResponsePayload) > 0 {
		res, _ = dispatch.DecodeResult(rec.ResponsePayload)
		if res.DurationMS > 0 {
			duration = time.Duration(res.DurationMS) * time.Millisecond
		}
	}
	ev, err = f.full(ctx, rec, ev)
	if err != nil {
		return out, fmt.Errorf("finisher: job %d: %w", d.JobID, err)
	}
	client, err := f.client(d.GitLabURL, ev.CAPEM)
	if err != nil {
		return out, fmt.Errorf("finisher: job %d: %w", d.JobID, err)
	}
	status, err := confirm(ctx, client, ev.Job)
	if err != nil {
		return out, fmt.Errorf("finisher: confirm job %d with GitLab: %w", d.JobID, err)
	}
	if over(status) {
		out.State, out.FailureReason = stateOf(status, res)
	} else {
		reason, msg := diagnose(rec, res)
		out.State, out.FailureReason = runner.JobFailed, reason
		log.WarnContext(ctx, "executor ended without reporting the job", "condition", rec.RequestContext.Condition,
			"function_error", rec.ResponseContext.FunctionError, "reason", reason, "gitlab_status", status,
			"executor_said", res.State)
		if err := dispatch.FailJob(ctx, client, dispatch.Failure{
			JobID: d.JobID, Token: ev.Job.Token, TwoPhase: d.TwoPhase, Reason: reason, Message: msg,
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
		MemoryMB: memory, Arch: res.Arch, StorageMB: res.StorageMB, BilledDuration: duration.Round(time.Millisecond),
		DispatchTokenHash: runner.HashDispatchToken(d.SlotToken),
	})
	switch {
	case runner.ErrorCode(err) == runner.ECONFLICT:
		out.Duplicate = true
	case runner.ErrorCode(err) == runner.ENOTFOUND:
		log.WarnContext(ctx, "job was never recorded; nothing to finish")
	case err != nil:
		return out, fmt.Errorf("finisher: record job %d of runner %s: %w", d.JobID, d.RunnerID, err)
	}
	if err := f.release(ctx, log, d); err != nil {
		return out, err
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
	case d.SlotToken == "":
		return "the record names no dispatch token", false, nil
	case !job.DispatchedWith(d.SlotToken):
		return "the record's token is not the job's dispatch token", false, nil
	case d.SlotIndex != job.SlotIndex:
		return "the record names another slot than the job's", false, nil
	case job.State != runner.JobRunning:
		return "the job is not running (finished before)", true, nil
	}
	return "", false, nil
}

// confirm asks GitLab where the job is, with a keep-alive update (PUT
// state=running, the executor's own status check): GitLab answers a
// running job with its status, and a job that is over with 403 and its
// final status. A job still pending (two-phase commit, never accepted)
// is accepted by it, and is then running. The error is a failure to ask
// (network, 5xx): the record is delivered again.
func confirm(ctx context.Context, client *gitlab.Client, job *gitlab.Job) (string, error) {
	r, err := client.UpdateJob(ctx, job.ID, gitlab.UpdateJobRequest{Token: job.Token, State: gitlab.StateRunning})
	switch {
	case err == nil:
		return r.JobStatus, nil
	case gitlab.AbortsJob(err) && r.JobStatus == "":
		// 404, or a 403 without status: the job is gone (erased, or its
		// project deleted). Nothing in GitLab is left to close.
		return statusGone, nil
	case gitlab.AbortsJob(err):
		return r.JobStatus, nil
	}
	return "", err
}

// statusGone stands for a job GitLab no longer knows.
const statusGone = "gone"

// over reports whether GitLab's status says the job has ended.
func over(status string) bool {
	switch status {
	case gitlab.StatusSuccess, gitlab.StatusFailed, gitlab.StatusCanceled, statusGone:
		return true
	}
	return false
}

// stateOf maps GitLab's final status to the record's state. The failure
// reason, which GitLab does not tell, is the executor's when it reported
// the same failure.
func stateOf(status string, res dispatch.Result) (runner.JobState, gitlab.FailureReason) {
	switch status {
	case gitlab.StatusSuccess:
		return runner.JobSuccess, ""
	case gitlab.StatusCanceled:
		return runner.JobCanceled, ""
	}
	if res.Reported && res.State == gitlab.StateFailed {
		return runner.JobFailed, res.FailureReason
	}
	return runner.JobFailed, ""
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
	case res.Reported:
		return gitlab.ReasonRunnerSystemFailure, "The executor's invocation ended while GitLab still showed this job running, so its outcome is unknown; the runner failed it rather than leave it running."
	case res.Error != "":
		return gitlab.ReasonRunnerSystemFailure, "The executor ended without reporting the job's result: " + res.Error
	default:
		return gitlab.ReasonRunnerSystemFailure, "The executor ended without reporting the job's result."
	}
}

// full returns the whole executor event of rec, fetching it when it was
// passed by reference; its job must carry the job token.
func (f *Finisher) full(ctx context.Context, rec invoke.Record, ev dispatch.Event) (dispatch.Event, error) {
	if ev.PayloadURL != "" {
		var err error
		if ev, _, err = dispatch.Open(ctx, f.cfg.HTTPClient, rec.RequestPayload); err != nil {
			return ev, err
		}
	}
	if ev.Job == nil || ev.Job.Token == "" {
		return ev, errors.New("the executor event holds no job token")
	}
	return ev, nil
}

// client returns a GitLab client for the job's instance, trusting the
// runner's CA (the event's ca_pem) besides the system roots.
func (f *Finisher) client(instance, caPEM string) (*gitlab.Client, error) {
	opts, err := f.cfg.GitLab.TrustCA(caPEM)
	if err != nil {
		return nil, errors.New("the runner's CA holds no PEM certificate")
	}
	return gitlab.New(instance, opts)
}

// release frees the dispatch's slot, only while the dispatch's token holds
// it: when the lease ran out and another poll took the slot, this frees
// nothing and the new holder keeps it. Then it polls the runner again if
// a poll had found every slot held.
func (f *Finisher) release(ctx context.Context, log *slog.Logger, d dispatch.Dispatch) error {
	slot := runner.Slot{RunnerID: d.RunnerID, Index: d.SlotIndex, Token: d.SlotToken}
	if err := f.jobs.ReleaseSlot(ctx, slot); err != nil {
		return fmt.Errorf("finisher: release slot %d of runner %s: %w", d.SlotIndex, d.RunnerID, err)
	}
	f.pollAgain(ctx, log, d.RunnerID)
	return nil
}

// pollAgain takes the runner's poll demand and, if there was one, starts
// a poll to fill the freed slot. It runs after the slot is freed, never
// before: a poll that records its demand after this took none looks for a
// slot once more and finds this one (runner.JobStore.TakePollDemand). A
// failure here loses no job, only time: the scheduled poll takes over.
func (f *Finisher) pollAgain(ctx context.Context, log *slog.Logger, runnerID string) {
	if f.cfg.PollerFunction == "" || f.cfg.Invoker == nil {
		return
	}
	demand, err := f.jobs.TakePollDemand(ctx, runnerID)
	if err != nil {
		log.WarnContext(ctx, "cannot read the runner's poll demand; waiting jobs start at the next scheduled poll", "error", err)
		return
	}
	if !demand {
		return
	}
	ev := dispatch.Poll{RunnerID: runnerID, Reason: dispatch.PollSlotFreed}
	if err := f.cfg.Invoker.Invoke(ctx, f.cfg.PollerFunction, ev.Marshal(), invoke.Options{}); err != nil {
		log.WarnContext(ctx, "cannot start a poll for the freed slot; waiting jobs start at the next freed slot or scheduled poll", "error", err)
		if err := f.jobs.RecordPollDemand(context.WithoutCancel(ctx), runnerID); err != nil {
			log.WarnContext(ctx, "cannot put the poll demand back", "error", err)
		}
		return
	}
	log.InfoContext(ctx, "poll started for the freed slot")
}
