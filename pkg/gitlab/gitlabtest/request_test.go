package gitlabtest_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
)

func TestJobRequestStatuses(t *testing.T) {
	srv := gitlabtest.New(t)
	proj := srv.CreateProject("group/demo", map[string]string{"a.txt": "a"})
	r := srv.CreateRunner(gitlabtest.RunnerOptions{})

	if res := call(t, srv, http.MethodPost, "/api/v4/jobs/request", nil, map[string]any{}); res.status != http.StatusBadRequest {
		t.Fatalf("no token: got status %d, want 400", res.status)
	}
	if res := requestJob(t, srv, "glrt-wrong", "", allFeatures()); res.status != http.StatusForbidden {
		t.Fatalf("bad token: got status %d, want 403", res.status)
	}
	empty := requestJob(t, srv, r.Token, "", allFeatures())
	version := empty.header.Get("X-GitLab-Last-Update")
	if empty.status != http.StatusNoContent || version == "" {
		t.Fatalf("empty queue: got %d with last update %q, want 204 with a version", empty.status, version)
	}
	same := requestJob(t, srv, r.Token, version, allFeatures())
	if same.status != http.StatusNoContent || same.header.Get("X-GitLab-Last-Update") != version {
		t.Fatalf("unchanged queue: got %d %q, want 204 echoing %q", same.status, same.header.Get("X-GitLab-Last-Update"), version)
	}

	srv.SetRunnerPaused(r.ID, true)
	job := srv.EnqueueJob(proj, gitlabtest.JobSpec{Script: []string{"true"}})
	if res := requestJob(t, srv, r.Token, "", allFeatures()); res.status != http.StatusNoContent || res.header.Get("X-GitLab-Last-Update") == "" {
		t.Fatalf("paused: got %d, want 204 with a version", res.status)
	}
	srv.SetRunnerPaused(r.ID, false)

	got := requestJob(t, srv, r.Token, version, allFeatures())
	if got.status != http.StatusCreated || got.header.Get("X-GitLab-Last-Update") != "" {
		t.Fatalf("queued job with old version: got %d, last update %q; want 201 without the header", got.status, got.header.Get("X-GitLab-Last-Update"))
	}
	var payload gitlab.Job
	got.decode(t, &payload)
	if payload.ID != job.ID {
		t.Fatalf("got job %d, want %d", payload.ID, job.ID)
	}
	if s := srv.Job(job.ID); s.State != gitlab.StatusRunning || s.RunnerID != r.ID || s.SystemID != "s_0123456789ab" {
		t.Fatalf("got job %+v, want running on runner %d", s.State, r.ID)
	}
	srv.AssertNoViolations(t)
}

