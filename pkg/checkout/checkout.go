// Package checkout owns getting a job's sources into its project directory
// without a git binary: it clones or fetches the job's refspecs over git's
// smart HTTP protocol with go-git, checks out the job's commit as a detached
// HEAD, cleans the worktree, downloads Git LFS objects through the LFS
// batch API (as `git lfs pull` after a checkout) and updates submodules,
// following GitLab Runner's GIT_STRATEGY, GIT_CHECKOUT, GIT_CLEAN_FLAGS,
// GIT_FETCH_EXTRA_FLAGS, GIT_LFS_SKIP_SMUDGE and GIT_SUBMODULE_* settings.
// It also lists a work tree's untracked files, ignored ones included
// (Untracked), for artifacts and caches with `untracked: true`.
//
// The job token travels only as HTTP basic auth on each request, to the
// repository's own host: it is never written into .git/config and never
// appears in an error or a trace line.
//
// go-git chooses its HTTP transport from a process-wide table: on first use
// Get installs there, for http and https, a client that sends each request
// through the transport of the Get that made it (Options.HTTPClient and
// Options.CAPEM). Other go-git users in the same process share that client.
package checkout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"

	"gitlab-serverless-runner/pkg/gitlab"
)

// Strategy is a GIT_STRATEGY value.
type Strategy string

// The strategies of GIT_STRATEGY.
const (
	// StrategyClone removes the project directory and fetches afresh.
	StrategyClone Strategy = "clone"
	// StrategyFetch reuses the repository a previous job left, if usable.
	StrategyFetch Strategy = "fetch"
	// StrategyNone leaves the project directory as it is.
	StrategyNone Strategy = "none"
	// StrategyEmpty leaves an empty project directory.
	StrategyEmpty Strategy = "empty"
)

// SubmoduleStrategy is a GIT_SUBMODULE_STRATEGY value.
type SubmoduleStrategy string

// The strategies of GIT_SUBMODULE_STRATEGY.
const (
	SubmodulesNone      SubmoduleStrategy = "none"
	SubmodulesNormal    SubmoduleStrategy = "normal"
	SubmodulesRecursive SubmoduleStrategy = "recursive"
)

