package executor_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gitlab-serverless-runner/pkg/dispatch"
	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
)

// imageEvent takes a job with image ref and makes it the event the
// preparer sends to the image's function.
func imageEvent(e *env, spec gitlabtest.JobSpec, entrypoint []string) dispatch.Event {
	if spec.Image == nil {
		spec.Image = &gitlab.Image{Name: "registry.example.com/tools/builder:2"}
	}
	ev := e.take(project(e, nil), spec)
	ev.Image = &dispatch.Image{
		Ref: spec.Image.Name, Digest: "sha256:" + strings.Repeat("ab", 32), Platform: "linux/amd64",
		Arch: "x86_64", MemoryMB: 3008, StorageMB: 2048, Function: "gsr-img-0123456789abcdef0123",
		Entrypoint: entrypoint, Prepared: true,
		Steps: []dispatch.Step{{Name: "resolve", Detail: "sha256:abab for linux/amd64", DurationMS: 420},
			{Name: "derive", DurationMS: 35}, {Name: "push", Detail: "layers: 2 mounted, 1 uploaded", DurationMS: 1250},
			{Name: "function", DurationMS: 8200}},
	}
	return ev
}

// A job on its image's function: the preparation is the trace's first
// section, with each step's time; the job gets CI_JOB_IMAGE, its tools
// install under its home with their bin folders on PATH, and services get
// one line.
func TestAJobOnItsImageFunction(t *testing.T) {
	e := newEnv(t)
	ev := imageEvent(e, gitlabtest.JobSpec{
		Script: []string{
			`echo "image=$CI_JOB_IMAGE"`, `echo "gopath=$GOPATH"`, `echo "path=$PATH"`,
			`mkdir -p "$GOPATH/bin" && printf '#!/bin/sh\necho go-installed tool ran\n' > "$GOPATH/bin/gotool" && chmod +x "$GOPATH/bin/gotool"`, `gotool`,
		},
		Services: []gitlab.Image{{Name: "postgres:16"}, {Name: "redis:7"}},
	}, nil)
	res, got := e.run(ev)
	if got.State != "success" || res.State != "success" {
		t.Fatalf("job = %s; trace:\n%s", got.State, got.Trace)
	}
	trace := string(got.Trace)
	wantContains(t, got.Trace,
		"section_start:", "prepare_image", "Preparing the image registry.example.com/tools/builder:2 for AWS Lambda",
		"Function gsr-img-0123456789abcdef0123: x86_64, 3008 MB memory, 2048 MB of /tmp",
		"push         1.25s  layers: 2 mounted, 1 uploaded", "Prepared in 9.90s",
		"Using the image registry.example.com/tools/builder:2 on AWS Lambda (function gsr-img-0123456789abcdef0123)",
		"WARNING: services: (postgres:16, redis:7) cannot run on AWS Lambda: the job runs without them.",
		"image=registry.example.com/tools/builder:2",
		"gopath="+filepath.Join(e.homeDir(), "go"), "go-installed tool ran")
	if i, k := strings.Index(trace, "prepare_image"), strings.Index(trace, "prepare_executor"); i < 0 || k < i {
		t.Errorf("prepare_image is not before prepare_executor:\n%s", trace)
	}
	if !strings.Contains(trace, "path="+filepath.Join(e.homeDir(), ".local", "bin")+":") {
		t.Errorf("the user's bin folders are not first on PATH:\n%s", trace)
	}
	wantNotContains(t, got.Trace, "does not run images")
}

// The image's entrypoint runs the scripts unless image:entrypoint replaces
// it; [""] means none.
func TestTheImageEntrypoint(t *testing.T) {
	wrapper := filepath.Join(t.TempDir(), "docker-entrypoint.sh")
	if err := os.WriteFile(wrapper, []byte("#!/bin/sh\necho \"the image's entrypoint ran\"\nexec \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "other.sh")
	if err := os.WriteFile(other, []byte("#!/bin/sh\necho \"the job's entrypoint ran\"\nexec \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name      string
		override  []string
		want, not string
	}{
		{"the image's", nil, "the image's entrypoint ran", "the job's entrypoint ran"},
		{"image:entrypoint", []string{other}, "the job's entrypoint ran", "the image's entrypoint ran"},
		{`image:entrypoint [""]`, []string{""}, "", "entrypoint ran"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			ev := imageEvent(e, gitlabtest.JobSpec{Image: &gitlab.Image{Name: "app:1", Entrypoint: tt.override}, Script: []string{"echo script ran"}}, []string{wrapper})
			_, got := e.run(ev)
			if got.State != "success" {
				t.Fatalf("job = %s; trace:\n%s", got.State, got.Trace)
			}
			wantContains(t, got.Trace, "script ran")
			if tt.want != "" {
				wantContains(t, got.Trace, tt.want)
			}
			wantNotContains(t, got.Trace, tt.not)
		})
	}
}

// A job that fails because it needs root gets a line saying why and what
// to do instead.
func TestAJobThatNeedsRootIsToldWhy(t *testing.T) {
	e := newEnv(t)
	ev := imageEvent(e, gitlabtest.JobSpec{Script: []string{
		`echo "E: Could not open lock file /var/lib/dpkg/lock-frontend - open (30: Read-only file system)" >&2`, `exit 100`}}, nil)
	_, got := e.run(ev)
	if got.State != "failed" || got.FailureReason != gitlab.ReasonScriptFailure {
		t.Fatalf("job = %s (%s)", got.State, got.FailureReason)
	}
	wantContains(t, got.Trace, `ERROR: This job needs root or a writable root file system (it printed "Read-only file system"). On AWS Lambda a job runs as a non-root user on a read-only root file system, and only /tmp is writable`,
		"Use an image that already has what the job installs")
	// A failure for another reason says nothing of root.
	e = newEnv(t)
	_, got = e.run(imageEvent(e, gitlabtest.JobSpec{Script: []string{"exit 1"}}, nil))
	wantNotContains(t, got.Trace, "needs root")
}

// LAMBDA_* variables choose an image job's function; on a runtime's
// function they are said to do nothing.
func TestComputeVariablesWithoutAnImage(t *testing.T) {
	e := newEnv(t)
	_, got := e.run(e.take(project(e, nil), gitlabtest.JobSpec{Script: []string{"true"},
		Variables: []gitlab.Variable{{Key: "LAMBDA_MEMORY", Value: "4096"}}}))
	wantContains(t, got.Trace, "WARNING: LAMBDA_MEMORY choose the function of a job with image: only")
}

func (e *env) homeDir() string { return e.cfg.HomeDir }
