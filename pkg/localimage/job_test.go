package localimage_test

import (
	"archive/zip"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"gitlab-serverless-runner/pkg/dispatch"
	"gitlab-serverless-runner/pkg/executor"
	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
	"gitlab-serverless-runner/pkg/jobimage/registrytest"
	"gitlab-serverless-runner/pkg/localimage"
)

// jobEnv is a fake GitLab with a runner and a project, and an executor
// that runs image jobs with Images.
type jobEnv struct {
	srv     *gitlabtest.Server
	runner  gitlabtest.Runner
	client  *gitlab.Client
	project *gitlabtest.Project
	cfg     executor.Config
}

func newJobEnv(t testing.TB, im *localimage.Images) *jobEnv {
	t.Helper()
	srv := gitlabtest.New(t, gitlabtest.WithTraceUpdateInterval(1, 1))
	c, err := gitlab.New(srv.URL(), gitlab.Options{})
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	return &jobEnv{
		srv: srv, client: c,
		runner:  srv.CreateRunner(gitlabtest.RunnerOptions{Description: "laptop"}),
		project: srv.CreateProject("group/demo", map[string]string{"README.md": "hello from the repository\n"}),
		cfg: executor.Config{
			Version: "test", BuildsDir: filepath.Join(root, "builds"), HomeDir: filepath.Join(root, "home"),
			ScratchDir: t.TempDir(), TraceInterval: 200 * time.Millisecond, DeadlineMargin: time.Second,
			Images: im, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			// A tool of this machine, which image jobs do not get.
			ReleaseCLI: "/bin/true",
		},
	}
}

