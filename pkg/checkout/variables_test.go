package checkout_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gitlab-serverless-runner/pkg/checkout"
	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
)

// fakeJobs hands out jobs of the fake GitLab as a runner would get them.
type fakeJobs struct {
	t      *testing.T
	srv    *gitlabtest.Server
	runner gitlabtest.Runner
	client *gitlab.Client
}

func newFakeJobs(t *testing.T) *fakeJobs {
	t.Helper()
	srv := gitlabtest.New(t)
	c, err := gitlab.New(srv.URL(), gitlab.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return &fakeJobs{t: t, srv: srv, runner: srv.CreateRunner(gitlabtest.RunnerOptions{}), client: c}
}

func (f *fakeJobs) take(p *gitlabtest.Project, vars ...gitlab.Variable) *gitlab.Job {
	f.t.Helper()
	queued := f.srv.EnqueueJob(p, gitlabtest.JobSpec{Script: []string{"true"}, Variables: vars})
	res, err := f.client.RequestJob(context.Background(), gitlab.JobRequest{Token: f.runner.Token,
		Info: gitlab.NewInfo("test", gitlab.Features{Variables: true, Refspecs: true})})
	if err != nil || res.Job == nil || res.Job.ID != queued.ID {
		f.t.Fatalf("request job: got %+v, %v", res, err)
	}
	return res.Job
}

// get checks job out into a new directory and returns it with the trace.
func (f *fakeJobs) get(job *gitlab.Job) (dir, trace string, err error) {
	f.t.Helper()
	dir = filepath.Join(f.t.TempDir(), "project")
	opts, err := checkout.FromJob(job, dir)
	if err != nil {
		f.t.Fatal(err)
	}
	var b bytes.Buffer
	opts.Trace = &b
	_, err = checkout.Get(context.Background(), opts)
	return dir, b.String(), err
}

func v(k, val string) gitlab.Variable { return gitlab.Variable{Key: k, Value: val} }

func TestUntrackedIncludesIgnoredFiles(t *testing.T) {
	f := newFakeJobs(t)
	p := f.srv.CreateProject("group/app", map[string]string{
		".gitignore": "build/\n*.log\n", "src/main.go": "package main\n",
	})
	dir, _, err := f.get(f.take(p))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "build/app.bin", "binary")
	writeFile(t, dir, "build/sub/more.o", "object")
	writeFile(t, dir, "debug.log", "log")
	writeFile(t, dir, "src/generated.go", "package main\n")
	writeFile(t, dir, "src/main.go", "package main // changed\n") // tracked, even when changed
	writeFile(t, dir, "vendored/repo/.git/HEAD", "ref: refs/heads/main\n")
	writeFile(t, dir, "vendored/repo/file", "x")
	got := checkout.Untracked(dir)
	want := []string{"build/app.bin", "build/sub/more.o", "debug.log", "src/generated.go", "vendored/repo/"}
	if !slices.Equal(got, want) {
		t.Errorf("Untracked = %q, want %q (ignored files included, as git ls-files --others)", got, want)
	}
	if got := checkout.Untracked(t.TempDir()); got != nil {
		t.Errorf("Untracked of a directory without a repository = %q, want nil", got)
	}
}

