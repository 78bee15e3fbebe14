package executor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"sync"
	"time"

	"gitlab-serverless-runner/pkg/dispatch"
	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/trace"
	"gitlab-serverless-runner/pkg/urlpolicy"
)

// Executor runs jobs one at a time. Build it once at cold start with New;
// Handle is the Lambda handler.
type Executor struct {
	cfg     Config
	log     *slog.Logger
	cleaner *cleaner
	http    *http.Client
	git     *http.Client // nil: pkg/checkout's default
	mu      sync.Mutex   // one job at a time, as in a Lambda environment
	// spoilt is the clean-up failure that ended this environment.
	spoilt error
}

// New returns an Executor for cfg. In the Descendants and System clean-up
// modes it makes the process a child subreaper, and in System mode it
// records the processes running now as the ones to spare.
func New(cfg Config) (*Executor, error) {
	cfg = cfg.withDefaults()
	cl, err := newCleaner(cfg)
	if err != nil {
		return nil, err
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Transport: urlpolicy.Storage.Transport()}
	}
	e := &Executor{cfg: cfg, log: cfg.Logger, cleaner: cl, http: hc}
	if cfg.URLPolicy != nil && cfg.HTTPClient == nil {
		e.git = &http.Client{Transport: cfg.URLPolicy.Transport()}
	}
	return e, nil
}

// Handle is the Lambda handler: it decodes the event (fetching it when it
// was passed by reference), runs the job and returns its Result. It
// returns no error for a job that failed or an event that could not be run
// (the Result says so, and Lambda destinations deliver it to the finisher):
// an error would only make Lambda retry.
func (e *Executor) Handle(ctx context.Context, raw json.RawMessage) (dispatch.Result, error) {
	ev, raw, err := dispatch.Open(ctx, e.http, raw)
	if err == nil {
		err = ev.Validate()
	}
	var res dispatch.Result
	if err != nil {
		res = e.rejectEvent(ctx, raw, err)
	} else {
		res = e.Run(ctx, ev)
	}
	res.MemoryMB, res.StorageMB, res.Arch = e.cfg.MemoryMB, e.cfg.StorageMB, dispatch.LambdaArch(runtime.GOARCH)
	return res, nil
}

// rejectEvent logs an event that cannot be run and, when its job id, token
// and GitLab URL can be read, fails the job with runner_system_failure and a
// trace line saying why.
func (e *Executor) rejectEvent(ctx context.Context, raw []byte, cause error) dispatch.Result {
	id, ok := dispatch.Identify(raw)
	res := dispatch.Result{JobID: id.Job.ID, State: gitlab.StateFailed, FailureReason: gitlab.ReasonRunnerSystemFailure, Error: cause.Error()}
	log := e.log.With("job_id", id.Job.ID)
	if !ok {
		log.Error("executor: cannot run event and cannot tell GitLab: no job id, token or GitLab URL readable", "error", cause)
		res.State = ""
		return res
	}
	log.Error("executor: cannot run event; failing the job", "error", cause)
	client, err := e.client(id.GitLabURL, id.CAPEM, log)
	if err != nil {
		res.Error += "; " + err.Error()
		return res
	}
	buf, err := trace.NewBuffer(e.cfg.ScratchDir)
	if err != nil {
		res.Error += "; " + err.Error()
		return res
	}
	defer buf.Close()
	w := trace.NewWriter(buf, trace.WriterOptions{Mask: trace.MaskOptions{Phrases: id.MaskedValues()}})
	w.Printf("Running with gitlab-serverless-runner %s\n", e.cfg.Version)
	w.Errorf("Job failed (system failure): the executor could not run this job: %v", cause)
	_ = w.Close()
	up, err := trace.NewUploader(trace.UploaderConfig{
		Client: client, JobID: id.Job.ID, JobToken: id.Job.Token, Trace: buf,
		FailureReasons: id.Job.Features.FailureReasons, FinalAttempts: 3, Logger: log,
	})
	if err != nil {
		res.Error += "; " + err.Error()
		return res
	}
	if err := up.Fail(ctx, gitlab.ReasonRunnerSystemFailure, 0); err != nil {
		log.Error("executor: fail the job in GitLab", "error", err)
		res.Error += "; report to GitLab: " + err.Error()
		return res
	}
	res.Reported = true
	return res
}

