package gitlab

import (
	"slices"
	"time"
)

// Info describes the runner to GitLab (section 2.1). It is sent with
// register, verify and job requests.
type Info struct {
	Name         string            `json:"name,omitempty"`
	Version      string            `json:"version,omitempty"`
	Revision     string            `json:"revision,omitempty"`
	Platform     string            `json:"platform,omitempty"`
	Architecture string            `json:"architecture,omitempty"`
	Executor     string            `json:"executor,omitempty"`
	Shell        string            `json:"shell,omitempty"`
	Features     Features          `json:"features"`
	Config       InfoConfig        `json:"config"`
	Labels       map[string]string `json:"labels,omitempty"`
}

// InfoConfig is the runner's config summary.
type InfoConfig struct {
	GPUs string `json:"gpus"`
}

// Features is the runner's feature map (section 2.2). Every key is always
// sent; GitLab refuses jobs (runner_unsupported) that need a feature the
// runner does not advertise.
type Features struct {
	Variables               bool `json:"variables"`
	Image                   bool `json:"image"`
	Services                bool `json:"services"`
	Artifacts               bool `json:"artifacts"`
	Cache                   bool `json:"cache"`
	FallbackCacheKeys       bool `json:"fallback_cache_keys"`
	Shared                  bool `json:"shared"`
	UploadMultipleArtifacts bool `json:"upload_multiple_artifacts"`
	UploadRawArtifacts      bool `json:"upload_raw_artifacts"`
	Session                 bool `json:"session"`
	Terminal                bool `json:"terminal"`
	Refspecs                bool `json:"refspecs"`
	Masking                 bool `json:"masking"`
	Proxy                   bool `json:"proxy"`
	RawVariables            bool `json:"raw_variables"`
	ArtifactsExclude        bool `json:"artifacts_exclude"`
	MultiBuildSteps         bool `json:"multi_build_steps"`
	TraceReset              bool `json:"trace_reset"`
	TraceChecksum           bool `json:"trace_checksum"`
	TraceSize               bool `json:"trace_size"`
	VaultSecrets            bool `json:"vault_secrets"`
	Cancelable              bool `json:"cancelable"`
	ReturnExitCode          bool `json:"return_exit_code"`
	ServiceVariables        bool `json:"service_variables"`
	ServiceMultipleAliases  bool `json:"service_multiple_aliases"`
	ImageExecutorOpts       bool `json:"image_executor_opts"`
	ServiceExecutorOpts     bool `json:"service_executor_opts"`
	CancelGracefully        bool `json:"cancel_gracefully"`
	NativeStepsIntegration  bool `json:"native_steps_integration"`
	TwoPhaseJobCommit       bool `json:"two_phase_job_commit"`
	JobInputs               bool `json:"job_inputs"`
}

// Access levels of a runner.
const (
	AccessNotProtected = "not_protected"
	AccessRefProtected = "ref_protected"
)

// Runner types for POST /user/runners.
const (
	RunnerTypeInstance = "instance_type"
	RunnerTypeGroup    = "group_type"
	RunnerTypeProject  = "project_type"
)

// RunnerSettings are the settings GitLab owns for a runner; they are sent at
// registration or creation.
type RunnerSettings struct {
	Description     string   `json:"description,omitempty"`
	MaintenanceNote string   `json:"maintenance_note,omitempty"`
	Tags            []string `json:"-"`
	RunUntagged     bool     `json:"run_untagged"`
	Locked          bool     `json:"locked"`
	Paused          bool     `json:"paused"`
	AccessLevel     string   `json:"access_level,omitempty"`
	MaximumTimeout  int      `json:"maximum_timeout,omitempty"`
}

// RegisterRequest is the body of the legacy POST /runners.
type RegisterRequest struct {
	Token string `json:"token"`
	RunnerSettings
	TagList string `json:"tag_list,omitempty"`
	Info    Info   `json:"info"`
}

// CreateRunnerRequest is the body of POST /user/runners.
type CreateRunnerRequest struct {
	RunnerType string `json:"runner_type"`
	GroupID    int64  `json:"group_id,omitempty"`
	ProjectID  int64  `json:"project_id,omitempty"`
	RunnerSettings
	TagList []string `json:"tag_list,omitempty"`
}

// VerifyRequest is the body of POST /runners/verify.
type VerifyRequest struct {
	Token    string `json:"token"`
	SystemID string `json:"system_id,omitempty"`
	Info     *Info  `json:"info,omitempty"`
}

