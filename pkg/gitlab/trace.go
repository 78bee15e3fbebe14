package gitlab

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// PatchTraceResult is the outcome of a trace PATCH.
type PatchTraceResult struct {
	// NewOffset is where the next PATCH starts: the server's trace length
	// (the end of the Range header, else start+len) on 202, the server's
	// Range end on 416.
	NewOffset int64
	// RangeMismatch is a 416: the server holds a different length; resend
	// from NewOffset.
	RangeMismatch bool
	// JobStatus is the Job-Status header.
	JobStatus string
	// UpdateInterval is X-GitLab-Trace-Update-Interval (capped at 15 min),
	// 0 if absent.
	UpdateInterval time.Duration
}

// Canceling reports whether GitLab asks for a graceful cancel.
func (r PatchTraceResult) Canceling() bool { return r.JobStatus == StatusCanceling }

// Aborted reports whether the job is canceled or failed in GitLab: stop at
// once. A 403 comes back as an error (see AbortsJob), which means the same.
func (r PatchTraceResult) Aborted() bool { return aborted(r.JobStatus) }

// PatchTrace appends content to the job's log at offset (PATCH
// /jobs/:id/trace) with Content-Range "start-end" (end inclusive). Empty
// content sends nothing and returns NewOffset = offset. 202 and 416 are
// results without error; 403 (job not running, token expired, trace too
// large: abort), 404, 409 (concurrent write: try again later) and others
// are errors. Keep content at most 1 MiB per call.
func (c *Client) PatchTrace(ctx context.Context, jobID int64, jobToken string, offset int64, content []byte, debug bool) (PatchTraceResult, error) {
	if len(content) == 0 {
		return PatchTraceResult{NewOffset: offset}, nil
	}
	h := http.Header{}
	h.Set(headerJobToken, jobToken)
	h.Set("Content-Type", "text/plain")
	h.Set("Content-Range", fmt.Sprintf("%d-%d", offset, offset+int64(len(content))-1))
	cl := call{
		method:  http.MethodPatch,
		path:    "jobs/" + strconv.FormatInt(jobID, 10) + "/trace",
		query:   url.Values{"debug_trace": {strconv.FormatBool(debug)}},
		header:  h,
		body:    func() (io.Reader, func(), error) { return bytes.NewReader(content), nil, nil },
		secrets: []string{jobToken},
	}
	resp, err := c.do(ctx, cl)
	if err != nil {
		return PatchTraceResult{}, err
	}
	result := PatchTraceResult{
		JobStatus:      resp.Header.Get(headerJobStatus),
		UpdateInterval: min(seconds(resp.Header, headerUpdateInterval), maxUpdateInterval),
	}
	switch resp.StatusCode {
	case http.StatusAccepted:
		discard(resp.Response)
		result.NewOffset = offset + int64(len(content))
		if end, ok := rangeEnd(resp.Header); ok {
			result.NewOffset = end
		}
		return result, nil
	case http.StatusRequestedRangeNotSatisfiable:
		end, ok := rangeEnd(resp.Header)
		if !ok {
			e := c.fail(cl, resp)
			e.Message = "range not satisfiable and no usable Range header in the answer"
			return result, e
		}
		discard(resp.Response)
		result.RangeMismatch = true
		result.NewOffset = end
		return result, nil
	default:
		return result, c.fail(cl, resp)
	}
}

// rangeEnd parses the Range header "0-<length>" of a trace answer.
func rangeEnd(h http.Header) (int64, bool) {
	v := strings.TrimSpace(h.Get("Range"))
	_, end, found := strings.Cut(v, "-")
	if !found {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(end), 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}
