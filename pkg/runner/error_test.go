package runner_test

import (
	"errors"
	"fmt"
	"testing"

	"gitlab-serverless-runner/pkg/runner"
)

func TestErrorCodeAndMessage(t *testing.T) {
	tests := []struct {
		name        string
		err         error
		wantCode    string
		wantMessage string
	}{
		{"nil", nil, "", ""},
		{"plain error", errors.New("dial tcp: refused"), runner.EINTERNAL, "Internal error."},
		{"application error", runner.Errorf(runner.ENOTFOUND, "Runner %s not found.", "r1"), runner.ENOTFOUND, "Runner r1 not found."},
		{"wrapped twice", fmt.Errorf("web: show runner: %w", fmt.Errorf("store: get runner r1: %w", &runner.Error{Code: runner.ELIMIT, Message: "Too many runners."})), runner.ELIMIT, "Too many runners."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := runner.ErrorCode(tt.err); got != tt.wantCode {
				t.Errorf("ErrorCode() = %q, want %q", got, tt.wantCode)
			}
			if got := runner.ErrorMessage(tt.err); got != tt.wantMessage {
				t.Errorf("ErrorMessage() = %q, want %q", got, tt.wantMessage)
			}
		})
	}
}

func TestNewSystemID(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		id := runner.NewSystemID()
		if !runner.ValidSystemID(id) {
			t.Fatalf("NewSystemID() = %q, not s_ and 12 hex digits", id)
		}
		if seen[id] {
			t.Fatalf("NewSystemID() returned %q twice", id)
		}
		seen[id] = true
	}
	for _, bad := range []string{"", "s_", "s_12345678901", "s_1234567890123", "x_123456789012", "s_12345678901g"} {
		if runner.ValidSystemID(bad) {
			t.Errorf("ValidSystemID(%q) = true, want false", bad)
		}
	}
}

func TestJobStateTerminal(t *testing.T) {
	tests := []struct {
		state runner.JobState
		want  bool
	}{
		{runner.JobRunning, false},
		{runner.JobSuccess, true},
		{runner.JobFailed, true},
		{runner.JobCanceled, true},
		{"", false},
	}
	for _, tt := range tests {
		if got := tt.state.Terminal(); got != tt.want {
			t.Errorf("JobState(%q).Terminal() = %v, want %v", tt.state, got, tt.want)
		}
	}
}
