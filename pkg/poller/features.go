package poller

import "gitlab-serverless-runner/pkg/gitlab"

// Features is the feature map advertised to GitLab with every job request:
// exactly what the executor implements. GitLab fails a job that needs a
// feature not listed (runner_unsupported) rather than run it wrongly, so a
// feature is added here only together with its implementation.
//
// Not advertised: image, services and their options (no containers on
// Lambda), shared (every job gets a clean build directory), session,
// terminal and proxy (no interactive session), vault_secrets (no secrets
// provider), native_steps_integration and job_inputs.
func Features() gitlab.Features {
	return gitlab.Features{
		Variables:               true,
		Artifacts:               true,
		Cache:                   true,
		FallbackCacheKeys:       true,
		UploadMultipleArtifacts: true,
		UploadRawArtifacts:      true,
		Refspecs:                true,
		Masking:                 true,
		RawVariables:            true,
		ArtifactsExclude:        true,
		MultiBuildSteps:         true,
		TraceReset:              true,
		TraceChecksum:           true,
		TraceSize:               true,
		Cancelable:              true,
		ReturnExitCode:          true,
		CancelGracefully:        true,
		TwoPhaseJobCommit:       true,
	}
}
