package gitlab

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

const (
	// maxJobBody bounds the job payload decoded from a 201.
	maxJobBody = 32 << 20
	// maxUpdateInterval caps every interval GitLab asks for (section 10.3).
	maxUpdateInterval = 15 * time.Minute
	// defaultUpdateInterval is used when a 202 carries no interval, and
	// between a 412 and the next PUT.
	defaultUpdateInterval = 3 * time.Second
	// finalUpdateAttempts bounds the PUTs of FinalUpdate. GitLab applies a
	// final state at the latest 5 minutes after the first 202, with
	// intervals doubling from 1 s to 64 s: about 11 PUTs.
	finalUpdateAttempts = 30
)

// JobRequestResult is the outcome of a job request.
type JobRequestResult struct {
	// Job is the job offered (201), nil otherwise.
	Job *Job
	// LastUpdate is the X-GitLab-Last-Update value to send as last_update
	// next time; empty when the answer had none (a 201, or a 204 from a
	// Workhorse long poll): the caller then keeps its previous value.
	LastUpdate string
	// Conflict is a 409: the queue changed under the request; ask again on
	// the next loop.
	Conflict bool
}

// RequestJob asks GitLab for a job (POST /jobs/request). A 204 is no job, a
// 409 a Conflict result; both come without error. A 403 (invalid or expired
// runner token) is ErrForbidden; a 201 whose payload cannot be decoded is an
// error. The caller stores LastUpdate between calls.
func (c *Client) RequestJob(ctx context.Context, req JobRequest) (JobRequestResult, error) {
	cl, resp, err := c.runnerCall(ctx, http.MethodPost, "jobs/request", req, req.Token)
	if err != nil {
		return JobRequestResult{}, err
	}
	result := JobRequestResult{LastUpdate: resp.Header.Get(headerLastUpdate)}
	switch resp.StatusCode {
	case http.StatusCreated:
		defer discard(resp.Response)
		var job Job
		if err := decodeJSON(resp.Response, maxJobBody, &job); err != nil {
			return result, c.invalid(cl, resp, err)
		}
		if job.ID == 0 || job.Token == "" {
			return result, c.invalid(cl, resp, errors.New("job payload without id or token"))
		}
		result.Job = &job
		return result, nil
	case http.StatusNoContent:
		discard(resp.Response)
		return result, nil
	case http.StatusConflict:
		discard(resp.Response)
		result.Conflict = true
		return result, nil
	default:
		return result, c.fail(cl, resp)
	}
}

// UpdateJobResult is the outcome of a job update.
type UpdateJobResult struct {
	// JobStatus is the Job-Status header ("running", "canceling",
	// "canceled", "failed", ...).
	JobStatus string
	// Accepted is a 200: the state was applied.
	Accepted bool
	// RetryAfter is set on a 202: GitLab accepted a final state but is
	// still persisting the trace; resend the same PUT after this long
	// (X-GitLab-Trace-Update-Interval, 3 s when absent, capped at 15 min).
	RetryAfter time.Duration
	// ResendTrace is a 412: the trace failed validation; resend it whole
	// from offset 0, then the PUT.
	ResendTrace bool
}

// Canceling reports whether GitLab asks for a graceful cancel: stop the
// script, run after_script, send the trace and a final update.
func (r UpdateJobResult) Canceling() bool { return r.JobStatus == StatusCanceling }

// Aborted reports whether the job is canceled or failed in GitLab: stop at
// once. A 403 or 404 comes back as an error instead (see AbortsJob), which
// means the same.
func (r UpdateJobResult) Aborted() bool { return aborted(r.JobStatus) }

func aborted(jobStatus string) bool {
	return jobStatus == StatusCanceled || jobStatus == StatusFailed
}

