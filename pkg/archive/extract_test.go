package archive_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gitlab-serverless-runner/pkg/archive"
)

// sandbox is a base dir holding the extraction target "build" and a
// sibling "outside" with one marker file, so that escapes are visible.
func sandbox(t *testing.T) (base, target string) {
	t.Helper()
	base = t.TempDir()
	target = filepath.Join(base, "build")
	makeTree(t, base, file("outside/marker", "m"), dir("build"))
	return base, target
}

func TestExtractZipRefusesUnsafeEntries(t *testing.T) {
	tests := []struct {
		name      string
		existing  []node // already in the target dir before extraction
		entries   func(base string) []zent
		wantEntry string // the entry the error must name
		wantTree  []string
	}{
		{
			name:      "parent directory",
			entries:   func(string) []zent { return []zent{{name: "ok.txt", body: "ok"}, {name: "../evil", body: "x"}} },
			wantEntry: "../evil",
		},
		{
			name:      "parent directory further in",
			entries:   func(string) []zent { return []zent{{name: "a/../../evil", body: "x"}} },
			wantEntry: "a/../../evil",
		},
		{
			name:      "parent directory that stays inside",
			entries:   func(string) []zent { return []zent{{name: "a/../b", body: "x"}} },
			wantEntry: "a/../b",
		},
		{
			name: "absolute path",
			entries: func(base string) []zent {
				return []zent{{name: filepath.ToSlash(filepath.Join(base, "outside", "evil")), body: "x"}}
			},
			wantEntry: "outside/evil",
		},
		{
			name:      "backslash traversal",
			entries:   func(string) []zent { return []zent{{name: `..\evil`, body: "x"}} },
			wantEntry: `..\\evil`,
		},
		{
			name:      "drive letter",
			entries:   func(string) []zent { return []zent{{name: "C:/evil", body: "x"}} },
			wantEntry: "C:/evil",
		},
		{
			name:      "drive-relative",
			entries:   func(string) []zent { return []zent{{name: "c:evil", body: "x"}} },
			wantEntry: "c:evil",
		},
		{
			name: "symlink leaving then a file through it",
			entries: func(string) []zent {
				return []zent{{name: "link", kind: "link", body: "../../outside"}, {name: "link/file", body: "x"}}
			},
			wantEntry: "link",
		},
		{
			name: "symlink just above the target",
			entries: func(string) []zent {
				return []zent{{name: "sub/link", kind: "link", body: "../../outside"}}
			},
			wantEntry: "sub/link",
		},
		{
			name: "symlink to an absolute path",
			entries: func(base string) []zent {
				return []zent{{name: "abs", kind: "link", body: filepath.Join(base, "outside")}, {name: "abs/file", body: "x"}}
			},
			wantEntry: "abs",
		},
		{
			name: "symlink chained through another link",
			entries: func(string) []zent {
				return []zent{
					{name: "sub/deep/top", kind: "link", body: "../.."},
					{name: "sub/deep/out", kind: "link", body: "top/../.."},
				}
			},
			wantEntry: "sub/deep/out",
			wantTree:  []string{"sub dir 0755", "sub/deep dir 0755", "sub/deep/top link -> ../.."},
		},
		{
			name:      "file through an existing symlink leaving the target",
			existing:  []node{link("escape", "../outside")},
			entries:   func(string) []zent { return []zent{{name: "escape/evil", body: "x"}} },
			wantEntry: "escape/evil",
			wantTree:  []string{"escape link -> ../outside"},
		},
		{
			name:      "directory through an existing symlink leaving the target",
			existing:  []node{link("escape", "../outside")},
			entries:   func(string) []zent { return []zent{{name: "escape/newdir/", kind: "dir"}} },
			wantEntry: "escape/newdir/",
			wantTree:  []string{"escape link -> ../outside"},
		},
		{
			name:      "file through an existing absolute symlink",
			existing:  []node{link("abs", "/")},
			entries:   func(string) []zent { return []zent{{name: "abs/tmp/evil", body: "x"}} },
			wantEntry: "abs/tmp/evil",
			wantTree:  []string{"abs link -> /"},
		},
		{
			name:      "device or other special type",
			entries:   func(string) []zent { return []zent{{name: "fifo", kind: "fifo"}} },
			wantEntry: "fifo",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base, target := sandbox(t)
			makeTree(t, target, tt.existing...)
			data := craftZip(t, tt.entries(base)...)
			err := archive.ExtractZip(bytes.NewReader(data), int64(len(data)), target)
			if !errors.Is(err, archive.ErrUnsafeEntry) {
				t.Fatalf("ExtractZip: got error %v, want one wrapping ErrUnsafeEntry", err)
			}
			if !strings.Contains(err.Error(), tt.wantEntry) {
				t.Errorf("error %q does not name the entry %q", err, tt.wantEntry)
			}
			if got, want := snapshot(t, filepath.Join(base, "outside"), false), []string{"marker file 0644 m"}; !slices.Equal(got, want) {
				t.Errorf("outside dir: got %q, want %q", got, want)
			}
			if got := snapshot(t, base, false); slices.ContainsFunc(got, func(l string) bool { return strings.Contains(l, "evil") }) {
				t.Errorf("something named evil was written: %q", got)
			}
			if got := snapshot(t, target, false); !slices.Equal(got, tt.wantTree) {
				t.Errorf("target dir:%s", diffLines(got, tt.wantTree))
			}
		})
	}
}

