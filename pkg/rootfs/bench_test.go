package rootfs_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"gitlab-serverless-runner/pkg/jobimage/registrytest"
	"gitlab-serverless-runner/pkg/rootfs"
)

// BenchmarkUnpack unpacks the test image (two layers, a static busybox and
// its links, whiteouts) into an empty cache.
func BenchmarkUnpack(b *testing.B) {
	img := registrytest.BusyboxImage(b, "amd64")
	ls, _ := img.Layers()
	var size int64
	for _, l := range ls {
		s, _ := l.Size()
		size += s
	}
	dir := b.TempDir()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c := &rootfs.Cache{Dir: filepath.Join(dir, fmt.Sprint(i))}
		if _, err := c.Unpack(context.Background(), img); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(size)/(1<<20), "compressed-MiB")
}

// BenchmarkRunTrue is the cost of starting a command in an unpacked root:
// namespaces, mounts, pivot_root and the nested user namespace.
func BenchmarkRunTrue(b *testing.B) {
	c := &rootfs.Cache{Dir: b.TempDir()}
	root, err := c.Unpack(context.Background(), registrytest.BusyboxImage(b, "amd64"))
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := rootfs.Run(context.Background(), rootfs.Command{Root: root, Args: []string{"/bin/true"}}); err != nil {
			b.Fatal(err)
		}
	}
}
