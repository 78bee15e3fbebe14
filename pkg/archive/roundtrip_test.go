package archive_test

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"gitlab-serverless-runner/pkg/archive"
)

var (
	t1 = time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)
	t2 = time.Date(2023, 8, 9, 10, 11, 12, 0, time.UTC)
)

// roundTripTree has every kind of entry an archive carries.
func roundTripTree(t *testing.T) string {
	t.Helper()
	src := t.TempDir()
	makeTree(t, src,
		withTime(file("README.md", "# hello\n"), t1),
		withTime(withMode(file("bin/run.sh", "#!/bin/sh\necho hi\n"), 0o755), t2),
		withTime(withMode(file("secret/key", "k"), 0o600), t1),
		withTime(withMode(dir("secret"), 0o700), t2),
		withTime(file("empty", ""), t1),
		withTime(file("deep/a/b/c.bin", string(bytes.Repeat([]byte{0, 1, 2, 0xff}, 40000))), t2),
		withTime(dir("deep/a/b"), t1),
		withTime(dir("deep/a"), t2),
		withTime(dir("deep"), t1),
		withTime(dir("bin"), t1),
		withTime(dir("emptydir"), t2),
		withTime(file("spaces and ünïcode.txt", "x"), t1),
		link("link-to-file", "README.md"),
		link("bin/link-to-dir", "../deep/a"),
		link("dangling", "not/yet/there"),
	)
	return src
}

func zipTree(t *testing.T, src string) ([]byte, []string) {
	t.Helper()
	files, err := archive.Select(src, archive.Spec{Paths: []string{"."}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := archive.WriteZip(&buf, src, files, nil); err != nil {
		t.Fatalf("WriteZip: %v", err)
	}
	return buf.Bytes(), files
}

func TestZipRoundTrip(t *testing.T) {
	src := roundTripTree(t)
	data, _ := zipTree(t, src)
	want := snapshot(t, src, true)
	extract := map[string]func(dst string) error{
		"ExtractZip": func(dst string) error {
			return archive.ExtractZip(bytes.NewReader(data), int64(len(data)), dst)
		},
		"ExtractZipStream spooled": func(dst string) error {
			return archive.ExtractZipStream(iotest.OneByteReader(bytes.NewReader(data)), dst)
		},
		"ExtractZipStream file": func(dst string) error {
			p := filepath.Join(t.TempDir(), "a.zip")
			if err := os.WriteFile(p, data, 0o600); err != nil {
				return err
			}
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			return archive.ExtractZipStream(f, dst)
		},
	}
	for name, fn := range extract {
		t.Run(name, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "new", "dir")
			if err := fn(dst); err != nil {
				t.Fatalf("extract: %v", err)
			}
			if got := snapshot(t, dst, true); !slices.Equal(got, want) {
				t.Errorf("extracted tree differs:%s", diffLines(got, want))
			}
		})
	}
}

func TestZipIsDeterministic(t *testing.T) {
	src := roundTripTree(t)
	a, _ := zipTree(t, src)
	b, _ := zipTree(t, src)
	if !bytes.Equal(a, b) {
		t.Errorf("two archives of the same tree differ (%d and %d bytes)", len(a), len(b))
	}
}

func TestUnzipCommandReadsOurZip(t *testing.T) {
	unzip, err := exec.LookPath("unzip")
	if err != nil {
		t.Fatalf("unzip command: %v (install it: the test needs it)", err)
	}
	src := roundTripTree(t)
	data, files := zipTree(t, src)
	zipPath := filepath.Join(t.TempDir(), "artifacts.zip")
	if err := os.WriteFile(zipPath, data, 0o600); err != nil {
		t.Fatal(err)
	}

	t.Run("test", func(t *testing.T) {
		if out, err := exec.Command(unzip, "-tq", zipPath).CombinedOutput(); err != nil {
			t.Fatalf("unzip -t: %v\n%s", err, out)
		}
	})
	t.Run("list", func(t *testing.T) {
		out, err := exec.Command(unzip, "-Z1", zipPath).Output()
		if err != nil {
			t.Fatalf("unzip -Z1: %v", err)
		}
		got := strings.Split(strings.TrimSpace(string(out)), "\n")
		var want []string
		for _, f := range files {
			if info, err := os.Lstat(filepath.Join(src, f)); err == nil && info.IsDir() {
				f += "/"
			}
			want = append(want, f)
		}
		if !slices.Equal(got, want) {
			t.Errorf("listing:%s", diffLines(got, want))
		}
	})
	t.Run("extract", func(t *testing.T) {
		dst := t.TempDir()
		if out, err := exec.Command(unzip, "-q", zipPath, "-d", dst).CombinedOutput(); err != nil {
			t.Fatalf("unzip: %v\n%s", err, out)
		}
		want := snapshot(t, src, true)
		if got := snapshot(t, dst, true); !slices.Equal(got, want) {
			t.Errorf("unzip's tree differs:%s", diffLines(got, want))
		}
	})
}

func TestZipCommandOutputExtracts(t *testing.T) {
	zipCmd, err := exec.LookPath("zip")
	if err != nil {
		t.Fatalf("zip command: %v (install it: the test needs it)", err)
	}
	src := roundTripTree(t)
	zipPath := filepath.Join(t.TempDir(), "made-by-zip.zip")
	cmd := exec.Command(zipCmd, "-q", "-r", "--symlinks", zipPath, ".")
	cmd.Dir = src
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("zip: %v\n%s", err, out)
	}
	f, err := os.Open(zipPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dst := t.TempDir()
	if err := archive.ExtractZipStream(f, dst); err != nil {
		t.Fatalf("ExtractZipStream: %v", err)
	}
	want := snapshot(t, src, false)
	if got := snapshot(t, dst, false); !slices.Equal(got, want) {
		t.Errorf("tree differs:%s", diffLines(got, want))
	}
}

