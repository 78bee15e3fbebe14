package gitlab_test

import (
	"strings"
	"testing"

	"gitlab-serverless-runner/pkg/gitlab"
)

func TestFailureReason(t *testing.T) {
	all := []string{"unknown_failure", "script_failure", "runner_system_failure", "job_execution_timeout", "runner_configuration_error"}
	tests := []struct {
		reason    string
		supported []string
		want      gitlab.FailureReason
	}{
		{"", nil, "script_failure"},
		{"script_failure", nil, "script_failure"},
		{"runner_system_failure", nil, "runner_system_failure"},
		{"job_execution_timeout", nil, "job_execution_timeout"},
		{"image_pull_failure", all, "runner_system_failure"},
		{"runner_configuration_error", all, "runner_configuration_error"},
		{"runner_configuration_error", nil, "script_failure"},
		{"runner_external_dependency_failure", all, "runner_system_failure"},
		{"runner_interrupted", all, "unknown_failure"},
		{"job_canceled", all, "unknown_failure"},
		{"something_new", all, "unknown_failure"},
		{"api_failure", []string{"api_failure"}, "api_failure"},
	}
	for _, tc := range tests {
		t.Run(tc.reason+"/"+strings.Join(tc.supported, ","), func(t *testing.T) {
			if got := gitlab.FailureReason(tc.reason).For(tc.supported); got != tc.want {
				t.Errorf("FailureReason(%q).For = %q, want %q", tc.reason, got, tc.want)
			}
		})
	}
}
