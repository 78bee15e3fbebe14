package gitlabtest

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

// Project is a GitLab project backed by a real git repository, served over
// smart HTTP at CloneURL to holders of a running job's token.
type Project struct {
	ID            int64
	Path          string // full path, e.g. "group/demo"
	Name          string // last path segment
	Namespace     string // path without Name, e.g. "group"
	NamespaceID   int64
	DefaultBranch string // "main"

	srv         *Server
	bare        string // served git dir
	work        string // work tree commits are made in
	mu          sync.Mutex
	current     string          // branch checked out in work
	lightweight map[string]bool // tags made by Tag
	allowed     map[int64]bool  // projects whose job tokens may read this one (guarded by srv.mu)
	milestones  []string        // titles (guarded by srv.mu)
}

// AllowJobTokenFrom lets jobs of project other clone this project with their
// job token (GitLab's job token allowlist), as submodules need.
func (p *Project) AllowJobTokenFrom(other *Project) {
	p.srv.mu.Lock()
	defer p.srv.mu.Unlock()
	if p.allowed == nil {
		p.allowed = map[int64]bool{}
	}
	p.allowed[other.ID] = true
}

func (p *Project) appendConfig(text string) {
	f, err := os.OpenFile(filepath.Join(p.bare, "config"), os.O_APPEND|os.O_WRONLY, 0)
	if err == nil {
		_, err = f.WriteString(text)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		p.srv.t.Fatalf("gitlabtest: project %s: write git config: %v", p.Path, err)
	}
}

// readRef reads a loose ref of the served repository (the fake never packs
// refs); ok is false when it does not exist.
func (p *Project) readRef(ref string) (string, bool) {
	b, err := os.ReadFile(filepath.Join(p.bare, filepath.FromSlash(ref)))
	if err != nil {
		return "", false
	}
	return strings.TrimSpace(string(b)), true
}

func (s *Server) repoRoot() string { return filepath.Join(s.dir, "repos") }

// CreateProject creates a project at path ("group/demo", nested groups
// allowed) whose default branch "main" holds one commit with files (path →
// content; directories are created as needed).
func (s *Server) CreateProject(fullPath string, files map[string]string) *Project {
	s.t.Helper()
	fullPath = strings.Trim(fullPath, "/")
	if !strings.Contains(fullPath, "/") {
		s.t.Fatalf("gitlabtest: create project %q: want namespace/name", fullPath)
	}
	s.mu.Lock()
	for _, p := range s.projects {
		if p.Path == fullPath {
			s.mu.Unlock()
			s.t.Fatalf("gitlabtest: create project %q: already exists", fullPath)
		}
	}
	p := &Project{
		ID: s.newIDLocked(), Path: fullPath, Name: path.Base(fullPath),
		Namespace: path.Dir(fullPath), DefaultBranch: "main", srv: s,
		bare: filepath.Join(s.repoRoot(), filepath.FromSlash(fullPath)+".git"),
		work: filepath.Join(s.dir, "work", filepath.FromSlash(fullPath)),
	}
	p.NamespaceID = s.namespaceIDLocked(p.Namespace)
	s.projects[p.ID] = p
	s.mu.Unlock()

	if err := os.MkdirAll(filepath.Dir(p.bare), 0o755); err != nil {
		s.t.Fatalf("gitlabtest: create project %q: %v", fullPath, err)
	}
	// The served repository is the git dir of the working repository
	// commits are made in, so a commit needs no push.
	p.git("", "init", "-q", "-b", p.DefaultBranch, "--separate-git-dir", p.bare, p.work)
	p.appendConfig("[uploadpack]\n\tallowReachableSHA1InWant = true\n\tallowAnySHA1InWant = true\n[http]\n\treceivepack = false\n[gc]\n\tauto = 0\n")
	p.current = p.DefaultBranch
	p.Commit("", files, "Initial commit")
	return p
}

func (s *Server) namespaceIDLocked(ns string) int64 {
	for _, p := range s.projects {
		if p.Namespace == ns {
			return p.NamespaceID
		}
	}
	return s.newIDLocked()
}

// Project returns the project with id, or nil.
func (s *Server) Project(id int64) *Project {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.projects[id]
}

// git runs the git CLI with a clean environment, failing the test on error.
func (p *Project) git(dir string, args ...string) string {
	p.srv.t.Helper()
	out, err := runGit(p.srv.dir, dir, args...)
	if err != nil {
		p.srv.t.Fatalf("gitlabtest: project %s: %v", p.Path, err)
	}
	return out
}

func runGit(home, dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"HOME="+home, "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=GitLab Test", "GIT_AUTHOR_EMAIL=test@example.com",
		"GIT_COMMITTER_NAME=GitLab Test", "GIT_COMMITTER_EMAIL=test@example.com",
	)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("run git %s: %w: %s", args[0], err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}

