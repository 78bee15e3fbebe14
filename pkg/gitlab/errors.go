package gitlab

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"sort"
	"strings"
)

// Kinds of failure. Every error a Client returns for a GitLab answer or a
// network failure is an *Error; errors.Is matches it against these.
var (
	// ErrForbidden is a 401 or 403: invalid, expired or deleted token, or
	// a job that is no longer running. For job calls it means abort.
	ErrForbidden = errors.New("gitlab: forbidden")
	// ErrNotFound is a 404.
	ErrNotFound = errors.New("gitlab: not found")
	// ErrGone is a 410: registration tokens are disabled on the instance.
	ErrGone = errors.New("gitlab: gone")
	// ErrTooLarge is a 413: an artifact above the instance's limit, or a
	// request body above what the proxy accepts.
	ErrTooLarge = errors.New("gitlab: too large")
	// ErrUnavailable is a network error, or a 408, 429 or 5xx left after
	// the transport retries.
	ErrUnavailable = errors.New("gitlab: unavailable")
	// ErrBadRequest is a 400 or 422: the request was refused as invalid.
	ErrBadRequest = errors.New("gitlab: bad request")
)

// Error is a failed call: a non-success answer from GitLab (StatusCode set)
// or a request that got no answer (StatusCode 0). Its text names the
// endpoint and the instance, never a token.
type Error struct {
	// Endpoint is the method and path, e.g. "PATCH /jobs/42/trace".
	Endpoint string
	// Instance is the instance URL.
	Instance string
	// StatusCode is the HTTP status, 0 when no answer came back.
	StatusCode int
	// Message is GitLab's message, or what went wrong.
	Message string
	// JobStatus is the Job-Status header of the answer, if any.
	JobStatus string
	// RequestID is the X-Request-Id sent with the call.
	RequestID string
	// Attempts is how many attempts were made.
	Attempts int
	// Err is the underlying cause (network error, context error), if any.
	Err error

	kind error
}

// Error implements error.
func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "gitlab: %s on %s: ", e.Endpoint, e.Instance)
	if e.StatusCode != 0 {
		fmt.Fprintf(&b, "%d %s", e.StatusCode, http.StatusText(e.StatusCode))
		if e.Message != "" {
			b.WriteString(": ")
		}
	}
	b.WriteString(e.Message)
	if e.JobStatus != "" {
		fmt.Fprintf(&b, " (job status %s)", e.JobStatus)
	}
	if e.Attempts > 1 {
		fmt.Fprintf(&b, " (after %d attempts)", e.Attempts)
	}
	return b.String()
}

// Unwrap returns the kind (one of the Err* values) and the cause.
func (e *Error) Unwrap() []error {
	var errs []error
	if e.kind != nil {
		errs = append(errs, e.kind)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// AbortsJob reports whether err means GitLab no longer accepts anything for
// the job (403 or 404 on a job call): stop the job at once, send nothing
// more.
func AbortsJob(err error) bool {
	return errors.Is(err, ErrForbidden) || errors.Is(err, ErrNotFound)
}

// kindOf maps a status to the kind of error; nil for statuses without one
// (409, 412, 405, ...).
func kindOf(status int) error {
	switch {
	case status == http.StatusBadRequest, status == http.StatusUnprocessableEntity:
		return ErrBadRequest
	case status == http.StatusUnauthorized, status == http.StatusForbidden:
		return ErrForbidden
	case status == http.StatusNotFound:
		return ErrNotFound
	case status == http.StatusGone:
		return ErrGone
	case status == http.StatusRequestEntityTooLarge:
		return ErrTooLarge
	case retriable(status):
		return ErrUnavailable
	}
	return nil
}

// fail builds the error for an answer the endpoint does not accept, and
// closes the body.
func (c *Client) fail(cl call, resp *response) *Error {
	defer discard(resp.Response)
	return &Error{
		Endpoint:   cl.endpoint(),
		Instance:   c.instance,
		StatusCode: resp.StatusCode,
		Message:    scrub(errorMessage(resp.Response), cl.secrets),
		JobStatus:  resp.Header.Get(headerJobStatus),
		RequestID:  resp.requestID,
		Attempts:   resp.attempts,
		kind:       kindOf(resp.StatusCode),
	}
}

// invalid builds the error for a success status whose body cannot be used.
func (c *Client) invalid(cl call, resp *response, err error) *Error {
	return &Error{
		Endpoint:   cl.endpoint(),
		Instance:   c.instance,
		StatusCode: resp.StatusCode,
		Message:    scrub("unusable answer: "+err.Error(), cl.secrets),
		RequestID:  resp.requestID,
		Attempts:   resp.attempts,
		Err:        err,
	}
}

// transportError builds the error for a request without an answer. The URL
// is dropped from the cause: after a redirect it may carry a signature.
func (c *Client) transportError(ctx context.Context, cl call, reqID string, attempts int, err error) *Error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	msg := "send request: " + err.Error()
	var unknownCA x509.UnknownAuthorityError
	if errors.As(err, &unknownCA) {
		msg += " (trust the instance's certificate authority with Options.CAFile or Options.RootCAs)"
	}
	e := &Error{
		Endpoint:  cl.endpoint(),
		Instance:  c.instance,
		Message:   scrub(msg, cl.secrets),
		RequestID: reqID,
		Attempts:  attempts,
		Err:       err,
	}
	if ctx.Err() == nil {
		e.kind = ErrUnavailable
	}
	return e
}

// errorMessage extracts GitLab's message from an error body:
// {"message": "..."}, {"message": {"field": ["..."]}} or {"error": "..."};
// a short plain-text body is used as is.
func errorMessage(resp *http.Response) string {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<10))
	var body struct {
		Message json.RawMessage `json:"message"`
		Error   string          `json:"error"`
	}
	if json.Unmarshal(b, &body) == nil {
		var s string
		var fields map[string][]string
		switch {
		case json.Unmarshal(body.Message, &s) == nil && s != "":
			return truncate(s)
		case json.Unmarshal(body.Message, &fields) == nil && len(fields) > 0:
			keys := make([]string, 0, len(fields))
			for k := range fields {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			parts := make([]string, 0, len(keys))
			for _, k := range keys {
				parts = append(parts, k+" "+strings.Join(fields[k], ", "))
			}
			return truncate(strings.Join(parts, "; "))
		case body.Error != "":
			return truncate(body.Error)
		}
		return ""
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "text/plain" {
		return truncate(strings.TrimSpace(string(b)))
	}
	return ""
}

func truncate(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	const limit = 300
	if len(s) > limit {
		s = s[:limit] + "…"
	}
	return s
}

// scrub replaces every secret in s; GitLab or a proxy may echo a token.
func scrub(s string, secrets []string) string {
	for _, secret := range secrets {
		if len(secret) >= 4 {
			s = strings.ReplaceAll(s, secret, "[MASKED]")
		}
	}
	return s
}
