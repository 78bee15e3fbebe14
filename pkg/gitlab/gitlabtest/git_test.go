package gitlabtest_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"

	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
)

// gitCLI runs the git command line in dir with no user configuration.
func gitCLI(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func withCredentials(rawURL, user, pass string) string {
	return strings.Replace(rawURL, "://", "://"+user+":"+pass+"@", 1)
}

// gitJob makes a project with a second commit on main and hands one job on
// it to a runner.
func gitJob(t *testing.T) (*gitlabtest.Server, *gitlabtest.Project, gitlab.Job) {
	t.Helper()
	srv := gitlabtest.New(t)
	proj := srv.CreateProject("group/demo", map[string]string{"README.md": "first\n", "src/main.go": "package main\n"})
	proj.Commit("", map[string]string{"README.md": "second\n"}, "Second")
	r := srv.CreateRunner(gitlabtest.RunnerOptions{})
	srv.EnqueueJob(proj, gitlabtest.JobSpec{})
	return srv, proj, takeJob(t, srv, r.Token, allFeatures())
}

func TestGitCLI(t *testing.T) {
	srv, proj, job := gitJob(t)
	tests := []struct {
		name    string
		url     string
		wantErr bool
	}{
		{"job token", job.GitInfo.RepoURL, false},
		{"no credentials", proj.CloneURL(), true},
		{"wrong token", withCredentials(proj.CloneURL(), "gitlab-ci-token", "glcbt-wrong"), true},
		{"wrong user", withCredentials(proj.CloneURL(), "root", job.Token), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "clone")
			out, err := gitCLI(t, "", "clone", "-q", tt.url, dir)
			if (err != nil) != tt.wantErr {
				t.Fatalf("got error %v (%s), want error %v", err, out, tt.wantErr)
			}
			if tt.wantErr {
				if !strings.Contains(out, "Authentication failed") && !strings.Contains(out, "terminal prompts disabled") {
					t.Fatalf("got %q, want an authentication failure", out)
				}
				return
			}
			if b, _ := os.ReadFile(filepath.Join(dir, "README.md")); string(b) != "second\n" {
				t.Fatalf("got README %q, want second", b)
			}
		})
	}

	t.Run("runner-style fetch of the refspecs", func(t *testing.T) {
		dir := t.TempDir()
		steps := [][]string{
			{"init", "-q"},
			{"remote", "add", "origin", job.GitInfo.RepoURL},
			append(append([]string{"fetch", "-q", "origin"}, job.GitInfo.Refspecs...), fmt.Sprintf("--depth=%d", job.GitInfo.Depth)),
			{"checkout", "-q", "-f", job.GitInfo.Sha},
		}
		for _, args := range steps {
			if out, err := gitCLI(t, dir, args...); err != nil {
				t.Fatalf("git %s: %v: %s", args[0], err, out)
			}
		}
		if head, _ := gitCLI(t, dir, "rev-parse", "HEAD"); head != proj.SHA() {
			t.Fatalf("got HEAD %s, want %s", head, proj.SHA())
		}
		pipeline := fmt.Sprintf("refs/pipelines/%d", job.JobInfo.PipelineID)
		if sha, _ := gitCLI(t, dir, "rev-parse", pipeline); sha != job.GitInfo.Sha {
			t.Fatalf("got %s at %s, want %s", sha, pipeline, job.GitInfo.Sha)
		}
	})

	t.Run("push is refused", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "clone")
		if out, err := gitCLI(t, "", "clone", "-q", job.GitInfo.RepoURL, dir); err != nil {
			t.Fatalf("clone: %v: %s", err, out)
		}
		gitCLI(t, dir, "commit", "-q", "--allow-empty", "-m", "x")
		if out, err := gitCLI(t, dir, "push", "-q", "origin", "HEAD:main"); err == nil {
			t.Fatalf("got push accepted (%s), want refused", out)
		}
	})

	t.Run("token of a finished job", func(t *testing.T) {
		put(t, srv, job, final(job.Token, "success", nil))
		if out, err := gitCLI(t, "", "clone", "-q", job.GitInfo.RepoURL, filepath.Join(t.TempDir(), "c")); err == nil {
			t.Fatalf("got clone accepted (%s), want refused", out)
		}
	})
}