// CloneURL is the project's HTTP clone URL without credentials.
func (p *Project) CloneURL() string { return p.srv.URL() + "/" + p.Path + ".git" }

// Dir is the path of the served bare repository.
func (p *Project) Dir() string { return p.bare }

// SHA is the commit at the tip of the default branch.
func (p *Project) SHA() string { return p.RefSHA(p.DefaultBranch) }

// RefSHA resolves a branch, tag, full ref or sha to a commit sha.
func (p *Project) RefSHA(ref string) string {
	p.srv.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, full := range []string{"refs/heads/" + ref, ref} {
		if strings.HasPrefix(full, "refs/") {
			if sha, ok := p.readRef(full); ok && p.commitObject(full) {
				return sha
			}
		}
	}
	return p.git(p.bare, "rev-parse", "--verify", "-q", ref+"^{commit}")
}

// commitObject reports whether a loose ref names a commit directly (tags
// made by Tag are lightweight; annotated tags need peeling by git).
func (p *Project) commitObject(ref string) bool {
	return strings.HasPrefix(ref, "refs/heads/") || strings.HasPrefix(ref, "refs/pipelines/") ||
		(strings.HasPrefix(ref, "refs/tags/") && p.lightweight[strings.TrimPrefix(ref, "refs/tags/")])
}

// HasBranch reports whether the branch exists.
func (p *Project) HasBranch(name string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.readRef("refs/heads/" + name)
	return ok
}

// HasTag reports whether the tag exists.
func (p *Project) HasTag(name string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.readRef("refs/tags/" + name)
	return ok
}

// Commit writes files (path → content) on branch ("" for the default
// branch; a new branch starts from the default branch) and commits them,
// returning the new sha. A file whose content is RemoveFile is deleted.
func (p *Project) Commit(branch string, files map[string]string, message string) string {
	p.srv.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.commitLocked(branch, files, message)
}

func (p *Project) commitLocked(branch string, files map[string]string, message string) string {
	p.srv.t.Helper()
	if branch == "" {
		branch = p.DefaultBranch
	}
	switch {
	case p.current == branch:
		// Already there; keep the index (it may hold a staged gitlink).
	case p.hasBranchLocked(branch):
		p.git(p.work, "checkout", "-q", "-f", branch)
	default:
		p.git(p.work, "checkout", "-q", "-f", "-b", branch, p.DefaultBranch)
	}
	p.current = branch
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		dst := filepath.Join(p.work, filepath.FromSlash(name))
		if files[name] == RemoveFile {
			if err := os.RemoveAll(dst); err != nil {
				p.srv.t.Fatalf("gitlabtest: project %s: remove %s: %v", p.Path, name, err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			p.srv.t.Fatalf("gitlabtest: project %s: create dir for %s: %v", p.Path, name, err)
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, ".sh") {
			mode = 0o755
		}
		if err := os.WriteFile(dst, []byte(files[name]), mode); err != nil {
			p.srv.t.Fatalf("gitlabtest: project %s: write %s: %v", p.Path, name, err)
		}
	}
	p.git(p.work, "add", "-A")
	p.git(p.work, "commit", "-q", "--allow-empty", "-m", message)
	sha, ok := p.readRef("refs/heads/" + branch)
	if !ok {
		p.srv.t.Fatalf("gitlabtest: project %s: branch %s missing after commit", p.Path, branch)
	}
	if branch != p.DefaultBranch {
		// The served HEAD is the work tree's: keep it on the default branch.
		p.git(p.work, "checkout", "-q", "-f", p.DefaultBranch)
		p.current = p.DefaultBranch
	}
	return sha
}

func (p *Project) hasBranchLocked(name string) bool {
	_, ok := p.readRef("refs/heads/" + name)
	return ok
}

// RemoveFile as a file's content in Commit deletes the file.
const RemoveFile = "\x00remove"

// Branch creates or moves branch name to from (a ref or sha) and returns
// its sha.
func (p *Project) Branch(name, from string) string {
	p.srv.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if name == p.current {
		p.git(p.work, "reset", "-q", "--hard", from)
	} else {
		p.git(p.work, "branch", "-f", name, from)
	}
	sha, _ := p.readRef("refs/heads/" + name)
	return sha
}

// Tag creates or moves the lightweight tag name to ref and returns its sha.
func (p *Project) Tag(name, ref string) string {
	p.srv.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.git(p.work, "tag", "-f", name, ref)
	if p.lightweight == nil {
		p.lightweight = map[string]bool{}
	}
	p.lightweight[name] = true
	sha, _ := p.readRef("refs/tags/" + name)
	return sha
}

// AddSubmodule commits, on the default branch, a submodule at dir pointing
// at sub's current default-branch sha, with a relative URL in .gitmodules
// (as GitLab projects usually do) so it resolves against the
// superproject's clone URL, and lets p's job tokens read sub. It returns
// the new sha.
func (p *Project) AddSubmodule(dir string, sub *Project) string {
	p.srv.t.Helper()
	return p.AddSubmoduleURL(dir, sub, strings.Repeat("../", strings.Count(p.Path, "/")+1)+sub.Path+".git")
}

// AddSubmoduleURL is AddSubmodule with the URL written in .gitmodules as
// given, such as an SSH URL ("git@host:group/lib.git") that a job can only
// fetch over HTTPS with GIT_SUBMODULE_FORCE_HTTPS.
func (p *Project) AddSubmoduleURL(dir string, sub *Project, url string) string {
	p.srv.t.Helper()
	subSHA := sub.SHA()
	sub.AllowJobTokenFrom(p)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.current != p.DefaultBranch {
		p.git(p.work, "checkout", "-q", "-f", p.DefaultBranch)
		p.current = p.DefaultBranch
	}
	existing, _ := os.ReadFile(filepath.Join(p.work, ".gitmodules"))
	modules := string(existing) + fmt.Sprintf("[submodule %q]\n\tpath = %s\n\turl = %s\n", dir, dir, url)
	// An empty directory marks the gitlink as a submodule not checked out,
	// so "git add -A" keeps it.
	if err := os.MkdirAll(filepath.Join(p.work, filepath.FromSlash(dir)), 0o755); err != nil {
		p.srv.t.Fatalf("gitlabtest: project %s: create submodule dir: %v", p.Path, err)
	}
	p.git(p.work, "update-index", "--add", "--cacheinfo", "160000,"+subSHA+","+dir)
	return p.commitLocked("", map[string]string{".gitmodules": modules}, "Add submodule "+dir)
}

// setRef points a ref (e.g. refs/pipelines/7) of the served repository at
// sha.
func (p *Project) setRef(ref, sha string) {
	p.srv.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	dst := filepath.Join(p.bare, filepath.FromSlash(ref))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		p.srv.t.Fatalf("gitlabtest: project %s: create %s: %v", p.Path, ref, err)
	}
	if err := os.WriteFile(dst, []byte(sha+"\n"), 0o644); err != nil {
		p.srv.t.Fatalf("gitlabtest: project %s: write %s: %v", p.Path, ref, err)
	}
}