func TestExtractZipModes(t *testing.T) {
	tests := []struct {
		name  string
		entry zent
		want  string
	}{
		{name: "executable kept", entry: zent{name: "run.sh", body: "x", mode: 0o755}, want: "run.sh file 0755 x"},
		{name: "private kept", entry: zent{name: "key", body: "x", mode: 0o600}, want: "key file 0600 x"},
		{name: "setuid dropped", entry: zent{name: "su", body: "x", mode: 0o4755 | os.ModeSetuid}, want: "su file 0755 x"},
		{name: "sticky directory plain", entry: zent{name: "d/", kind: "dir", mode: 0o1777 | os.ModeSticky}, want: "d dir 0777"},
		{name: "link inside kept", entry: zent{name: "l", kind: "link", body: "some/where"}, want: "l link -> some/where"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target := t.TempDir()
			data := craftZip(t, tt.entry)
			if err := archive.ExtractZip(bytes.NewReader(data), int64(len(data)), target); err != nil {
				t.Fatalf("ExtractZip: %v", err)
			}
			got := snapshot(t, target, false)
			if !slices.Equal(got, []string{tt.want}) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			info, err := os.Lstat(filepath.Join(target, strings.TrimSuffix(tt.entry.name, "/")))
			if err != nil {
				t.Fatal(err)
			}
			if m := info.Mode() & (os.ModeSetuid | os.ModeSetgid | os.ModeSticky); m != 0 {
				t.Errorf("got special bits %v, want none", m)
			}
		})
	}
}

func TestExtractZipReplacesExisting(t *testing.T) {
	target := t.TempDir()
	makeTree(t, target, file("a.txt", "old"), link("b", "a.txt"), file("keep.txt", "keep"))
	data := craftZip(t,
		zent{name: "a.txt", body: "new"},
		zent{name: "b", body: "was a link"},
		zent{name: "./c/", kind: "dir"},
		zent{name: "c/d.txt", body: "d"},
	)
	if err := archive.ExtractZip(bytes.NewReader(data), int64(len(data)), target); err != nil {
		t.Fatalf("ExtractZip: %v", err)
	}
	want := []string{
		"a.txt file 0644 new",
		"b file 0644 was a link",
		"c dir 0755",
		"c/d.txt file 0644 d",
		"keep.txt file 0644 keep",
	}
	if got := snapshot(t, target, false); !slices.Equal(got, want) {
		t.Errorf("target:%s", diffLines(got, want))
	}
}

func TestExtractZipCorrupt(t *testing.T) {
	target := t.TempDir()
	data := []byte("this is not a zip archive")
	err := archive.ExtractZip(bytes.NewReader(data), int64(len(data)), target)
	if err == nil {
		t.Fatal("got nil error, want one for a corrupt archive")
	}
	if errors.Is(err, archive.ErrUnsafeEntry) {
		t.Errorf("got %v, want a read error rather than ErrUnsafeEntry", err)
	}
}
