package checkout

import (
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5/plumbing/format/gitignore"
	"github.com/go-git/go-git/v5/plumbing/format/index"
)

// DefaultCleanFlags are the git clean flags used when GIT_CLEAN_FLAGS is not
// set: remove untracked files and directories, ignored ones too, and nested
// repositories.
const DefaultCleanFlags = "-ffdx"

// cleanFlags is a parsed GIT_CLEAN_FLAGS value.
type cleanFlags struct {
	force       int      // -f count; two also remove nested repositories
	dirs        bool     // -d
	ignored     bool     // -x: ignore rules do not protect files
	onlyIgnored bool     // -X: remove only ignored files
	excludes    []string // -e patterns: never removed
}

// parseCleanFlags parses the subset of git clean's options that make sense
// for a CI checkout. ok is false when cleaning is disabled ("none").
func parseCleanFlags(s string) (f cleanFlags, ok bool, err error) {
	s = strings.TrimSpace(s)
	if s == "" {
		s = DefaultCleanFlags
	}
	if s == "none" {
		return f, false, nil
	}
	args := strings.Fields(s)
	for i := 0; i < len(args); i++ {
		a := args[i]
		next := func() (string, error) {
			if i+1 >= len(args) {
				return "", fmt.Errorf("parse GIT_CLEAN_FLAGS: %s needs a pattern", a)
			}
			i++
			return args[i], nil
		}
		switch {
		case a == "--force":
			f.force++
		case a == "--quiet":
		case a == "--exclude":
			p, err := next()
			if err != nil {
				return f, false, err
			}
			f.excludes = append(f.excludes, p)
		case strings.HasPrefix(a, "--exclude="):
			f.excludes = append(f.excludes, strings.TrimPrefix(a, "--exclude="))
		case strings.HasPrefix(a, "-") && !strings.HasPrefix(a, "--") && len(a) > 1:
			for j := 1; j < len(a); j++ {
				switch a[j] {
				case 'f':
					f.force++
				case 'd':
					f.dirs = true
				case 'x':
					f.ignored = true
				case 'X':
					f.onlyIgnored = true
				case 'q':
				case 'e':
					if j+1 < len(a) {
						f.excludes = append(f.excludes, a[j+1:])
					} else {
						p, err := next()
						if err != nil {
							return f, false, err
						}
						f.excludes = append(f.excludes, p)
					}
					j = len(a)
				default:
					return f, false, fmt.Errorf("parse GIT_CLEAN_FLAGS: option -%c is not supported", a[j])
				}
			}
		default:
			return f, false, fmt.Errorf("parse GIT_CLEAN_FLAGS: option %q is not supported", a)
		}
	}
	if f.force == 0 {
		return f, false, fmt.Errorf("parse GIT_CLEAN_FLAGS: %q has no -f, git would refuse to clean", s)
	}
	if f.ignored && f.onlyIgnored {
		return f, false, fmt.Errorf("parse GIT_CLEAN_FLAGS: -x and -X cannot be used together")
	}
	return f, true, nil
}

// cleaner removes from a worktree what git clean would remove, given the
// worktree's index.
type cleaner struct {
	root        string
	flags       cleanFlags
	tracked     map[string]bool // files and gitlinks in the index
	trackedDirs map[string]bool // directories holding tracked paths
	ignore      gitignore.Matcher
	exclude     gitignore.Matcher
	out         io.Writer
}

// clean removes untracked files below root according to flags, printing
// "Removing <path>" for each like git clean does.
func clean(root string, idx *index.Index, flags cleanFlags, out io.Writer) error {
	c := &cleaner{
		root:        root,
		flags:       flags,
		tracked:     map[string]bool{},
		trackedDirs: map[string]bool{},
		out:         out,
	}
	// Gitlinks (submodules) are tracked paths too: kept and never entered.
	for _, e := range idx.Entries {
		c.tracked[e.Name] = true
		for d := path.Dir(e.Name); d != "."; d = path.Dir(d) {
			c.trackedDirs[d] = true
		}
	}
	patterns, err := gitignore.ReadPatterns(osfs.New(root), nil)
	if err != nil {
		return fmt.Errorf("read ignore rules: %w", err)
	}
	c.ignore = gitignore.NewMatcher(patterns)
	var ex []gitignore.Pattern
	for _, p := range flags.excludes {
		ex = append(ex, gitignore.ParsePattern(p, nil))
	}
	c.exclude = gitignore.NewMatcher(ex)
	_, err = c.walk("", false, false)
	return err
}

// removable says whether an untracked path goes, given whether ignore rules
// cover it.
func (c *cleaner) removable(ignored bool) bool {
	switch {
	case c.flags.ignored:
		return true
	case c.flags.onlyIgnored:
		return ignored
	default:
		return !ignored
	}
}

// walk cleans directory rel (relative to root, "" for root) and reports how
// many entries are left in it.
func (c *cleaner) walk(rel string, parentIgnored, untracked bool) (left int, err error) {
	entries, err := os.ReadDir(filepath.Join(c.root, filepath.FromSlash(rel)))
	if err != nil {
		return 0, fmt.Errorf("clean %s: %w", displayPath(rel), err)
	}
	for _, e := range entries {
		name := e.Name()
		p := name
		if rel != "" {
			p = rel + "/" + name
		}
		if rel == "" && name == ".git" {
			left++
			continue
		}
		isDir := e.IsDir()
		parts := strings.Split(p, "/")
		if !untracked && c.tracked[p] {
			left++
			continue
		}
		if c.exclude.Match(parts, isDir) {
			left++
			continue
		}
		ignored := parentIgnored || c.ignore.Match(parts, isDir)
		abs := filepath.Join(c.root, filepath.FromSlash(p))
		if isDir && !untracked && c.trackedDirs[p] {
			if _, err := c.walk(p, ignored, false); err != nil {
				return left, err
			}
			left++
			continue
		}
		if !isDir {
			if !c.removable(ignored) {
				left++
				continue
			}
			if err := os.Remove(abs); err != nil {
				return left, fmt.Errorf("clean %s: %w", p, err)
			}
			fmt.Fprintf(c.out, "Removing %s\n", p)
			continue
		}
		// An untracked directory.
		if !c.flags.dirs {
			left++
			continue
		}
		if c.flags.force < 2 {
			if _, err := os.Lstat(filepath.Join(abs, ".git")); err == nil {
				left++ // a nested repository needs -ff
				continue
			}
		}
		if len(c.flags.excludes) == 0 && (c.flags.ignored || (c.flags.onlyIgnored && ignored)) {
			if err := os.RemoveAll(abs); err != nil {
				return left, fmt.Errorf("clean %s: %w", p, err)
			}
			fmt.Fprintf(c.out, "Removing %s/\n", p)
			continue
		}
		n, err := c.walk(p, ignored, true)
		if err != nil {
			return left, err
		}
		if n == 0 && c.removable(ignored) {
			if err := os.Remove(abs); err != nil {
				return left, fmt.Errorf("clean %s: %w", p, err)
			}
			fmt.Fprintf(c.out, "Removing %s/\n", p)
			continue
		}
		left++
	}
	return left, nil
}

func displayPath(rel string) string {
	if rel == "" {
		return "."
	}
	return rel
}