// gitHandler serves every project with git http-backend.
func (s *Server) gitHandler() http.Handler {
	execPathOnce.Do(func() { execPath, execPathErr = runGit(s.dir, "", "--exec-path") })
	if execPathErr != nil {
		s.t.Fatalf("gitlabtest: find git http-backend: %v", execPathErr)
	}
	return &cgi.Handler{
		Path:       filepath.Join(execPath, "git-http-backend"),
		Env:        []string{"GIT_PROJECT_ROOT=" + s.repoRoot(), "GIT_HTTP_EXPORT_ALL=1", "HOME=" + s.dir, "GIT_CONFIG_NOSYSTEM=1"},
		InheritEnv: []string{"PATH"},
	}
}

var (
	execPathOnce sync.Once
	execPath     string
	execPathErr  error
)

// serveGit authenticates a git request with HTTP basic auth, user
// gitlab-ci-token and the token of a job running on that project.
func (s *Server) serveGit(w http.ResponseWriter, r *http.Request) {
	i := strings.Index(r.URL.Path, ".git/")
	projectPath := strings.Trim(r.URL.Path[:i], "/")
	if r.URL.Query().Get("service") == "git-receive-pack" || strings.HasSuffix(r.URL.Path, "/git-receive-pack") {
		writeMessage(w, http.StatusForbidden, "403 Forbidden: push is not allowed with a job token")
		return
	}
	user, pass, ok := r.BasicAuth()
	tokenOK := ok && user == "gitlab-ci-token" && s.gitTokenAllowed(projectPath, pass)
	if s.serveLFS(w, r, projectPath, r.URL.Path[i+len(".git/"):], tokenOK) {
		return
	}
	if !tokenOK {
		w.Header().Set("WWW-Authenticate", `Basic realm="GitLab"`)
		http.Error(w, "HTTP Basic: Access denied", http.StatusUnauthorized)
		return
	}
	s.git.ServeHTTP(w, r)
}

func (s *Server) gitTokenAllowed(projectPath, token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, j := range s.jobs {
		if j.Token != token || (j.State != statusRunning && j.State != statusCanceling) {
			continue
		}
		for _, p := range s.projects {
			if p.Path == projectPath && (p.ID == j.ProjectID || p.allowed[j.ProjectID]) {
				return true
			}
		}
	}
	return false
}
