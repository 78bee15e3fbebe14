package main

import (
	"encoding/json"
	"os"
	"testing"

	"gitlab-serverless-runner/pkg/dispatch"
	"gitlab-serverless-runner/pkg/invoke"
)

// TestSampleEvent checks that the sample destination record decodes into
// the job and slot the finisher closes.
func TestSampleEvent(t *testing.T) {
	raw, err := os.ReadFile("testdata/event.json")
	if err != nil {
		t.Fatal(err)
	}
	var rec invoke.Record
	if err := json.Unmarshal(raw, &rec); err != nil {
		t.Fatalf("decode record: %v", err)
	}
	if !rec.Failed() || rec.FunctionName() != "gsr-executor" {
		t.Errorf("record failed = %v, function %q; want a failed gsr-executor invocation", rec.Failed(), rec.FunctionName())
	}
	ev, err := dispatch.Decode(rec.RequestPayload)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ev.Dispatch.JobID, int64(8123); got != want || ev.Dispatch.SlotToken == "" || ev.Job.Token == "" {
		t.Errorf("dispatch = %+v, want job %d with a slot token and a job token", ev.Dispatch, want)
	}
}