// run enqueues a job, takes it as the poller would, runs it and returns
// GitLab's view of it once final.
func (e *jobEnv) run(t testing.TB, spec gitlabtest.JobSpec) gitlabtest.Job {
	t.Helper()
	job := e.srv.EnqueueJob(e.project, spec)
	res, err := e.client.RequestJob(context.Background(), gitlab.JobRequest{
		Token: e.runner.Token, SystemID: "s_localimage01",
		Info: gitlab.NewInfo("test", gitlab.Features{Variables: true, Image: true, Artifacts: true, Masking: true,
			MultiBuildSteps: true, TraceChecksum: true, TraceSize: true, Cancelable: true, ReturnExitCode: true,
			UploadMultipleArtifacts: true, RawVariables: true}),
	})
	if err != nil || res.Job == nil || res.Job.ID != job.ID {
		t.Fatalf("request job: %+v, %v", res, err)
	}
	x, err := executor.New(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	x.Run(ctx, dispatch.Event{GitLabURL: e.srv.URL(), Job: res.Job, Runner: dispatch.Runner{ID: 1, Description: "laptop"}})
	got, err := e.srv.WaitJob(ctx, job.ID)
	if err != nil {
		t.Fatalf("job %d never ended: %v", job.ID, err)
	}
	return got
}

// A job with an image runs as Lambda would run it: its script finds the
// image's tool, runs as uid 993 and cannot write the image; the sources
// checked out on the host side and its file variables are where the job's
// variables say; its /tmp lasts until after_script; nothing of the host
// is visible; its artifacts are uploaded from what it wrote; nothing it
// started survives it.
func TestImageJobRunsAsLambdaWould(t *testing.T) {
	reg, _ := testRegistry(t, registrytest.Options{})
	im := newImages(t)
	e := newJobEnv(t, im)
	hostSecret := filepath.Join(e.cfg.ScratchDir, "host-secret")
	if err := os.WriteFile(hostSecret, []byte("host only\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOST_ONLY_VARIABLE", "from the host")
	// Another job's directory beside this one's.
	sibling := filepath.Join(im.JobsDir, "job-other", "job", "home")
	if err := os.MkdirAll(sibling, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sibling, "token"), []byte("other job's\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tag := fmt.Sprint(100000 + rand.IntN(800000))
	got := e.run(t, gitlabtest.JobSpec{
		Image: &gitlab.Image{Name: reg.Host + "/jobs/tool:1"},
		Variables: []gitlab.Variable{
			{Key: "SETTINGS", Value: "secret-setting=1\n", File: true},
			{Key: "GREETING", Value: "hi from $CI_PROJECT_NAME"},
		},
		Script: []string{
			"greet from-the-image",
			`echo "uid=$(id -u) gid=$(id -g)"`,
			`echo "pwd=$PWD project=$CI_PROJECT_DIR home=$HOME"`,
			"cat README.md",
			`cat "$SETTINGS"`,
			`echo "$GREETING"`,
			`echo "flavour=$IMAGE_FLAVOUR host=$HOST_ONLY_VARIABLE"`,
			`if echo x > /usr/local/bin/greet 2>/tmp/err || mkdir /usr/new 2>>/tmp/err; then echo wrote-the-image; fi; cat /tmp/err`,
			"test ! -e " + hostSecret + " && echo host-file-hidden",
			"test ! -e " + filepath.Join(sibling, "token") + " && echo other-job-hidden",
			"echo kept > /tmp/kept && echo kept > $HOME/kept",
			"mkdir -p dist && echo built > dist/out.txt",
			"sleep " + tag + " &",
			`echo "image=$CI_JOB_IMAGE"`,
			`echo "gopath=$GOPATH"`,
			"if command -v release-cli; then echo has-release-cli; fi",
		},
		AfterScript: []string{`echo "after: $(cat /tmp/kept) $(cat $HOME/kept) status=$CI_JOB_STATUS uid=$(id -u)"`},
		Artifacts: []gitlab.Artifact{{Name: "dist", Paths: []string{"dist/"}, When: "on_success",
			ArtifactType: "archive", ArtifactFormat: "zip"}},
	})
	if got.State != "success" {
		t.Fatalf("job %s (%q), want success; trace:\n%s", got.State, got.FailureReason, got.Trace)
	}
	trace := string(got.Trace)
	project := ""
	for _, line := range strings.Split(trace, "\n") {
		if p, ok := strings.CutPrefix(line, "pwd="); ok {
			project, _, _ = strings.Cut(p, " ")
		}
	}
	if !strings.HasPrefix(project, im.JobsDir+"/") || !strings.HasSuffix(project, "/builds/group/demo") {
		t.Errorf("the job ran in %q, want group/demo in a builds directory under %s", project, im.JobsDir)
	}
	for _, want := range []string{
		"section_start:", ":prepare_image\r\x1b[0K", "Pulled and unpacked ",
		"hello from greet: from-the-image\n",
		"uid=993 gid=990\n",
		"pwd=" + project + " project=" + project + " home=",
		"hello from the repository\n",
		"secret-setting=1\n",
		"hi from demo\n",
		"flavour=test host=\n",
		"Read-only file system",
		"host-file-hidden\n",
		"other-job-hidden\n",
		"after: kept kept status=success uid=993\n",
		"Job succeeded",
	} {
		if !strings.Contains(trace, want) {
			t.Errorf("trace lacks %q:\n%s", want, trace)
		}
	}
	if home := strings.TrimSuffix(project, "/builds/group/demo") + "/home"; !strings.Contains(trace, "gopath="+home+"/go\n") ||
		!strings.Contains(trace, "Tools install under "+home+", the only writable place") {
		t.Errorf("the image rules did not point the tools at the job's home:\n%s", trace)
	}
	if !strings.Contains(trace, "image="+reg.Host+"/jobs/tool:1\n") {
		t.Errorf("CI_JOB_IMAGE is not the job's image:\n%s", trace)
	}
	if strings.Contains(trace, "\nhas-release-cli\n") {
		t.Errorf("a tool of this machine is on the image job's PATH:\n%s", trace)
	}
	if strings.Contains(trace, "\nwrote-the-image\n") {
		t.Errorf("the job wrote into the image:\n%s", trace)
	}
	if len(got.Artifacts) != 1 || !zipHas(t, got.Artifacts[0], "dist/out.txt", "built\n") {
		t.Errorf("artifacts %+v, want dist/out.txt as the job wrote it", got.Artifacts)
	}
	if pids := processesWith(t, tag); len(pids) != 0 {
		t.Errorf("the job's background sleep still runs as %v", pids)
	}
	if entries, _ := os.ReadDir(im.JobsDir); len(entries) != 1 {
		t.Errorf("%s holds %v after the job, want only the other job's directory", im.JobsDir, entries)
	}
	e.srv.AssertNoViolations(t)
}

// An image that cannot be pulled fails the job with image_pull_failure
// (as GitLab knows it) and the reason, before the sources are fetched.
func TestUnpullableImageFailsTheJob(t *testing.T) {
	reg, _ := testRegistry(t, registrytest.Options{})
	e := newJobEnv(t, newImages(t))
	got := e.run(t, gitlabtest.JobSpec{Image: &gitlab.Image{Name: reg.Host + "/jobs/missing:1"}, Script: []string{"echo never-runs"}})
	want := gitlab.ReasonImagePullFailure.For(gitlabtest.FailureReasons)
	if got.State != "failed" || got.FailureReason != want {
		t.Fatalf("job %s (%q), want failed (%s); trace:\n%s", got.State, got.FailureReason, want, got.Trace)
	}
	line := `ERROR: Job failed: failed to pull image "` + reg.Host + `/jobs/missing:1": not found on ` + reg.Host
	if !strings.Contains(string(got.Trace), line) || strings.Contains(string(got.Trace), "never-runs\n") {
		t.Errorf("trace lacks %q or ran the script:\n%s", line, got.Trace)
	}
	e.srv.AssertNoViolations(t)
}

func zipHas(t *testing.T, a gitlabtest.UploadedArtifact, name, content string) bool {
	t.Helper()
	b, err := a.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range zr.File {
		if f.Name == name {
			rc, err := f.Open()
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			got, _ := io.ReadAll(rc)
			return string(got) == content
		}
	}
	return false
}

// The image's entrypoint runs the steps, as gitlab-runner runs them in an
// image, unless image:entrypoint replaces it ([""]: none).
func TestImageEntrypoint(t *testing.T) {
	reg := registrytest.New(t, registrytest.Options{})
	base := registrytest.BusyboxImage(t, runtime.GOARCH)
	img, err := mutate.AppendLayers(base, registrytest.Layer(t, registrytest.Entry{
		Name: "usr/local/bin/entry.sh", Mode: 0o755,
		Body: []byte("#!/bin/sh\necho \"the image's entrypoint ran as $(id -u)\"\nexport FROM_ENTRYPOINT=yes\nexec \"$@\"\n"),
	}))
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.Config.Entrypoint = []string{"entry.sh"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	reg.Push(t, "jobs/with-entrypoint:1", img)
	e := newJobEnv(t, newImages(t))
	for _, tt := range []struct {
		name       string
		entrypoint []string
		want, not  string
	}{
		{"the image's", nil, "the image's entrypoint ran as 993\n", ""},
		{"none", []string{""}, "", "the image's entrypoint ran"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := e.run(t, gitlabtest.JobSpec{
				Image:  &gitlab.Image{Name: reg.Host + "/jobs/with-entrypoint:1", Entrypoint: tt.entrypoint},
				Script: []string{`echo "from entrypoint: ${FROM_ENTRYPOINT:-no}"`},
			})
			if got.State != "success" {
				t.Fatalf("job %s; trace:\n%s", got.State, got.Trace)
			}
			trace := string(got.Trace)
			wantFrom := "from entrypoint: no\n"
			if tt.want != "" {
				wantFrom = "from entrypoint: yes\n"
			}
			if !strings.Contains(trace, tt.want) || !strings.Contains(trace, wantFrom) || tt.not != "" && strings.Contains(trace, tt.not) {
				t.Errorf("trace has not %q and %q (or has %q):\n%s", tt.want, wantFrom, tt.not, trace)
			}
		})
	}
}

// A job that needs root fails as it would on Lambda, and is told why.
func TestImageJobThatNeedsRootIsToldWhy(t *testing.T) {
	reg, _ := testRegistry(t, registrytest.Options{})
	e := newJobEnv(t, newImages(t))
	got := e.run(t, gitlabtest.JobSpec{Image: &gitlab.Image{Name: reg.Host + "/jobs/tool:1"},
		Script: []string{"mkdir -p /usr/lib/pkg && echo installed"}})
	if got.State != "failed" || got.FailureReason != "script_failure" {
		t.Fatalf("job %s (%q), want failed (script_failure); trace:\n%s", got.State, got.FailureReason, got.Trace)
	}
	if !strings.Contains(string(got.Trace), "This job needs root or a writable root file system") {
		t.Errorf("trace does not say the job needs root:\n%s", got.Trace)
	}
}
