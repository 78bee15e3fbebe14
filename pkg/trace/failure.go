package trace

import "slices"

// Failure reasons the runner itself reports (protocol doc section 3.3).
const (
	ReasonScriptFailure        = "script_failure"
	ReasonRunnerSystemFailure  = "runner_system_failure"
	ReasonJobExecutionTimeout  = "job_execution_timeout"
	ReasonImagePullFailure     = "image_pull_failure"
	ReasonConfigurationError   = "runner_configuration_error"
	ReasonExternalDependency   = "runner_external_dependency_failure"
	ReasonRunnerInterrupted    = "runner_interrupted"
	ReasonUnknownFailure       = "unknown_failure"
	ReasonJobCanceled          = "job_canceled"
	maxFailureReasonCompatHops = 10
)

// alwaysSupported are sent even when GitLab does not list them.
var alwaysSupported = []string{ReasonScriptFailure, ReasonRunnerSystemFailure, ReasonJobExecutionTimeout}

// failureReasonCompat says what to send instead of a reason GitLab does
// not know.
var failureReasonCompat = map[string]string{
	ReasonImagePullFailure:   ReasonRunnerSystemFailure,
	ReasonConfigurationError: ReasonScriptFailure,
	ReasonExternalDependency: ReasonRunnerSystemFailure,
	ReasonRunnerInterrupted:  ReasonUnknownFailure,
	ReasonJobCanceled:        ReasonUnknownFailure,
}

// FailureReason maps a runner failure reason to one GitLab accepts, given
// the job's features.failure_reasons: an empty reason is script_failure; a
// supported one (or script_failure, runner_system_failure,
// job_execution_timeout) is kept; others follow the compatibility map
// (image_pull_failure → runner_system_failure, …) and end as
// unknown_failure.
func FailureReason(reason string, supported []string) string {
	if reason == "" {
		return ReasonScriptFailure
	}
	for range maxFailureReasonCompatHops {
		if slices.Contains(alwaysSupported, reason) || slices.Contains(supported, reason) {
			return reason
		}
		next, ok := failureReasonCompat[reason]
		if !ok {
			break
		}
		reason = next
	}
	return ReasonUnknownFailure
}
