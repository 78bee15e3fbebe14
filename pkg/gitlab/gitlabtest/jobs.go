package gitlabtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"gitlab-serverless-runner/pkg/gitlab"
)

// Job statuses, as in the Job-Status header.
const (
	statusPending   = gitlab.StatusPending
	statusRunning   = gitlab.StatusRunning
	statusCanceling = gitlab.StatusCanceling
	statusCanceled  = gitlab.StatusCanceled
	statusSuccess   = gitlab.StatusSuccess
	statusFailed    = gitlab.StatusFailed
)

// FailureReasons is every failure reason the fake knows; it is sent as the
// job's features.failure_reasons (protocol section 3.3).
var FailureReasons = []string{
	"unknown_failure", "script_failure", "api_failure", "stuck_or_timeout_failure",
	"runner_system_failure", "missing_dependency_failure", "runner_unsupported",
	"stale_schedule", "job_execution_timeout", "archived_failure", "unmet_prerequisites",
	"scheduler_failure", "data_integrity_failure", "forward_deployment_failure",
	"user_blocked", "project_deleted", "ci_quota_exceeded", "pipeline_loop_detected",
	"no_matching_runner", "trace_size_exceeded", "builds_disabled",
	"environment_creation_failure", "deployment_rejected", "failed_outdated_deployment_job",
	"job_execution_server_timeout", "stuck_pending_with_matching_runners",
	"stuck_pending_no_matching_runners", "no_updates_running", "no_updates_canceling",
	"server_timeout_running", "server_timeout_canceling", "runner_configuration_error",
	"runner_external_dependency_failure", "runner_interrupted",
	"protected_environment_failure", "insufficient_bridge_permissions",
	"downstream_bridge_project_not_found", "invalid_bridge_trigger",
	"upstream_bridge_project_not_found", "insufficient_upstream_permissions",
	"bridge_pipeline_is_child_pipeline", "downstream_pipeline_creation_failed",
	"secrets_provider_not_found", "reached_max_descendant_pipelines_depth",
	"ip_restriction_failure", "reached_max_pipeline_hierarchy_size",
	"reached_downstream_pipeline_trigger_rate_limit", "duo_workflow_not_allowed",
	"job_router_failure", "job_token_expired", "id_token_burned_project_path",
	"downstream_project_trigger_resolved_to_empty",
}

// JobSpec describes a job to enqueue, as .gitlab-ci.yml would. The zero
// value is an untagged job "test" in stage "test" on the default branch
// with a one-hour timeout.
type JobSpec struct {
	Name  string // default "test"
	Stage string // default "test"
	// Ref is a branch or tag (default: the project's default branch);
	// RefType is "branch" or "tag" (default: tag if Ref names only a tag).
	Ref     string
	RefType string
	// SHA is the commit to build; default the tip of Ref.
	SHA       string
	Protected bool // the ref is protected (ref_protected runners only take these)
	// PipelineID groups jobs in one pipeline (refs/pipelines/<id>); 0 makes
	// a new pipeline.
	PipelineID   int64
	BeforeScript []string
	Script       []string
	AfterScript  []string
	// Release adds a "release" step (requires multi_build_steps).
	Release []string
	Hooks   []gitlab.Hook
	// Variables are user variables, appended after the predefined ones
	// (so they win). Use Masked, File and Raw as GitLab would.
	Variables []gitlab.Variable
	Tags      []string
	// Timeout in seconds; default 3600, capped by the runner's maximum.
	Timeout int
	// Depth is git_info.depth; 0 means the project default 20, negative
	// means a full clone (depth 0 on the wire).
	Depth      int
	NoGitFetch bool // allow_git_fetch=false
	Image      *gitlab.Image
	Services   []gitlab.Image
	Artifacts  []gitlab.Artifact
	Cache      []gitlab.Cache
	// Dependencies are ids of earlier jobs whose artifacts this job gets.
	Dependencies []int64
	// AllowFailureExitCodes makes the job require return_exit_code.
	AllowFailureExitCodes []int
	// RequiredFeatures are runner features the job needs beyond those
	// derived from the spec (e.g. "refspecs" for a merge request ref).
	RequiredFeatures []string
	// Payload, when set, may change the payload just before it is sent.
	Payload func(*gitlab.Job)
}