func TestGoGit(t *testing.T) {
	srv, proj, job := gitJob(t)
	auth := &githttp.BasicAuth{Username: "gitlab-ci-token", Password: job.Token}

	t.Run("clone with basic auth", func(t *testing.T) {
		dir := t.TempDir()
		repo, err := gogit.PlainClone(dir, false, &gogit.CloneOptions{URL: proj.CloneURL(), Auth: auth})
		if err != nil {
			t.Fatal(err)
		}
		head, err := repo.Head()
		if err != nil || head.Hash().String() != proj.SHA() {
			t.Fatalf("got HEAD %v (%v), want %s", head, err, proj.SHA())
		}
	})

	t.Run("credentials in the URL", func(t *testing.T) {
		if _, err := gogit.PlainClone(t.TempDir(), false, &gogit.CloneOptions{URL: job.GitInfo.RepoURL}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("fetch the pipeline refspec at depth", func(t *testing.T) {
		repo, err := gogit.PlainInit(t.TempDir(), false)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := repo.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{proj.CloneURL()}}); err != nil {
			t.Fatal(err)
		}
		pipeline := fmt.Sprintf("refs/pipelines/%d", job.JobInfo.PipelineID)
		err = repo.Fetch(&gogit.FetchOptions{
			RemoteName: "origin", Auth: auth, Depth: 1,
			RefSpecs: []config.RefSpec{config.RefSpec("+" + pipeline + ":" + pipeline)},
		})
		if err != nil {
			t.Fatal(err)
		}
		ref, err := repo.Reference(plumbing.ReferenceName(pipeline), true)
		if err != nil || ref.Hash().String() != job.GitInfo.Sha {
			t.Fatalf("got %s = %v (%v), want %s", pipeline, ref, err, job.GitInfo.Sha)
		}
		if _, err := repo.CommitObject(plumbing.NewHash(job.GitInfo.Sha)); err != nil {
			t.Fatalf("got no commit object for the sha: %v", err)
		}
	})

	t.Run("no token", func(t *testing.T) {
		_, err := gogit.PlainClone(t.TempDir(), false, &gogit.CloneOptions{URL: proj.CloneURL()})
		if !errors.Is(err, transport.ErrAuthenticationRequired) {
			t.Fatalf("got %v, want authentication required", err)
		}
	})

	t.Run("wrong token", func(t *testing.T) {
		_, err := gogit.PlainClone(t.TempDir(), false, &gogit.CloneOptions{URL: proj.CloneURL(),
			Auth: &githttp.BasicAuth{Username: "gitlab-ci-token", Password: "glcbt-wrong"}})
		if err == nil {
			t.Fatal("got clone accepted, want refused")
		}
	})
	srv.AssertNoViolations(t)
}

func TestProjectHelpers(t *testing.T) {
	srv := gitlabtest.New(t)
	lib := srv.CreateProject("group/lib", map[string]string{"lib.txt": "lib\n"})
	app := srv.CreateProject("group/sub/app", map[string]string{"app.txt": "app\n"})
	app.AddSubmodule("vendor/lib", lib)
	feature := app.Commit("feature", map[string]string{"feature.txt": "f\n", "app.txt": gitlabtest.RemoveFile}, "Feature")
	app.Tag("v1", "feature")
	r := srv.CreateRunner(gitlabtest.RunnerOptions{})

	t.Run("branch and tag", func(t *testing.T) {
		if got := app.RefSHA("feature"); got != feature {
			t.Fatalf("got feature at %s, want %s", got, feature)
		}
		if got := app.RefSHA("v1"); got != feature {
			t.Fatalf("got v1 at %s, want %s", got, feature)
		}
		if got := app.Branch("release", "v1"); got != feature {
			t.Fatalf("got release at %s, want %s", got, feature)
		}
	})

	t.Run("submodule over HTTP with the job token", func(t *testing.T) {
		srv.EnqueueJob(app, gitlabtest.JobSpec{})
		job := takeJob(t, srv, r.Token, allFeatures())
		dir := filepath.Join(t.TempDir(), "app")
		if out, err := gitCLI(t, "", "clone", "-q", job.GitInfo.RepoURL, dir); err != nil {
			t.Fatalf("clone: %v: %s", err, out)
		}
		if out, err := gitCLI(t, dir, "submodule", "update", "--init"); err != nil {
			t.Fatalf("submodule update: %v: %s", err, out)
		}
		if b, _ := os.ReadFile(filepath.Join(dir, "vendor", "lib", "lib.txt")); string(b) != "lib\n" {
			t.Fatalf("got lib.txt %q, want lib", b)
		}
	})

	t.Run("tag job and feature branch contents", func(t *testing.T) {
		srv.EnqueueJob(app, gitlabtest.JobSpec{Ref: "v1"})
		job := takeJob(t, srv, r.Token, allFeatures())
		if job.GitInfo.RefType != "tag" || job.GitInfo.Sha != feature {
			t.Fatalf("got %s %s, want tag %s", job.GitInfo.RefType, job.GitInfo.Sha, feature)
		}
		dir := filepath.Join(t.TempDir(), "app")
		if out, err := gitCLI(t, "", "clone", "-q", "--branch", "v1", job.GitInfo.RepoURL, dir); err != nil {
			t.Fatalf("clone: %v: %s", err, out)
		}
		if _, err := os.Stat(filepath.Join(dir, "app.txt")); !os.IsNotExist(err) {
			t.Fatalf("got app.txt present (%v), want removed on the feature branch", err)
		}
		if b, _ := os.ReadFile(filepath.Join(dir, "feature.txt")); string(b) != "f\n" {
			t.Fatalf("got feature.txt %q, want f", b)
		}
	})
}
