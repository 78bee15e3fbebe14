package jobimage_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/jobimage"
	"gitlab-serverless-runner/pkg/jobimage/registrytest"
)

// BenchmarkPrepareNewImage prepares an image no one prepared before (a new
// base each iteration, pushed outside the timer) against the in-process
// registry, with an executor the size of a real one (this test binary), and
// reports the time of each step. The executor layer is compressed once per
// Deriver, as in a warm preparation function: first-derive-ms is the derive
// step of the first image, which pays for it.
func BenchmarkPrepareNewImage(b *testing.B) {
	reg := registrytest.New(b, registrytest.Options{})
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	executor, err := os.ReadFile(exe)
	if err != nil {
		b.Fatal(err)
	}
	bb := registrytest.BusyboxImage(b, "amd64")
	r := &jobimage.Resolver{AllowPrivateRegistries: true}
	d := &jobimage.Deriver{Target: reg.Repo("gsr/executors")}
	ctx := context.Background()
	// prepare resolves ref and derives its executor image, as the
	// preparation function does, and returns the time Resolve took.
	prepare := func(ref string) (*jobimage.Derived, time.Duration) {
		start := time.Now()
		res, err := r.Resolve(ctx, ref, jobimage.X8664, nil)
		if err != nil {
			b.Fatal(err)
		}
		took := time.Since(start)
		out, err := d.Derive(ctx, res, executor)
		if err != nil {
			b.Fatal(err)
		}
		return out, took
	}
	newImage := func(i int) string {
		ls, _ := bb.Layers()
		cf, _ := bb.ConfigFile()
		img := registrytest.Image(b, "amd64", cf.Config, append(ls,
			registrytest.Layer(b, registrytest.Entry{Name: "etc/build", Body: []byte(fmt.Sprint(i, time.Now().UnixNano()))}))...)
		ref := fmt.Sprintf("jobs/new%d:1", i)
		reg.Push(b, ref, img)
		return reg.Host + "/" + ref
	}
	first, _ := prepare(newImage(-1))
	var resolve, derive, push time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		ref := newImage(i) // the test image plus a layer of its own
		b.StartTimer()
		out, took := prepare(ref)
		resolve += took
		derive += out.DeriveTime
		push += out.PushTime
	}
	n := float64(b.N)
	b.ReportMetric(float64(resolve.Microseconds())/1e3/n, "resolve-ms")
	b.ReportMetric(float64(derive.Microseconds())/1e3/n, "derive-ms")
	b.ReportMetric(float64(push.Microseconds())/1e3/n, "push-ms")
	b.ReportMetric(float64(first.DeriveTime.Microseconds())/1e3, "first-derive-ms")
	b.ReportMetric(float64(len(executor))/(1<<20), "executor-MiB")
}
