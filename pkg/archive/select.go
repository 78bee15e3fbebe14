package archive

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/bmatcuk/doublestar/v4"
)

// Spec says which files of a project directory go into an archive: the
// `paths` and `exclude` of an artifacts or cache entry, and the untracked
// files the caller found (git ls-files -o) when `untracked: true`.
type Spec struct {
	// Paths are doublestar patterns or literal paths relative to the
	// project directory. A directory is included with everything below it.
	Paths []string
	// Exclude patterns are matched against each candidate's slash path
	// relative to the project directory. They are not recursive: to leave
	// out a directory's contents, match them (`dir/**`).
	Exclude []string
	// Untracked are literal paths relative to the project directory,
	// included as if listed in Paths but never treated as patterns.
	Untracked []string
}

// Select returns the files Spec chooses in dir, as slash paths relative to
// dir, sorted, each once. Directories matched or walked are included as
// entries of their own; symlinks are returned as themselves and never
// followed. Paths that do not exist, that are invalid patterns or that
// would leave dir (through `..`, an absolute path or a symlinked parent) are
// reported on warn, one line each, and skipped. warn may be nil.
//
// Select fails only when dir itself cannot be resolved.
func Select(dir string, spec Spec, warn io.Writer) ([]string, error) {
	if warn == nil {
		warn = io.Discard
	}
	root, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("archive: resolve project dir: %w", err)
	}
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, fmt.Errorf("archive: resolve project dir: %w", err)
	}
	s := &selector{root: root, realRoot: realRoot, warn: warn, files: map[string]struct{}{}}
	for _, p := range spec.Paths {
		s.addPattern(p)
	}
	for _, p := range spec.Untracked {
		if rel, ok := s.relative(p); ok {
			s.addLiteral(p, rel)
		}
	}
	var excludes []string
	for _, p := range spec.Exclude {
		if rel, ok := s.relativeQuiet(p); ok {
			excludes = append(excludes, rel)
		}
	}
	out := make([]string, 0, len(s.files))
	for f := range s.files {
		if !excluded(excludes, f) {
			out = append(out, f)
		}
	}
	sort.Strings(out)
	return out, nil
}

type selector struct {
	root     string // absolute project dir as given
	realRoot string // project dir with symlinks resolved
	warn     io.Writer
	files    map[string]struct{}
}

func (s *selector) warnf(format string, args ...any) {
	fmt.Fprintf(s.warn, "WARNING: "+format+"\n", args...)
}

// relativeQuiet turns p into a clean slash path relative to the project
// dir, or reports false when p leaves it.
func (s *selector) relativeQuiet(p string) (string, bool) {
	if p == "" {
		return "", false
	}
	if filepath.IsAbs(p) {
		rel, ok := within(s.root, filepath.Clean(p))
		if !ok {
			rel, ok = within(s.realRoot, filepath.Clean(p))
		}
		if !ok {
			return "", false
		}
		p = filepath.ToSlash(rel)
	}
	p = path.Clean(p)
	if p == ".." || strings.HasPrefix(p, "../") || path.IsAbs(p) {
		return "", false
	}
	return p, true
}

// relative is relativeQuiet that warns about paths leaving the project dir.
func (s *selector) relative(p string) (string, bool) {
	if p == "" {
		return "", false
	}
	rel, ok := s.relativeQuiet(p)
	if !ok {
		s.warnf("%s: not a subpath of the project directory, skipped", p)
	}
	return rel, ok
}

func (s *selector) addPattern(orig string) {
	rel, ok := s.relative(orig)
	if !ok {
		return
	}
	if !hasMeta(rel) {
		s.addLiteral(orig, rel)
		return
	}
	if !doublestar.ValidatePattern(rel) {
		s.warnf("%s: invalid pattern, skipped", orig)
		return
	}
	matches, err := doublestar.Glob(os.DirFS(s.root), rel, doublestar.WithNoFollow())
	if err != nil {
		s.warnf("%s: %v", orig, err)
	}
	found := false
	for _, m := range matches {
		if m == "." || m == "" {
			continue
		}
		if s.addMatch(orig, m) {
			found = true
		}
	}
	if !found && err == nil {
		s.warnf("%s: no matching files", orig)
	}
}

func (s *selector) addLiteral(orig, rel string) {
	if _, err := os.Lstat(filepath.Join(s.root, filepath.FromSlash(rel))); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			s.warnf("%s: no matching files", orig)
		} else {
			s.warnf("%s: %v", orig, err)
		}
		return
	}
	s.addMatch(orig, rel)
}

// addMatch adds rel (walking it when it is a real directory) after checking
// that it does not reach outside the project dir through a symlinked parent.
// It reports whether anything was added.
func (s *selector) addMatch(orig, rel string) bool {
	full := filepath.Join(s.root, filepath.FromSlash(rel))
	if rel != "." {
		parent, err := filepath.EvalSymlinks(filepath.Dir(full))
		if err != nil {
			s.warnf("%s: %v", orig, err)
			return false
		}
		if _, ok := within(s.realRoot, parent); !ok {
			s.warnf("%s: %s is not a subpath of the project directory, skipped", orig, rel)
			return false
		}
	}
	info, err := os.Lstat(full)
	if err != nil {
		s.warnf("%s: %v", orig, err)
		return false
	}
	if !info.IsDir() {
		s.files[rel] = struct{}{}
		return true
	}
	added := false
	// WalkDir reports symlinks as entries and does not follow them.
	_ = filepath.WalkDir(full, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			s.warnf("%s: %v", orig, err)
			return nil
		}
		r, err := filepath.Rel(s.root, p)
		if err != nil {
			return nil
		}
		if r == "." {
			return nil
		}
		s.files[filepath.ToSlash(r)] = struct{}{}
		added = true
		return nil
	})
	return added || rel != "."
}

// within returns p relative to root when p is root or below it.
func within(root, p string) (string, bool) {
	rel, err := filepath.Rel(root, p)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(rel) {
		return "", false
	}
	return rel, true
}

func hasMeta(p string) bool {
	return strings.ContainsAny(p, `*?[{\`)
}

func excluded(patterns []string, rel string) bool {
	for _, p := range patterns {
		if ok, _ := doublestar.Match(p, rel); ok {
			return true
		}
	}
	return false
}
