package poller

import (
	"encoding/json"
	"fmt"
)

// Reasons a poll is started.
const (
	ReasonSchedule = "schedule" // the scheduler's periodic fan-out
	ReasonWebhook  = "webhook"  // GitLab announced a pending job
)

// Event is the poller function's input: poll one runner now.
type Event struct {
	RunnerID string `json:"runner_id"`
	Reason   string `json:"reason,omitempty"`
}

// Marshal encodes the event as the poller function's payload.
func (e Event) Marshal() []byte {
	b, _ := json.Marshal(e) // two strings always encode
	return b
}

// DecodeEvent parses a poller payload.
func DecodeEvent(raw []byte) (Event, error) {
	var e Event
	if err := json.Unmarshal(raw, &e); err != nil {
		return e, fmt.Errorf("poller: decode event: %w", err)
	}
	if e.RunnerID == "" {
		return e, fmt.Errorf("poller: decode event: runner_id is missing")
	}
	return e, nil
}