// requiredFeatures lists the features a runner must advertise to get the
// job (protocol section 2.2, "Required" rows).
func (spec *JobSpec) requiredFeatures() []string {
	req := slices.Clone(spec.RequiredFeatures)
	add := func(f string) {
		if !slices.Contains(req, f) {
			req = append(req, f)
		}
	}
	for _, c := range spec.Cache {
		if len(c.FallbackKeys) > 0 {
			add("fallback_cache_keys")
		}
	}
	for _, a := range spec.Artifacts {
		if a.ArtifactType != "" && a.ArtifactType != gitlab.ArtifactTypeArchive {
			add("upload_multiple_artifacts")
		}
		if len(a.Exclude) > 0 {
			add("artifacts_exclude")
		}
	}
	if len(spec.Release) > 0 {
		add("multi_build_steps")
	}
	if len(spec.AllowFailureExitCodes) > 0 {
		add("return_exit_code")
	}
	return req
}

// UploadedArtifact is an artifact a job uploaded, stored on disk.
type UploadedArtifact struct {
	Type     string // artifact_type, default "archive"
	Format   string // artifact_format, default "zip"
	ExpireIn string // expire_in as sent, "" if absent
	Filename string // the multipart file name
	Size     int64
	Path     string // where the bytes are stored
}

// Bytes reads the stored artifact.
func (a UploadedArtifact) Bytes() ([]byte, error) { return os.ReadFile(a.Path) }

// Update is one PUT /jobs/:id the job received.
type Update struct {
	Time time.Time
	// Request is the body as sent, with the token removed.
	Request gitlab.UpdateJobRequest
	// Status is the HTTP status answered, JobStatus the Job-Status header.
	Status    int
	JobStatus string
}

// Job is a snapshot of a job.
type Job struct {
	ID         int64
	PipelineID int64
	ProjectID  int64
	Name       string
	Stage      string
	Ref        string
	RefType    string
	SHA        string
	// Token is the current job token (a new one after a two-phase re-queue).
	Token string
	// State is pending, running, canceling, success, failed or canceled.
	State         string
	FailureReason gitlab.FailureReason
	ExitCode      int
	RunnerID      int64
	SystemID      string // runner manager that took it
	Trace         []byte
	DebugTrace    bool // a PATCH said debug_trace=true
	Artifacts     []UploadedArtifact
	Updates       []Update
	// Payload is what POST /jobs/request answered (nil while never picked).
	// Do not modify it.
	Payload *gitlab.Job
	// Requeued counts two-phase re-queues after a missed acknowledgement.
	Requeued int
	Spec     JobSpec
}

// Final reports whether the job reached success, failed or canceled.
func (j Job) Final() bool {
	return j.State == statusSuccess || j.State == statusFailed || j.State == statusCanceled
}

// Artifact returns the last uploaded artifact of type typ ("archive", ...).
func (j Job) Artifact(typ string) (UploadedArtifact, bool) {
	for i := len(j.Artifacts) - 1; i >= 0; i-- {
		if j.Artifacts[i].Type == typ {
			return j.Artifacts[i], true
		}
	}
	return UploadedArtifact{}, false
}

type jobState struct {
	Job
	enqueuedAt     time.Time
	awaitingAck    bool // two-phase: assigned, waiting for PUT running
	ackDeadline    time.Time
	gracefulCancel bool // the manager advertised cancel_gracefully
	finalPending   int  // 202s answered to final updates
	finalFirst     time.Time
	runnerFinished bool // the runner's own final update was applied
	traceLost      bool // TruncateTrace: the next PATCH may legitimately be off
	watched        bool
	announced      string // last status sent to webhooks
}

