package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"

	"gitlab-serverless-runner/pkg/gitlab"
)

// Failure describes a job to fail from outside its executor: the
// poller when the executor could not be started, the finisher when it died.
type Failure struct {
	JobID int64
	// Token is the job token.
	Token string
	// TwoPhase: the job may still be pending, waiting for PUT
	// state=running; it is accepted first, since GitLab refuses a failed
	// state before that.
	TwoPhase bool
	// Reason is the failure reason, e.g. runner_system_failure.
	Reason gitlab.FailureReason
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
func FailJob(ctx context.Context, c *gitlab.Client, f Failure) error {
	if f.TwoPhase {
		res, err := c.UpdateJob(ctx, f.JobID, gitlab.UpdateJobRequest{Token: f.Token, State: gitlab.StateRunning})
		if gitlab.AbortsJob(err) || err == nil && res.Aborted() {
			return nil
		}
		if err != nil {
			return fmt.Errorf("dispatch: fail job %d: accept it: %w", f.JobID, err)
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
			return fmt.Errorf("dispatch: fail job %d: write trace: %w", f.JobID, err)
		}
		if !res.RangeMismatch {
			break
		}
		if attempt == 2 {
			return fmt.Errorf("dispatch: fail job %d: write trace: the trace kept moving", f.JobID)
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
		return fmt.Errorf("dispatch: fail job %d: report failed: %w", f.JobID, err)
	}
	return nil
}

// Identity is the part of an executor event needed to fail its job, read
// on its own so that a type error elsewhere in a malformed event does not
// hide it.
type Identity struct {
	GitLabURL string `json:"gitlab_url"`
	Job       struct {
		ID       int64  `json:"id"`
		Token    string `json:"token"`
		Features struct {
			FailureReasons []string `json:"failure_reasons"`
		} `json:"features"`
		Variables []struct {
			Key    string `json:"key"`
			Value  string `json:"value"`
			Masked bool   `json:"masked"`
		} `json:"variables"`
	} `json:"job"`
	CAPEM string `json:"ca_pem"`
}

// Identify extracts what it can of raw's identity; ok says whether the job
// can be failed (a job id, a token and an http(s) GitLab URL).
func Identify(raw []byte) (id Identity, ok bool) {
	_ = json.Unmarshal(raw, &id) // best effort: type errors elsewhere leave these fields set
	if id.Job.ID <= 0 || id.Job.Token == "" || id.GitLabURL == "" {
		return id, false
	}
	if _, err := parseHTTPURL(id.GitLabURL); err != nil {
		return id, false
	}
	return id, true
}

// MaskedValues are the values of the identity's masked variables and the
// job token, which a trace line about the job must never show.
func (id Identity) MaskedValues() []string {
	var out []string
	for _, v := range id.Job.Variables {
		if v.Masked {
			out = append(out, v.Value)
		}
	}
	return append(out, id.Job.Token)
}
