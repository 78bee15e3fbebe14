package scheduler_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"testing"

	"gitlab-serverless-runner/pkg/invoke/invoketest"
	"gitlab-serverless-runner/pkg/runner"
	"gitlab-serverless-runner/pkg/scheduler"
)

// fixedRunners is a Runners whose enabled runners are the first n ids.
type fixedRunners struct{ n *int }

func (f fixedRunners) ScanEnabledRunners(_ context.Context, fn func(*runner.Runner) error) error {
	for i := range *f.n {
		if err := fn(&runner.Runner{ID: fmt.Sprint("r", i)}); err != nil {
			return err
		}
	}
	return nil
}

// TestRunSummaryLevel: a run that repeats the previous outcome is logged
// at Debug, so a short schedule stays quiet; the first run and every
// change are Info; a failed invocation is Warn.
func TestRunSummaryLevel(t *testing.T) {
	type run struct {
		runners int
		fail    string // runner id whose invocation fails
	}
	tests := []struct {
		name string
		runs []run
		want []string
	}{
		{"first run", []run{{runners: 3}}, []string{"INFO"}},
		{"same outcome again", []run{{runners: 3}, {runners: 3}, {runners: 3}}, []string{"INFO", "DEBUG", "DEBUG"}},
		{"runner added, then removed", []run{{runners: 3}, {runners: 4}, {runners: 4}, {runners: 3}}, []string{"INFO", "INFO", "DEBUG", "INFO"}},
		{"no runners", []run{{runners: 0}, {runners: 0}}, []string{"INFO", "DEBUG"}},
		{"failure, then recovery", []run{{runners: 3}, {runners: 3, fail: "r1"}, {runners: 3, fail: "r1"}, {runners: 3}}, []string{"INFO", "WARN", "WARN", "INFO"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			n := 0
			var fail string
			inv := refusing(func(id string) bool { return id == fail })
			sch, err := scheduler.New(fixedRunners{&n}, inv, scheduler.Config{
				PollerFunction: "poller",
				Logger:         slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
			})
			if err != nil {
				t.Fatalf("New() error = %v", err)
			}
			for _, r := range tt.runs {
				n, fail = r.runners, r.fail
				if _, err := sch.Run(context.Background()); err != nil {
					t.Fatalf("Run() error = %v", err)
				}
			}
			if got, want := summaryLevels(t, logs.Bytes()), tt.want; !slices.Equal(got, want) {
				t.Errorf("levels of the summaries = %v, want %v; logs:\n%s", got, want, logs.String())
			}
		})
	}
}

// summaryLevels returns the level of every "pollers started" line.
func summaryLevels(t *testing.T, logs []byte) []string {
	t.Helper()
	var levels []string
	for line := range bytes.Lines(logs) {
		var rec struct{ Level, Msg string }
		if err := json.Unmarshal(line, &rec); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		if rec.Msg == "pollers started" {
			levels = append(levels, rec.Level)
		}
	}
	return levels
}

// failingRunners is a Runners whose scan fails with the context's error
// when it is done, and with err otherwise.
type failingRunners struct{ err error }

func (f failingRunners) ScanEnabledRunners(ctx context.Context, _ func(*runner.Runner) error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return f.err
}

// A scan that fails is an error in the log, unless the run was stopped from
// outside (shutdown): then it is only Info.
func TestScanFailureLevel(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		ctx  context.Context
		want string
	}{
		{"store failure", context.Background(), "ERROR"},
		{"run stopped", canceled, "INFO"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			sch, err := scheduler.New(failingRunners{err: fmt.Errorf("throttled")}, &invoketest.Recorder{}, scheduler.Config{
				PollerFunction: "poller",
				Logger:         slog.New(slog.NewJSONHandler(&logs, nil)),
			})
			if err != nil {
				t.Fatalf("New() error = %v", err)
			}
			if _, err := sch.Run(tt.ctx); err == nil {
				t.Fatal("Run() error = nil, want the scan's error")
			}
			var rec struct{ Level, Msg string }
			if err := json.Unmarshal(bytes.TrimSpace(logs.Bytes()), &rec); err != nil || rec.Msg != "scan of runners failed" {
				t.Fatalf("log = %q (%v), want one scan failure line", logs.String(), err)
			}
			if rec.Level != tt.want {
				t.Errorf("level = %s, want %s", rec.Level, tt.want)
			}
		})
	}
}
