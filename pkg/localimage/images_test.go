package localimage_test

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"gitlab-serverless-runner/pkg/executor"
	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/jobimage/registrytest"
	"gitlab-serverless-runner/pkg/localimage"
)

// The first job on an image pulls and unpacks it; the next one finds it
// unpacked and downloads no layer. Each gets directories of its own under
// the jobs directory, removed by Release.
func TestPrepareUnpacksOncePerDigest(t *testing.T) {
	im := newImages(t)
	reg, img := testRegistry(t, registrytest.Options{})
	ref := reg.Host + "/jobs/tool:1"
	d := digestOf(t, img)

	first, trace, err := prepare(t, im, ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	arch, _ := localimage.HostArch()
	for _, want := range []string{
		fmt.Sprintf("Resolving %s for linux/%s (Lambda architecture %s)...\n", ref, runtime.GOARCH, arch),
		"Resolved to " + d.String() + " (2 layers, ",
		"Pulled and unpacked " + d.String() + " in ",
		"The job runs as uid 993 on the image's read-only root file system",
	} {
		if !strings.Contains(trace, want) {
			t.Errorf("trace lacks %q:\n%s", want, trace)
		}
	}
	if n := layerGets(t, reg, img); n != 2 {
		t.Errorf("the first job downloaded %d layers, want 2", n)
	}
	if !slices.Contains(first.Env, "IMAGE_FLAVOUR=test") || !slices.Contains(first.Env, "PATH=/usr/local/bin:/usr/bin:/bin") {
		t.Errorf("base environment %q, want the image's own", first.Env)
	}
	for _, dir := range []string{first.BuildsDir, first.HomeDir} {
		if !strings.HasPrefix(dir, im.JobsDir+"/") {
			t.Errorf("job directory %s is not under the jobs directory %s", dir, im.JobsDir)
		}
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			t.Errorf("job directory %s: %v", dir, err)
		}
	}

	reg.ResetLog()
	second, trace, err := prepare(t, im, ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(trace, "Using the root file system of "+d.String()+" unpacked by an earlier job\n") {
		t.Errorf("second trace does not say the image was unpacked earlier:\n%s", trace)
	}
	if n := layerGets(t, reg, img); n != 0 {
		t.Errorf("the second job downloaded %d layers, want none", n)
	}
	if second.BuildsDir == first.BuildsDir {
		t.Errorf("two jobs share the builds directory %s", first.BuildsDir)
	}
	if entries, _ := os.ReadDir(im.Cache.Dir); len(entries) != 1 || filepath.Join(im.Cache.Dir, entries[0].Name()) != im.Cache.Path(d) {
		t.Errorf("cache holds %v, want only %s", entries, im.Cache.Path(d))
	}

	first.Release()
	if _, err := os.Stat(first.BuildsDir); !os.IsNotExist(err) {
		t.Errorf("Release left %s (err %v)", first.BuildsDir, err)
	}
	if _, err := os.Stat(second.BuildsDir); err != nil {
		t.Errorf("releasing one job removed another's directory: %v", err)
	}
}

// Jobs that need the same new image at once wait for one unpack.
func TestConcurrentJobsShareOneUnpack(t *testing.T) {
	im := newImages(t)
	reg, img := testRegistry(t, registrytest.Options{})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, err := prepare(t, im, reg.Host+"/jobs/tool:1", nil)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := layerGets(t, reg, img); n != 2 {
		t.Errorf("4 concurrent jobs downloaded %d layers, want each of the 2 once", n)
	}
}

// An image the job cannot use is refused with a message for the trace
// that names it, matches executor.ErrImage, and leaves nothing behind.
func TestPrepareRefusesUnusableImages(t *testing.T) {
	reg := registrytest.New(t, registrytest.Options{})
	reg.PushIndex(t, "jobs/other-arch:1", registrytest.Index(t, registrytest.BusyboxImage(t, otherArch())))
	noShell := registrytest.Image(t, runtime.GOARCH, v1.Config{Env: []string{"PATH=/bin"}}, registrytest.Layer(t,
		registrytest.Entry{Name: "bin/", Type: '5'},
		registrytest.Entry{Name: "bin/tool", Mode: 0o755, Body: []byte("#!/bin/sh\n")},
	))
	reg.Push(t, "jobs/no-shell:1", noShell)
	gone := registrytest.New(t, registrytest.Options{})
	gone.Server.Close()
	for _, tt := range []struct {
		name, ref string
		vars      gitlab.Variables
		want      []string
	}{
		{"not found", reg.Host + "/jobs/missing:1", nil,
			[]string{`failed to pull image "` + reg.Host + `/jobs/missing:1": not found on ` + reg.Host}},
		{"no variant for this machine", reg.Host + "/jobs/other-arch:1", nil,
			[]string{`failed to pull image "` + reg.Host + `/jobs/other-arch:1": no variant for linux/` + runtime.GOARCH + ", this machine's architecture (the image offers linux/" + otherArch() + ")"}},
		{"no /bin/sh", reg.Host + "/jobs/no-shell:1", nil,
			[]string{`image "` + reg.Host + `/jobs/no-shell:1" has no /bin/sh`}},
		{"registry unreachable", gone.Host + "/jobs/tool:1", nil,
			[]string{`failed to pull image "` + gone.Host + `/jobs/tool:1": could not reach the registry`}},
		{"bad reference", "UPPER/Case::x", nil, []string{`failed to pull image "UPPER/Case::x": not a valid image reference`}},
		{"bad DOCKER_AUTH_CONFIG", reg.Host + "/jobs/tool:1",
			gitlab.Variables{{Key: "DOCKER_AUTH_CONFIG", Value: `{"auths": {"x": {"auth": "s3cret-not-base64!"}}}`}},
			[]string{`failed to pull image "` + reg.Host + `/jobs/tool:1": parse DOCKER_AUTH_CONFIG: auths "x": "auth" is not base64`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			im := newImages(t)
			_, _, err := prepare(t, im, tt.ref, tt.vars)
			t.Logf("refused: %v", err)
			if !errors.Is(err, executor.ErrImage) {
				t.Fatalf("PrepareImage = %v, want an error matching executor.ErrImage", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error %q quotes DOCKER_AUTH_CONFIG", err)
			}
			if entries, _ := os.ReadDir(im.JobsDir); len(entries) != 0 {
				t.Errorf("a refused image left %d job directories", len(entries))
			}
		})
	}
}

// A private registry is read with the job's DOCKER_AUTH_CONFIG, or with
// its CI_REGISTRY credentials when the image is in the job's own
// registry; without them the job is told how to give them.
func TestPrivateRegistryCredentials(t *testing.T) {
	reg, _ := testRegistry(t, registrytest.Options{User: "deploy", Password: "pw-123"})
	ref := reg.Host + "/jobs/tool:1"
	dockerAuth := fmt.Sprintf(`{"auths": {%q: {"auth": %q}}}`, reg.Host, base64.StdEncoding.EncodeToString([]byte("deploy:pw-123")))
	for _, tt := range []struct {
		name    string
		vars    gitlab.Variables
		wantErr string
	}{
		{"anonymous", nil, "refused access (HTTP 401)"},
		{"DOCKER_AUTH_CONFIG", gitlab.Variables{{Key: "DOCKER_AUTH_CONFIG", Value: dockerAuth}}, ""},
		{"the job's own registry", gitlab.Variables{{Key: "CI_REGISTRY", Value: reg.Host},
			{Key: "CI_REGISTRY_USER", Value: "deploy"}, {Key: "CI_REGISTRY_PASSWORD", Value: "pw-123"}}, ""},
		{"DOCKER_AUTH_CONFIG first", gitlab.Variables{{Key: "DOCKER_AUTH_CONFIG", Value: dockerAuth}, {Key: "CI_REGISTRY", Value: reg.Host},
			{Key: "CI_REGISTRY_USER", Value: "deploy"}, {Key: "CI_REGISTRY_PASSWORD", Value: "wrong"}}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := prepare(t, newImages(t), ref, tt.vars)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("PrepareImage = %v, want success", err)
			case tt.wantErr != "" && (!errors.Is(err, executor.ErrImage) || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("PrepareImage = %v, want an image error with %q", err, tt.wantErr)
			case err != nil && strings.Contains(err.Error(), "pw-123"):
				t.Errorf("error %q shows the password", err)
			}
		})
	}
}

// The jobs directory must lie under /tmp, the only place of the image
// where the job's directories can appear at their own paths.
func TestJobsDirOutsideTmpIsRefused(t *testing.T) {
	reg, _ := testRegistry(t, registrytest.Options{})
	im := newImages(t)
	im.JobsDir = "/var/tmp/gsr-local-jobs"
	_, _, err := prepare(t, im, reg.Host+"/jobs/tool:1", nil)
	if err == nil || errors.Is(err, executor.ErrImage) || !strings.Contains(err.Error(), "under /tmp") {
		t.Errorf("PrepareImage with jobs directory %s = %v, want a machine error naming /tmp", im.JobsDir, err)
	}
}
