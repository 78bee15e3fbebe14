package checkout

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/filemode"
)

// Untracked lists the files git does not track in the work tree at dir,
// ignored files included, relative to it and sorted, as `git ls-files
// --others` does: artifacts and caches with `untracked: true` take them,
// and a build/ directory named in .gitignore is what people want to keep.
// Submodules are not entered; a repository nested in the work tree that
// git does not track is listed as its directory ("dir/"), as git lists
// it. Nil when dir is not a repository.
func Untracked(dir string) []string {
	repo, err := git.PlainOpen(dir)
	if err != nil {
		return nil
	}
	idx, err := repo.Storer.Index()
	if err != nil {
		return nil
	}
	tracked := make(map[string]bool, len(idx.Entries))
	gitlinks := map[string]bool{}
	for _, e := range idx.Entries {
		tracked[e.Name] = true
		if e.Mode == filemode.Submodule {
			gitlinks[e.Name] = true
		}
	}
	root, err := filepath.Abs(dir)
	if err != nil {
		return nil
	}
	var out []string
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			// An unreadable directory is left out, as git leaves it.
			if d != nil && d.IsDir() && p != root {
				return filepath.SkipDir
			}
			return nil
		}
		if p == root {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return nil
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			switch {
			case rel == ".git":
				return filepath.SkipDir
			case gitlinks[rel]:
				return filepath.SkipDir
			case isRepository(p):
				out = append(out, rel+"/")
				return filepath.SkipDir
			}
			return nil
		}
		if !tracked[rel] {
			out = append(out, rel)
		}
		return nil
	})
	slices.Sort(out)
	return out
}

// isRepository reports whether dir holds a .git directory or file.
func isRepository(dir string) bool {
	_, err := os.Lstat(filepath.Join(dir, ".git"))
	return err == nil
}
