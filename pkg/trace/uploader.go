package trace

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"gitlab-serverless-runner/pkg/retry"

	"gitlab-serverless-runner/pkg/gitlab"
)

// JobClient is what the Uploader needs from GitLab. *gitlab.Client
// implements it. PatchTrace appends to the job's log and UpdateJob sends its
// state; both are called from one goroutine at a time.
type JobClient interface {
	PatchTrace(ctx context.Context, jobID int64, jobToken string, offset int64, content []byte, debug bool) (gitlab.PatchTraceResult, error)
	UpdateJob(ctx context.Context, jobID int64, req gitlab.UpdateJobRequest) (gitlab.UpdateJobResult, error)
}

var _ JobClient = (*gitlab.Client)(nil)

// Source is the trace the Uploader sends: the bytes written so far, their
// size and checksum. *Buffer implements it; it must be safe to read while
// it is written.
type Source interface {
	io.ReaderAt
	Size() int64
	Checksum() string
}

var _ Source = (*Buffer)(nil)

// Timing defaults (protocol doc section 10.3).
const (
	DefaultInterval          = 3 * time.Second
	DefaultMaxInterval       = 15 * time.Minute
	DefaultForceSendInterval = 30 * time.Second
	DefaultFinalAttempts     = 10
	DefaultMinBackoff        = time.Second
	DefaultMaxBackoff        = 60 * time.Minute
	// PatchSize is the most bytes sent in one PATCH.
	PatchSize = 1 << 20
)

// Errors of the final update.
var (
	// ErrAborted means GitLab no longer accepts anything for the job
	// (canceled, failed, 403 or 404): stop the job, send nothing more.
	ErrAborted = errors.New("trace: job aborted by GitLab")
	// ErrFinished is returned by a second Success or Fail.
	ErrFinished = errors.New("trace: final update already sent")
)

// UploaderConfig configures an Uploader. Zero durations and counts take
// the defaults above.
type UploaderConfig struct {
	Client   JobClient
	JobID    int64
	JobToken string
	Trace    Source
	// Debug marks the trace as a debug trace (CI_DEBUG_TRACE).
	Debug bool
	// FailureReasons is the job's features.failure_reasons.
	FailureReasons []string
	// Interval is the first PATCH interval, and the wait after a 412.
	Interval time.Duration
	// MaxInterval caps every interval GitLab asks for.
	MaxInterval time.Duration
	// ForceSendInterval is how long without a successful send before a
	// keep-alive update (state running with checksum and size).
	ForceSendInterval time.Duration
	// FinalAttempts is how many times the whole final update is tried.
	FinalAttempts int
	// MinBackoff and MaxBackoff bound the wait between final attempts,
	// doubling from MinBackoff.
	MinBackoff, MaxBackoff time.Duration
	// Logger is the job's logger, which names the job: the uploader adds
	// no attribute of its own.
	Logger *slog.Logger
}

// ConfigFor fills the job's fields of an UploaderConfig.
func ConfigFor(job *gitlab.Job, client JobClient, src Source) UploaderConfig {
	return UploaderConfig{
		Client:         client,
		JobID:          job.ID,
		JobToken:       job.Token,
		Trace:          src,
		Debug:          job.Variables.Get("CI_DEBUG_TRACE") == "true" || job.Variables.Get("CI_DEBUG_SERVICES") == "true",
		FailureReasons: job.Features.FailureReasons,
	}
}

// Uploader sends a job's trace to GitLab while the job runs and its final
// state when it ends. Start begins the periodic PATCHes; CheckStatus asks
// for the job's status in between; Canceling and Aborted report what
// GitLab says about the job; exactly one of Success or Fail ends it. Once
// an answer says the job is aborted, no further request is sent. Its
// methods are safe for concurrent use.
type Uploader struct {
	cfg UploaderConfig
	log *slog.Logger

	// reqMu is held while a request for the job is decided and sent (the
	// loop's PATCH and keep-alive, CheckStatus, the final update): one at
	// a time, and none after an answer that aborts the job.
	reqMu sync.Mutex
	// Guarded by reqMu.
	offset   int64
	interval time.Duration
	lastSent time.Time

	startOnce  sync.Once
	stop       chan struct{}
	loopDone   chan struct{}
	finalOnce  sync.Once
	cancelOnce sync.Once
	abortOnce  sync.Once
	canceling  chan struct{}
	aborted    chan struct{}
}

