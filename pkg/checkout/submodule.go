package checkout

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
)

// submodules updates the submodules of r as Options.Submodules asks and
// returns the paths it checked out.
func (g *getter) submodules(r *git.Repository) ([]string, error) {
	strategy := g.o.Submodules
	if strategy == "" || strategy == SubmodulesNone {
		fmt.Fprintln(g.out, "Skipping Git submodules setup")
		return nil, nil
	}
	depth := g.o.Git.Depth
	if g.o.SubmoduleDepth != nil {
		depth = *g.o.SubmoduleDepth
	}
	if g.sub.depth != nil {
		depth = *g.sub.depth
	}
	recursive := strategy == SubmodulesRecursive || g.sub.recursive
	msg := "Updating/initializing submodules"
	if recursive {
		msg += " recursively"
	}
	if depth > 0 {
		msg += fmt.Sprintf(" with git depth set to %d", depth)
	}
	fmt.Fprintln(g.out, msg+"...")
	var done []string
	err := g.updateSubmodules(r, g.remote.url, depth, recursive, "", g.o.SubmodulePaths, &done)
	return done, err
}

// updateSubmodules initializes, fetches and checks out the submodules of r,
// whose own URL is base; prefix is r's path in the project for messages.
// paths filters the submodules of this level (nil: all).
func (g *getter) updateSubmodules(r *git.Repository, base *url.URL, depth int, recursive bool, prefix string, paths []string, done *[]string) error {
	wt, err := r.Worktree()
	if err != nil {
		return fmt.Errorf("open worktree: %w", err)
	}
	subs, err := wt.Submodules()
	if err != nil {
		return fmt.Errorf("read .gitmodules in %s: %w", displayPath(strings.TrimSuffix(prefix, "/")), err)
	}
	idx, err := r.Storer.Index()
	if err != nil {
		return fmt.Errorf("read index: %w", err)
	}
	for _, sub := range subs {
		c := sub.Config()
		p := prefix + c.Path
		if !pathSelected(c.Path, paths) {
			continue
		}
		entry, err := idx.Entry(c.Path)
		if err != nil {
			// Listed in .gitmodules but not a gitlink of this commit.
			continue
		}
		subURL, err := g.resolveSubmoduleURL(base, c.URL)
		if err != nil {
			return fmt.Errorf("submodule %s: %w", p, err)
		}
		sr, err := g.initSubmodule(r, sub, subURL, p)
		if err != nil {
			return fmt.Errorf("submodule %s: %w", p, err)
		}
		target := entry.Hash
		switch {
		case g.sub.remote:
			if target, err = g.remoteTip(sr, subURL, c.Branch, depth); err != nil {
				return fmt.Errorf("submodule %s: %w", p, err)
			}
		case g.sub.noFetch:
			if _, err := sr.CommitObject(target); err != nil {
				return fmt.Errorf("submodule %s: commit %s is not in its repository and GIT_SUBMODULE_UPDATE_FLAGS has --no-fetch", p, target)
			}
		default:
			if err := g.fetchSubmodule(sr, subURL, target, depth); err != nil {
				return fmt.Errorf("submodule %s: %w", p, err)
			}
		}
		if err := g.checkout(sr, target); err != nil {
			return fmt.Errorf("submodule %s: %w", p, err)
		}
		fmt.Fprintf(g.out, "Submodule path '%s': checked out '%s'\n", p, target)
		*done = append(*done, p)
		swt, err := sr.Worktree()
		if err != nil {
			return fmt.Errorf("submodule %s: open worktree: %w", p, err)
		}
		if err := g.lfs(sr, swt.Filesystem.Root(), subURL, "submodule "+p); err != nil {
			return fmt.Errorf("submodule %s: %w", p, err)
		}
		if recursive {
			u, err := url.Parse(subURL)
			if err != nil {
				return fmt.Errorf("submodule %s: parse URL: %w", p, err)
			}
			if err := g.updateSubmodules(sr, u, depth, true, p+"/", nil, done); err != nil {
				return err
			}
		}
	}
	return nil
}

