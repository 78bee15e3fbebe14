package poller

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"

	"gitlab-serverless-runner/pkg/gitlab"
)

// JobFailure describes a job to fail from outside its executor: the
// poller when the executor could not be started, the finisher when it died.
type JobFailure struct {
	JobID int64
	// Token is the job token.
	Token string
	// TwoPhase: the job may still be pending, waiting for PUT
	// state=running; it is accepted first, since GitLab refuses a failed
	// state before that.
	TwoPhase bool
	// Reason is the failure reason, e.g. runner_system_failure.
	Reason string
	// Message is the line written to the job's trace; it must hold no
	// secret.
	Message string
	// TraceEmpty says nothing was written to the trace yet: the line goes
	// at offset 0 and the final update carries its checksum. Otherwise the
	// line is appended at the trace's current end, learnt from GitLab's 416
	// answer, and the final update goes without a checksum, since the rest
	// of the trace is unknown.
	TraceEmpty bool
}

// TraceLine formats msg as the runner's error lines look in a trace: bold
// red "ERROR: " and a reset.
func TraceLine(msg string) []byte {
	return []byte("\x1b[31;1mERROR: " + msg + "\x1b[0;m\n")
}

// FailJob writes the failure's trace line and reports the job failed. A job
// GitLab already ended (403, 404, canceled or failed) needs nothing more
// and is not an error.
func FailJob(ctx context.Context, c *gitlab.Client, f JobFailure) error {
	if f.TwoPhase {
		res, err := c.UpdateJob(ctx, f.JobID, gitlab.UpdateJobRequest{Token: f.Token, State: gitlab.StateRunning})
		if gitlab.AbortsJob(err) || err == nil && res.Aborted() {
			return nil
		}
		if err != nil {
			return fmt.Errorf("poller: fail job %d: accept it: %w", f.JobID, err)
		}
	}
	line := TraceLine(f.Message)
	offset := int64(0)
	for attempt := 0; ; attempt++ {
		res, err := c.PatchTrace(ctx, f.JobID, f.Token, offset, line, false)
		if gitlab.AbortsJob(err) || err == nil && res.Aborted() {
			return nil
		}
		if err != nil {
			return fmt.Errorf("poller: fail job %d: write trace: %w", f.JobID, err)
		}
		if !res.RangeMismatch {
			break
		}
		if attempt == 2 {
			return fmt.Errorf("poller: fail job %d: write trace: the trace kept moving", f.JobID)
		}
		offset = res.NewOffset
	}
	req := gitlab.UpdateJobRequest{Token: f.Token, State: gitlab.StateFailed, FailureReason: f.Reason}
	if f.TraceEmpty && offset == 0 {
		req.Output = gitlab.JobOutput{Checksum: fmt.Sprintf("crc32:%08x", crc32.ChecksumIEEE(line)), Bytesize: int64(len(line))}
		req.Checksum = req.Output.Checksum
	}
	resend := func(ctx context.Context) error {
		if req.Output.Checksum == "" {
			return errors.New("the trace cannot be resent: it was written by the executor")
		}
		_, err := c.PatchTrace(ctx, f.JobID, f.Token, 0, line, false)
		return err
	}
	_, err := c.FinalUpdate(ctx, f.JobID, req, resend)
	if gitlab.AbortsJob(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("poller: fail job %d: report failed: %w", f.JobID, err)
	}
	return nil
}
