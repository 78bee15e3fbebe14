package executor_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"gitlab-serverless-runner/pkg/executor"
	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
	"gitlab-serverless-runner/pkg/shell"
)

// fakeImages is an executor.ImageRunner whose behaviour the test sets.
type fakeImages struct {
	prepare func(ctx context.Context, job *gitlab.Job, w io.Writer) (*executor.PreparedImage, error)
	mu      sync.Mutex
	calls   int
}

func (f *fakeImages) PrepareImage(ctx context.Context, job *gitlab.Job, w io.Writer) (*executor.PreparedImage, error) {
	f.mu.Lock()
	f.calls++
	f.mu.Unlock()
	return f.prepare(ctx, job, w)
}

// countingLauncher runs steps on this machine and counts them.
type countingLauncher struct {
	shell.Direct
	mu   sync.Mutex
	runs int
}

func (l *countingLauncher) Run(ctx context.Context, c shell.Command) error {
	l.mu.Lock()
	l.runs++
	l.mu.Unlock()
	return l.Direct.Run(ctx, c)
}

// A job with an image runs its steps through the image's launcher, in the
// directories and base environment the image's preparation gives, after a
// prepare_image section; what the preparation made is released at the
// end, after the artifacts were uploaded.
func TestImageJobRunsThroughItsPreparation(t *testing.T) {
	e := newEnv(t)
	imageDir := t.TempDir()
	launcher := &countingLauncher{}
	var released bool
	var artifactsAtRelease int
	var jobID int64
	e.cfg.Images = &fakeImages{prepare: func(ctx context.Context, job *gitlab.Job, w io.Writer) (*executor.PreparedImage, error) {
		fmt.Fprintf(w, "Resolved %s for the test\n", job.Image.Name)
		return &executor.PreparedImage{
			Launcher:  launcher,
			Env:       []string{"PATH=" + os.Getenv("PATH"), "IMAGE_ONLY=from the image"},
			BuildsDir: filepath.Join(imageDir, "builds"), HomeDir: filepath.Join(imageDir, "home"),
			Release: func() {
				released = true
				artifactsAtRelease = len(e.srv.Job(jobID).Artifacts)
			},
		}, nil
	}}
	t.Setenv("HOST_ONLY", "from the host")
	ev := e.take(project(e, nil), gitlabtest.JobSpec{
		Image:       &gitlab.Image{Name: "registry.example/tools:1"},
		Script:      []string{`echo "dir=$CI_PROJECT_DIR home=$HOME image=$IMAGE_ONLY host=$HOST_ONLY"`, "cat README.md", "echo out > out.txt"},
		AfterScript: []string{"echo after in $PWD"},
		Artifacts:   []gitlab.Artifact{{Name: "out", Paths: []string{"out.txt"}, When: "on_success", ArtifactType: "archive", ArtifactFormat: "zip"}},
	})
	jobID = ev.Job.ID
	_, got := e.run(ev)
	if got.State != "success" {
		t.Fatalf("job %s (%q), want success; trace:\n%s", got.State, got.FailureReason, got.Trace)
	}
	project := filepath.Join(imageDir, "builds", "group", "demo")
	wantContains(t, got.Trace, ":prepare_image\r\x1b[0K", "Preparing the image registry.example/tools:1",
		"Resolved registry.example/tools:1 for the test\n",
		"dir="+project+" home="+filepath.Join(imageDir, "home")+" image=from the image host=\n",
		"hello\n", "after in "+project+"\n")
	wantNotContains(t, got.Trace, "containers cannot run")
	if launcher.runs != 2 {
		t.Errorf("the image's launcher ran %d steps, want 2 (script, after_script)", launcher.runs)
	}
	if !released || artifactsAtRelease != 1 {
		t.Errorf("released %v with %d artifacts uploaded, want released after the upload", released, artifactsAtRelease)
	}
	e.srv.AssertNoViolations(t)
}

// A job without an image runs on this machine as before; the image runner
// is not asked.
func TestJobWithoutImageIgnoresTheImageRunner(t *testing.T) {
	e := newEnv(t)
	f := &fakeImages{prepare: func(context.Context, *gitlab.Job, io.Writer) (*executor.PreparedImage, error) {
		return nil, errors.New("must not be called")
	}}
	e.cfg.Images = f
	_, got := e.run(e.take(project(e, nil), gitlabtest.JobSpec{Script: []string{"echo dir=$CI_BUILDS_DIR"}}))
	if got.State != "success" || f.calls != 0 {
		t.Fatalf("job %s, image runner called %d times; want success without a call; trace:\n%s", got.State, f.calls, got.Trace)
	}
	wantContains(t, got.Trace, "dir="+e.cfg.BuildsDir+"\n")
	wantNotContains(t, got.Trace, "prepare_image")
}

// imageError is an error the job's image causes.
type imageError string

func (e imageError) Error() string        { return string(e) }
func (e imageError) Is(target error) bool { return target == executor.ErrImage }

// An image the job cannot use fails it with image_pull_failure and the
// reason; a failure of the machine is a system failure. Neither checks
// out the sources.
func TestImagePreparationFailures(t *testing.T) {
	for _, tt := range []struct {
		name       string
		err        error
		wantReason gitlab.FailureReason
		wantTrace  string
	}{
		// GitLab does not list image_pull_failure: it arrives as its
		// compatible reason, and only the trace tells the two apart.
		{"unusable image", imageError(`failed to pull image "registry.example/nope:1": not found`),
			gitlab.ReasonImagePullFailure.For(gitlabtest.FailureReasons), `ERROR: Job failed: failed to pull image "registry.example/nope:1": not found` + "\x1b"},
		{"machine failure", errors.New("cannot create the image cache"),
			"runner_system_failure", "ERROR: Job failed (system failure): prepare the image registry.example/nope:1: cannot create the image cache"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.cfg.Images = &fakeImages{prepare: func(context.Context, *gitlab.Job, io.Writer) (*executor.PreparedImage, error) {
				return nil, tt.err
			}}
			res, got := e.run(e.take(project(e, nil), gitlabtest.JobSpec{
				Image: &gitlab.Image{Name: "registry.example/nope:1"}, Script: []string{"echo never-runs"},
			}))
			if got.State != "failed" || got.FailureReason != tt.wantReason || res.FailureReason != tt.wantReason {
				t.Fatalf("job %s (%q), result %q; want failed (%s); trace:\n%s", got.State, got.FailureReason, res.FailureReason, tt.wantReason, got.Trace)
			}
			wantContains(t, got.Trace, ":prepare_image\r\x1b[0K", tt.wantTrace)
			wantNotContains(t, got.Trace, "get_sources", "never-runs\n")
			if errors.Is(tt.err, executor.ErrImage) {
				wantNotContains(t, got.Trace, "system failure")
			}
			if strings.Count(string(got.Trace), "ERROR:") != 1 {
				t.Errorf("trace has %d ERROR lines, want 1:\n%s", strings.Count(string(got.Trace), "ERROR:"), got.Trace)
			}
			e.srv.AssertNoViolations(t)
		})
	}
}
