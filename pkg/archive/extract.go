package archive

import (
	"archive/zip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"time"
)

// ErrUnsafeEntry is wrapped by extraction errors about an entry that would
// reach outside the target directory (or that cannot be represented safely).
var ErrUnsafeEntry = errors.New("unsafe archive entry")

// maxLinkTarget bounds a symlink entry's target, like the system's PATH_MAX.
const maxLinkTarget = 4096

func unsafeEntry(name, reason string) error {
	return fmt.Errorf("archive: refuse entry %q: %s: %w", name, reason, ErrUnsafeEntry)
}

// ExtractZip extracts the zip archive in r (size bytes) into dir, creating
// dir if needed. Every entry name and symlink target is checked first: an
// archive with an entry that has a `..` component, an absolute path, a
// backslash or a drive letter, or a symlink whose target is absolute or
// resolves outside dir, is refused as a whole before anything is written,
// with an error naming the entry and wrapping ErrUnsafeEntry. Writes go
// through an os.Root, so an entry is also refused when it would pass through
// a symlink already on disk that leads outside dir, and once everything is
// written each extracted symlink is resolved again on disk (links chained
// through other links) and removed with an error if it leads outside.
// Existing files and links are replaced; a directory in a file's way is an
// error. Permission bits are kept (setuid, setgid and sticky bits are
// dropped; directories always keep owner rwx) and so are modification
// times. After an error, entries extracted before it stay in place.
func ExtractZip(r io.ReaderAt, size int64, dir string) error {
	zr, err := zip.NewReader(r, size)
	if err != nil && !errors.Is(err, zip.ErrInsecurePath) {
		return fmt.Errorf("archive: read zip: %w", err)
	}
	entries := make([]entry, 0, len(zr.File))
	for _, f := range zr.File {
		e, err := checkEntry(f)
		if err != nil {
			return err
		}
		if e.name != "" {
			entries = append(entries, e)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("archive: create %s: %w", dir, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("archive: open %s: %w", dir, err)
	}
	defer root.Close()

	dirs, err := writeEntries(root, entries)
	if err != nil {
		return err
	}
	// Directory modes and times last, deepest first, so that a read-only
	// directory does not stop its own contents from being written. The
	// owner always keeps rwx on directories: the build dir must stay
	// removable and a later cache or artifact must be able to land in it.
	sort.Slice(dirs, func(i, j int) bool { return dirs[i].name > dirs[j].name })
	for _, e := range dirs {
		if err := root.Chmod(e.name, e.mode.Perm()|0o700); err != nil {
			return fmt.Errorf("archive: extract %s: %w", e.f.Name, err)
		}
		if !e.f.Modified.IsZero() {
			if err := root.Chtimes(e.name, time.Now(), e.f.Modified); err != nil {
				return fmt.Errorf("archive: extract %s: %w", e.f.Name, err)
			}
		}
	}
	return nil
}

// writeEntries writes entries under root and returns the directories
// among them. Whatever happens, every symlink it created is then resolved
// again against what is on disk: a link checked on its own may still lead
// outside once the links it passes through exist, and such a link is
// removed rather than left for the job to follow.
func writeEntries(root *os.Root, entries []entry) (dirs []entry, err error) {
	x := &extractor{root: root, dirs: map[string]bool{".": true}}
	var links []entry
	defer func() {
		for _, e := range links {
			if !resolvesInside(root, e.name) {
				_ = root.Remove(e.name)
				err = errors.Join(err, unsafeEntry(e.f.Name, "symlink resolves outside the target directory"))
			}
		}
	}()
	for _, e := range entries {
		switch {
		case e.mode.IsDir():
			if err := x.ensureDir(e.name, e); err != nil {
				return nil, err
			}
			dirs = append(dirs, e)
		case e.mode&fs.ModeSymlink != 0:
			if err := x.writeLink(e); err != nil {
				return nil, err
			}
			links = append(links, e)
		default:
			if err := x.writeFile(e); err != nil {
				return nil, err
			}
		}
	}
	return dirs, nil
}

// ExtractZipStream is ExtractZip for an archive read from a stream (an HTTP
// body). A zip's directory is at its end, so a stream that cannot be read at
// random is first copied to a temporary file, removed afterwards.
func ExtractZipStream(r io.Reader, dir string) error {
	type sizedReaderAt interface {
		io.ReaderAt
		Size() int64
	}
	switch v := r.(type) {
	case sizedReaderAt:
		return ExtractZip(v, v.Size(), dir)
	case *os.File:
		if info, err := v.Stat(); err == nil && info.Mode().IsRegular() {
			return ExtractZip(v, info.Size(), dir)
		}
	}
	tmp, err := os.CreateTemp("", "archive-*.zip")
	if err != nil {
		return fmt.Errorf("archive: spool zip: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	size, err := io.Copy(tmp, r)
	if err != nil {
		return fmt.Errorf("archive: spool zip: %w", err)
	}
	return ExtractZip(tmp, size, dir)
}

type entry struct {
	f      *zip.File
	name   string // clean slash path relative to the target dir
	mode   fs.FileMode
	target string // symlink target
}

// checkEntry validates f's name (and target, for a symlink) without
// touching the disk. A name that is the target dir itself yields an empty
// entry name.
func checkEntry(f *zip.File) (entry, error) {
	name := f.Name
	if reason := badName(name); reason != "" {
		return entry{}, unsafeEntry(name, reason)
	}
	e := entry{f: f, name: path.Clean(name), mode: f.Mode()}
	if e.name == "." {
		e.name = ""
	}
	if strings.HasSuffix(name, "/") && !e.mode.IsDir() {
		e.mode = fs.ModeDir | 0o755
	}
	unixMode := f.CreatorVersion>>8 == 3 || f.CreatorVersion>>8 == 19 // Unix, OS X
	switch {
	case e.mode.IsDir():
		if !unixMode {
			e.mode = fs.ModeDir | 0o755
		}
	case e.mode&fs.ModeSymlink != 0:
		if e.name == "" {
			return entry{}, unsafeEntry(name, "symlink in place of the target directory")
		}
		target, err := readLink(f)
		if err != nil {
			return entry{}, err
		}
		if reason := badTarget(e.name, target); reason != "" {
			return entry{}, unsafeEntry(name, reason)
		}
		e.target = target
	case e.mode.IsRegular():
		if e.name == "" {
			return entry{}, unsafeEntry(name, "file in place of the target directory")
		}
		if !unixMode {
			e.mode = 0o644
		}
	default:
		return entry{}, unsafeEntry(name, "unsupported file type "+e.mode.Type().String())
	}
	e.mode = e.mode.Type() | e.mode.Perm()
	return e, nil
}

// badName says what is wrong with an entry name, or "" when it is fine.
func badName(name string) string {
	switch {
	case name == "":
		return "empty name"
	case strings.ContainsRune(name, 0):
		return "NUL in name"
	case strings.Contains(name, `\`):
		return "backslash in name"
	case hasDrive(name):
		return "drive letter in name"
	case strings.HasPrefix(name, "/"):
		return "absolute path"
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "parent directory component"
		}
	}
	return ""
}

func hasDrive(p string) bool {
	return len(p) >= 2 && p[1] == ':' && (p[0]|0x20 >= 'a' && p[0]|0x20 <= 'z')
}

// badTarget says what is wrong with a symlink target for a link at name,
// judged on the names alone.
func badTarget(name, target string) string {
	switch {
	case target == "":
		return "empty symlink target"
	case strings.ContainsRune(target, 0):
		return "NUL in symlink target"
	case strings.Contains(target, `\`):
		return "backslash in symlink target"
	case strings.HasPrefix(target, "/") || hasDrive(target):
		return "symlink to an absolute path"
	}
	resolved := path.Join(path.Dir(name), target)
	if resolved == ".." || strings.HasPrefix(resolved, "../") {
		return "symlink target leaves the target directory"
	}
	return ""
}

func readLink(f *zip.File) (string, error) {
	rc, err := f.Open()
	if err != nil {
		return "", fmt.Errorf("archive: read symlink %q: %w", f.Name, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxLinkTarget+1))
	if err != nil {
		return "", fmt.Errorf("archive: read symlink %q: %w", f.Name, err)
	}
	if len(b) > maxLinkTarget {
		return "", unsafeEntry(f.Name, "symlink target too long")
	}
	return string(b), nil
}

// extractor writes the entries of one archive under root.
type extractor struct {
	root *os.Root
	// dirs are directories known to exist and to resolve inside root, so
	// that each is checked once per archive rather than once per file.
	dirs map[string]bool
}

// ensureDir creates dir (with parents) after checking that it does not
// pass through a symlink leading outside root.
func (x *extractor) ensureDir(dir string, e entry) error {
	if x.dirs[dir] {
		return nil
	}
	if !resolvesInside(x.root, dir) {
		return unsafeEntry(e.f.Name, "path passes through a symlink leading outside the target directory")
	}
	if err := x.root.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("archive: extract %s: %w", e.f.Name, err)
	}
	for d := dir; d != "."; d = path.Dir(d) {
		x.dirs[d] = true
	}
	return nil
}

// clearPlace makes the parent of e's path and removes what stands at the
// path itself, so that a file or link can take its place; a directory is
// left alone and reported.
func (x *extractor) clearPlace(e entry) error {
	if err := x.ensureDir(path.Dir(e.name), e); err != nil {
		return err
	}
	info, err := x.root.Lstat(e.name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("archive: extract %s: %w", e.f.Name, err)
	}
	if info.IsDir() {
		return fmt.Errorf("archive: extract %s: a directory is in the way", e.f.Name)
	}
	if info.Mode()&fs.ModeSymlink != 0 {
		// Directories reached through the old link are no longer known.
		for d := range x.dirs {
			if d == e.name || strings.HasPrefix(d, e.name+"/") {
				delete(x.dirs, d)
			}
		}
	}
	if err := x.root.Remove(e.name); err != nil {
		return fmt.Errorf("archive: extract %s: %w", e.f.Name, err)
	}
	return nil
}

func (x *extractor) writeLink(e entry) error {
	if err := x.clearPlace(e); err != nil {
		return err
	}
	if err := x.root.Symlink(e.target, e.name); err != nil {
		return fmt.Errorf("archive: extract %s: %w", e.f.Name, err)
	}
	return nil
}

func (x *extractor) writeFile(e entry) error {
	if err := x.clearPlace(e); err != nil {
		return err
	}
	rc, err := e.f.Open()
	if err != nil {
		return fmt.Errorf("archive: extract %s: %w", e.f.Name, err)
	}
	defer rc.Close()
	out, err := x.root.OpenFile(e.name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("archive: extract %s: %w", e.f.Name, err)
	}
	err = copyFile(out, rc)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = x.root.Chmod(e.name, e.mode.Perm())
	}
	if err == nil && !e.f.Modified.IsZero() {
		err = x.root.Chtimes(e.name, time.Now(), e.f.Modified)
	}
	if err != nil {
		return fmt.Errorf("archive: extract %s: %w", e.f.Name, err)
	}
	return nil
}

// resolvesInside follows name component by component through the links on
// disk under root and reports whether it stays inside root. Components that
// do not exist yet are resolved by name.
func resolvesInside(root *os.Root, name string) bool {
	var stack []string
	pending := strings.Split(name, "/")
	missing := false
	links := 0
	for len(pending) > 0 {
		c := pending[0]
		pending = pending[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(stack) == 0 {
				return false
			}
			stack = stack[:len(stack)-1]
			continue
		}
		if missing {
			stack = append(stack, c)
			continue
		}
		cur := path.Join(append(stack, c)...)
		info, err := root.Lstat(cur)
		if err != nil {
			missing = true
			stack = append(stack, c)
			continue
		}
		if info.Mode()&fs.ModeSymlink == 0 {
			stack = append(stack, c)
			continue
		}
		if links++; links > 40 {
			return false
		}
		target, err := root.Readlink(cur)
		if err != nil || strings.HasPrefix(target, "/") {
			return false
		}
		pending = append(strings.Split(target, "/"), pending...)
	}
	return true
}
