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
	p := &jobimage.Preparer{
		Resolver: &jobimage.Resolver{AllowPrivateRegistries: true},
		Deriver:  &jobimage.Deriver{Target: reg.Repo("gsr/executors")},
	}
	ctx := context.Background()
	newImage := func(i int) string {
		ls, _ := bb.Layers()
		cf, _ := bb.ConfigFile()
		img := registrytest.Image(b, "amd64", cf.Config, append(ls,
			registrytest.Layer(b, registrytest.Entry{Name: "etc/build", Body: []byte(fmt.Sprint(i, time.Now().UnixNano()))}))...)
		ref := fmt.Sprintf("jobs/new%d:1", i)
		reg.Push(b, ref, img)
		return reg.Host + "/" + ref
	}
	first, err := p.Prepare(ctx, newImage(-1), jobimage.X8664, nil, executor)
	if err != nil {
		b.Fatal(err)
	}
	var resolve, derive, push time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		ref := newImage(i) // the test image plus a layer of its own
		b.StartTimer()
		out, err := p.Prepare(ctx, ref, jobimage.X8664, nil, executor)
		if err != nil {
			b.Fatal(err)
		}
		resolve += out.ResolveTime
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
