package dispatch

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"

	"gitlab-serverless-runner/pkg/gitlab"
)

// Event is the payload of an executor invocation: the poller writes it, the
// executor runs it, and the finisher reads it back from the destination
// record. GitLabURL and Job are required unless PayloadURL is set;
// docs/executor-event.md describes every field.
type Event struct {
	// GitLabURL is the instance URL, e.g. "https://gitlab.example.com".
	GitLabURL string `json:"gitlab_url"`
	// Job is the job exactly as GitLab returned it from POST /jobs/request.
	Job *gitlab.Job `json:"job,omitempty"`
	// Runner describes the runner that took the job; never its token.
	Runner Runner `json:"runner,omitzero"`
	// Cache maps each cache key as written in the job (gitlab.CachePlan's
	// Keys) to the pre-signed URLs of its archive.
	Cache map[string]CacheURLs `json:"cache,omitempty"`
	// OutputLimit is the runner's trace limit in KiB, as gitlab-runner's
	// output_limit; 0 means DefaultOutputLimitKiB.
	OutputLimit int64 `json:"output_limit,omitempty"`
	// CAPEM holds PEM certificates the runner trusts for its GitLab, in
	// addition to the system roots (an instance with a private CA).
	CAPEM string `json:"ca_pem,omitempty"`
	// TwoPhase says the poller advertised two_phase_job_commit: the job is
	// pending in GitLab until the executor accepts it with PUT
	// state=running.
	TwoPhase bool `json:"two_phase,omitempty"`
	// PayloadURL, when set, is a pre-signed URL whose body is the whole
	// event: the payload was above Lambda's asynchronous limit. Only
	// Dispatch stays beside it (see Open).
	PayloadURL string `json:"payload_url,omitempty"`
	// Image is what the preparation function did for a job with
	// `image:`; nil for a job on a runtime's executor.
	Image *Image `json:"image,omitempty"`
	// Dispatch is the poller's bookkeeping for the finisher; the executor
	// does not read it.
	Dispatch Dispatch `json:"dispatch,omitzero"`
}

// DefaultOutputLimitKiB is gitlab-runner's default output_limit.
const DefaultOutputLimitKiB = 4096

// Runner is the runner as the executor sees it.
type Runner struct {
	// ID is GitLab's runner id.
	ID int64 `json:"id,omitempty"`
	// Description is shown at the top of the trace.
	Description string `json:"description,omitempty"`
	// ShortToken is the first characters of the runner token
	// (gitlab.ShortToken), CI_RUNNER_SHORT_TOKEN. Never the token itself.
	ShortToken string `json:"short_token,omitempty"`
	// ConcurrentID is the job's concurrency slot (0 to the runner's
	// concurrency minus 1): no other running job of the runner has it.
	// It is CI_CONCURRENT_ID and CI_CONCURRENT_PROJECT_ID.
	ConcurrentID int `json:"concurrent_id,omitempty"`
}

// CacheURLs are the pre-signed URLs of one cache archive. Either may be
// empty: no URL, no restore (or no save) for that key.
type CacheURLs struct {
	// GetURL downloads the archive; 404 means there is no cache yet.
	GetURL string `json:"get_url,omitempty"`
	// PutURL uploads the archive (PUT, application/octet-stream).
	PutURL string `json:"put_url,omitempty"`
}

// Dispatch is what the finisher needs to close a job the poller handed to
// an executor: which record to finish, which slot to free, and how to fail
// the job in GitLab if the executor could not. SlotToken is the dispatch's
// secret: the job record keeps its hash (runner.HashDispatchToken), and the
// finisher acts only on records that carry it.
type Dispatch struct {
	// RunnerID is the product's runner id.
	RunnerID string `json:"runner_id"`
	// JobID is GitLab's job id.
	JobID int64 `json:"job_id"`
	// GitLabURL is the runner's instance.
	GitLabURL string `json:"gitlab_url"`
	// SlotIndex and SlotToken name the concurrency slot the job holds.
	SlotIndex int    `json:"slot_index"`
	SlotToken string `json:"slot_token"`
	// TwoPhase as Event.TwoPhase.
	TwoPhase bool `json:"two_phase,omitempty"`
	// Function is the executor function invoked, Runtime its runtime.
	Function string `json:"function"`
	Runtime  string `json:"runtime,omitempty"`
	// StartedAt is when the poller handed the job over.
	StartedAt time.Time `json:"started_at"`
	// TimeoutSec is the job's timeout (gitlab.Job.Timeout).
	TimeoutSec int `json:"timeout_sec,omitempty"`
	// MemoryMB is the memory of the function the job runs on, when the
	// dispatcher chose it (an image function's, from LAMBDA_MEMORY); the
	// executor reports the memory it ran with in its result.
	MemoryMB int `json:"memory_mb,omitempty"`
}