// Options says what to check out, where and how. The zero value of every
// field but Git and Dir means GitLab Runner's default.
type Options struct {
	// Git is the job's git_info. Its RepoURL carries the job's credentials
	// (gitlab-ci-token:<job token>@); they are sent as basic auth to that
	// host only.
	Git gitlab.GitInfo
	// Dir is the project directory (CI_PROJECT_DIR).
	Dir string
	// Strategy is GIT_STRATEGY; empty means fetch when AllowGitFetch is
	// true and clone otherwise.
	Strategy Strategy
	// AllowGitFetch is the job's allow_git_fetch.
	AllowGitFetch bool
	// SkipCheckout is GIT_CHECKOUT=false: fetch, but leave the worktree
	// alone (no checkout, no clean, no submodules).
	SkipCheckout bool
	// Submodules is GIT_SUBMODULE_STRATEGY; empty means none.
	Submodules SubmoduleStrategy
	// SubmoduleDepth is GIT_SUBMODULE_DEPTH; nil means Git.Depth. 0 is the
	// full history.
	SubmoduleDepth *int
	// SubmodulePaths is GIT_SUBMODULE_PATHS split on spaces: paths of
	// top-level submodules to update, or ":(exclude)path" / ":!path" to
	// leave one out. Empty means all.
	SubmodulePaths []string
	// CleanFlags is GIT_CLEAN_FLAGS; empty means DefaultCleanFlags and
	// "none" disables cleaning. Supported: -f, -d, -x, -X, -q, -e pattern.
	CleanFlags string
	// FetchFlags is GIT_FETCH_EXTRA_FLAGS split on spaces; nil means
	// DefaultFetchFlags. Those with a go-git meaning are honoured (--prune,
	// --no-prune, --tags, --no-tags, --depth, --verbose and --progress;
	// --quiet and --force are what go-git does anyway); the trace names
	// the others as ignored.
	FetchFlags []string
	// SubmoduleUpdateFlags is GIT_SUBMODULE_UPDATE_FLAGS split on spaces:
	// --remote (check out the tip of the submodule's branch, or of its
	// default branch, instead of the recorded commit), --recursive,
	// --depth and --no-fetch are honoured; --init, --force, --checkout and
	// --quiet are what the update does anyway; the trace names the others
	// as ignored.
	SubmoduleUpdateFlags []string
	// SubmoduleForceHTTPS is GIT_SUBMODULE_FORCE_HTTPS: submodule URLs
	// that reach the GitLab server over SSH (git@<host>:<path>,
	// ssh://git@<host>[:<port>]/<path>) are fetched from ServerURL over
	// HTTPS with the job's credentials, as gitlab-runner's insteadOf rules
	// do. Without it such a submodule fails with a message naming the
	// variable.
	SubmoduleForceHTTPS bool
	// ServerURL is CI_SERVER_URL ("" means the repository's scheme and
	// host), SSHHost is CI_SERVER_SHELL_SSH_HOST (or CI_SERVER_HOST) and
	// SSHPort is CI_SERVER_SHELL_SSH_PORT: what SubmoduleForceHTTPS
	// rewrites.
	ServerURL, SSHHost, SSHPort string
	// LFSSkipSmudge is GIT_LFS_SKIP_SMUDGE: leave Git LFS pointer files as
	// they are instead of downloading their objects.
	LFSSkipSmudge bool
	// CAPEM holds extra PEM certificates to trust for the repository's
	// HTTPS server, in addition to the system roots.
	CAPEM []byte
	// Trace receives progress lines like GitLab Runner's get-sources
	// output; nil discards them.
	Trace io.Writer
	// HTTPClient's Transport carries every git request; nil means
	// http.DefaultTransport. Other client fields are not used: bound the
	// time with ctx. With CAPEM set the transport must be an
	// *http.Transport.
	HTTPClient *http.Client
}

// Result says what Get did.
type Result struct {
	// Dir is the absolute project directory.
	Dir string
	// Strategy is the strategy applied: StrategyClone when a fetch found
	// no repository it could reuse.
	Strategy Strategy
	// Reused is true when an existing repository was fetched into.
	Reused bool
	// Commit is the commit checked out, or "" when nothing was.
	Commit string
	// Submodules lists the paths of the submodules checked out, nested
	// ones as parent/child.
	Submodules []string
}

// Get brings the job's sources into o.Dir. Errors say which step failed and
// never contain the job's credentials.
func Get(ctx context.Context, o Options) (Result, error) {
	var secrets []string
	if u, err := parseRemote(o.Git.RepoURL); err == nil {
		secrets = append(secrets, u.password)
	}
	res, err := get(ctx, o)
	if err != nil {
		return res, scrub(fmt.Errorf("checkout: %w", err), secrets...)
	}
	return res, nil
}

func get(ctx context.Context, o Options) (Result, error) {
	out := o.Trace
	if out == nil {
		out = io.Discard
	}
	if o.Dir == "" {
		return Result{}, errors.New("no project directory given")
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return Result{}, fmt.Errorf("resolve project directory: %w", err)
	}
	res := Result{Dir: dir, Strategy: o.Strategy}
	if res.Strategy == "" {
		res.Strategy = StrategyClone
		if o.AllowGitFetch {
			res.Strategy = StrategyFetch
		}
	}

	switch res.Strategy {
	case StrategyNone:
		fmt.Fprintln(out, "Skipping Git repository setup")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return res, fmt.Errorf("create project directory: %w", err)
		}
		return res, nil
	case StrategyEmpty:
		fmt.Fprintln(out, "Skipping Git repository setup and creating an empty build directory")
		if err := os.RemoveAll(dir); err != nil {
			return res, fmt.Errorf("remove project directory: %w", err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return res, fmt.Errorf("create project directory: %w", err)
		}
		return res, nil
	case StrategyClone, StrategyFetch:
	default:
		return res, fmt.Errorf("GIT_STRATEGY %q is not one of clone, fetch, none, empty", res.Strategy)
	}

	g, err := newGetter(ctx, o, out)
	if err != nil {
		return res, err
	}
	return g.run(dir, res)
}

