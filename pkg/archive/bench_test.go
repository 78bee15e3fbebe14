package archive_test

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"gitlab-serverless-runner/pkg/archive"
)

// TestMain gives the zip, unzip and gzip commands the tests run a UTF-8
// locale whatever the caller's environment, so they neither mangle nor
// reject the non-ASCII file names our archives carry; and removes the
// benchmarks' generated tree.
func TestMain(m *testing.M) {
	os.Setenv("LC_ALL", "C.UTF-8")
	code := m.Run()
	if benchDir != "" {
		os.RemoveAll(benchDir)
	}
	os.Exit(code)
}

var (
	benchOnce  sync.Once
	benchDir   string
	benchBytes int64
	benchErr   error
)

// benchTree generates, once per test binary, a project of about 50 MB:
// source-like text files, random (incompressible) binaries and many small
// files, spread over nested directories.
func benchTree(b *testing.B) (string, int64) {
	b.Helper()
	benchOnce.Do(func() {
		benchDir, benchErr = os.MkdirTemp("", "archive-bench-*")
		if benchErr != nil {
			return
		}
		rng := rand.New(rand.NewPCG(1, 2))
		words := strings.Fields("func main return error if else for range package import type struct interface " +
			"string int64 byte slice map nil true false err ctx context job runner trace artifact cache select write")
		write := func(rel string, data []byte) {
			if benchErr != nil {
				return
			}
			full := filepath.Join(benchDir, rel)
			if benchErr = os.MkdirAll(filepath.Dir(full), 0o755); benchErr == nil {
				benchErr = os.WriteFile(full, data, 0o644)
			}
			benchBytes += int64(len(data))
		}
		var text bytes.Buffer
		for i := range 400 {
			text.Reset()
			for text.Len() < 64<<10 {
				text.WriteString(words[rng.IntN(len(words))])
				if rng.IntN(10) == 0 {
					text.WriteByte('\n')
				} else {
					text.WriteByte(' ')
				}
			}
			write(fmt.Sprintf("src/pkg%02d/file%03d.go", i%20, i), text.Bytes())
		}
		bin := make([]byte, 256<<10)
		for i := range 100 {
			for j := range bin {
				bin[j] = byte(rng.Uint32())
			}
			write(fmt.Sprintf("build/bin%02d/blob%03d.bin", i%10, i), bin)
		}
		for i := range 2000 {
			text.Reset()
			for text.Len() < 512 {
				text.WriteString(words[rng.IntN(len(words))] + " ")
			}
			write(fmt.Sprintf("assets/d%02d/small%04d.txt", i%50, i), text.Bytes())
		}
	})
	if benchErr != nil {
		b.Fatalf("generate bench tree: %v", benchErr)
	}
	return benchDir, benchBytes
}

type countingWriter struct{ n int64 }

func (c *countingWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// BenchmarkZip selects and zips the generated tree, streaming to a counter;
// MB/s is input bytes per second, ratio the archive size over input size.
func BenchmarkZip(b *testing.B) {
	dir, total := benchTree(b)
	b.SetBytes(total)
	b.ReportAllocs()
	var out countingWriter
	for b.Loop() {
		out.n = 0
		files, err := archive.Select(dir, archive.Spec{Paths: []string{"."}}, nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := archive.WriteZip(&out, dir, files, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(out.n)/float64(total), "ratio")
}

// BenchmarkZipCommand runs `zip -q -r` (default level) on the same tree,
// archive to stdout, for comparison with BenchmarkZip.
func BenchmarkZipCommand(b *testing.B) {
	benchZipCommand(b, "-q", "-r")
}

// BenchmarkZipCommandFastest runs `zip -q -r -1`, the level WriteZip uses.
func BenchmarkZipCommandFastest(b *testing.B) {
	benchZipCommand(b, "-q", "-r", "-1")
}

func benchZipCommand(b *testing.B, args ...string) {
	zipCmd, err := exec.LookPath("zip")
	if err != nil {
		b.Fatalf("zip command: %v (install it: the benchmark needs it)", err)
	}
	dir, total := benchTree(b)
	b.SetBytes(total)
	var out countingWriter
	for b.Loop() {
		out.n = 0
		cmd := exec.Command(zipCmd, append(args, "-", ".")...)
		cmd.Dir = dir
		cmd.Stdout = &out
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			b.Fatalf("zip: %v\n%s", err, stderr.Bytes())
		}
	}
	b.ReportMetric(float64(out.n)/float64(total), "ratio")
}

// BenchmarkExtractZip extracts an archive of the generated tree; MB/s is
// uncompressed bytes written per second.
func BenchmarkExtractZip(b *testing.B) {
	dir, total := benchTree(b)
	files, err := archive.Select(dir, archive.Spec{Paths: []string{"."}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	zipPath := filepath.Join(b.TempDir(), "bench.zip")
	f, err := os.Create(zipPath)
	if err != nil {
		b.Fatal(err)
	}
	if err := archive.WriteZip(f, dir, files, nil); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(total)
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		dst := filepath.Join(b.TempDir(), "out")
		zf, err := os.Open(zipPath)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := archive.ExtractZipStream(zf, dst); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		zf.Close()
		os.RemoveAll(dst)
		b.StartTimer()
	}
}

var _ io.Writer = (*countingWriter)(nil)