// initSubmodule records sub in r's config with the resolved URL (like git
// submodule init and sync) and opens or creates its repository.
func (g *getter) initSubmodule(r *git.Repository, sub *git.Submodule, subURL, display string) (*git.Repository, error) {
	c := sub.Config()
	c.URL = subURL
	err := sub.Init()
	switch {
	case err == nil:
		fmt.Fprintf(g.out, "Submodule '%s' (%s) registered for path '%s'\n", c.Name, redactURL(subURL), display)
	case errors.Is(err, git.ErrSubmoduleAlreadyInitialized):
		cfg, err := r.Config()
		if err != nil {
			return nil, fmt.Errorf("read config: %w", err)
		}
		if sc := cfg.Submodules[c.Name]; sc != nil && sc.URL != subURL {
			sc.URL = subURL
			if err := r.Storer.SetConfig(cfg); err != nil {
				return nil, fmt.Errorf("update config: %w", err)
			}
		}
	default:
		return nil, fmt.Errorf("initialize: %w", err)
	}
	sr, err := sub.Repository()
	if err != nil {
		return nil, fmt.Errorf("open repository: %w", err)
	}
	if _, err := setOrigin(sr, subURL); err != nil {
		return nil, err
	}
	return sr, nil
}

// fetchSubmodule fetches the submodule's branches and tags, then the commit
// itself if they do not reach it.
func (g *getter) fetchSubmodule(sr *git.Repository, subURL string, sha plumbing.Hash, depth int) error {
	if _, err := sr.CommitObject(sha); err == nil {
		return nil
	}
	auth := g.remote.auth(subURL)
	err := sr.FetchContext(g.ctx, &git.FetchOptions{
		RemoteName: git.DefaultRemoteName,
		RefSpecs:   []config.RefSpec{"+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"},
		Depth:      depth,
		Auth:       auth,
		Tags:       git.NoTags,
		Force:      true,
	})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return fetchError(redactURL(subURL), err)
	}
	if _, err := sr.CommitObject(sha); err == nil {
		return nil
	}
	err = sr.FetchContext(g.ctx, &git.FetchOptions{
		RemoteName: git.DefaultRemoteName,
		RefSpecs:   []config.RefSpec{config.RefSpec("+" + sha.String() + ":" + sha.String())},
		Depth:      depth,
		Auth:       auth,
		Tags:       git.NoTags,
		Force:      true,
	})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return fmt.Errorf("fetch commit %s from %s: %w", sha, redactURL(subURL), err)
	}
	if _, err := sr.CommitObject(sha); err != nil {
		return fmt.Errorf("find commit %s in %s: %w", sha, redactURL(subURL), err)
	}
	return nil
}

// remoteTip fetches the tip of the submodule's branch (its .gitmodules
// branch; "." is the superproject's ref; none is the remote's default
// branch, HEAD) and returns it, as `git submodule update --remote` does.
func (g *getter) remoteTip(sr *git.Repository, subURL, branch string, depth int) (plumbing.Hash, error) {
	if g.sub.noFetch {
		return plumbing.ZeroHash, errors.New("GIT_SUBMODULE_UPDATE_FLAGS has both --remote and --no-fetch")
	}
	src, dst := "HEAD", "refs/remotes/origin/HEAD"
	switch branch {
	case "":
	case ".":
		branch = g.o.Git.Ref
		fallthrough
	default:
		src, dst = "refs/heads/"+branch, "refs/remotes/origin/"+branch
	}
	err := sr.FetchContext(g.ctx, &git.FetchOptions{
		RemoteName: git.DefaultRemoteName,
		RefSpecs:   []config.RefSpec{config.RefSpec("+" + src + ":" + dst)},
		Depth:      depth,
		Auth:       g.remote.auth(subURL),
		Tags:       git.NoTags,
		Force:      true,
	})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return plumbing.ZeroHash, fmt.Errorf("fetch %s of %s (--remote): %w", src, redactURL(subURL), err)
	}
	ref, err := sr.Reference(plumbing.ReferenceName(dst), true)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("find %s of %s (--remote): %w", src, redactURL(subURL), err)
	}
	return ref.Hash(), nil
}

// pathSelected applies GIT_SUBMODULE_PATHS pathspecs to a submodule path.
func pathSelected(p string, specs []string) bool {
	included, anyInclude := false, false
	under := func(spec string) bool {
		spec = strings.TrimSuffix(strings.TrimPrefix(spec, "./"), "/")
		return p == spec || strings.HasPrefix(p, spec+"/")
	}
	for _, s := range specs {
		switch {
		case strings.HasPrefix(s, ":(exclude)"):
			if under(strings.TrimPrefix(s, ":(exclude)")) {
				return false
			}
		case strings.HasPrefix(s, ":!"):
			if under(strings.TrimPrefix(s, ":!")) {
				return false
			}
		default:
			anyInclude = true
			if under(s) {
				included = true
			}
		}
	}
	return included || !anyInclude
}
