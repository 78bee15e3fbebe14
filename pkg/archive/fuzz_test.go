package archive_test

import (
	"bytes"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"gitlab-serverless-runner/pkg/archive"
)

// FuzzExtractZip extracts archives of three arbitrary entries (name, body or
// link target, kind) into a build dir that already holds a symlink to its
// parent, and checks that nothing ever appears outside the build dir and no
// extracted symlink leads outside it.
func FuzzExtractZip(f *testing.F) {
	seeds := [][9]any{
		{"a.txt", "hello", uint8(0), "dir/", "", uint8(1), "l", "a.txt", uint8(2)},
		{"../evil", "x", uint8(0), "/abs", "x", uint8(0), "a/../../evil", "x", uint8(0)},
		{"link", "../../outside", uint8(2), "link/file", "x", uint8(0), "ok", "ok", uint8(0)},
		{"abs", "/tmp", uint8(2), "abs/evil", "x", uint8(0), "up/evil", "x", uint8(0)},
		{"sub/deep/top", "../..", uint8(2), "sub/deep/out", "top/../..", uint8(2), "sub/deep/out/evil", "x", uint8(0)},
		{"up", "x", uint8(0), "up/", "", uint8(1), "up/evil/", "", uint8(1)},
		{"x", ".", uint8(2), "x/x/x/../evil", "x", uint8(0), `..\evil`, "x", uint8(0)},
		{"a", "b", uint8(2), "b", "c", uint8(2), "c", "..", uint8(2)},
		{"c", "..", uint8(2), "b", "c", uint8(2), "a", "b/..", uint8(2)},
		{"run.sh", "x", uint8(3), "C:/evil", "x", uint8(0), "./", "", uint8(1)},
	}
	for _, s := range seeds {
		f.Add(s[0].(string), s[1].(string), s[2].(uint8), s[3].(string), s[4].(string), s[5].(uint8), s[6].(string), s[7].(string), s[8].(uint8))
	}
	f.Fuzz(func(t *testing.T, n1, b1 string, k1 uint8, n2, b2 string, k2 uint8, n3, b3 string, k3 uint8) {
		var entries []zent
		for _, e := range []struct {
			name, body string
			kind       uint8
		}{{n1, b1, k1}, {n2, b2, k2}, {n3, b3, k3}} {
			if len(e.name) > 512 || len(e.body) > 512 {
				return
			}
			z := zent{name: e.name, body: e.body}
			switch e.kind % 4 {
			case 1:
				z.kind, z.body = "dir", ""
			case 2:
				z.kind = "link"
			case 3:
				z.mode = fs.FileMode(e.kind)<<3 | 0o600
			}
			if strings.HasSuffix(z.name, "/") {
				z.body = "" // the zip writer refuses data for directory names
			}
			entries = append(entries, z)
		}
		base := t.TempDir()
		target := filepath.Join(base, "t", "build")
		makeTree(t, target, link("up", ".."))
		data := craftZip(t, entries...)
		_ = archive.ExtractZip(bytes.NewReader(data), int64(len(data)), target)

		err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			switch p {
			case base, filepath.Join(base, "t"):
				return nil
			}
			if p != target && !strings.HasPrefix(p, target+string(filepath.Separator)) {
				t.Errorf("extraction wrote %s outside the target dir", p)
				return nil
			}
			if d.Type()&fs.ModeSymlink == 0 {
				return nil
			}
			dest, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if p == filepath.Join(target, "up") && dest == ".." {
				return nil // put there by the test
			}
			if !linkStaysInside(target, p, dest) {
				t.Errorf("symlink %s -> %s leads outside the target dir", p, dest)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// linkStaysInside judges a symlink on disk when it resolves and by its
// names when it dangles.
func linkStaysInside(root, link, dest string) bool {
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return false
	}
	resolved, err := filepath.EvalSymlinks(link)
	if err != nil {
		if filepath.IsAbs(dest) {
			return false
		}
		rel, err := filepath.Rel(root, filepath.Join(filepath.Dir(link), dest))
		return err == nil && rel != ".." && !strings.HasPrefix(filepath.ToSlash(rel), "../")
	}
	rel, err := filepath.Rel(realRoot, resolved)
	return err == nil && rel != ".." && !strings.HasPrefix(filepath.ToSlash(rel), "../") && !path.IsAbs(rel)
}
