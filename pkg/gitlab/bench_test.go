package gitlab_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/gitlab"
)

// patternReader yields n bytes of a repeating pattern, generated on the fly.
type patternReader struct{ left int64 }

func (r *patternReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	for i := range p {
		p[i] = byte('a' + i%26)
	}
	r.left -= int64(len(p))
	return len(p), nil
}

// heapSampler records the largest HeapInuse seen while it runs.
type heapSampler struct {
	peak atomic.Uint64
	stop chan struct{}
	wg   sync.WaitGroup
}

func sampleHeap(every time.Duration) *heapSampler {
	h := &heapSampler{stop: make(chan struct{})}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > h.peak.Load() {
				h.peak.Store(ms.HeapInuse)
			}
			select {
			case <-h.stop:
				return
			case <-t.C:
			}
		}
	}()
	return h
}

func (h *heapSampler) Stop() uint64 {
	close(h.stop)
	h.wg.Wait()
	return h.peak.Load()
}

// BenchmarkUploadArtifacts1GiB streams a 1 GiB archive, generated on the
// fly, to a server that discards it. peak-heap-MiB (largest HeapInuse of the
// whole process, server included) and alloc-MiB/op stay in the low MiB if
// the upload streams instead of buffering.
func BenchmarkUploadArtifacts1GiB(b *testing.B) {
	const size = 1 << 30
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil || n < size {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusCreated)
	}))
	b.Cleanup(srv.Close)
	c, err := gitlab.New(srv.URL, gitlab.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size)
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	sampler := sampleHeap(5 * time.Millisecond)
	b.ResetTimer()
	for b.Loop() {
		if err := c.UploadArtifacts(b.Context(), 1, jobToken, gitlab.ArtifactUpload{Name: "big"}, &patternReader{left: size}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	peak := sampler.Stop()
	runtime.ReadMemStats(&after)
	const mib = 1 << 20
	b.ReportMetric(float64(peak)/mib, "peak-heap-MiB")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(b.N)/mib, "alloc-MiB/op")
}