// getter holds the validated inputs of one fetch or clone.
type getter struct {
	ctx      context.Context
	o        Options
	out      io.Writer
	remote   remote
	sha      plumbing.Hash
	refspecs []config.RefSpec
	clean    cleanFlags
	doClean  bool
	fetch    fetchFlags
	sub      submoduleFlags
	ignored  []string // warnings about flags without a go-git meaning
}

func newGetter(ctx context.Context, o Options, out io.Writer) (*getter, error) {
	g := &getter{o: o, out: out}
	var err error
	if g.remote, err = parseRemote(o.Git.RepoURL); err != nil {
		return nil, err
	}
	if f := o.Git.RepoObjectFormat; f != "" && f != "sha1" {
		return nil, fmt.Errorf("repository object format %q is not supported, only sha1", f)
	}
	if !plumbing.IsHash(o.Git.Sha) {
		return nil, fmt.Errorf("commit sha %q is not a full sha1", o.Git.Sha)
	}
	g.sha = plumbing.NewHash(o.Git.Sha)
	if o.Git.Depth < 0 {
		return nil, fmt.Errorf("git depth %d is negative", o.Git.Depth)
	}
	specs := o.Git.Refspecs
	if len(specs) == 0 {
		specs = []string{"+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"}
	}
	for _, s := range specs {
		rs := config.RefSpec(s)
		if err := rs.Validate(); err != nil {
			return nil, fmt.Errorf("parse refspec %q: %w", s, err)
		}
		g.refspecs = append(g.refspecs, rs)
	}
	if g.clean, g.doClean, err = parseCleanFlags(o.CleanFlags); err != nil {
		return nil, err
	}
	switch o.Submodules {
	case "", SubmodulesNone, SubmodulesNormal, SubmodulesRecursive:
	default:
		return nil, fmt.Errorf("GIT_SUBMODULE_STRATEGY %q is not one of none, normal, recursive", o.Submodules)
	}
	if o.SubmoduleDepth != nil && *o.SubmoduleDepth < 0 {
		return nil, fmt.Errorf("submodule depth %d is negative", *o.SubmoduleDepth)
	}
	fetchArgs := o.FetchFlags
	if fetchArgs == nil {
		fetchArgs = DefaultFetchFlags
	}
	var ignored []string
	if g.fetch, ignored, err = parseFetchFlags(fetchArgs); err != nil {
		return nil, err
	}
	for _, f := range ignored {
		g.ignored = append(g.ignored, fmt.Sprintf("GIT_FETCH_EXTRA_FLAGS: %s is ignored: it has no meaning for this runner's git (go-git)", f))
	}
	if g.sub, ignored, err = parseSubmoduleFlags(o.SubmoduleUpdateFlags); err != nil {
		return nil, err
	}
	for _, f := range ignored {
		g.ignored = append(g.ignored, fmt.Sprintf("GIT_SUBMODULE_UPDATE_FLAGS: %s is ignored: it has no meaning for this runner's git (go-git)", f))
	}
	installTransport()
	if g.ctx, err = withRoundTripper(ctx, o.HTTPClient, o.CAPEM); err != nil {
		return nil, err
	}
	return g, nil
}

