package main

import (
	"os"
	"testing"

	"gitlab-serverless-runner/pkg/dispatch"
)

// TestSampleEvent checks that the sample event decodes.
func TestSampleEvent(t *testing.T) {
	raw, err := os.ReadFile("testdata/event.json")
	if err != nil {
		t.Fatal(err)
	}
	ev, err := dispatch.DecodePoll(raw)
	if err != nil || ev.Reason != dispatch.PollSchedule {
		t.Errorf("DecodePoll(sample) = %+v, %v; want a scheduled poll", ev, err)
	}
}