func TestJobMatching(t *testing.T) {
	tests := []struct {
		name   string
		runner gitlabtest.RunnerOptions
		spec   gitlabtest.JobSpec
		want   bool
	}{
		{"untagged job, untagged runner", gitlabtest.RunnerOptions{}, gitlabtest.JobSpec{}, true},
		{"untagged job, runner refuses untagged", gitlabtest.RunnerOptions{Tags: []string{"a"}, NoUntagged: true}, gitlabtest.JobSpec{}, false},
		{"tags are a subset", gitlabtest.RunnerOptions{Tags: []string{"a", "b"}}, gitlabtest.JobSpec{Tags: []string{"b"}}, true},
		{"tag missing", gitlabtest.RunnerOptions{Tags: []string{"a"}}, gitlabtest.JobSpec{Tags: []string{"a", "c"}}, false},
		{"protected runner, unprotected ref", gitlabtest.RunnerOptions{AccessLevel: gitlab.AccessRefProtected}, gitlabtest.JobSpec{}, false},
		{"protected runner, protected ref", gitlabtest.RunnerOptions{AccessLevel: gitlab.AccessRefProtected}, gitlabtest.JobSpec{Protected: true}, true},
		{"project runner of another project", gitlabtest.RunnerOptions{Type: gitlab.RunnerTypeProject, ProjectID: 1}, gitlabtest.JobSpec{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := gitlabtest.New(t)
			proj := srv.CreateProject("group/demo", map[string]string{"a.txt": "a"})
			r := srv.CreateRunner(tt.runner)
			srv.EnqueueJob(proj, tt.spec)
			res := requestJob(t, srv, r.Token, "", allFeatures())
			if got := res.status == http.StatusCreated; got != tt.want {
				t.Fatalf("got a job %v (status %d), want %v", got, res.status, tt.want)
			}
		})
	}
	t.Run("project and group runners of the project", func(t *testing.T) {
		srv := gitlabtest.New(t)
		proj := srv.CreateProject("group/demo", map[string]string{"a.txt": "a"})
		for _, o := range []gitlabtest.RunnerOptions{
			{Type: gitlab.RunnerTypeProject, ProjectID: proj.ID},
			{Type: gitlab.RunnerTypeGroup, GroupID: proj.NamespaceID},
		} {
			r := srv.CreateRunner(o)
			srv.EnqueueJob(proj, gitlabtest.JobSpec{})
			if res := requestJob(t, srv, r.Token, "", allFeatures()); res.status != http.StatusCreated {
				t.Fatalf("%s runner: got status %d, want 201", o.Type, res.status)
			}
		}
	})
}

func TestFeatureGating(t *testing.T) {
	tests := []struct {
		name    string
		spec    gitlabtest.JobSpec
		feature func(*gitlab.Features)
	}{
		{"artifacts exclude", gitlabtest.JobSpec{Artifacts: []gitlab.Artifact{{Paths: []string{"bin"}, Exclude: []string{"*.tmp"}}}},
			func(f *gitlab.Features) { f.ArtifactsExclude = false }},
		{"fallback cache keys", gitlabtest.JobSpec{Cache: []gitlab.Cache{{Key: "k", FallbackKeys: []string{"main"}}}},
			func(f *gitlab.Features) { f.FallbackCacheKeys = false }},
		{"reports", gitlabtest.JobSpec{Artifacts: []gitlab.Artifact{{Paths: []string{"r.xml"}, ArtifactType: "junit", ArtifactFormat: "gzip"}}},
			func(f *gitlab.Features) { f.UploadMultipleArtifacts = false }},
		{"release step", gitlabtest.JobSpec{Release: []string{"release-cli create"}},
			func(f *gitlab.Features) { f.MultiBuildSteps = false }},
		{"allow_failure exit codes", gitlabtest.JobSpec{AllowFailureExitCodes: []int{3}},
			func(f *gitlab.Features) { f.ReturnExitCode = false }},
		{"merge request refspecs", gitlabtest.JobSpec{RequiredFeatures: []string{"refspecs"}},
			func(f *gitlab.Features) { f.Refspecs = false }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := gitlabtest.New(t)
			proj := srv.CreateProject("group/demo", map[string]string{"a.txt": "a"})
			r := srv.CreateRunner(gitlabtest.RunnerOptions{})
			needy := srv.EnqueueJob(proj, tt.spec)
			plain := srv.EnqueueJob(proj, gitlabtest.JobSpec{Name: "plain"})
			f := allFeatures()
			tt.feature(&f)
			got := takeJob(t, srv, r.Token, f)
			if got.ID != plain.ID {
				t.Fatalf("got job %d, want the next job %d after dropping %d", got.ID, plain.ID, needy.ID)
			}
			if s := srv.Job(needy.ID); s.State != gitlab.StatusFailed || s.FailureReason != gitlab.ReasonRunnerUnsupported {
				t.Fatalf("got dropped job %s/%s, want failed/runner_unsupported", s.State, s.FailureReason)
			}
		})
	}
	t.Run("a runner with the feature gets it", func(t *testing.T) {
		srv := gitlabtest.New(t)
		proj := srv.CreateProject("group/demo", map[string]string{"a.txt": "a"})
		r := srv.CreateRunner(gitlabtest.RunnerOptions{})
		job := srv.EnqueueJob(proj, tests[0].spec)
		if got := takeJob(t, srv, r.Token, allFeatures()); got.ID != job.ID {
			t.Fatalf("got job %d, want %d", got.ID, job.ID)
		}
	})
}