func (j *jobState) snapshot() Job {
	out := j.Job
	out.Trace = slices.Clone(j.Trace)
	out.Artifacts = slices.Clone(j.Artifacts)
	out.Updates = slices.Clone(j.Updates)
	return out
}

func (j *jobState) final() bool { return j.Job.Final() }

// EnqueueJob creates a pending job for project p, creates
// refs/pipelines/<pipeline id> at its sha, and wakes waiting job requests.
func (s *Server) EnqueueJob(p *Project, spec JobSpec) Job {
	s.t.Helper()
	if spec.Name == "" {
		spec.Name = "test"
	}
	if spec.Stage == "" {
		spec.Stage = "test"
	}
	if spec.Timeout <= 0 {
		spec.Timeout = 3600
	}
	ref := spec.Ref
	if ref == "" {
		ref = p.DefaultBranch
	}
	refType := spec.RefType
	if refType == "" {
		refType = "branch"
		if !p.HasBranch(ref) && p.HasTag(ref) {
			refType = "tag"
		}
	}
	sha := spec.SHA
	if sha == "" {
		sha = p.RefSHA(ref)
	}
	s.mu.Lock()
	pipeline := spec.PipelineID
	if pipeline == 0 {
		pipeline = s.newIDLocked()
	}
	j := &jobState{Job: Job{
		ID: s.newIDLocked(), PipelineID: pipeline, ProjectID: p.ID, Name: spec.Name,
		Stage: spec.Stage, Ref: ref, RefType: refType, SHA: sha, Token: newJobToken(),
		State: statusPending, Spec: spec,
	}, enqueuedAt: time.Now()}
	s.mu.Unlock()
	p.setRef(fmt.Sprintf("refs/pipelines/%d", pipeline), sha)

	s.mu.Lock()
	defer s.mu.Unlock()
	s.jobs[j.ID] = j
	s.queue = append(s.queue, j.ID)
	s.queueChangedLocked()
	return j.snapshot()
}

func newJobToken() string { return "glcbt-64_" + randomAlnum(20) }

// queueChangedLocked ticks every runner's queue version and wakes waiters.
func (s *Server) queueChangedLocked() {
	for _, r := range s.runners {
		r.version = randomHex(16)
	}
	s.notifyLocked()
}

// Job returns a snapshot of job id; the zero Job (ID 0) if there is none.
func (s *Server) Job(id int64) Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	if j, ok := s.jobs[id]; ok {
		return j.snapshot()
	}
	return Job{}
}

// Jobs returns snapshots of every job, by id.
func (s *Server) Jobs() []Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Job
	for _, j := range s.jobs {
		out = append(out, j.snapshot())
	}
	slices.SortFunc(out, func(a, b Job) int { return int(a.ID - b.ID) })
	return out
}

// WaitJob waits until job id is final (success, failed, canceled) and
// returns its snapshot, or returns the context's error.
func (s *Server) WaitJob(ctx context.Context, id int64) (Job, error) {
	return s.WaitJobState(ctx, id, statusSuccess, statusFailed, statusCanceled)
}

// WaitJobState waits until job id is in one of states.
func (s *Server) WaitJobState(ctx context.Context, id int64, states ...string) (Job, error) {
	for {
		s.mu.Lock()
		j, ok := s.jobs[id]
		if !ok {
			s.mu.Unlock()
			return Job{}, fmt.Errorf("gitlabtest: wait for job %d: no such job", id)
		}
		if slices.Contains(states, j.State) && !j.awaitingAck {
			snap := j.snapshot()
			s.mu.Unlock()
			return snap, nil
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return s.Job(id), fmt.Errorf("gitlabtest: wait for job %d in state %v: %w", id, states, ctx.Err())
		}
	}
}