// ErrInvalidEvent marks an event that cannot be run. Its messages say which
// field is wrong and never quote field values.
var ErrInvalidEvent = errors.New("invalid executor event")

// Marshal encodes the event as the executor's payload.
func (ev Event) Marshal() ([]byte, error) {
	b, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("dispatch: encode executor event: %w", err)
	}
	return b, nil
}

// Decode parses an executor event without validating it (the finisher
// reads records whose events may be incomplete). Errors wrap
// ErrInvalidEvent.
func Decode(raw []byte) (Event, error) {
	var ev Event
	if err := json.Unmarshal(raw, &ev); err != nil {
		return ev, fmt.Errorf("%w: decode JSON: %s", ErrInvalidEvent, jsonProblem(err))
	}
	return ev, nil
}

// Validate checks what the executor needs to run the job. Errors wrap
// ErrInvalidEvent.
func (ev Event) Validate() error {
	if ev.PayloadURL != "" {
		if _, err := parseHTTPURL(ev.PayloadURL); err != nil {
			return fmt.Errorf("%w: payload_url: %w", ErrInvalidEvent, err)
		}
		return nil
	}
	if ev.GitLabURL == "" {
		return fmt.Errorf("%w: gitlab_url is missing", ErrInvalidEvent)
	}
	if _, err := parseHTTPURL(ev.GitLabURL); err != nil {
		return fmt.Errorf("%w: gitlab_url: %w", ErrInvalidEvent, err)
	}
	job := ev.Job
	switch {
	case job == nil:
		return fmt.Errorf("%w: job is missing", ErrInvalidEvent)
	case job.ID <= 0:
		return fmt.Errorf("%w: job.id is missing", ErrInvalidEvent)
	case job.Token == "":
		return fmt.Errorf("%w: job.token is missing", ErrInvalidEvent)
	case job.GitInfo.RepoURL == "" && job.Variables.Get("GIT_STRATEGY") != "none" && job.Variables.Get("GIT_STRATEGY") != "empty":
		return fmt.Errorf("%w: job.git_info.repo_url is missing", ErrInvalidEvent)
	case ev.OutputLimit < 0:
		return fmt.Errorf("%w: output_limit is negative", ErrInvalidEvent)
	}
	for k, u := range ev.Cache {
		for _, s := range []string{u.GetURL, u.PutURL} {
			if s == "" {
				continue
			}
			if _, err := parseHTTPURL(s); err != nil {
				return fmt.Errorf("%w: cache URL for key %q: %w", ErrInvalidEvent, k, err)
			}
		}
	}
	return nil
}

func parseHTTPURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, errors.New("not a URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, errors.New("not an http(s) URL")
	}
	return u, nil
}

// jsonProblem describes a JSON error without quoting the input.
func jsonProblem(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("syntax error at byte %d", syn.Offset)
	case errors.As(err, &typ):
		return fmt.Sprintf("field %s has the wrong type (%s, want %s)", typ.Field, typ.Value, typ.Type)
	default:
		return "not a JSON object"
	}
}

// FunctionLimit is Lambda's limit on one invocation: no job runs longer
// on one executor.
const FunctionLimit = 15 * time.Minute

// DefaultMargin is the time the executor keeps before its invocation's
// deadline to upload the rest of the trace and send the final update
// (EXECUTOR_MARGIN_SECONDS, read by the executor, and by the web app,
// which offers GitLab FunctionLimit minus it as the largest job timeout).
const DefaultMargin = 60 * time.Second

// NewTenantID returns an unguessable tenant id for one dispatch, so that
// Lambda routes no other invocation into an environment a job has run in:
// "job-" and 128 random bits in hex (Lambda takes up to 256 printable
// characters).
func NewTenantID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return "job-" + hex.EncodeToString(b)
}
