package gitlab

import (
	"encoding/json"
	"strings"
	"time"
)

// Job is the job payload GitLab returns with 201 from POST /jobs/request
// (protocol doc section 2.4). Every field is optional on the wire: null
// arrays and objects decode to nil, unknown fields are ignored.
type Job struct {
	ID             int64          `json:"id"`
	Token          string         `json:"token"`
	AllowGitFetch  bool           `json:"allow_git_fetch"`
	JobInfo        JobInfo        `json:"job_info"`
	GitInfo        GitInfo        `json:"git_info"`
	RunnerInfo     RunnerInfo     `json:"runner_info"`
	Variables      Variables      `json:"variables"`
	Steps          []Step         `json:"steps"`
	Hooks          []Hook         `json:"hooks,omitempty"`
	Image          *Image         `json:"image,omitempty"`
	Services       []Image        `json:"services,omitempty"`
	Artifacts      []Artifact     `json:"artifacts"`
	Cache          []Cache        `json:"cache"`
	Credentials    []Credentials  `json:"credentials,omitempty"`
	Features       JobFeatures    `json:"features"`
	Dependencies   []Dependency   `json:"dependencies"`
	Run            string         `json:"run,omitempty"`
	Inputs         []Input        `json:"inputs,omitempty"`
	Secrets        map[string]any `json:"secrets,omitempty"`
	PolicyOptions  map[string]any `json:"policy_options,omitempty"`
	SuspendOptions map[string]any `json:"suspend_options,omitempty"`
}

// JobInfo describes the job and its project.
type JobInfo struct {
	ID                int64   `json:"id"`
	Name              string  `json:"name"`
	Stage             string  `json:"stage"`
	PipelineID        int64   `json:"pipeline_id"`
	ProjectID         int64   `json:"project_id"`
	ProjectName       string  `json:"project_name"`
	ProjectFullPath   string  `json:"project_full_path"`
	NamespaceID       int64   `json:"namespace_id,omitempty"`
	RootNamespaceID   int64   `json:"root_namespace_id,omitempty"`
	OrganizationID    int64   `json:"organization_id,omitempty"`
	InstanceID        string  `json:"instance_id,omitempty"`
	InstanceUUID      string  `json:"instance_uuid,omitempty"`
	UserID            int64   `json:"user_id,omitempty"`
	ScopedUserID      *int64  `json:"scoped_user_id,omitempty"`
	TimeInQueueSecs   float64 `json:"time_in_queue_seconds,omitempty"`
	ProjectJobsOnInst string  `json:"project_jobs_running_on_instance_runners_count,omitempty"`
	QueueSize         int64   `json:"queue_size,omitempty"`
	QueueDepth        int64   `json:"queue_depth,omitempty"`
}

// GitInfo says what to check out and how.
type GitInfo struct {
	RepoURL          string   `json:"repo_url"`
	Ref              string   `json:"ref"`
	Sha              string   `json:"sha"`
	BeforeSha        string   `json:"before_sha"`
	RefType          string   `json:"ref_type"`
	Refspecs         []string `json:"refspecs"`
	Depth            int      `json:"depth"`
	RepoObjectFormat string   `json:"repo_object_format,omitempty"`
	Protected        *bool    `json:"protected,omitempty"`
}

// RunnerInfo carries the effective job timeout.
type RunnerInfo struct {
	UUID             string  `json:"uuid,omitempty"`
	Timeout          int     `json:"timeout"`
	RunnerSessionURL *string `json:"runner_session_url,omitempty"`
}

// DefaultJobTimeout is the job timeout assumed when GitLab sends none
// (runner_info.timeout 0): GitLab's default project timeout.
const DefaultJobTimeout = time.Hour

// Timeout returns the job's effective timeout: runner_info.timeout, or
// DefaultJobTimeout when GitLab sent none.
func (j *Job) Timeout() time.Duration {
	if j.RunnerInfo.Timeout <= 0 {
		return DefaultJobTimeout
	}
	return time.Duration(j.RunnerInfo.Timeout) * time.Second
}

// Variable is one job variable (section 2.5).
type Variable struct {
	Key    string `json:"key"`
	Value  string `json:"value"`
	Public bool   `json:"public"`
	Masked bool   `json:"masked"`
	File   bool   `json:"file,omitempty"`
	Raw    bool   `json:"raw,omitempty"`
}

// Variables is the job's variable list; duplicates are allowed and the last
// occurrence of a key wins.
type Variables []Variable

// Get returns the value of the last variable named key, or "".
func (vs Variables) Get(key string) string {
	v, _ := vs.Lookup(key)
	return v
}

