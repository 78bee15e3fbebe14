package executor

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"

	"gitlab-serverless-runner/pkg/gitlab"
)

// Event is the executor's input, sent by the poller as the Lambda payload.
// GitLabURL and Job are required; Job is the job object exactly as GitLab
// returned it from POST /jobs/request. docs/executor-event.md describes every
// field.
type Event struct {
	// GitLabURL is the instance URL, e.g. "https://gitlab.example.com".
	GitLabURL string `json:"gitlab_url"`
	// Job is the job payload.
	Job gitlab.Job `json:"job"`
	// Runner describes the runner that took the job. It never holds the
	// runner's authentication token.
	Runner Runner `json:"runner,omitzero"`
	// Cache maps a cache key, exactly as it appears in the job payload
	// (cache[].key, an entry of cache[].fallback_keys, or the value of the
	// CACHE_FALLBACK_KEY variable), to pre-signed URLs for its archive.
	Cache map[string]CacheURLs `json:"cache,omitempty"`
	// OutputLimit is the trace limit in KiB, as gitlab-runner's
	// output_limit; 0 means 4096 KiB.
	OutputLimit int64 `json:"output_limit,omitempty"`
	// CAPEM holds PEM certificates to trust for the GitLab instance (a
	// self-managed instance with a private CA).
	CAPEM string `json:"ca_pem,omitempty"`
	// PayloadURL, when set, is a pre-signed URL whose body is the real event
	// (the payload was above Lambda's asynchronous invocation limit). Every
	// other field of this event is then ignored.
	PayloadURL string `json:"payload_url,omitempty"`
	// TwoPhase says the poller advertised two_phase_job_commit: the job is
	// still pending in GitLab and the executor accepts it (PUT
	// state=running) before anything else.
	TwoPhase bool `json:"two_phase,omitempty"`
}

// Runner describes the runner that took the job.
type Runner struct {
	// ID is GitLab's runner id.
	ID int64 `json:"id,omitempty"`
	// Description is the runner's description, shown in the trace.
	Description string `json:"description,omitempty"`
	// ShortToken is the first characters of the runner token
	// (gitlab.ShortToken), CI_RUNNER_SHORT_TOKEN. Never the token itself.
	ShortToken string `json:"short_token,omitempty"`
}

// CacheURLs are the pre-signed URLs of one cache archive. Either may be
// empty: no URL, no restore (or no save) for that key.
type CacheURLs struct {
	// GetURL downloads the archive; a 404 means there is no cache yet.
	GetURL string `json:"get_url,omitempty"`
	// PutURL uploads the archive (PUT, Content-Type
	// application/octet-stream).
	PutURL string `json:"put_url,omitempty"`
}

// Result is the executor's output, delivered by Lambda destinations to the
// finisher.
type Result struct {
	// JobID is the job's id, 0 when the event had none readable.
	JobID int64 `json:"job_id"`
	// RunnerID is the event's runner.id.
	RunnerID int64 `json:"runner_id,omitempty"`
	// State is the state reported to GitLab: "success", "failed" or
	// "canceled" (a job GitLab canceled, reported as failed with
	// job_canceled). Empty when no final state could be sent.
	State string `json:"state"`
	// FailureReason is the reason sent with a failed state.
	FailureReason string `json:"failure_reason,omitempty"`
	// ExitCode is the script's exit code when it failed.
	ExitCode int `json:"exit_code,omitempty"`
	// DurationMS is the time the executor spent on the job.
	DurationMS int64 `json:"duration_ms"`
	// Reported is true when GitLab applied the final state (or had already
	// ended the job itself, e.g. after a cancellation).
	Reported bool `json:"reported"`
	// Error says what went wrong for the executor, if anything; never a
	// secret.
	Error string `json:"error,omitempty"`
	// MemoryMB is the memory of the function that ran the job
	// (Config.MemoryMB), for the job's cost; 0 when unknown.
	MemoryMB int `json:"memory_mb,omitempty"`
}

// Result states besides GitLab's success and failed.
const (
	// StateCanceled is a job GitLab canceled while it ran.
	StateCanceled = "canceled"
)

// errBadEvent marks an event that cannot be run.
var errBadEvent = errors.New("invalid executor event")

// DecodeEvent parses and validates an event. Its errors wrap an error that
// says which field is wrong; they never quote field values.
func DecodeEvent(raw []byte) (Event, error) {
	var ev Event
	if err := json.Unmarshal(raw, &ev); err != nil {
		return ev, fmt.Errorf("%w: decode JSON: %s", errBadEvent, jsonProblem(err))
	}
	return ev, ev.Validate()
}

// Validate checks what the executor needs to run the job.
func (ev Event) Validate() error {
	if ev.PayloadURL != "" {
		if _, err := parseHTTPURL(ev.PayloadURL); err != nil {
			return fmt.Errorf("%w: payload_url: %w", errBadEvent, err)
		}
		return nil
	}
	if ev.GitLabURL == "" {
		return fmt.Errorf("%w: gitlab_url is missing", errBadEvent)
	}
	if _, err := parseHTTPURL(ev.GitLabURL); err != nil {
		return fmt.Errorf("%w: gitlab_url: %w", errBadEvent, err)
	}
	switch {
	case ev.Job.ID <= 0:
		return fmt.Errorf("%w: job.id is missing", errBadEvent)
	case ev.Job.Token == "":
		return fmt.Errorf("%w: job.token is missing", errBadEvent)
	case ev.Job.GitInfo.RepoURL == "" && ev.Job.Variables.Get("GIT_STRATEGY") != "none" && ev.Job.Variables.Get("GIT_STRATEGY") != "empty":
		return fmt.Errorf("%w: job.git_info.repo_url is missing", errBadEvent)
	case ev.OutputLimit < 0:
		return fmt.Errorf("%w: output_limit is negative", errBadEvent)
	}
	for k, u := range ev.Cache {
		for _, s := range []string{u.GetURL, u.PutURL} {
			if s == "" {
				continue
			}
			if _, err := parseHTTPURL(s); err != nil {
				return fmt.Errorf("%w: cache URL for key %q: %w", errBadEvent, k, err)
			}
		}
	}
	return nil
}

// jobIdentity is the part of an event needed to fail its job: read on its
// own so that a type error elsewhere does not hide it.
type jobIdentity struct {
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

// readIdentity extracts what it can; ok says whether the job can be failed.
func readIdentity(raw []byte) (jobIdentity, bool) {
	var id jobIdentity
	_ = json.Unmarshal(raw, &id) // best effort: type errors elsewhere leave these fields set
	if id.Job.ID <= 0 || id.Job.Token == "" || id.GitLabURL == "" {
		return id, false
	}
	if _, err := parseHTTPURL(id.GitLabURL); err != nil {
		return id, false
	}
	return id, true
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