func TestJobPayload(t *testing.T) {
	srv := gitlabtest.New(t)
	proj := srv.CreateProject("group/demo", map[string]string{".gitlab-ci.yml": "test: {script: [make]}\n"})
	proj.Tag("v1.0", "main")
	r := srv.CreateRunner(gitlabtest.RunnerOptions{Tags: []string{"lambda", "small"}, MaximumTimeout: 900, Description: "fn"})
	spec := gitlabtest.JobSpec{
		Name: "unit", Stage: "build", Tags: []string{"lambda"}, Timeout: 3600, Protected: true,
		BeforeScript: []string{"echo setup"}, Script: []string{"make test"}, AfterScript: []string{"echo cleanup"},
		Variables: []gitlab.Variable{
			{Key: "API_KEY", Value: "s3cr3t-v4lue", Masked: true},
			{Key: "KUBECONFIG", Value: "apiVersion: v1\n", File: true},
			{Key: "TEMPLATE", Value: "literal $HOME", Raw: true},
		},
		Artifacts: []gitlab.Artifact{{Name: "bin", Paths: []string{"bin/"}, ExpireIn: "1 week"}},
		Cache:     []gitlab.Cache{{Key: "gomod", Paths: []string{".go/"}}},
	}
	job := srv.EnqueueJob(proj, spec)
	got := takeJob(t, srv, r.Token, allFeatures())

	host := strings.TrimPrefix(srv.URL(), "http://")
	checks := []struct {
		name      string
		got, want any
	}{
		{"id", got.ID, job.ID},
		{"token", got.Token, job.Token},
		{"repo_url", got.GitInfo.RepoURL, "http://gitlab-ci-token:" + job.Token + "@" + host + "/group/demo.git"},
		{"sha", got.GitInfo.Sha, proj.SHA()},
		{"ref", got.GitInfo.Ref + "/" + got.GitInfo.RefType, "main/branch"},
		{"refspecs", strings.Join(got.GitInfo.Refspecs, " "), "+refs/pipelines/" + strconv.FormatInt(job.PipelineID, 10) + ":refs/pipelines/" + strconv.FormatInt(job.PipelineID, 10) + " +refs/heads/main:refs/remotes/origin/main"},
		{"depth", got.GitInfo.Depth, 20},
		{"protected", got.GitInfo.Protected != nil && *got.GitInfo.Protected, true},
		{"timeout capped by runner", got.RunnerInfo.Timeout, 900},
		{"job name", got.JobInfo.Name + "/" + got.JobInfo.Stage, "unit/build"},
		{"project", got.JobInfo.ProjectFullPath, "group/demo"},
		{"CI_JOB_ID", got.Variables.Get("CI_JOB_ID"), strconv.FormatInt(job.ID, 10)},
		{"CI_JOB_TOKEN", got.Variables.Get("CI_JOB_TOKEN"), job.Token},
		{"CI_SERVER_URL", got.Variables.Get("CI_SERVER_URL"), srv.URL()},
		{"CI_PROJECT_PATH", got.Variables.Get("CI_PROJECT_PATH"), "group/demo"},
		{"CI_PROJECT_ID", got.Variables.Get("CI_PROJECT_ID"), strconv.FormatInt(proj.ID, 10)},
		{"CI_COMMIT_SHA", got.Variables.Get("CI_COMMIT_SHA"), proj.SHA()},
		{"CI_COMMIT_REF_NAME", got.Variables.Get("CI_COMMIT_REF_NAME"), "main"},
		{"CI_PIPELINE_ID", got.Variables.Get("CI_PIPELINE_ID"), strconv.FormatInt(job.PipelineID, 10)},
		{"CI_JOB_NAME", got.Variables.Get("CI_JOB_NAME"), "unit"},
		{"CI_JOB_STAGE", got.Variables.Get("CI_JOB_STAGE"), "build"},
		{"CI_REPOSITORY_URL", got.Variables.Get("CI_REPOSITORY_URL"), got.GitInfo.RepoURL},
		{"CI_RUNNER_ID", got.Variables.Get("CI_RUNNER_ID"), strconv.FormatInt(r.ID, 10)},
		{"CI_RUNNER_TAGS", got.Variables.Get("CI_RUNNER_TAGS"), `["lambda","small"]`},
		{"user variable", got.Variables.Get("API_KEY"), "s3cr3t-v4lue"},
		{"steps", len(got.Steps), 2},
		{"script step", strings.Join(got.Steps[0].Script, ";"), "echo setup;make test"},
		{"after_script step", got.Steps[1].Name + "/" + got.Steps[1].When, "after_script/always"},
		{"artifact defaults", got.Artifacts[0].ArtifactType + "/" + got.Artifacts[0].ArtifactFormat + "/" + got.Artifacts[0].When, "archive/zip/on_success"},
		{"cache key", got.Cache[0].Key + "/" + got.Cache[0].Policy, "gomod-protected/pull-push"},
		{"failure reasons", slices.Contains(got.Features.FailureReasons, "runner_unsupported"), true},
		{"trace sections", got.Features.TraceSections, true},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
	for _, v := range got.Variables {
		switch v.Key {
		case "CI_JOB_TOKEN", "API_KEY":
			if !v.Masked || v.Public {
				t.Errorf("%s: got masked %v public %v, want masked and not public", v.Key, v.Masked, v.Public)
			}
		case "KUBECONFIG":
			if !v.File {
				t.Errorf("KUBECONFIG: got file false, want true")
			}
		case "TEMPLATE":
			if !v.Raw {
				t.Errorf("TEMPLATE: got raw false, want true")
			}
		}
	}

	t.Run("tag, full depth", func(t *testing.T) {
		job := srv.EnqueueJob(proj, gitlabtest.JobSpec{Ref: "v1.0", Depth: -1, Tags: []string{"lambda"}})
		got := takeJob(t, srv, r.Token, allFeatures())
		want := "+refs/pipelines/" + strconv.FormatInt(job.PipelineID, 10) + ":refs/pipelines/" + strconv.FormatInt(job.PipelineID, 10) +
			" +refs/heads/*:refs/remotes/origin/* +refs/tags/*:refs/tags/*"
		if strings.Join(got.GitInfo.Refspecs, " ") != want || got.GitInfo.Depth != 0 || got.GitInfo.RefType != "tag" {
			t.Fatalf("got refspecs %v depth %d type %s, want %s depth 0 tag", got.GitInfo.Refspecs, got.GitInfo.Depth, got.GitInfo.RefType, want)
		}
		if got.Variables.Get("CI_COMMIT_TAG") != "v1.0" {
			t.Fatalf("got CI_COMMIT_TAG %q, want v1.0", got.Variables.Get("CI_COMMIT_TAG"))
		}
	})
	srv.AssertNoViolations(t)
}

func TestTwoPhaseCommit(t *testing.T) {
	twoPhase := allFeatures()
	twoPhase.TwoPhaseJobCommit = true

	t.Run("accepted with state running", func(t *testing.T) {
		srv := gitlabtest.New(t)
		proj := srv.CreateProject("group/demo", map[string]string{"a.txt": "a"})
		r := srv.CreateRunner(gitlabtest.RunnerOptions{})
		job := srv.EnqueueJob(proj, gitlabtest.JobSpec{})
		got := takeJob(t, srv, r.Token, twoPhase)
		if s := srv.Job(job.ID); s.State != gitlab.StatusPending {
			t.Fatalf("after 201: got state %s, want pending", s.State)
		}
		steps := []struct {
			state      string
			wantStatus int
			wantJob    string
		}{
			{gitlab.StatePending, 200, gitlab.StatusPending},
			{gitlab.StateSuccess, 400, gitlab.StatusPending},
			{gitlab.StateRunning, 200, gitlab.StatusRunning},
		}
		for _, st := range steps {
			res := call(t, srv, http.MethodPut, "/api/v4/jobs/"+strconv.FormatInt(got.ID, 10), jobHeader(got.Token),
				gitlab.UpdateJobRequest{Token: got.Token, State: st.state})
			if res.status != st.wantStatus || srv.Job(job.ID).State != st.wantJob {
				t.Fatalf("PUT %s: got %d and job %s, want %d and %s", st.state, res.status, srv.Job(job.ID).State, st.wantStatus, st.wantJob)
			}
		}
		if v := srv.Violations(); len(v) != 1 || !strings.Contains(v[0], "two-phase") {
			t.Fatalf("got violations %q, want the one for success before running", v)
		}
	})

	t.Run("re-queued without acknowledgement", func(t *testing.T) {
		srv := gitlabtest.New(t, gitlabtest.WithAckWindow(50*time.Millisecond))
		proj := srv.CreateProject("group/demo", map[string]string{"a.txt": "a"})
		r := srv.CreateRunner(gitlabtest.RunnerOptions{})
		job := srv.EnqueueJob(proj, gitlabtest.JobSpec{})
		first := takeJob(t, srv, r.Token, twoPhase)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		requeued, err := srv.WaitJobState(ctx, job.ID, gitlab.StatusPending)
		if err != nil {
			t.Fatal(err)
		}
		if requeued.Requeued != 1 || requeued.Token == first.Token {
			t.Fatalf("got requeued %d with token changed %v, want 1 and a new token", requeued.Requeued, requeued.Token != first.Token)
		}
		res := call(t, srv, http.MethodPut, "/api/v4/jobs/"+strconv.FormatInt(job.ID, 10), jobHeader(first.Token),
			gitlab.UpdateJobRequest{Token: first.Token, State: gitlab.StateRunning})
		if res.status != http.StatusForbidden {
			t.Fatalf("late accept with the old token: got %d, want 403", res.status)
		}
		second := takeJob(t, srv, r.Token, allFeatures())
		if second.ID != job.ID || srv.Job(job.ID).State != gitlab.StatusRunning {
			t.Fatalf("got job %d in state %s, want %d running", second.ID, srv.Job(job.ID).State, job.ID)
		}
	})
}

func TestLongPoll(t *testing.T) {
	srv := gitlabtest.New(t, gitlabtest.WithLongPoll(time.Minute))
	proj := srv.CreateProject("group/demo", map[string]string{"a.txt": "a"})
	r := srv.CreateRunner(gitlabtest.RunnerOptions{})
	first := requestJob(t, srv, r.Token, "", allFeatures())
	version := first.header.Get("X-GitLab-Last-Update")
	if first.status != http.StatusNoContent || version == "" {
		t.Fatalf("first request: got %d %q, want 204 with a version (never held)", first.status, version)
	}

	done := make(chan response, 1)
	go func() { done <- requestJob(t, srv, r.Token, version, allFeatures()) }()
	for srv.HeldJobRequests() == 0 {
		select {
		case res := <-done:
			t.Fatalf("got an answer %d before a job was enqueued, want the request held", res.status)
		case <-time.After(5 * time.Millisecond):
		}
	}
	job := srv.EnqueueJob(proj, gitlabtest.JobSpec{})
	res := <-done
	if res.status != http.StatusNoContent || res.header.Get("X-GitLab-Last-Update") != "" || res.header.Get("Gitlab-Ci-Builds-Polling") != "yes" {
		t.Fatalf("held request: got %d last update %q, want 204 without X-GitLab-Last-Update", res.status, res.header.Get("X-GitLab-Last-Update"))
	}
	if got := takeJob(t, srv, r.Token, allFeatures()); got.ID != job.ID {
		t.Fatalf("got job %d, want %d", got.ID, job.ID)
	}
}

func TestLongPollTimeout(t *testing.T) {
	srv := gitlabtest.New(t, gitlabtest.WithLongPoll(20*time.Millisecond))
	r := srv.CreateRunner(gitlabtest.RunnerOptions{})
	version := requestJob(t, srv, r.Token, "", allFeatures()).header.Get("X-GitLab-Last-Update")
	res := requestJob(t, srv, r.Token, version, allFeatures())
	if res.status != http.StatusNoContent || res.header.Get("X-GitLab-Last-Update") != "" {
		t.Fatalf("got %d %q, want 204 without X-GitLab-Last-Update after the poll duration", res.status, res.header.Get("X-GitLab-Last-Update"))
	}
}

func TestJobHook(t *testing.T) {
	srv := gitlabtest.New(t)
	proj := srv.CreateProject("group/demo", map[string]string{"a.txt": "a"})
	type event struct {
		token, kind, status string
		id                  int64
	}
	events := make(chan event, 16)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			ObjectKind  string `json:"object_kind"`
			BuildID     int64  `json:"build_id"`
			BuildStatus string `json:"build_status"`
		}
		json.NewDecoder(r.Body).Decode(&body)
		events <- event{r.Header.Get("X-Gitlab-Token"), body.ObjectKind, body.BuildStatus, body.BuildID}
	}))
	defer receiver.Close()
	srv.AddJobHook(receiver.URL, "hook-secret")

	r := srv.CreateRunner(gitlabtest.RunnerOptions{})
	job := srv.EnqueueJob(proj, gitlabtest.JobSpec{})
	got := takeJob(t, srv, r.Token, allFeatures())
	put(t, srv, got, final(got.Token, "success", nil))
	for _, want := range []string{"pending", "running", "success"} {
		ev := <-events
		if ev != (event{"hook-secret", "build", want, job.ID}) {
			t.Fatalf("got event %+v, want %s for job %d with the secret", ev, want, job.ID)
		}
	}
}