// client builds a GitLab client trusting caPEM in addition to the system
// roots.
func (e *Executor) client(instance, caPEM string, log *slog.Logger) (*gitlab.Client, error) {
	opts, err := e.cfg.URLPolicy.GitLab(gitlab.Options{HTTPClient: e.cfg.HTTPClient}, log).TrustCA(caPEM)
	if err != nil {
		return nil, errors.New("executor: ca_pem holds no PEM certificate")
	}
	c, err := gitlab.New(instance, opts)
	if err != nil {
		return nil, fmt.Errorf("executor: build GitLab client: %w", err)
	}
	return c, nil
}

// Err returns why this execution environment must run no other job: a
// clean-up before or after a job that failed, so that something a job
// left may still be there. Run then fails every job it is given without
// running it. The function's main ends the process once the current
// result is reported, and Lambda starts the next job in a fresh
// environment.
func (e *Executor) Err() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.spoilt
}

// errUnclean is what the job's trace says when the environment could not be
// cleaned; the details go to the executor's log.
var errUnclean = errors.New("the execution environment could not be cleaned up, so this job was not run in it")

// Run runs one job end to end and returns its Result. ctx carries the
// invocation's deadline: the job ends, at the latest, DeadlineMargin before
// it.
func (e *Executor) Run(ctx context.Context, ev dispatch.Event) dispatch.Result {
	e.mu.Lock()
	defer e.mu.Unlock()
	start := time.Now()
	log := e.log.With("job_id", ev.Job.ID, "runner_id", ev.Runner.ID)
	if err := ev.Validate(); err != nil {
		raw, _ := json.Marshal(ev)
		r := e.rejectEvent(ctx, raw, err)
		r.DurationMS = time.Since(start).Milliseconds()
		return r
	}
	if e.spoilt == nil {
		if err := e.cleaner.run(ctx); err != nil {
			log.Error("executor: clean-up before the job failed; this environment runs no job", "error", err)
			e.spoilt = fmt.Errorf("clean up before job %d: %w", ev.Job.ID, err)
		}
	}
	if e.spoilt != nil {
		raw, _ := json.Marshal(ev)
		res := e.rejectEvent(ctx, raw, errUnclean)
		res.RunnerID = ev.Runner.ID
		res.DurationMS = time.Since(start).Milliseconds()
		return res
	}
	j := &jobRun{e: e, ev: ev, job: ev.Job, log: log, start: start}
	res := j.run(ctx)
	res.RunnerID = ev.Runner.ID
	if err := e.cleaner.run(ctx); err != nil {
		log.Error("executor: clean-up after the job failed; this environment runs no other job", "error", err)
		e.spoilt = fmt.Errorf("clean up after job %d: %w", ev.Job.ID, err)
	}
	res.DurationMS = time.Since(start).Milliseconds()
	log.Info("executor: job done", "state", res.State, "failure_reason", res.FailureReason,
		"exit_code", res.ExitCode, "duration_ms", res.DurationMS, "reported", res.Reported)
	return res
}

// httpClientWithCA returns base (nil: a client with the default transport)
// trusting caPEM in addition to the system roots, for every request the
// executor makes for a job of a runner with a custom CA: the GitLab API
// (trace, updates, artifacts) and the pre-signed cache URLs. Without a CA
// it returns base as it is.
func httpClientWithCA(base *http.Client, caPEM string) (*http.Client, error) {
	if caPEM == "" {
		return base, nil
	}
	pool, err := gitlab.CertPool(caPEM)
	if err != nil {
		return nil, errors.New("executor: ca_pem holds no PEM certificate")
	}
	return gitlab.WithRootCAs(base, pool)
}
