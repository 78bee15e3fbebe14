package localimage_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"gitlab-serverless-runner/pkg/executor"
	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/jobimage"
	"gitlab-serverless-runner/pkg/jobimage/registrytest"
	"gitlab-serverless-runner/pkg/localimage"
	"gitlab-serverless-runner/pkg/rootfs"
)

func TestMain(m *testing.M) {
	rootfs.InitMain()
	os.Exit(m.Run())
}

// otherArch is the architecture this machine is not.
func otherArch() string {
	if runtime.GOARCH == "arm64" {
		return "amd64"
	}
	return "arm64"
}

// testRegistry serves the test image as jobs/tool:1 (both architectures)
// and returns it with this machine's variant.
func testRegistry(t testing.TB, opts registrytest.Options) (*registrytest.Registry, v1.Image) {
	t.Helper()
	reg := registrytest.New(t, opts)
	mine := registrytest.BusyboxImage(t, runtime.GOARCH)
	reg.PushIndex(t, "jobs/tool:1", registrytest.Index(t, mine, registrytest.BusyboxImage(t, otherArch())))
	return reg, mine
}

func digestOf(t testing.TB, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// newImages returns an Images with its cache and jobs directory in the
// test's temporary directories; the jobs directory lies under /tmp.
func newImages(t testing.TB) *localimage.Images {
	t.Helper()
	jobs, err := os.MkdirTemp("/tmp", "gsr-localimage-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(jobs) })
	return &localimage.Images{
		Resolver: &jobimage.Resolver{AllowPrivateRegistries: true},
		Cache:    &rootfs.Cache{Dir: filepath.Join(t.TempDir(), "images")},
		JobsDir:  jobs,
	}
}

// prepare prepares image for a job with vars and returns the preparation
// and what it wrote for the trace.
func prepare(t testing.TB, im *localimage.Images, image string, vars gitlab.Variables) (*executor.PreparedImage, string, error) {
	t.Helper()
	var w bytes.Buffer
	p, err := im.PrepareImage(context.Background(), &gitlab.Job{Image: &gitlab.Image{Name: image}, Variables: vars}, &w)
	if p != nil && p.Release != nil {
		t.Cleanup(p.Release)
	}
	return p, w.String(), err
}

// layerGets counts the downloads of img's layers the registry served.
func layerGets(t testing.TB, reg *registrytest.Registry, img v1.Image) int {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range reg.Requests() {
		for _, l := range layers {
			d, err := l.Digest()
			if err != nil {
				t.Fatal(err)
			}
			if r.Method == "GET" && strings.HasSuffix(r.Path, "/blobs/"+d.String()) {
				n++
			}
		}
	}
	return n
}

// processesWith returns the pids of this machine's processes whose
// command line contains arg as one argument.
func processesWith(t testing.TB, arg string) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []string
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		for _, a := range strings.Split(string(b), "\x00") {
			if a == arg {
				pids = append(pids, e.Name())
			}
		}
	}
	return pids
}
