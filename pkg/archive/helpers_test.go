package archive_test

import (
	"archive/zip"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// node is one file system object of a test tree.
type node struct {
	path    string // slash path
	kind    string // "file", "dir" or "link"
	content string // file content or link target
	mode    fs.FileMode
	mtime   time.Time
}

func file(p, content string) node         { return node{path: p, kind: "file", content: content} }
func dir(p string) node                   { return node{path: p, kind: "dir"} }
func link(p, target string) node          { return node{path: p, kind: "link", content: target} }
func withMode(n node, m fs.FileMode) node { n.mode = m; return n }
func withTime(n node, tm time.Time) node  { n.mtime = tm; return n }

// makeTree creates nodes under root; directory modes and times are applied
// last, deepest first.
func makeTree(t testing.TB, root string, nodes ...node) {
	t.Helper()
	var dirs []node
	for _, n := range nodes {
		full := filepath.Join(root, filepath.FromSlash(n.path))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		switch n.kind {
		case "file":
			mode := n.mode
			if mode == 0 {
				mode = 0o644
			}
			if err := os.WriteFile(full, []byte(n.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(full, mode); err != nil {
				t.Fatal(err)
			}
			if !n.mtime.IsZero() {
				if err := os.Chtimes(full, n.mtime, n.mtime); err != nil {
					t.Fatal(err)
				}
			}
		case "dir":
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
			dirs = append(dirs, n)
		case "link":
			if err := os.Symlink(n.content, full); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("unknown node kind %q", n.kind)
		}
	}
	sort.Slice(dirs, func(i, j int) bool { return dirs[i].path > dirs[j].path })
	for _, n := range dirs {
		full := filepath.Join(root, filepath.FromSlash(n.path))
		if n.mode != 0 {
			if err := os.Chmod(full, n.mode); err != nil {
				t.Fatal(err)
			}
		}
		if !n.mtime.IsZero() {
			if err := os.Chtimes(full, n.mtime, n.mtime); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// snapshot describes every object under root (root itself excluded), one
// line each: path, kind, permission bits, mtime in seconds, content or link
// target.
func snapshot(t testing.TB, root string, withTimes bool) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		line := filepath.ToSlash(rel)
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			line += " link -> " + target
		case info.IsDir():
			line += fmt.Sprintf(" dir %04o", info.Mode().Perm())
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			line += fmt.Sprintf(" file %04o %s", info.Mode().Perm(), b)
		}
		if withTimes && info.Mode()&fs.ModeSymlink == 0 {
			line += " " + info.ModTime().UTC().Truncate(time.Second).Format(time.RFC3339)
		}
		out = append(out, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// zent is one entry of a hand-made zip.
type zent struct {
	name string
	kind string // "file", "dir" or "link"
	body string
	mode fs.FileMode // permission bits; 0 means 0644 (0755 for dirs)
}

// craftZip writes entries as they are, without any checks.
func craftZip(t testing.TB, entries ...zent) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		h := &zip.FileHeader{Name: e.name, Method: zip.Deflate, Modified: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)}
		perm := e.mode
		switch e.kind {
		case "dir":
			if perm == 0 {
				perm = 0o755
			}
			h.SetMode(fs.ModeDir | perm)
			h.Method = zip.Store
		case "fifo":
			h.SetMode(fs.ModeNamedPipe | 0o644)
		case "link":
			if perm == 0 {
				perm = 0o777
			}
			h.SetMode(fs.ModeSymlink | perm)
		default:
			if perm == 0 {
				perm = 0o644
			}
			h.SetMode(perm)
		}
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func diffLines(got, want []string) string {
	var b strings.Builder
	g := map[string]bool{}
	for _, l := range got {
		g[l] = true
	}
	w := map[string]bool{}
	for _, l := range want {
		w[l] = true
	}
	for _, l := range want {
		if !g[l] {
			b.WriteString("\n  missing: " + l)
		}
	}
	for _, l := range got {
		if !w[l] {
			b.WriteString("\n  unexpected: " + l)
		}
	}
	return b.String()
}