func (g *getter) run(dir string, res Result) (Result, error) {
	for _, w := range g.ignored {
		fmt.Fprintf(g.out, "WARNING: %s\n", w)
	}
	depth := g.o.Git.Depth
	if g.fetch.depth != nil {
		depth = *g.fetch.depth
	}
	if depth > 0 {
		fmt.Fprintf(g.out, "Fetching changes with git depth set to %d...\n", depth)
	} else {
		fmt.Fprintln(g.out, "Fetching changes...")
	}

	var r *git.Repository
	if res.Strategy == StrategyFetch {
		r = g.reusable(dir)
	}
	if r != nil {
		res.Reused = true
		fmt.Fprintf(g.out, "Reinitialized existing Git repository in %s/\n", filepath.Join(dir, ".git"))
	} else {
		if res.Strategy == StrategyFetch {
			res.Strategy = StrategyClone
		}
		if err := os.RemoveAll(dir); err != nil {
			return res, fmt.Errorf("remove project directory: %w", err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return res, fmt.Errorf("create project directory: %w", err)
		}
		var err error
		if r, err = git.PlainInit(dir, false); err != nil {
			return res, fmt.Errorf("initialize repository: %w", err)
		}
		fmt.Fprintf(g.out, "Initialized empty Git repository in %s/\n", filepath.Join(dir, ".git"))
	}
	created, err := setOrigin(r, g.remote.String())
	if err != nil {
		return res, err
	}
	if created {
		fmt.Fprintln(g.out, "Created fresh repository.")
	}

	fo := &git.FetchOptions{
		RemoteName: git.DefaultRemoteName,
		RefSpecs:   g.refspecs,
		Depth:      depth,
		Auth:       g.remote.auth(g.remote.String()),
		Tags:       g.fetch.tags,
		Force:      true,
		Prune:      g.fetch.prune,
	}
	if g.fetch.progress {
		fo.Progress = g.out
	}
	err = r.FetchContext(g.ctx, fo)
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return res, fetchError(g.remote.String(), err)
	}
	if _, err := r.CommitObject(g.sha); err != nil {
		return res, fmt.Errorf("find commit %s: it is not reachable from the fetched refspecs %s (depth %d): %w",
			g.sha, strings.Join(g.o.Git.Refspecs, " "), depth, err)
	}

	if g.o.SkipCheckout {
		fmt.Fprintln(g.out, "Skipping Git checkout")
		fmt.Fprintln(g.out, "Skipping Git submodules setup")
		return res, nil
	}
	fmt.Fprintf(g.out, "Checking out %s as detached HEAD (ref is %s)...\n", g.sha.String()[:8], g.o.Git.Ref)
	if err := g.checkout(r, g.sha); err != nil {
		return res, err
	}
	res.Commit = g.sha.String()
	if err := g.lfs(r, dir, g.remote.String(), "the repository"); err != nil {
		return res, err
	}

	subs, err := g.submodules(r)
	res.Submodules = subs
	return res, err
}

// reusable opens the repository a previous job left in dir, or returns nil
// when there is none that a fetch can bring up to date.
func (g *getter) reusable(dir string) *git.Repository {
	gitDir := filepath.Join(dir, ".git")
	if fi, err := os.Stat(gitDir); err != nil || !fi.IsDir() {
		return nil
	}
	removeStaleLocks(gitDir)
	r, err := git.PlainOpen(dir)
	if err != nil {
		return nil
	}
	if _, err := r.Worktree(); err != nil {
		return nil
	}
	if g.o.Git.Depth == 0 {
		// go-git cannot deepen a shallow repository to its full history.
		if shallow, err := r.Storer.Shallow(); err != nil || len(shallow) > 0 {
			return nil
		}
	}
	return r
}

// removeStaleLocks deletes the lock files an interrupted git process may
// have left (submodule repositories included), and the post-checkout hook
// a previous job may have planted.
func removeStaleLocks(gitDir string) {
	for _, name := range []string{"index.lock", "shallow.lock", "HEAD.lock", "config.lock", "packed-refs.lock", "hooks/post-checkout"} {
		_ = os.Remove(filepath.Join(gitDir, name))
	}
	for _, sub := range []string{"refs", "modules"} {
		_ = filepath.WalkDir(filepath.Join(gitDir, sub), func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(p, ".lock") {
				_ = os.Remove(p)
			}
			return nil
		})
	}
}