// NewUploader returns an Uploader; cfg.Client and cfg.Trace are required.
func NewUploader(cfg UploaderConfig) (*Uploader, error) {
	if cfg.Client == nil || cfg.Trace == nil {
		return nil, errors.New("trace: new uploader: client and trace are required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.MaxInterval <= 0 {
		cfg.MaxInterval = DefaultMaxInterval
	}
	if cfg.ForceSendInterval <= 0 {
		cfg.ForceSendInterval = DefaultForceSendInterval
	}
	if cfg.FinalAttempts <= 0 {
		cfg.FinalAttempts = DefaultFinalAttempts
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Uploader{
		cfg:       cfg,
		log:       log,
		interval:  min(cfg.Interval, cfg.MaxInterval),
		lastSent:  time.Now(),
		stop:      make(chan struct{}),
		loopDone:  make(chan struct{}),
		canceling: make(chan struct{}),
		aborted:   make(chan struct{}),
	}, nil
}

// Canceling is closed when GitLab asks to cancel the job gracefully
// (Job-Status: canceling): stop the script, run after_script, then Fail.
func (u *Uploader) Canceling() <-chan struct{} { return u.canceling }

// Aborted is closed when GitLab no longer accepts the job (Job-Status
// canceled or failed, 403 or 404): stop everything at once.
func (u *Uploader) Aborted() <-chan struct{} { return u.aborted }

// IsAborted reports whether Aborted is closed.
func (u *Uploader) IsAborted() bool {
	select {
	case <-u.aborted:
		return true
	default:
		return false
	}
}

func (u *Uploader) markCanceling() {
	u.cancelOnce.Do(func() {
		u.log.Info("trace: GitLab asks to cancel the job")
		close(u.canceling)
	})
}

func (u *Uploader) markAborted(why string) {
	u.abortOnce.Do(func() {
		u.log.Warn("trace: GitLab aborted the job", "reason", why)
		close(u.aborted)
	})
}

// observe applies the Job-Status of an answer; it reports whether the job
// is aborted.
func (u *Uploader) observe(canceling, aborted bool, jobStatus string) bool {
	if aborted {
		u.markAborted("job status " + jobStatus)
		return true
	}
	if canceling {
		u.markCanceling()
	}
	return false
}

// observeErr marks the job aborted when err says GitLab refuses it.
func (u *Uploader) observeErr(err error) bool {
	if gitlab.AbortsJob(err) {
		u.markAborted(err.Error())
		return true
	}
	return false
}

// Start begins sending the trace every interval until Success, Fail, ctx
// ends or GitLab aborts the job. Calls after the first do nothing.
func (u *Uploader) Start(ctx context.Context) {
	u.startOnce.Do(func() {
		go u.loop(ctx)
	})
}

func (u *Uploader) loop(ctx context.Context) {
	defer close(u.loopDone)
	t := time.NewTimer(u.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-u.stop:
			return
		case <-u.aborted:
			return
		case <-t.C:
		}
		if !u.tick(ctx) {
			return
		}
		t.Reset(u.interval)
	}
}

// tick sends the next chunk and, when nothing was sent for a while, a
// keep-alive update. It reports whether to carry on.
func (u *Uploader) tick(ctx context.Context) bool {
	u.reqMu.Lock()
	defer u.reqMu.Unlock()
	if u.IsAborted() {
		return false
	}
	r, sent, err := u.patchNext(ctx)
	switch {
	case err != nil:
		if u.observeErr(err) {
			return false
		}
		u.log.Warn("trace: send trace", "error", err)
		return true
	case u.observe(r.Canceling(), r.Aborted(), r.JobStatus):
		return false
	}
	if r.UpdateInterval > 0 {
		u.interval = min(r.UpdateInterval, u.cfg.MaxInterval)
	}
	now := time.Now()
	if sent {
		u.lastSent = now
		return true
	}
	if now.Sub(u.lastSent) < u.cfg.ForceSendInterval {
		return true
	}
	return u.touch(ctx)
}

// CheckStatus asks GitLab for the job's status now, with the keep-alive
// update (state running with the trace's checksum and size, as
// gitlab-runner sends it), for a caller that must notice a cancel sooner
// than the trace's interval would. The answer reaches Canceling and
// Aborted as the loop's answers do. Once the job is aborted it sends
// nothing and returns ErrAborted; once the final update has begun,
// ErrFinished. Any other error is the request's: the job goes on.
func (u *Uploader) CheckStatus(ctx context.Context) error {
	u.reqMu.Lock()
	defer u.reqMu.Unlock()
	select {
	case <-u.stop:
		return ErrFinished
	default:
	}
	if u.IsAborted() {
		return ErrAborted
	}
	err := u.keepAlive(ctx)
	if err != nil && !errors.Is(err, ErrAborted) {
		return fmt.Errorf("trace: check the job's status: %w", err)
	}
	return err
}

// keepAlive sends the update that keeps the job alive, state running with
// the trace's checksum and size, and applies its answer. It returns
// ErrAborted when the answer aborts the job, or the request's error.
func (u *Uploader) keepAlive(ctx context.Context) error {
	r, err := u.cfg.Client.UpdateJob(ctx, u.cfg.JobID, gitlab.UpdateJobRequest{
		Token:  u.cfg.JobToken,
		State:  gitlab.StatusRunning,
		Output: gitlab.JobOutput{Checksum: u.cfg.Trace.Checksum(), Bytesize: u.cfg.Trace.Size()},
	})
	switch {
	case err != nil && u.observeErr(err):
		return ErrAborted
	case err != nil:
		return err
	case u.observe(r.Canceling(), r.Aborted(), r.JobStatus):
		return ErrAborted
	}
	u.lastSent = time.Now()
	return nil
}

// touch sends the keep-alive update from the loop; it reports whether to
// carry on.
func (u *Uploader) touch(ctx context.Context) bool {
	err := u.keepAlive(ctx)
	if err != nil && !errors.Is(err, ErrAborted) {
		u.log.Warn("trace: keep job alive", "error", err)
	}
	return !errors.Is(err, ErrAborted)
}

// patchNext sends up to PatchSize bytes from the sent offset. sent is false
// when there was nothing to send or GitLab answered 416 (the offset then
// moves to where GitLab is).
func (u *Uploader) patchNext(ctx context.Context) (r gitlab.PatchTraceResult, sent bool, err error) {
	size := u.cfg.Trace.Size()
	if u.offset >= size {
		return r, false, nil
	}
	buf := make([]byte, min(size-u.offset, PatchSize))
	n, err := u.cfg.Trace.ReadAt(buf, u.offset)
	if err != nil && !(errors.Is(err, io.EOF) && n > 0) {
		return r, false, fmt.Errorf("trace: read trace at %d: %w", u.offset, err)
	}
	r, err = u.cfg.Client.PatchTrace(ctx, u.cfg.JobID, u.cfg.JobToken, u.offset, buf[:n], u.cfg.Debug)
	if err != nil {
		return r, false, err
	}
	if r.RangeMismatch {
		u.log.Info("trace: GitLab holds a different length; resuming there", "sent", u.offset, "server", r.NewOffset)
		u.offset = r.NewOffset
		return r, false, nil
	}
	u.offset = r.NewOffset
	return r, true, nil
}

// Success sends the rest of the trace and the final state success.
func (u *Uploader) Success(ctx context.Context) error {
	return u.final(ctx, gitlab.StatusSuccess, "", 0)
}

// Fail sends the rest of the trace and the final state failed with reason
// (mapped with FailureReason) and the script's exit code (omitted when 0).
func (u *Uploader) Fail(ctx context.Context, reason gitlab.FailureReason, exitCode int) error {
	return u.final(ctx, gitlab.StatusFailed, reason.For(u.cfg.FailureReasons), exitCode)
}

// final stops the loop and sends the final update; only its first call
// does anything. Close the Writer before, so that every byte is in the
// trace.
func (u *Uploader) final(ctx context.Context, state string, reason gitlab.FailureReason, exitCode int) error {
	err := ErrFinished
	u.finalOnce.Do(func() {
		close(u.stop)
		u.startOnce.Do(func() { close(u.loopDone) }) // never started: no loop to wait for
		<-u.loopDone
		u.reqMu.Lock()
		defer u.reqMu.Unlock()
		err = u.finalUpdate(ctx, state, reason, exitCode)
	})
	return err
}

func (u *Uploader) finalUpdate(ctx context.Context, state string, reason gitlab.FailureReason, exitCode int) error {
	if u.IsAborted() {
		return ErrAborted
	}
	u.interval = min(u.cfg.Interval, u.cfg.MaxInterval)
	backoff := u.cfg.MinBackoff
	var err error
	for attempt := 1; ; attempt++ {
		err = u.finalAttempt(ctx, state, reason, exitCode)
		if err == nil || errors.Is(err, ErrAborted) {
			if err == nil {
				u.log.Info("trace: final update applied", "state", state, "failure_reason", reason, "bytes", u.cfg.Trace.Size())
			}
			return err
		}
		if attempt >= u.cfg.FinalAttempts {
			break
		}
		u.log.Warn("trace: final update failed; retrying", "attempt", attempt, "error", err)
		if werr := retry.Sleep(ctx, backoff); werr != nil {
			return fmt.Errorf("trace: final update: wait to retry: %w (last error: %w)", werr, err)
		}
		backoff = min(backoff*2, u.cfg.MaxBackoff)
	}
	return fmt.Errorf("trace: final update: gave up after %d attempts: %w", u.cfg.FinalAttempts, err)
}

// finalAttempt sends the rest of the trace, then the final PUT until GitLab
// applies it (gitlab.FinalUpdateWith: 202 waits and sends it again, 412
// resends the whole trace), with every wait capped at MaxInterval.
func (u *Uploader) finalAttempt(ctx context.Context, state string, reason gitlab.FailureReason, exitCode int) error {
	if err := u.sendRest(ctx); err != nil {
		return err
	}
	cs := u.cfg.Trace.Checksum()
	req := gitlab.UpdateJobRequest{
		Token:    u.cfg.JobToken,
		State:    state,
		ExitCode: exitCode,
		Checksum: cs,
		Output:   gitlab.JobOutput{Checksum: cs, Bytesize: u.cfg.Trace.Size()},
	}
	if state == gitlab.StatusFailed {
		req.FailureReason = reason
	}
	resend := func(ctx context.Context) error {
		u.log.Info("trace: GitLab rejected the trace checksum; resending it whole")
		u.offset = 0
		return u.sendRest(ctx)
	}
	wait := func(ctx context.Context, d time.Duration) error {
		if d <= 0 {
			d = u.interval
		}
		return retry.Sleep(ctx, min(d, u.cfg.MaxInterval))
	}
	r, err := gitlab.FinalUpdateWith(ctx, u.cfg.Client, wait, u.cfg.JobID, req, resend)
	switch {
	case err == nil && r.Accepted:
		return nil
	case err == nil:
		u.markAborted("job status " + r.JobStatus)
		return ErrAborted
	case errors.Is(err, ErrAborted), u.observeErr(err):
		return ErrAborted
	}
	return fmt.Errorf("trace: send final state: %w", err)
}

// sendRest sends everything from the sent offset, PatchSize at a time.
func (u *Uploader) sendRest(ctx context.Context) error {
	mismatches := 0
	for u.offset < u.cfg.Trace.Size() {
		r, _, err := u.patchNext(ctx)
		if err != nil {
			if u.observeErr(err) {
				return ErrAborted
			}
			return fmt.Errorf("trace: send rest of trace: %w", err)
		}
		if r.Aborted() {
			u.markAborted("job status " + r.JobStatus)
			return ErrAborted
		}
		if r.RangeMismatch {
			// GitLab moved us; twice in a row means it keeps refusing.
			if mismatches++; mismatches > 2 {
				return fmt.Errorf("trace: send rest of trace: GitLab keeps answering 416 at offset %d", u.offset)
			}
			continue
		}
		mismatches = 0
	}
	return nil
}
