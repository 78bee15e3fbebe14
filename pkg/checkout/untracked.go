package checkout

import (
	"slices"

	"github.com/go-git/go-git/v5"
)

// Untracked lists the files git does not track in the work tree at dir,
// relative to it and sorted (git ls-files --others --exclude-standard); nil
// when dir is not a repository. Artifacts and caches with untracked: true
// take them.
func Untracked(dir string) []string {
	repo, err := git.PlainOpen(dir)
	if err != nil {
		return nil
	}
	wt, err := repo.Worktree()
	if err != nil {
		return nil
	}
	st, err := wt.Status()
	if err != nil {
		return nil
	}
	var out []string
	for f, s := range st {
		if s.Worktree == git.Untracked {
			out = append(out, f)
		}
	}
	slices.Sort(out)
	return out
}