// CancelJob cancels a job as a user would: a pending job becomes canceled;
// a running job becomes canceling when the runner manager advertised
// cancel_gracefully, canceled otherwise; a canceling job becomes canceled.
func (s *Server) CancelJob(id int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[id]
	if !ok {
		return fmt.Errorf("gitlabtest: cancel job %d: no such job", id)
	}
	switch {
	case j.final():
		return fmt.Errorf("gitlabtest: cancel job %d: already %s", id, j.State)
	case j.State == statusPending:
		s.queue = slices.DeleteFunc(s.queue, func(q int64) bool { return q == id })
		j.awaitingAck = false
		j.State = statusCanceled
	case j.State == statusRunning && j.gracefulCancel:
		j.State = statusCanceling
	default:
		j.State = statusCanceled
	}
	s.queueChangedLocked()
	return nil
}

// WatchJob marks the job as watched in the UI: PATCH trace answers the
// shorter update interval.
func (s *Server) WatchJob(id int64, watched bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if j, ok := s.jobs[id]; ok {
		j.watched = watched
	}
}

// TruncateTrace drops the last n bytes of a job's stored trace, as when
// GitLab loses live trace data: the runner's next PATCH gets 416 with the
// shorter Range and must resume from there.
func (s *Server) TruncateTrace(id int64, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if j, ok := s.jobs[id]; ok {
		n = min(n, len(j.Trace))
		j.Trace = j.Trace[:len(j.Trace)-n]
		j.traceLost = true
	}
}

// matchesLocked reports whether runner r may take job j (scope, tags,
// protected refs).
func (s *Server) matchesLocked(r *runnerState, j *jobState) bool {
	switch r.Type {
	case gitlab.RunnerTypeProject:
		if r.ProjectID != j.ProjectID {
			return false
		}
	case gitlab.RunnerTypeGroup:
		if p := s.projects[j.ProjectID]; p == nil || p.NamespaceID != r.GroupID {
			return false
		}
	}
	if len(j.Spec.Tags) == 0 && !r.RunUntagged {
		return false
	}
	for _, t := range j.Spec.Tags {
		if !slices.Contains(r.Tags, t) {
			return false
		}
	}
	if r.AccessLevel == gitlab.AccessRefProtected && !j.Spec.Protected {
		return false
	}
	return true
}

func featureMap(f gitlab.Features) map[string]bool {
	b, _ := json.Marshal(f)
	m := map[string]bool{}
	_ = json.Unmarshal(b, &m)
	return m
}