func TestWriteGzip(t *testing.T) {
	src := t.TempDir()
	makeTree(t, src,
		withTime(file("reports/b.xml", "<b/>\n"), t1),
		withTime(file("reports/a.xml", "<a/>\n"), t2),
		file("reports/sub/c.xml", "<c/>\n"),
		link("reports/link.xml", "a.xml"),
		link("reports/out.xml", "../../outside.xml"),
	)
	files, err := archive.Select(src, archive.Spec{Paths: []string{"reports"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var buf, warn bytes.Buffer
	if err := archive.WriteGzip(&buf, src, files, &warn); err != nil {
		t.Fatalf("WriteGzip: %v", err)
	}
	wantContent := "<a/>\n<b/>\n<a/>\n<c/>\n" // a.xml, b.xml, link.xml, sub/c.xml

	t.Run("gzip -dc", func(t *testing.T) {
		gz, err := exec.LookPath("gzip")
		if err != nil {
			t.Fatalf("gzip command: %v", err)
		}
		cmd := exec.Command(gz, "-dc")
		cmd.Stdin = bytes.NewReader(buf.Bytes())
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("gzip -dc: %v", err)
		}
		if got := string(out); got != wantContent {
			t.Errorf("got %q, want %q", got, wantContent)
		}
	})
	t.Run("one member per file", func(t *testing.T) {
		br := bytes.NewReader(buf.Bytes())
		zr, err := gzip.NewReader(br)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for {
			zr.Multistream(false)
			body, err := io.ReadAll(zr)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, zr.Name+" "+zr.ModTime.UTC().Format(time.RFC3339)[:4]+" "+strings.TrimSpace(string(body)))
			if err := zr.Reset(br); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatal(err)
			}
		}
		now := time.Now().UTC().Format("2006")
		want := []string{"a.xml 2023 <a/>", "b.xml 2021 <b/>", "link.xml 2023 <a/>", "c.xml " + now + " <c/>"}
		if !slices.Equal(got, want) {
			t.Errorf("members (name, year, body): got %q, want %q", got, want)
		}
	})
	t.Run("link outside warned", func(t *testing.T) {
		if got := warn.String(); !strings.Contains(got, "reports/out.xml") {
			t.Errorf("warnings: got %q, want one about reports/out.xml", got)
		}
	})
}

func TestWriteRaw(t *testing.T) {
	src := t.TempDir()
	makeTree(t, src, file("one.json", `{"a":1}`), file("two.json", "{}"), dir("d"))
	tests := []struct {
		name    string
		files   []string
		want    string
		wantErr bool
	}{
		{name: "single file", files: []string{"one.json"}, want: `{"a":1}`},
		{name: "directories ignored", files: []string{"d", "one.json"}, want: `{"a":1}`},
		{name: "two files refused", files: []string{"one.json", "two.json"}, wantErr: true},
		{name: "no file refused", files: []string{"d"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			err := archive.WriteRaw(&buf, src, tt.files, nil)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("got nil error, want one")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := buf.String(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestWriteUnknownFormat(t *testing.T) {
	err := archive.Write(io.Discard, "tarzstd", t.TempDir(), nil, nil)
	if err == nil || errors.Is(err, archive.ErrUnsafeEntry) {
		t.Errorf("got %v, want an unsupported format error", err)
	}
}

func TestFileName(t *testing.T) {
	tests := []struct{ name, format, want string }{
		{"", "zip", "default.zip"},
		{"", "", "default.zip"},
		{"artifacts", "zip", "artifacts.zip"},
		{"junit.xml", "gzip", "junit.xml.gz"},
		{"gl-sast-report.json", "raw", "gl-sast-report.json"},
		{"dir/name", "zip", "name.zip"},
	}
	for _, tt := range tests {
		if got := archive.FileName(tt.name, tt.format); got != tt.want {
			t.Errorf("FileName(%q, %q): got %q, want %q", tt.name, tt.format, got, tt.want)
		}
	}
}

func TestWriteFormats(t *testing.T) {
	src := t.TempDir()
	makeTree(t, src, file("report.xml", "<r/>"))
	files := []string{"report.xml"}
	tests := []struct {
		format string
		check  func(t *testing.T, data []byte)
	}{
		{format: "", check: func(t *testing.T, data []byte) {
			dst := t.TempDir()
			if err := archive.ExtractZip(bytes.NewReader(data), int64(len(data)), dst); err != nil {
				t.Fatalf("got %v, want a zip", err)
			}
		}},
		{format: archive.FormatZip, check: func(t *testing.T, data []byte) {
			if !bytes.HasPrefix(data, []byte("PK\x03\x04")) {
				t.Errorf("got %q..., want a zip local header", data[:4])
			}
		}},
		{format: archive.FormatGzip, check: func(t *testing.T, data []byte) {
			zr, err := gzip.NewReader(bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := io.ReadAll(zr); string(got) != "<r/>" {
				t.Errorf("got %q, want %q", got, "<r/>")
			}
		}},
		{format: archive.FormatRaw, check: func(t *testing.T, data []byte) {
			if string(data) != "<r/>" {
				t.Errorf("got %q, want %q", data, "<r/>")
			}
		}},
	}
	for _, tt := range tests {
		t.Run("format="+tt.format, func(t *testing.T) {
			var buf bytes.Buffer
			if err := archive.Write(&buf, tt.format, src, files, nil); err != nil {
				t.Fatalf("Write: %v", err)
			}
			tt.check(t, buf.Bytes())
		})
	}
}