func TestLFSObjectsAreDownloaded(t *testing.T) {
	f := newFakeJobs(t)
	logo := strings.Repeat("\x89PNG logo bytes ", 100)
	p := f.srv.CreateProject("group/media", map[string]string{"README.md": "media\n"})
	p.CommitLFS(map[string]string{"assets/logo.png": logo, "assets/copy.png": logo, "data/model.bin": "model weights"}, "Add LFS files")

	t.Run("checked out with their content", func(t *testing.T) {
		job := f.take(p)
		dir, trace, err := f.get(job)
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		got := files(t, dir)
		if got["assets/logo.png"] != logo || got["assets/copy.png"] != logo || got["data/model.bin"] != "model weights" {
			t.Errorf("LFS files: logo %d bytes, copy %d bytes, model %q; want their content", len(got["assets/logo.png"]), len(got["assets/copy.png"]), got["data/model.bin"])
		}
		if got["README.md"] != "media\n" {
			t.Errorf("README.md = %q", got["README.md"])
		}
		if !strings.Contains(trace, "Downloading LFS objects: 100% (2/2), 1.6 KiB, done.") {
			t.Errorf("trace lacks the LFS line:\n%s", trace)
		}
		assertNoToken(t, dir, job.Token)
		batches := f.srv.RequestsTo(gitlabtest.EndpointLFSBatch)
		if len(batches) != 1 || batches[0].Status != http.StatusOK || batches[0].Header.Get("Authorization") != "[REDACTED]" {
			t.Errorf("batch requests = %+v, want one, authenticated, answered 200", batches)
		}
		if n := len(f.srv.RequestsTo(gitlabtest.EndpointLFSObject)); n != 2 {
			t.Errorf("object downloads = %d, want 2 (one per distinct object)", n)
		}
	})
	t.Run("GIT_LFS_SKIP_SMUDGE=1 leaves the pointers", func(t *testing.T) {
		before := len(f.srv.RequestsTo(gitlabtest.EndpointLFSBatch))
		dir, trace, err := f.get(f.take(p, v("GIT_LFS_SKIP_SMUDGE", "1")))
		if err != nil {
			t.Fatal(err)
		}
		if got := files(t, dir)["data/model.bin"]; got != gitlabtest.LFSPointer("model weights") {
			t.Errorf("data/model.bin = %q, want the pointer", got)
		}
		if strings.Contains(trace, "Downloading LFS") || len(f.srv.RequestsTo(gitlabtest.EndpointLFSBatch)) != before {
			t.Errorf("LFS was contacted although GIT_LFS_SKIP_SMUDGE=1; trace:\n%s", trace)
		}
	})
	t.Run("a refused batch fails get_sources without the token", func(t *testing.T) {
		job := f.take(p)
		f.srv.Inject(gitlabtest.EndpointLFSBatch, gitlabtest.Fault{Status: http.StatusForbidden})
		_, _, err := f.get(job)
		if err == nil || !strings.Contains(err.Error(), "download LFS objects of the repository") || !strings.Contains(err.Error(), "403") {
			t.Errorf("error = %v, want the LFS batch refusal", err)
		}
		if err != nil && strings.Contains(err.Error(), job.Token) {
			t.Errorf("error has the job token: %v", err)
		}
	})
	t.Run("in submodules too", func(t *testing.T) {
		app := f.srv.CreateProject("group/game", map[string]string{"main.txt": "game\n"})
		app.AddSubmodule("media", p)
		dir, _, err := f.get(f.take(app, v("GIT_SUBMODULE_STRATEGY", "normal")))
		if err != nil {
			t.Fatal(err)
		}
		if got := files(t, dir)["media/data/model.bin"]; got != "model weights" {
			t.Errorf("media/data/model.bin = %q, want the LFS content", got)
		}
	})
	f.srv.AssertNoViolations(t)
}

func TestSubmoduleForceHTTPS(t *testing.T) {
	f := newFakeJobs(t)
	lib := f.srv.CreateProject("group/lib", map[string]string{"lib.txt": "library\n"})
	for _, url := range []string{"git@127.0.0.1:group/lib.git", "ssh://git@127.0.0.1/group/lib.git"} {
		t.Run(url, func(t *testing.T) {
			app := f.srv.CreateProject("group/app-"+itoa(len(f.srv.Jobs())), map[string]string{"main.txt": "app\n"})
			app.AddSubmoduleURL("vendor/lib", lib, url)

			_, _, err := f.get(f.take(app, v("GIT_SUBMODULE_STRATEGY", "normal")))
			if err == nil || !strings.Contains(err.Error(), "set GIT_SUBMODULE_FORCE_HTTPS=true") {
				t.Errorf("without GIT_SUBMODULE_FORCE_HTTPS: error %v, want one naming the variable", err)
			}

			job := f.take(app, v("GIT_SUBMODULE_STRATEGY", "normal"), v("GIT_SUBMODULE_FORCE_HTTPS", "true"))
			dir, trace, err := f.get(job)
			if err != nil {
				t.Fatalf("with GIT_SUBMODULE_FORCE_HTTPS: %v\n%s", err, trace)
			}
			if got := files(t, dir)["vendor/lib/lib.txt"]; got != "library\n" {
				t.Errorf("vendor/lib/lib.txt = %q", got)
			}
			assertNoToken(t, dir, job.Token)
		})
	}
	t.Run("another host's SSH URL is not rewritten", func(t *testing.T) {
		app := f.srv.CreateProject("group/other", map[string]string{"main.txt": "app\n"})
		app.AddSubmoduleURL("vendor/lib", lib, "git@github.com:group/lib.git")
		_, _, err := f.get(f.take(app, v("GIT_SUBMODULE_STRATEGY", "normal"), v("GIT_SUBMODULE_FORCE_HTTPS", "true")))
		if err == nil || !strings.Contains(err.Error(), "uses SSH to a host other than the GitLab server's") {
			t.Errorf("error = %v", err)
		}
	})
}