// setOrigin points remote origin at url (a URL without credentials),
// creating it if needed.
func setOrigin(r *git.Repository, url string) (created bool, err error) {
	cfg, err := r.Config()
	if err != nil {
		return false, fmt.Errorf("read repository config: %w", err)
	}
	rc, ok := cfg.Remotes[git.DefaultRemoteName]
	if ok && len(rc.URLs) == 1 && rc.URLs[0] == url {
		return false, nil
	}
	if !ok {
		rc = &config.RemoteConfig{
			Name:  git.DefaultRemoteName,
			Fetch: []config.RefSpec{"+refs/heads/*:refs/remotes/origin/*"},
		}
		cfg.Remotes[git.DefaultRemoteName] = rc
	}
	rc.URLs = []string{url}
	if err := r.Storer.SetConfig(cfg); err != nil {
		return false, fmt.Errorf("set remote origin: %w", err)
	}
	return !ok, nil
}

// checkout force-checks out sha as a detached HEAD and cleans the worktree.
func (g *getter) checkout(r *git.Repository, sha plumbing.Hash) error {
	wt, err := r.Worktree()
	if err != nil {
		return fmt.Errorf("open worktree: %w", err)
	}
	if err := forceCheckout(r, wt, sha); err != nil {
		return fmt.Errorf("check out %s: %w", sha, err)
	}
	if !g.doClean {
		return nil
	}
	idx, err := r.Storer.Index()
	if err != nil {
		return fmt.Errorf("read index: %w", err)
	}
	root := wt.Filesystem.Root()
	if err := clean(root, idx, g.clean, g.out); err != nil {
		return fmt.Errorf("clean worktree: %w", err)
	}
	return nil
}

// lfs downloads the Git LFS objects of the work tree of r, unless
// GIT_LFS_SKIP_SMUDGE says not to.
func (g *getter) lfs(r *git.Repository, root, repoURL, display string) error {
	if g.o.LFSSkipSmudge {
		return nil
	}
	return g.pullLFS(r, root, repoURL, display)
}

// fetchError explains a failed fetch from url (without credentials).
func fetchError(url string, err error) error {
	var noRef git.NoMatchingRefSpecError
	switch {
	case errors.Is(err, transport.ErrAuthenticationRequired), errors.Is(err, transport.ErrAuthorizationFailed):
		return fmt.Errorf("fetch %s: the server refused the job's credentials: %w", url, err)
	case errors.Is(err, transport.ErrRepositoryNotFound):
		return fmt.Errorf("fetch %s: the repository was not found or the job may not read it: %w", url, err)
	case errors.As(err, &noRef):
		return fmt.Errorf("fetch %s: the repository has no ref for one of the job's refspecs: %w", url, err)
	default:
		return fmt.Errorf("fetch %s: %w", url, err)
	}
}

// forceCheckout does what git checkout -f <sha> does: HEAD detached at sha,
// index and tracked files as in sha, local changes to them thrown away, and
// untracked files left for clean to judge. go-git's own forced checkout
// (a hard reset) would also delete every untracked and ignored file, which
// would defeat GIT_CLEAN_FLAGS, so the reset is limited to the paths the
// index or the commit know.
func forceCheckout(r *git.Repository, wt *git.Worktree, sha plumbing.Hash) error {
	commit, err := r.CommitObject(sha)
	if err != nil {
		return err
	}
	tree, err := commit.Tree()
	if err != nil {
		return err
	}
	idx, err := r.Storer.Index()
	if err != nil {
		return fmt.Errorf("read index: %w", err)
	}
	known := map[string]bool{}
	for _, e := range idx.Entries {
		known[e.Name] = true
	}
	walker := object.NewTreeWalker(tree, true, nil)
	defer walker.Close()
	for {
		name, entry, err := walker.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("list tree: %w", err)
		}
		if entry.Mode != filemode.Dir {
			known[name] = true
		}
	}
	files := make([]string, 0, len(known))
	for name := range known {
		files = append(files, name)
	}
	if err := r.Storer.SetReference(plumbing.NewHashReference(plumbing.HEAD, sha)); err != nil {
		return fmt.Errorf("detach HEAD: %w", err)
	}
	mode := git.HardReset
	if len(files) == 0 {
		// An empty commit over an empty index: nothing to write, and an
		// empty Files list would mean every path to go-git.
		mode = git.MixedReset
	}
	return wt.Reset(&git.ResetOptions{Commit: sha, Mode: mode, Files: files})
}