// TokenRequest is the body of DELETE /runners and POST
// /runners/reset_authentication_token.
type TokenRequest struct {
	Token string `json:"token"`
}

// ManagerRequest is the body of DELETE /runners/managers.
type ManagerRequest struct {
	Token    string `json:"token"`
	SystemID string `json:"system_id"`
}

// RunnerCredentials is GitLab's answer to register, create, verify and
// reset: the runner id (absent on reset), its token and the token's expiry
// (nil when it never expires).
type RunnerCredentials struct {
	ID             int64      `json:"id,omitempty"`
	Token          string     `json:"token"`
	TokenExpiresAt *time.Time `json:"token_expires_at"`
}

// JobRequest is the body of POST /jobs/request.
type JobRequest struct {
	Token      string `json:"token"`
	SystemID   string `json:"system_id,omitempty"`
	LastUpdate string `json:"last_update,omitempty"`
	Info       Info   `json:"info"`
}

// Job states a runner reports with PUT /jobs/:id.
const (
	StatePending = "pending"
	StateRunning = "running"
	StateSuccess = "success"
	StateFailed  = "failed"
)

// Job statuses GitLab reports in the Job-Status header.
const (
	StatusRunning   = "running"
	StatusCanceling = "canceling"
	StatusCanceled  = "canceled"
	StatusFailed    = "failed"
	StatusSuccess   = "success"
	StatusPending   = "pending"
)

// FailureReason is why a job failed, as a runner reports it with
// state=failed (section 3.3).
type FailureReason string

// Failure reasons a runner reports (section 3.3).
const (
	ReasonScriptFailure                   FailureReason = "script_failure"
	ReasonRunnerSystemFailure             FailureReason = "runner_system_failure"
	ReasonJobExecutionTimeout             FailureReason = "job_execution_timeout"
	ReasonUnknownFailure                  FailureReason = "unknown_failure"
	ReasonRunnerUnsupported               FailureReason = "runner_unsupported"
	ReasonRunnerConfigurationError        FailureReason = "runner_configuration_error"
	ReasonRunnerExternalDependencyFailure FailureReason = "runner_external_dependency_failure"
	ReasonRunnerInterrupted               FailureReason = "runner_interrupted"
	ReasonImagePullFailure                FailureReason = "image_pull_failure"
	ReasonJobCanceled                     FailureReason = "job_canceled"
)

// alwaysSupported are sent even when GitLab does not list them.
var alwaysSupported = []FailureReason{ReasonScriptFailure, ReasonRunnerSystemFailure, ReasonJobExecutionTimeout}

// failureReasonCompat says what to send instead of a reason GitLab does
// not know.
var failureReasonCompat = map[FailureReason]FailureReason{
	ReasonImagePullFailure:                ReasonRunnerSystemFailure,
	ReasonRunnerConfigurationError:        ReasonScriptFailure,
	ReasonRunnerExternalDependencyFailure: ReasonRunnerSystemFailure,
	ReasonRunnerInterrupted:               ReasonUnknownFailure,
	ReasonJobCanceled:                     ReasonUnknownFailure,
}

// For maps the reason to one GitLab accepts, given the job's
// features.failure_reasons: an empty reason is script_failure; a supported
// one (or script_failure, runner_system_failure, job_execution_timeout) is
// kept; others follow the compatibility map (image_pull_failure →
// runner_system_failure, …) and end as unknown_failure.
func (r FailureReason) For(supported []string) FailureReason {
	if r == "" {
		return ReasonScriptFailure
	}
	for range len(failureReasonCompat) + 1 {
		if slices.Contains(alwaysSupported, r) || slices.Contains(supported, string(r)) {
			return r
		}
		next, ok := failureReasonCompat[r]
		if !ok {
			break
		}
		r = next
	}
	return ReasonUnknownFailure
}

// UpdateJobRequest is the body of PUT /jobs/:id.
type UpdateJobRequest struct {
	Token         string        `json:"token"`
	State         string        `json:"state,omitempty"`
	FailureReason FailureReason `json:"failure_reason,omitempty"`
	ExitCode      int           `json:"exit_code,omitempty"`
	Checksum      string        `json:"checksum,omitempty"`
	Output        JobOutput     `json:"output"`
	Info          *Info         `json:"info,omitempty"`
}

// JobOutput describes the trace as the runner sent it: "crc32:%08x" of the
// bytes and their count.
type JobOutput struct {
	Checksum string `json:"checksum,omitempty"`
	Bytesize int64  `json:"bytesize,omitempty"`
}