func TestGitExtraFlags(t *testing.T) {
	f := newFakeJobs(t)
	lib := f.srv.CreateProject("group/lib", map[string]string{"lib.txt": "v1\n"})
	app := f.srv.CreateProject("group/app", map[string]string{"main.txt": "app\n"})
	app.AddSubmodule("lib", lib)
	app.Tag("v0.1", "main")
	lib.Commit("", map[string]string{"lib.txt": "v2\n"}, "Newer library")

	t.Run("defaults: recorded submodule commit, no tags", func(t *testing.T) {
		dir, trace, err := f.get(f.take(app, v("GIT_SUBMODULE_STRATEGY", "normal")))
		if err != nil {
			t.Fatal(err)
		}
		if got := files(t, dir)["lib/lib.txt"]; got != "v1\n" {
			t.Errorf("lib/lib.txt = %q, want the recorded v1", got)
		}
		if _, err := os.Stat(filepath.Join(dir, ".git/refs/tags/v0.1")); err == nil {
			t.Errorf("tag fetched without --tags")
		}
		if strings.Contains(trace, "WARNING") {
			t.Errorf("warnings with the default flags:\n%s", trace)
		}
	})
	t.Run("honoured and ignored flags", func(t *testing.T) {
		dir, trace, err := f.get(f.take(app,
			v("GIT_SUBMODULE_STRATEGY", "normal"),
			v("GIT_FETCH_EXTRA_FLAGS", "--prune --tags --jobs=4"),
			v("GIT_SUBMODULE_UPDATE_FLAGS", "--remote --jobs 2 --init")))
		if err != nil {
			t.Fatalf("Get: %v\n%s", err, trace)
		}
		if got := files(t, dir)["lib/lib.txt"]; got != "v2\n" {
			t.Errorf("lib/lib.txt = %q, want v2, the tip --remote checks out", got)
		}
		if _, err := os.Stat(filepath.Join(dir, ".git/refs/tags/v0.1")); err != nil {
			t.Errorf("tag v0.1 not fetched with --tags: %v", err)
		}
		for _, want := range []string{
			"WARNING: GIT_FETCH_EXTRA_FLAGS: --jobs=4 is ignored: it has no meaning for this runner's git (go-git)\n",
			"WARNING: GIT_SUBMODULE_UPDATE_FLAGS: --jobs 2 is ignored",
		} {
			if !strings.Contains(trace, want) {
				t.Errorf("trace lacks %q:\n%s", want, trace)
			}
		}
		if strings.Contains(trace, "--tags is ignored") || strings.Contains(trace, "--init is ignored") || strings.Contains(trace, "--remote is ignored") {
			t.Errorf("an honoured flag is named as ignored:\n%s", trace)
		}
	})
	t.Run("a malformed depth is refused", func(t *testing.T) {
		_, _, err := f.get(f.take(app, v("GIT_FETCH_EXTRA_FLAGS", "--depth=deep")))
		if err == nil || !strings.Contains(err.Error(), "GIT_FETCH_EXTRA_FLAGS") {
			t.Errorf("error = %v, want one naming GIT_FETCH_EXTRA_FLAGS", err)
		}
	})
}

// TestLFSCredentialsStayOnTheRepositorysHost: the job token goes with the
// batch request and with downloads from the repository's own host, never
// to another host a download action names (object storage), which gets
// only the action's own headers.
func TestLFSCredentialsStayOnTheRepositorysHost(t *testing.T) {
	const here, elsewhere = "object on the repository's host", "object in object storage"
	srv := newGitServer(t, token)
	storage := newGitServer(t, "") // another host: public, records what it receives
	storage.other = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, elsewhere) })
	srv.other = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/info/lfs/objects/batch"):
			w.Header().Set("Content-Type", "application/vnd.git-lfs+json")
			fmt.Fprintf(w, `{"transfer":"basic","objects":[
				{"oid":%q,"size":%d,"actions":{"download":{"href":%q}}},
				{"oid":%q,"size":%d,"actions":{"download":{"href":%q,"header":{"X-Signed":"yes"}}}}]}`,
				oidOf(here), len(here), srv.URL+"/objects/here",
				oidOf(elsewhere), len(elsewhere), storage.URL+"/bucket/elsewhere?X-Amz-Signature=s")
		case strings.HasSuffix(r.URL.Path, "/objects/here"):
			io.WriteString(w, here)
		default:
			http.NotFound(w, r)
		}
	})
	app := srv.newProject(t, "group/app")
	sha := app.commit("lfs", map[string]string{
		".gitattributes": "*.bin filter=lfs diff=lfs merge=lfs -text\n",
		"a.bin":          gitlabtest.LFSPointer(here),
		"b.bin":          gitlabtest.LFSPointer(elsewhere),
	})
	app.push("HEAD:refs/heads/main")
	app.setRef("refs/pipelines/4", sha)
	dir := filepath.Join(t.TempDir(), "app")
	if _, err := checkout.Get(context.Background(), checkout.Options{Git: branchJob(app.url(token), "main", sha, 4, 0), Dir: dir}); err != nil {
		t.Fatalf("Get: %v", err)
	}
	if got := files(t, dir); got["a.bin"] != here || got["b.bin"] != elsewhere {
		t.Errorf("a.bin = %q, b.bin = %q", got["a.bin"], got["b.bin"])
	}
	reqs := storage.requests()
	if len(reqs) != 1 || reqs[0] != "" {
		t.Errorf("object storage received Authorization headers %q, want one request without", reqs)
	}
}

func oidOf(content string) string {
	sum := sha256.Sum256([]byte(content))
	return hex.EncodeToString(sum[:])
}