// UpdateJob sends the job's state (PUT /jobs/:id) with the job token. 200,
// 202 and 412 are results without error; 403 and 404 (ErrForbidden,
// ErrNotFound: abort the job) and every other status are errors, whose
// result still carries the Job-Status header.
func (c *Client) UpdateJob(ctx context.Context, jobID int64, req UpdateJobRequest) (UpdateJobResult, error) {
	cl, err := jsonCall(http.MethodPut, "jobs/"+strconv.FormatInt(jobID, 10), req, req.Token)
	if err != nil {
		return UpdateJobResult{}, err
	}
	cl.header.Set(headerJobToken, req.Token)
	cl.header.Del("Accept") // the answer has no JSON body worth reading
	resp, err := c.do(ctx, cl)
	if err != nil {
		return UpdateJobResult{}, err
	}
	result := UpdateJobResult{JobStatus: resp.Header.Get(headerJobStatus)}
	switch resp.StatusCode {
	case http.StatusOK:
		discard(resp.Response)
		result.Accepted = true
		return result, nil
	case http.StatusAccepted:
		discard(resp.Response)
		result.RetryAfter = min(seconds(resp.Header, headerUpdateInterval), maxUpdateInterval)
		if result.RetryAfter == 0 {
			result.RetryAfter = defaultUpdateInterval
		}
		return result, nil
	case http.StatusPreconditionFailed:
		discard(resp.Response)
		result.ResendTrace = true
		return result, nil
	default:
		return result, c.fail(cl, resp)
	}
}

// FinalUpdate sends a final state (success or failed, with the trace
// checksum) until GitLab applies it. The caller has sent the whole trace
// before calling. On 202 it waits the interval GitLab asks for (at most
// 15 min) and sends the same PUT again; on 412 it calls resendTrace, which
// must send the whole trace again from offset 0, waits 3 s and sends the
// PUT again. It returns the 200's result, a result whose Job-Status says
// the job is canceled or failed (nothing more to do), or the first error:
// 403/404 mean there is nothing more to do (AbortsJob), others may be
// retried by the caller. It gives up after 30 PUTs (GitLab itself applies
// a final state within about 5 minutes) and when ctx is done.
func (c *Client) FinalUpdate(ctx context.Context, jobID int64, req UpdateJobRequest, resendTrace func(ctx context.Context) error) (UpdateJobResult, error) {
	return FinalUpdateWith(ctx, c, c.sleep, jobID, req, resendTrace)
}

// JobUpdater sends one PUT /jobs/:id; *Client is one.
type JobUpdater interface {
	UpdateJob(ctx context.Context, jobID int64, req UpdateJobRequest) (UpdateJobResult, error)
}

var _ JobUpdater = (*Client)(nil)

// FinalUpdateWith is the final-update procedure of FinalUpdate over any
// JobUpdater, waiting with sleep (which may cap the waits), for callers
// that wrap the client, such as the job trace.
func FinalUpdateWith(ctx context.Context, u JobUpdater, sleep func(context.Context, time.Duration) error, jobID int64, req UpdateJobRequest, resendTrace func(ctx context.Context) error) (UpdateJobResult, error) {
	var last UpdateJobResult
	for range finalUpdateAttempts {
		r, err := u.UpdateJob(ctx, jobID, req)
		if err != nil || r.Accepted || r.Aborted() {
			return r, err
		}
		last = r
		wait := r.RetryAfter
		if r.ResendTrace {
			if resendTrace == nil {
				return r, fmt.Errorf("gitlab: final update of job %d: trace rejected and no way to resend it", jobID)
			}
			if err := resendTrace(ctx); err != nil {
				return r, fmt.Errorf("gitlab: final update of job %d: resend trace: %w", jobID, err)
			}
			wait = defaultUpdateInterval
		}
		if err := sleep(ctx, wait); err != nil {
			return r, fmt.Errorf("gitlab: final update of job %d: wait: %w", jobID, err)
		}
	}
	return last, fmt.Errorf("gitlab: final update of job %d: not applied after %d attempts: %w", jobID, finalUpdateAttempts, ErrUnavailable)
}
