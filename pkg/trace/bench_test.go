package trace_test

import (
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"

	"gitlab-serverless-runner/pkg/trace"
)

// benchPhrases look like masked CI variable values.
var benchPhrases = []string{
	"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "s3cr3t-p4ssw0rd",
	"ghp_16C7e42F292c6912E7710c838347Ae178B4a", "xoxb-123456789012-abcdefghij", "hunter2hunter2",
	"dckr_pat_2b3e36beeb386dfdaacb9b46004ccb7c", "npm_abcdefghijklmnopqrstuvwxyz0123", "Zm9vYmFyYmF6cXV4",
	"correct-horse-battery-staple",
}

// logChunk returns about size bytes of build output: compiler lines, test
// results, download progress, URLs, and now and then a secret.
func logChunk(size int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	lines := []string{
		"go: downloading github.com/aws/aws-sdk-go-v2 v1.48.0\n",
		"=== RUN   TestStoreRunners/put_and_get\n",
		"--- PASS: TestStoreRunners/put_and_get (0.01s)\n",
		"ok  \tgitlab-serverless-runner/pkg/store\t1.234s\tcoverage: 81.2% of statements\n",
		"npm WARN deprecated inflight@1.0.6: This module is not supported, and leaks memory.\n",
		"Step 4/12 : RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates git\n",
		"  Downloading https://files.example.com/packages/6b/9d/requests-2.32.3-py3-none-any.whl (64 kB)\n",
		"\x1b[32;1m$ make build\x1b[0;m\n",
		"Uploading artifacts to https://gitlab.example.com/api/v4/jobs/8123/artifacts?artifact_format=zip&artifact_type=archive\n",
		"compiling src/main.rs (target/debug/deps/libserde-0f3a.rlib) in 1.82s, global allocator enabled\n",
		"WARNING: Skipping cache upload, no paths were found to cache for key 'main-protected'\n",
	}
	var sb strings.Builder
	for sb.Len() < size {
		if r.IntN(50) == 0 {
			fmt.Fprintf(&sb, "export TOKEN=%s\n", benchPhrases[r.IntN(len(benchPhrases))])
			continue
		}
		sb.WriteString(lines[r.IntN(len(lines))])
	}
	return []byte(sb.String())
}

const benchTotal = 100 << 20

// writeChunks writes total bytes of chunk to w in 32 KiB writes, as a pipe
// copier would.
func writeChunks(b *testing.B, w io.Writer, chunk []byte, total int, each func()) {
	for written := 0; written < total; {
		for off := 0; off < len(chunk) && written < total; off += 32 << 10 {
			p := chunk[off:min(off+32<<10, len(chunk))]
			if _, err := w.Write(p); err != nil {
				b.Fatal(err)
			}
			written += len(p)
		}
		if each != nil {
			each()
		}
	}
}

func BenchmarkMasker(b *testing.B) {
	chunk := logChunk(1 << 20)
	opts := trace.MaskOptions{Phrases: benchPhrases}
	b.SetBytes(benchTotal)
	b.ResetTimer()
	for b.Loop() {
		m := trace.NewMasker(io.Discard, opts)
		writeChunks(b, m, chunk, benchTotal, nil)
		if err := m.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWriter writes 100 MB through mask, limit (set above 100 MB) and
// the file-backed buffer, and reports the peak heap seen while writing.
func BenchmarkWriter(b *testing.B) { benchWriter(b, false) }

// BenchmarkWriterTimestamps is BenchmarkWriter with a timestamp on every
// line (FF_TIMESTAMPS).
func BenchmarkWriterTimestamps(b *testing.B) { benchWriter(b, true) }

func benchWriter(b *testing.B, timestamps bool) {
	chunk := logChunk(1 << 20)
	b.SetBytes(benchTotal)
	var peak uint64
	var ms runtime.MemStats
	sample := func() {
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapInuse)
	}
	b.ResetTimer()
	for b.Loop() {
		buf, err := trace.NewBuffer(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		w := trace.NewWriter(buf, trace.WriterOptions{
			Mask:       trace.MaskOptions{Phrases: benchPhrases},
			Limit:      3 * benchTotal,
			Timestamps: timestamps,
		})
		writeChunks(b, w, chunk, benchTotal, sample)
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
		if buf.Size() < benchTotal/2 {
			b.Fatalf("buffer holds %d bytes, want about %d", buf.Size(), benchTotal)
		}
		_ = buf.Close()
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
}
