package poller

import (
	"encoding/json"
	"fmt"
	"time"

	"gitlab-serverless-runner/pkg/gitlab"
)

// ExecutorEvent is the payload of an executor invocation. Its JSON is the
// executor's event contract (gitlab_url, job, runner, cache, two_phase,
// payload_url) plus Dispatch, which the executor ignores and the finisher
// reads back from the destination record's requestPayload.
type ExecutorEvent struct {
	// GitLabURL is the instance URL.
	GitLabURL string `json:"gitlab_url"`
	// Job is the job exactly as GitLab returned it from /jobs/request.
	Job *gitlab.Job `json:"job,omitempty"`
	// Runner describes the runner; never its token.
	Runner ExecutorRunner `json:"runner,omitzero"`
	// Cache maps each cache key as written in the job (key, fallback key,
	// CACHE_FALLBACK_KEY) to its pre-signed URLs.
	Cache map[string]CacheURLs `json:"cache,omitempty"`
	// TwoPhase: the job is pending in GitLab until the executor PUTs
	// state=running.
	TwoPhase bool `json:"two_phase,omitempty"`
	// PayloadURL is set instead of the fields above when the event was too
	// large to send inline (see package invoke).
	PayloadURL string `json:"payload_url,omitempty"`
	// Dispatch is the poller's bookkeeping for the finisher; it stays in
	// the event when the rest goes by reference.
	Dispatch Dispatch `json:"dispatch"`
}

// ExecutorRunner is the runner as the executor sees it.
type ExecutorRunner struct {
	ID          int64  `json:"id,omitempty"` // GitLab's runner id
	Description string `json:"description,omitempty"`
	ShortToken  string `json:"short_token,omitempty"`
}

// CacheURLs are the pre-signed URLs of one cache archive.
type CacheURLs struct {
	GetURL string `json:"get_url,omitempty"`
	PutURL string `json:"put_url,omitempty"`
}

// Dispatch is what the finisher needs to close a job the poller handed to
// an executor: which record to finish, which slot to free, and how to fail
// the job in GitLab if the executor could not. SlotToken is also the
// dispatch's secret: the job record keeps its hash
// (runner.HashDispatchToken), and the finisher acts only on records that
// carry it. It never reaches the job.
type Dispatch struct {
	RunnerID   string    `json:"runner_id"` // the product's runner id
	JobID      int64     `json:"job_id"`
	GitLabURL  string    `json:"gitlab_url"`
	SlotIndex  int       `json:"slot_index"`
	SlotToken  string    `json:"slot_token"`
	TwoPhase   bool      `json:"two_phase,omitempty"`
	Function   string    `json:"function"`
	Runtime    string    `json:"runtime,omitempty"`
	StartedAt  time.Time `json:"started_at"`
	TimeoutSec int       `json:"timeout_sec,omitempty"` // the job's timeout
}

// DecodeExecutorEvent parses an executor event as the poller wrote it.
func DecodeExecutorEvent(raw []byte) (ExecutorEvent, error) {
	var ev ExecutorEvent
	if err := json.Unmarshal(raw, &ev); err != nil {
		return ev, fmt.Errorf("poller: decode executor event: %w", err)
	}
	return ev, nil
}
