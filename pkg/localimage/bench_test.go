package localimage_test

import (
	"bytes"
	"context"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
	"gitlab-serverless-runner/pkg/jobimage/registrytest"
	"gitlab-serverless-runner/pkg/rootfs"
)

// BenchmarkPrepareImage is what a job waits for before its steps in
// prepare_image: "new" resolves the test image from the in-process
// registry, pulls its layers and unpacks them into an empty cache (the
// first job on an image); "cached" resolves it and finds it unpacked
// (every later job).
func BenchmarkPrepareImage(b *testing.B) {
	reg, _ := testRegistry(b, registrytest.Options{})
	ref := reg.Host + "/jobs/tool:1"
	b.Run("new", func(b *testing.B) {
		im := newImages(b)
		dir := b.TempDir()
		n := 0
		for b.Loop() {
			n++
			im.Cache = &rootfs.Cache{Dir: filepath.Join(dir, strconv.Itoa(n))}
			p, err := im.PrepareImage(context.Background(), &gitlab.Job{Image: &gitlab.Image{Name: ref}}, &bytes.Buffer{})
			if err != nil {
				b.Fatal(err)
			}
			p.Release()
		}
	})
	b.Run("cached", func(b *testing.B) {
		im := newImages(b)
		for b.Loop() {
			p, err := im.PrepareImage(context.Background(), &gitlab.Job{Image: &gitlab.Image{Name: ref}}, &bytes.Buffer{})
			if err != nil {
				b.Fatal(err)
			}
			p.Release()
		}
	})
}

// BenchmarkImageJobExtraStart runs the same one-line job, in process
// against the fake GitLab, on this machine and in the test image (already
// unpacked), alternately, and reports the mean time from the executor's
// start to GitLab's final update for each and the difference: what running
// in an image adds to a job (the resolve, the job's directories, and the
// namespaces, mounts and pivot_root of each step).
func BenchmarkImageJobExtraStart(b *testing.B) {
	reg, _ := testRegistry(b, registrytest.Options{})
	e := newJobEnv(b, newImages(b))
	image := &gitlab.Image{Name: reg.Host + "/jobs/tool:1"}
	e.run(b, gitlabtest.JobSpec{Image: image, Script: []string{"true"}}) // unpacks it
	var host, inImage time.Duration
	n := 0
	for b.Loop() {
		for _, img := range []*gitlab.Image{nil, image} {
			start := time.Now()
			got := e.run(b, gitlabtest.JobSpec{Image: img, Script: []string{"true"}, AfterScript: []string{"true"}})
			if got.State != "success" {
				b.Fatalf("job %s; trace:\n%s", got.State, got.Trace)
			}
			d := got.Updates[len(got.Updates)-1].Time.Sub(start)
			if img == nil {
				host += d
			} else {
				inImage += d
			}
		}
		n++
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(n) }
	b.ReportMetric(ms(host), "host-job-ms")
	b.ReportMetric(ms(inImage), "image-job-ms")
	b.ReportMetric(ms(inImage-host), "extra-ms")
}
