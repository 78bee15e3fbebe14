package dispatch

import (
	"encoding/json"
	"errors"
	"fmt"
)

// PollReason says why a poll of a runner was started.
type PollReason string

// Reasons a poll is started.
const (
	// PollSchedule is the scheduler's periodic fan-out.
	PollSchedule PollReason = "schedule"
	// PollWebhook is GitLab announcing a pending job.
	PollWebhook PollReason = "webhook"
	// PollSlotFreed is a finished job's slot freed while an earlier poll
	// had found every slot held (the runner's poll demand).
	PollSlotFreed PollReason = "slot_freed"
)

// Poll is the poller function's input: poll one runner now.
type Poll struct {
	// RunnerID is the product's runner id.
	RunnerID string `json:"runner_id"`
	// Reason is why the poll was started, for the logs.
	Reason PollReason `json:"reason,omitempty"`
}

// Marshal encodes the poll as the poller function's payload.
func (p Poll) Marshal() []byte {
	b, _ := json.Marshal(p) // two strings always encode
	return b
}

// DecodePoll parses a poller payload. A payload without runner_id is an
// error: there is nothing to poll.
func DecodePoll(raw []byte) (Poll, error) {
	var p Poll
	if err := json.Unmarshal(raw, &p); err != nil {
		return p, fmt.Errorf("dispatch: decode poll: %s", jsonProblem(err))
	}
	if p.RunnerID == "" {
		return p, errors.New("dispatch: decode poll: runner_id is missing")
	}
	return p, nil
}
