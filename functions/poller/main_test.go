package main

import (
	"os"
	"testing"

	"gitlab-serverless-runner/pkg/poller"
)

// TestSampleEvent checks that the sample event decodes.
func TestSampleEvent(t *testing.T) {
	raw, err := os.ReadFile("testdata/event.json")
	if err != nil {
		t.Fatal(err)
	}
	ev, err := poller.DecodeEvent(raw)
	if err != nil || ev.Reason != poller.ReasonSchedule {
		t.Errorf("DecodeEvent(sample) = %+v, %v; want a scheduled poll", ev, err)
	}
}
