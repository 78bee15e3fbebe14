package trace_test

import (
	"fmt"
	"hash/crc32"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/trace"
)

func contents(t *testing.T, b *trace.Buffer) string {
	t.Helper()
	data, err := io.ReadAll(io.NewSectionReader(b, 0, b.Size()))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestWriterMasksThenLimits(t *testing.T) {
	b := newBuffer(t)
	w := trace.NewWriter(b, trace.WriterOptions{
		Mask:  trace.MaskOptions{Phrases: []string{"verysecret"}},
		Limit: 30,
	})
	for _, s := range []string{"pw very", "secret glpat-", "abc\n", "more output that is dropped\n"} {
		if _, err := w.WriteString(s); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got := contents(t, b)
	want := "pw [MASKED] glpat-[MASKED]\nmor" + trace.LimitNotice(30)
	if got != want {
		t.Errorf("trace = %q, want %q", got, want)
	}
	if !w.LimitExceeded() {
		t.Errorf("LimitExceeded() = false, want true")
	}
	if got, want := b.Checksum(), fmt.Sprintf("crc32:%08x", crc32.ChecksumIEEE([]byte(want))); got != want {
		t.Errorf("Checksum() = %q, want %q", got, want)
	}
}

func TestWriterConcurrentWriters(t *testing.T) {
	b := newBuffer(t)
	w := trace.NewWriter(b, trace.WriterOptions{Mask: trace.MaskOptions{Phrases: []string{"hidden!"}}})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for range 100 {
				fmt.Fprintf(w, "writer %d hidden!\n", g)
			}
		})
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got := contents(t, b)
	if n := strings.Count(got, "[MASKED]\n"); n != 400 {
		t.Errorf("masked lines = %d, want 400", n)
	}
	if strings.Contains(got, "hidden!") {
		t.Errorf("trace contains the secret")
	}
}

func TestWriterSectionsAndColours(t *testing.T) {
	at := time.Unix(1700000000, 0)
	b := newBuffer(t)
	w := trace.NewWriter(b, trace.WriterOptions{Now: func() time.Time { return at }})
	w.SectionStart("step_script", `Executing "step_script" stage of the job script`)
	w.Notef("$ %s", "make test")
	w.Warningf("image %q is ignored", "golang")
	w.Errorf("Job failed: exit code %d", 2)
	w.SectionEnd("step_script")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	want := "section_start:1700000000:step_script\r\x1b[0K\x1b[36;1mExecuting \"step_script\" stage of the job script\x1b[0;m\n" +
		"\x1b[32;1m$ make test\x1b[0;m\n" +
		"\x1b[0;33mWARNING: image \"golang\" is ignored\x1b[0;m\n" +
		"\x1b[31;1mERROR: Job failed: exit code 2\x1b[0;m\n" +
		"section_end:1700000000:step_script\r\x1b[0K"
	if got := contents(t, b); got != want {
		t.Errorf("trace = %q, want %q", got, want)
	}
}

func TestSectionName(t *testing.T) {
	tests := []struct{ in, want string }{
		{"step_script", "step_script"},
		{"upload artifacts:on/failure", "upload_artifacts_on_failure"},
		{"v1.2-x", "v1.2-x"},
		{"é", "_"},
	}
	for _, tc := range tests {
		if got := trace.SectionName(tc.in); got != tc.want {
			t.Errorf("SectionName(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestWriterTimestampsEachLine(t *testing.T) {
	b := newBuffer(t)
	clock := time.Date(2024, 6, 10, 8, 58, 40, 123456789, time.UTC)
	now := func() time.Time { clock = clock.Add(time.Second); return clock }
	w := trace.NewWriter(b, trace.WriterOptions{Mask: trace.MaskOptions{Phrases: []string{"verysecret"}}, Now: now, Timestamps: true})
	w.Printf("Running with runner\n")
	script := w.Stream(trace.StreamWork)
	for _, s := range []string{"first part ", "of a line very", "secret\nsecond\nthird without newline"} {
		if _, err := io.WriteString(script, s); err != nil {
			t.Fatal(err)
		}
	}
	w.Printf("\n")
	w.Notef("Job succeeded")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	want := "2024-06-10T08:58:41.123456Z 00O Running with runner\n" +
		"2024-06-10T08:58:42.123456Z 01O first part of a line [MASKED]\n" +
		"2024-06-10T08:58:43.123456Z 01O second\n" +
		"2024-06-10T08:58:43.123456Z 01O third without newline\n" + // arrived with "second"
		"2024-06-10T08:58:44.123456Z 00O " + trace.ANSIBoldGreen + "Job succeeded" + trace.ANSIReset + "\n"
	if got := contents(t, b); got != want {
		t.Errorf("trace =\n%q\nwant\n%q", got, want)
	}
}

func TestWriterWithoutTimestamps(t *testing.T) {
	b := newBuffer(t)
	w := trace.NewWriter(b, trace.WriterOptions{})
	w.Printf("a\n")
	io.WriteString(w.Stream(trace.StreamWork), "b\n")
	w.Close()
	if got := contents(t, b); got != "a\nb\n" {
		t.Errorf("trace = %q, want no timestamps", got)
	}
}
