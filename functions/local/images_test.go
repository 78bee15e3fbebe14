package main_test

import (
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
	"gitlab-serverless-runner/pkg/jobimage/registrytest"
)

// TestImageJobsRunInTheirImage runs jobs that name an image from a test
// registry through the whole local system: the first pulls and unpacks it
// into the data directory and runs its script inside, as uid 993 on a
// read-only root; the second finds it unpacked and downloads no layer
// (the registry's log shows it, and the trace says so); an image that
// cannot be pulled fails its job with the reason, before any script; a
// job without an image still runs on this machine.
func TestImageJobsRunInTheirImage(t *testing.T) {
	gl, proj, glRunner := newFakeGitLab(t)
	reg := registrytest.New(t, registrytest.Options{})
	other := "arm64"
	if runtime.GOARCH == "arm64" {
		other = "amd64"
	}
	mine := registrytest.BusyboxImage(t, runtime.GOARCH)
	reg.PushIndex(t, "jobs/tool:1", registrytest.Index(t, mine, registrytest.BusyboxImage(t, other)))
	digest, err := mine.Digest()
	if err != nil {
		t.Fatal(err)
	}
	layers, err := mine.Layers()
	if err != nil {
		t.Fatal(err)
	}
	layerGets := func() int {
		n := 0
		for _, r := range reg.Requests() {
			for _, l := range layers {
				if d, _ := l.Digest(); r.Method == "GET" && strings.HasSuffix(r.Path, "/blobs/"+d.String()) {
					n++
				}
			}
		}
		return n
	}

	dataDir := t.TempDir()
	// A PREPARER_FUNCTION left in the environment from a deployment's
	// settings changes nothing: local mode has no preparation function.
	r := startSystem(t, env{"LOCAL_DATA_DIR": dataDir, "PREPARER_FUNCTION": "gsr-preparer"})
	b := newBrowser(t, r.sys.URL())
	b.signIn()
	id := b.registerRunner(gl.URL(), glRunner.Token, "laptop")
	ctx := t.Context()
	image := &gitlab.Image{Name: reg.Host + "/jobs/tool:1"}

	run := func(t *testing.T, spec gitlabtest.JobSpec) gitlabtest.Job {
		t.Helper()
		job := gl.EnqueueJob(proj, spec)
		got, err := gl.WaitJob(ctx, job.ID)
		if err != nil {
			t.Fatalf("WaitJob(%d): %v", job.ID, err)
		}
		return got
	}
	wantTrace := func(t *testing.T, got gitlabtest.Job, want ...string) {
		t.Helper()
		for _, w := range want {
			if !strings.Contains(string(got.Trace), w) {
				t.Errorf("trace of job %d lacks %q:\n%s", got.ID, w, got.Trace)
			}
		}
	}
	script := []string{
		"greet from-the-image",
		`echo "uid=$(id -u)"`,
		"cat README.md",
		`if touch /usr/new-file 2>/tmp/err; then echo wrote-usr; fi; cat /tmp/err`,
		"test ! -e " + dataDir + " && echo data-dir-hidden",
	}

	t.Run("first job pulls the image", func(t *testing.T) {
		got := run(t, gitlabtest.JobSpec{Image: image, Script: script})
		if got.State != "success" {
			t.Fatalf("job %d ended %s (%q), want success; trace:\n%s", got.ID, got.State, got.FailureReason, got.Trace)
		}
		wantTrace(t, got, ":prepare_image\r\x1b[0K", "Resolved to "+digest.String(), "Pulled and unpacked "+digest.String(),
			"hello from greet: from-the-image\n", "uid=993\n", "hello from the repository\n",
			"touch: /usr/new-file: Read-only file system\n", "data-dir-hidden\n", "Job succeeded")
		if strings.Contains(string(got.Trace), "\nwrote-usr\n") {
			t.Errorf("the job wrote to /usr:\n%s", got.Trace)
		}
		if n := layerGets(); n != len(layers) {
			t.Errorf("the first job downloaded %d layers, want %d", n, len(layers))
		}
		b.waitPage(ctx, "/runners/"+id, "#"+strconv.FormatInt(got.ID, 10), `class="badge success"`)
	})

	t.Run("second job reuses the unpacked image", func(t *testing.T) {
		reg.ResetLog()
		got := run(t, gitlabtest.JobSpec{Image: image, Script: []string{"greet again", `echo "uid=$(id -u)"`}})
		if got.State != "success" {
			t.Fatalf("job %d ended %s (%q), want success; trace:\n%s", got.ID, got.State, got.FailureReason, got.Trace)
		}
		wantTrace(t, got, "Using the root file system of "+digest.String()+" unpacked by an earlier job", "hello from greet: again\n", "uid=993\n")
		if n := layerGets(); n != 0 {
			t.Errorf("the second job downloaded %d layers, want none", n)
		}
		roots, err := os.ReadDir(filepath.Join(dataDir, "images"))
		if err != nil || len(roots) != 1 || roots[0].Name() != digest.Algorithm+"-"+digest.Hex {
			t.Errorf("data directory's images hold %v (%v), want the one root of %s", roots, err, digest)
		}
	})

	t.Run("unpullable image", func(t *testing.T) {
		missing := reg.Host + "/jobs/missing:1"
		got := run(t, gitlabtest.JobSpec{Image: &gitlab.Image{Name: missing}, Script: []string{"echo never-runs"}})
		want := gitlab.ReasonImagePullFailure.For(gitlabtest.FailureReasons)
		if got.State != "failed" || got.FailureReason != want {
			t.Fatalf("job %d ended %s (%q), want failed (%s); trace:\n%s", got.ID, got.State, got.FailureReason, want, got.Trace)
		}
		wantTrace(t, got, `ERROR: Job failed: failed to pull image "`+missing+`": not found on `+reg.Host)
		if strings.Contains(string(got.Trace), "never-runs\n") {
			t.Errorf("the script ran:\n%s", got.Trace)
		}
		b.waitPage(ctx, "/runners/"+id, "#"+strconv.FormatInt(got.ID, 10), `class="badge failed"`, string(want))
	})

	t.Run("job without image runs on this machine", func(t *testing.T) {
		got := run(t, gitlabtest.JobSpec{Script: []string{`echo "builds-in=$CI_BUILDS_DIR uid=$(id -u)"`}})
		if got.State != "success" {
			t.Fatalf("job %d ended %s (%q), want success; trace:\n%s", got.ID, got.State, got.FailureReason, got.Trace)
		}
		wantTrace(t, got, "builds-in="+filepath.Join(dataDir, "jobs"), "uid="+strconv.Itoa(os.Getuid())+"\n")
	})
	gl.AssertNoViolations(t)
}