// payloadLocked builds the 201 body for job j picked by runner r.
func (s *Server) payloadLocked(j *jobState, r *runnerState, queuePos int) *gitlab.Job {
	p := s.projects[j.ProjectID]
	spec := j.Spec
	base, _ := url.Parse(s.URL())
	repoURL := fmt.Sprintf("%s://gitlab-ci-token:%s@%s/%s.git", base.Scheme, j.Token, base.Host, p.Path)

	timeout := spec.Timeout
	if r.MaximumTimeout > 0 && r.MaximumTimeout < timeout {
		timeout = r.MaximumTimeout
	}
	depth := 20
	if spec.Depth > 0 {
		depth = spec.Depth
	} else if spec.Depth < 0 {
		depth = 0
	}
	refspecs := []string{fmt.Sprintf("+refs/pipelines/%d:refs/pipelines/%d", j.PipelineID, j.PipelineID)}
	switch {
	case depth == 0:
		refspecs = append(refspecs, "+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*")
	case j.RefType == "tag":
		refspecs = append(refspecs, fmt.Sprintf("+refs/tags/%s:refs/tags/%s", j.Ref, j.Ref))
	default:
		refspecs = append(refspecs, fmt.Sprintf("+refs/heads/%s:refs/remotes/origin/%s", j.Ref, j.Ref))
	}
	protected := spec.Protected
	tags, _ := json.Marshal(r.Tags)
	if r.Tags == nil {
		tags = []byte("[]")
	}
	pub := func(k, v string) gitlab.Variable { return gitlab.Variable{Key: k, Value: v, Public: true} }
	shortSHA := j.SHA
	if len(shortSHA) > 8 {
		shortSHA = shortSHA[:8]
	}
	vars := gitlab.Variables{
		pub("CI", "true"), pub("GITLAB_CI", "true"),
		pub("CI_SERVER_URL", s.URL()), pub("CI_SERVER_HOST", base.Hostname()),
		pub("CI_SERVER_PORT", base.Port()), pub("CI_SERVER_PROTOCOL", base.Scheme),
		pub("CI_SERVER_NAME", "GitLab"), pub("CI_SERVER_VERSION", "18.5.0"),
		pub("CI_JOB_ID", strconv.FormatInt(j.ID, 10)),
		pub("CI_JOB_URL", fmt.Sprintf("%s/%s/-/jobs/%d", s.URL(), p.Path, j.ID)),
		{Key: "CI_JOB_TOKEN", Value: j.Token, Masked: true},
		pub("CI_JOB_NAME", j.Name), pub("CI_JOB_STAGE", j.Stage),
		pub("CI_JOB_STARTED_AT", time.Now().UTC().Format(time.RFC3339)),
		pub("CI_PIPELINE_ID", strconv.FormatInt(j.PipelineID, 10)),
		pub("CI_PIPELINE_IID", strconv.FormatInt(j.PipelineID, 10)),
		pub("CI_PIPELINE_SOURCE", "push"),
		pub("CI_PROJECT_ID", strconv.FormatInt(p.ID, 10)),
		pub("CI_PROJECT_NAME", p.Name), pub("CI_PROJECT_PATH", p.Path),
		pub("CI_PROJECT_NAMESPACE", p.Namespace),
		pub("CI_PROJECT_URL", s.URL()+"/"+p.Path),
		pub("CI_DEFAULT_BRANCH", p.DefaultBranch),
		pub("CI_COMMIT_SHA", j.SHA), pub("CI_COMMIT_SHORT_SHA", shortSHA),
		pub("CI_COMMIT_BEFORE_SHA", zeroSHA),
		pub("CI_COMMIT_REF_NAME", j.Ref), pub("CI_COMMIT_REF_SLUG", slug(j.Ref)),
		pub("CI_COMMIT_REF_PROTECTED", strconv.FormatBool(protected)),
	}
	if j.RefType == "tag" {
		vars = append(vars, pub("CI_COMMIT_TAG", j.Ref))
	} else {
		vars = append(vars, pub("CI_COMMIT_BRANCH", j.Ref))
	}
	vars = append(vars,
		gitlab.Variable{Key: "CI_REPOSITORY_URL", Value: repoURL},
		pub("CI_RUNNER_ID", strconv.FormatInt(r.ID, 10)),
		pub("CI_RUNNER_DESCRIPTION", r.Description),
		pub("CI_RUNNER_TAGS", string(tags)),
		pub("GITLAB_USER_ID", "1"), pub("GITLAB_USER_LOGIN", "root"),
	)
	if spec.Depth != 0 {
		vars = append(vars, pub("GIT_DEPTH", strconv.Itoa(depth)))
	}
	vars = append(vars, spec.Variables...)

	steps := []gitlab.Step{{
		Name: gitlab.StepScript, Script: append(slices.Clone(spec.BeforeScript), spec.Script...),
		Timeout: timeout, When: gitlab.WhenOnSuccess,
	}}
	if len(spec.Release) > 0 {
		steps = append(steps, gitlab.Step{Name: gitlab.StepRelease, Script: slices.Clone(spec.Release), Timeout: timeout, When: gitlab.WhenOnSuccess})
	}
	if len(spec.AfterScript) > 0 {
		steps = append(steps, gitlab.Step{Name: gitlab.StepAfterScript, Script: slices.Clone(spec.AfterScript), Timeout: timeout, When: gitlab.WhenAlways, AllowFailure: true})
	}

	suffix := "-non_protected"
	if protected {
		suffix = "-protected"
	}
	caches := make([]gitlab.Cache, 0, len(spec.Cache))
	for _, c := range spec.Cache {
		if c.Key == "" {
			c.Key = "default"
		}
		c.Key += suffix
		fb := make([]string, 0, len(c.FallbackKeys))
		for _, k := range c.FallbackKeys {
			fb = append(fb, k+suffix)
		}
		c.FallbackKeys = fb
		if c.Policy == "" {
			c.Policy = gitlab.CachePolicyPullPush
		}
		if c.When == "" {
			c.When = gitlab.WhenOnSuccess
		}
		c.Paths = slices.Clone(c.Paths)
		caches = append(caches, c)
	}
	var artifacts []gitlab.Artifact
	for _, a := range spec.Artifacts {
		if a.ArtifactType == "" {
			a.ArtifactType = gitlab.ArtifactTypeArchive
		}
		if a.ArtifactFormat == "" {
			a.ArtifactFormat = gitlab.ArtifactFormatZip
		}
		if a.When == "" {
			a.When = gitlab.WhenOnSuccess
		}
		a.Paths = slices.Clone(a.Paths)
		artifacts = append(artifacts, a)
	}
	deps := []gitlab.Dependency{}
	for _, id := range spec.Dependencies {
		dj, ok := s.jobs[id]
		if !ok {
			continue
		}
		d := gitlab.Dependency{ID: dj.ID, Name: dj.Name, Token: j.Token}
		if a, ok := dj.Artifact(gitlab.ArtifactTypeArchive); ok {
			d.ArtifactsFile = &gitlab.ArtifactsFile{Filename: a.Filename, Size: a.Size}
		}
		deps = append(deps, d)
	}

	job := &gitlab.Job{
		ID: j.ID, Token: j.Token, AllowGitFetch: !spec.NoGitFetch,
		JobInfo: gitlab.JobInfo{
			ID: j.ID, Name: j.Name, Stage: j.Stage, PipelineID: j.PipelineID,
			ProjectID: p.ID, ProjectName: p.Name, ProjectFullPath: p.Path,
			NamespaceID: p.NamespaceID, RootNamespaceID: p.NamespaceID, OrganizationID: 1,
			InstanceID: "gitlabtest", InstanceUUID: "c0ffee00-0000-4000-8000-000000000001",
			UserID: 1, TimeInQueueSecs: time.Since(j.enqueuedAt).Seconds(),
			ProjectJobsOnInst: "+Inf", QueueSize: int64(len(s.queue)), QueueDepth: int64(queuePos + 1),
		},
		GitInfo: gitlab.GitInfo{
			RepoURL: repoURL, Ref: j.Ref, Sha: j.SHA, BeforeSha: zeroSHA, RefType: j.RefType,
			Refspecs: refspecs, Depth: depth, RepoObjectFormat: "sha1", Protected: &protected,
		},
		RunnerInfo: gitlab.RunnerInfo{UUID: strconv.FormatInt(r.ID, 10), Timeout: timeout},
		Variables:  vars,
		Steps:      steps,
		Hooks:      slices.Clone(spec.Hooks),
		Image:      spec.Image,
		Services:   slices.Clone(spec.Services),
		Artifacts:  artifacts,
		Cache:      caches,
		Credentials: []gitlab.Credentials{{
			Type: "registry", URL: base.Host, Username: "gitlab-ci-token", Password: j.Token,
		}},
		Features:     gitlab.JobFeatures{TraceSections: true, FailureReasons: slices.Clone(FailureReasons)},
		Dependencies: deps,
	}
	if spec.Payload != nil {
		spec.Payload(job)
	}
	return job
}

const zeroSHA = "0000000000000000000000000000000000000000"

// slug is CI_COMMIT_REF_SLUG: lowercased, non-alphanumerics to "-", at most
// 63 bytes, no leading or trailing "-".
func slug(ref string) string {
	b := []byte(strings.ToLower(ref))
	for i, c := range b {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			b[i] = '-'
		}
	}
	if len(b) > 63 {
		b = b[:63]
	}
	return strings.Trim(string(b), "-")
}
