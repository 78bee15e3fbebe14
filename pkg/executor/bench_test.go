package executor_test

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
)

// BenchmarkTrivialJob runs a one-line job on a small repository in process
// and reports the time from the invocation to the first script line and to
// the final update GitLab applied.
func BenchmarkTrivialJob(b *testing.B) {
	e := newEnvTB(b)
	p := e.srv.CreateProject("group/demo", map[string]string{"README.md": "hi\n", "src/main.go": "package main\n"})
	marker := filepath.Join(e.cfg.BuildsDir, "first-line")
	var toFirst, toFinal time.Duration
	n := 0
	for b.Loop() {
		ev := e.take(p, gitlabtest.JobSpec{Script: []string{`date +%s%N > "$CI_BUILDS_DIR/first-line"`}})
		start := time.Now()
		res := e.executor().Run(context.Background(), ev)
		if res.State != "success" {
			b.Fatalf("result %+v", res)
		}
		job := e.srv.Job(ev.Job.ID)
		final := job.Updates[len(job.Updates)-1].Time
		ns, err := strconv.ParseInt(strings.TrimSpace(readFileB(b, marker)), 10, 64)
		if err != nil {
			b.Fatal(err)
		}
		toFirst += time.Unix(0, ns).Sub(start)
		toFinal += final.Sub(start)
		n++
	}
	b.ReportMetric(float64(toFirst.Milliseconds())/float64(n), "ms-to-first-script-line")
	b.ReportMetric(float64(toFinal.Milliseconds())/float64(n), "ms-to-final-update")
}

// BenchmarkBigJobMemory reports the peak resident memory of the process
// (fake GitLab included) while a job prints a lot and uploads a large
// artifact: it should stay flat as the data grows, since the trace is capped
// and spooled to disk and the artifact streams through a pipe.
func BenchmarkBigJobMemory(b *testing.B) {
	for _, size := range []struct {
		name            string
		printMB, artMiB int
	}{
		{"print=10MB/artifact=100MiB", 10, 100},
		{"print=100MB/artifact=1GiB", 100, 1024},
	} {
		b.Run(size.name, func(b *testing.B) {
			e := newEnvTB(b)
			p := e.srv.CreateProject("group/demo", map[string]string{"README.md": "hi\n"})
			var peak int64
			for b.Loop() {
				ev := e.take(p, gitlabtest.JobSpec{
					Script: []string{
						"head -c " + strconv.Itoa(size.printMB*1000*1000) + " /dev/zero | tr '\\0' 'x' | fold -w 100",
						"head -c " + strconv.Itoa(size.artMiB) + "M /dev/urandom > big.bin",
					},
					Artifacts: []gitlab.Artifact{{Name: "big", Paths: []string{"big.bin"}, ArtifactType: "archive", ArtifactFormat: "zip"}},
				})
				resetPeakRSS(b)
				res := e.executor().Run(context.Background(), ev)
				if res.State != "success" {
					b.Fatalf("result %+v; trace:\n%s", res, e.srv.Job(ev.Job.ID).Trace)
				}
				peak = max(peak, peakRSS(b))
				if a, ok := e.srv.Job(ev.Job.ID).Artifact("archive"); !ok || a.Size < int64(size.artMiB)<<20 {
					b.Fatalf("artifact %+v, want at least %d MiB", a, size.artMiB)
				}
				for _, a := range e.srv.Job(ev.Job.ID).Artifacts {
					os.Remove(a.Path)
				}
			}
			b.ReportMetric(float64(peak)/(1<<20), "peak-RSS-MiB")
		})
	}
}

// resetPeakRSS resets the kernel's high-water mark of this process's
// resident memory (VmHWM).
func resetPeakRSS(b *testing.B) {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		b.Fatalf("reset peak RSS: %v", err)
	}
}

// peakRSS reads VmHWM in bytes.
func peakRSS(b *testing.B) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb << 10
		}
	}
	b.Fatal("no VmHWM in /proc/self/status")
	return 0
}

func readFileB(b *testing.B, path string) string {
	bs, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	return string(bs)
}
