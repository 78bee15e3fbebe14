package dispatch

import (
	"encoding/json"
	"fmt"

	"gitlab-serverless-runner/pkg/gitlab"
)

// Result is the executor's response, which Lambda destinations deliver to
// the finisher. The finisher does not take it on its word: a job's code
// runs beside the executor and could forge it.
type Result struct {
	// JobID is the job's id, 0 when the event had none readable.
	JobID int64 `json:"job_id"`
	// RunnerID is the event's runner.id (GitLab's runner id).
	RunnerID int64 `json:"runner_id,omitempty"`
	// State is the state reported to GitLab: gitlab.StateSuccess,
	// gitlab.StateFailed, or gitlab.StatusCanceled for a job GitLab
	// canceled while it ran. Empty when no final state could be sent.
	State string `json:"state"`
	// FailureReason is the reason sent with a failed state.
	FailureReason gitlab.FailureReason `json:"failure_reason,omitempty"`
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
	// MemoryMB is the memory of the function that ran the job, for its
	// cost; 0 when unknown.
	MemoryMB int `json:"memory_mb,omitempty"`
	// Arch is the function's instruction set, "arm64" or "x86_64", and
	// StorageMB the size of its /tmp (ephemeral storage), both for the
	// job's cost; empty or 0 when unknown.
	Arch      string `json:"arch,omitempty"`
	StorageMB int    `json:"storage_mb,omitempty"`
}

// LambdaArch is the name Lambda gives the instruction set of a Go
// architecture (runtime.GOARCH): "arm64", or "x86_64" for amd64.
func LambdaArch(goarch string) string {
	if goarch == "amd64" {
		return "x86_64"
	}
	return goarch
}

// DecodeResult parses an executor's response payload.
func DecodeResult(raw []byte) (Result, error) {
	var r Result
	if err := json.Unmarshal(raw, &r); err != nil {
		return r, fmt.Errorf("dispatch: decode executor result: %s", jsonProblem(err))
	}
	return r, nil
}