func TestUserAPI(t *testing.T) {
	srv := gitlabtest.New(t, gitlabtest.WithTLS())
	proj := srv.CreateProject("group/demo", nil)
	srv.CreateProject("other/hidden", nil)
	u := srv.AddUser("alice", proj)
	if !strings.HasPrefix(srv.URL(), "https://") || srv.CertPool() == nil {
		t.Fatalf("got URL %s, want https with a certificate", srv.URL())
	}
	res := call(t, srv, http.MethodGet, "/api/v4/user", map[string]string{"Authorization": "Bearer " + u.OAuthToken}, nil)
	var me struct {
		ID       int64  `json:"id"`
		Username string `json:"username"`
	}
	res.decode(t, &me)
	if res.status != 200 || me.Username != "alice" || me.ID != u.ID {
		t.Fatalf("got %d %+v, want alice", res.status, me)
	}
	res = call(t, srv, http.MethodGet, "/api/v4/projects?membership=true", map[string]string{"PRIVATE-TOKEN": u.PAT}, nil)
	var projects []struct {
		ID   int64  `json:"id"`
		Path string `json:"path_with_namespace"`
	}
	res.decode(t, &projects)
	if len(projects) != 1 || projects[0].ID != proj.ID || projects[0].Path != "group/demo" {
		t.Fatalf("got %+v, want only group/demo", projects)
	}
	if res := call(t, srv, http.MethodGet, "/api/v4/user", nil, nil); res.status != http.StatusUnauthorized {
		t.Fatalf("no token: got %d, want 401", res.status)
	}
}
