package trace_test

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"testing"

	"gitlab-serverless-runner/pkg/trace"
)

func newBuffer(t *testing.T) *trace.Buffer {
	t.Helper()
	b, err := trace.NewBuffer(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func TestBufferChecksumAndSize(t *testing.T) {
	tests := []struct {
		name   string
		writes []string
	}{
		{"empty", nil},
		{"one write", []string{"hello\n"}},
		{"many writes", []string{"Running with runner\n", "", "$ echo é\n", "\x00\xff", "done\n"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newBuffer(t)
			var all []byte
			for _, w := range tc.writes {
				if _, err := b.Write([]byte(w)); err != nil {
					t.Fatal(err)
				}
				all = append(all, w...)
			}
			if got, want := b.Checksum(), fmt.Sprintf("crc32:%08x", crc32.ChecksumIEEE(all)); got != want {
				t.Errorf("Checksum() = %q, want %q", got, want)
			}
			if got, want := b.Size(), int64(len(all)); got != want {
				t.Errorf("Size() = %d, want %d", got, want)
			}
			got, err := io.ReadAll(io.NewSectionReader(b, 0, 1<<30))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, all) {
				t.Errorf("contents = %q, want %q", got, all)
			}
		})
	}
}

func TestBufferReadAt(t *testing.T) {
	b := newBuffer(t)
	if _, err := b.Write([]byte("0123456789")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		off     int64
		n       int
		want    string
		wantEOF bool
	}{
		{0, 4, "0123", false},
		{6, 4, "6789", false},
		{8, 4, "89", true},
		{10, 4, "", true},
	}
	for _, tc := range tests {
		p := make([]byte, tc.n)
		n, err := b.ReadAt(p, tc.off)
		if got := string(p[:n]); got != tc.want {
			t.Errorf("ReadAt(%d, %d) = %q, want %q", tc.n, tc.off, got, tc.want)
		}
		if gotEOF := errors.Is(err, io.EOF); gotEOF != tc.wantEOF {
			t.Errorf("ReadAt(%d, %d) error = %v, want EOF %v", tc.n, tc.off, err, tc.wantEOF)
		}
	}
}

func TestBufferKeepsBytesOnDiskAndRemovesFile(t *testing.T) {
	dir := t.TempDir()
	b, err := trace.NewBuffer(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Write([]byte("on disk")); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(files) != 1 {
		t.Fatalf("files in buffer dir = %v, want one", files)
	}
	if data, _ := os.ReadFile(files[0]); string(data) != "on disk" {
		t.Errorf("file holds %q, want %q", data, "on disk")
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "*")); len(files) != 0 {
		t.Errorf("files after Close = %v, want none", files)
	}
	if _, err := b.Write([]byte("x")); !errors.Is(err, trace.ErrClosed) {
		t.Errorf("Write after Close: got %v, want ErrClosed", err)
	}
}
