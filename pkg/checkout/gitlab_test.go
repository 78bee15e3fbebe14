package checkout_test

import (
	"context"
	"path/filepath"
	"testing"

	"gitlab-serverless-runner/pkg/checkout"
	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
)

// TestGetJobsFromTheFakeGitLab runs the checkout of two consecutive jobs
// exactly as GitLab hands them out: git_info and variables from
// POST /jobs/request of the project's fake GitLab, git through its smart
// HTTP endpoint that only a running job's token may read.
func TestGetJobsFromTheFakeGitLab(t *testing.T) {
	ctx := context.Background()
	srv := gitlabtest.New(t)
	proj := srv.CreateProject("group/demo", map[string]string{"README.md": "hi\n"})
	runner := srv.CreateRunner(gitlabtest.RunnerOptions{})
	client, err := gitlab.New(srv.URL(), gitlab.Options{})
	if err != nil {
		t.Fatal(err)
	}
	request := func(spec gitlabtest.JobSpec) *gitlab.Job {
		t.Helper()
		queued := srv.EnqueueJob(proj, spec)
		res, err := client.RequestJob(ctx, gitlab.JobRequest{Token: runner.Token,
			Info: gitlab.NewInfo("test", gitlab.Features{Variables: true, Refspecs: true})})
		if err != nil || res.Job == nil {
			t.Fatalf("request job: got %+v, %v", res, err)
		}
		if res.Job.ID != queued.ID {
			t.Fatalf("request job: got job %d, want %d", res.Job.ID, queued.ID)
		}
		return res.Job
	}
	dir := filepath.Join(t.TempDir(), "group", "demo")

	job1 := request(gitlabtest.JobSpec{Script: []string{"true"}})
	opts, err := checkout.FromJob(job1, dir)
	if err != nil {
		t.Fatal(err)
	}
	res, err := checkout.Get(ctx, opts)
	if err != nil {
		t.Fatalf("first job: %v", err)
	}
	sameFiles(t, files(t, dir), map[string]string{"README.md": "hi\n"})
	assertDetachedAt(t, dir, job1.GitInfo.Sha)
	assertNoToken(t, dir, job1.Token)
	if res.Reused {
		t.Errorf("first job: Reused got true, want false")
	}

	second := proj.Commit("", map[string]string{"src/main.go": "package main\n"}, "Add main")
	job2 := request(gitlabtest.JobSpec{Script: []string{"true"},
		Variables: []gitlab.Variable{{Key: "GIT_STRATEGY", Value: "fetch"}}})
	if job2.GitInfo.Sha != second {
		t.Fatalf("second job sha: got %s, want %s", job2.GitInfo.Sha, second)
	}
	if opts, err = checkout.FromJob(job2, dir); err != nil {
		t.Fatal(err)
	}
	if res, err = checkout.Get(ctx, opts); err != nil {
		t.Fatalf("second job: %v", err)
	}
	if !res.Reused {
		t.Errorf("second job: Reused got false, want true")
	}
	sameFiles(t, files(t, dir), map[string]string{"README.md": "hi\n", "src/main.go": "package main\n"})
	assertDetachedAt(t, dir, second)
	assertNoToken(t, dir, job2.Token)
	srv.AssertNoViolations(t)
}