// Lookup returns the value of the last variable named key.
func (vs Variables) Lookup(key string) (string, bool) {
	for i := len(vs) - 1; i >= 0; i-- {
		if vs[i].Key == key {
			return vs[i].Value, true
		}
	}
	return "", false
}

// Step names sent by GitLab.
const (
	StepScript      = "script"
	StepAfterScript = "after_script"
	StepRelease     = "release"
)

// When values for steps, artifacts and caches.
const (
	WhenOnSuccess = "on_success"
	WhenOnFailure = "on_failure"
	WhenAlways    = "always"
)

// Step is one script step.
type Step struct {
	Name         string   `json:"name"`
	Script       []string `json:"script"`
	Timeout      int      `json:"timeout"`
	When         string   `json:"when"`
	AllowFailure bool     `json:"allow_failure"`
}

// Hook is a pre/post get-sources script.
type Hook struct {
	Name   string   `json:"name"`
	Script []string `json:"script"`
}

// Image is the job's image or one of its services. The product cannot run
// containers; these fields are decoded so the trace can say what was asked.
type Image struct {
	Name         string          `json:"name"`
	Alias        string          `json:"alias,omitempty"`
	Entrypoint   []string        `json:"entrypoint,omitempty"`
	Command      []string        `json:"command,omitempty"`
	Ports        []Port          `json:"ports,omitempty"`
	ExecutorOpts json.RawMessage `json:"executor_opts,omitempty"`
	PullPolicy   []string        `json:"pull_policy,omitempty"`
	Variables    []ImageVariable `json:"variables,omitempty"`
}

// Port is an exposed image port.
type Port struct {
	Number   int    `json:"number"`
	Protocol string `json:"protocol,omitempty"`
	Name     string `json:"name,omitempty"`
}

// ImageVariable is a service-level variable.
type ImageVariable struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Artifact types and formats (section 5.1).
const (
	ArtifactTypeArchive = "archive"
	ArtifactFormatZip   = "zip"
	ArtifactFormatGzip  = "gzip"
	ArtifactFormatRaw   = "raw"
)

// Artifact is one entry of the job's artifacts list.
type Artifact struct {
	Name           string   `json:"name"`
	Untracked      bool     `json:"untracked"`
	Paths          []string `json:"paths"`
	Exclude        []string `json:"exclude,omitempty"`
	When           string   `json:"when"`
	ExpireIn       string   `json:"expire_in,omitempty"`
	ArtifactType   string   `json:"artifact_type"`
	ArtifactFormat string   `json:"artifact_format"`
}

// Cache policies.
const (
	CachePolicyPullPush = "pull-push"
	CachePolicyPull     = "pull"
	CachePolicyPush     = "push"
)

// Cache is one entry of the job's cache list.
type Cache struct {
	Key          string   `json:"key"`
	Untracked    bool     `json:"untracked"`
	Paths        []string `json:"paths"`
	Policy       string   `json:"policy"`
	When         string   `json:"when"`
	FallbackKeys []string `json:"fallback_keys,omitempty"`
}

// Credentials are registry (or other) credentials for the job.
type Credentials struct {
	Type     string `json:"type"`
	URL      string `json:"url"`
	Username string `json:"username"`
	Password string `json:"password"`
}

// JobFeatures are the server's hints to the runner for this job.
type JobFeatures struct {
	TraceSections     bool     `json:"trace_sections"`
	FailureReasons    []string `json:"failure_reasons,omitempty"`
	TokenMaskPrefixes []string `json:"token_mask_prefixes,omitempty"`
}

// Dependency is a job whose artifacts this job downloads.
type Dependency struct {
	ID            int64          `json:"id"`
	Name          string         `json:"name"`
	Token         string         `json:"token"`
	ArtifactsFile *ArtifactsFile `json:"artifacts_file,omitempty"`
}

// ArtifactsFile describes a dependency's archive.
type ArtifactsFile struct {
	Filename string `json:"filename"`
	Size     int64  `json:"size"`
}

// Input is a job input (newer GitLab).
type Input struct {
	Key   string     `json:"key"`
	Value InputValue `json:"value"`
}

// InputValue is the typed value of an input.
type InputValue struct {
	Type      string          `json:"type"`
	Content   json.RawMessage `json:"content"`
	Sensitive bool            `json:"sensitive"`
}

// ShortToken returns the first 9 characters of a runner token after its
// known prefixes, the form gitlab-runner uses in paths and logs.
func ShortToken(token string) string {
	for _, p := range []string{"glrtr-", "glrt-", "glcbt-"} {
		token = strings.TrimPrefix(token, p)
	}
	if len(token) > 3 && token[0] == 't' && token[2] == '_' && token[1] >= '0' && token[1] <= '9' {
		token = token[3:]
	}
	if len(token) > 9 {
		token = token[:9]
	}
	return token
}
