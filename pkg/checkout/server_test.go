package checkout_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"gitlab-serverless-runner/pkg/gitlab"
)

// gitServer serves the bare repositories under root over git's smart HTTP
// protocol with the real git http-backend, as GitLab would: every request
// must carry basic auth gitlab-ci-token:<token> (token "" means no auth).
// The fake GitLab (gitlabtest) serves git too and gitlab_test.go uses it;
// this smaller server remains for what a checkout test must steer directly:
// arbitrary refs and commits on no branch, a fixed token, a second host
// that records the Authorization headers it receives, and TLS.
type gitServer struct {
	*httptest.Server
	root  string
	token string

	mu        sync.Mutex
	authSeen  []string // Authorization headers received, "" when absent
	pathsSeen []string
	// other, when set, answers every request that is not git's (such as
	// the LFS API), after the same authentication.
	other http.Handler
}

func newGitServer(t testing.TB, token string) *gitServer {
	t.Helper()
	return startGitServer(t, token, httptest.NewServer)
}

func startGitServer(t testing.TB, token string, start func(http.Handler) *httptest.Server) *gitServer {
	t.Helper()
	gitBin, err := exec.LookPath("git")
	if err != nil {
		t.Fatalf("the tests need the git CLI to build and serve repositories: %v", err)
	}
	s := &gitServer{root: t.TempDir(), token: token}
	backend := &cgi.Handler{
		Stderr: io.Discard,
		Path:   gitBin,
		Args:   []string{"http-backend"},
		Env: []string{
			"GIT_PROJECT_ROOT=" + s.root,
			"GIT_HTTP_EXPORT_ALL=1",
			"GIT_CONFIG_NOSYSTEM=1",
			"HOME=" + s.root,
			// Lets a submodule pinned to a commit no branch tip reaches
			// be fetched by sha, as GitLab allows.
			"GIT_CONFIG_COUNT=1",
			"GIT_CONFIG_KEY_0=uploadpack.allowAnySHA1InWant",
			"GIT_CONFIG_VALUE_0=true",
		},
	}
	s.Server = start(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.authSeen = append(s.authSeen, r.Header.Get("Authorization"))
		s.pathsSeen = append(s.pathsSeen, r.URL.Path)
		s.mu.Unlock()
		if s.token != "" {
			user, pass, ok := r.BasicAuth()
			if !ok || user != "gitlab-ci-token" || pass != s.token {
				w.Header().Set("WWW-Authenticate", `Basic realm="GitLab"`)
				http.Error(w, "HTTP Basic: Access denied", http.StatusUnauthorized)
				return
			}
		}
		if s.other != nil && !strings.Contains(r.URL.Path, "/info/refs") && !strings.HasSuffix(r.URL.Path, "/git-upload-pack") {
			s.other.ServeHTTP(w, r)
			return
		}
		backend.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

// requests returns the Authorization headers the server received.
func (s *gitServer) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.authSeen...)
}

// repoURL is the clone URL of repository path (like "group/proj") with the
// job credentials embedded, as git_info.repo_url carries it.
func (s *gitServer) repoURL(path, token string) string {
	u, _ := url.Parse(s.URL)
	u.User = url.UserPassword("gitlab-ci-token", token)
	u.Path = "/" + path + ".git"
	return u.String()
}

// project is a bare repository served by a gitServer, with a working clone
// to make commits in.
type project struct {
	t    testing.TB
	srv  *gitServer
	path string // "group/name"
	bare string
	work string
}

func (s *gitServer) newProject(t testing.TB, path string) *project {
	t.Helper()
	p := &project{t: t, srv: s, path: path, bare: filepath.Join(s.root, filepath.FromSlash(path)+".git"), work: t.TempDir()}
	runGit(t, "", "init", "-q", "--bare", "-b", "main", p.bare)
	runGit(t, p.work, "init", "-q", "-b", "main")
	return p
}

// url returns the project's repo_url with token embedded.
func (p *project) url(token string) string { return p.srv.repoURL(p.path, token) }

// commit writes files (content "" deletes the file) in the working clone,
// commits them and returns the new commit's sha.
func (p *project) commit(msg string, files map[string]string) string {
	p.t.Helper()
	for name, content := range files {
		f := filepath.Join(p.work, filepath.FromSlash(name))
		if content == "" {
			runGit(p.t, p.work, "rm", "-q", "--", name)
			continue
		}
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			p.t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte(content), 0o644); err != nil {
			p.t.Fatal(err)
		}
		runGit(p.t, p.work, "add", "--", name)
	}
	runGit(p.t, p.work, "commit", "-q", "--allow-empty", "-m", msg)
	return runGit(p.t, p.work, "rev-parse", "HEAD")
}

// addSubmodule records a gitlink at path to commit sha of a repository
// reachable at url (relative or absolute) and commits it.
func (p *project) addSubmodule(path, url, sha string) string {
	p.t.Helper()
	runGit(p.t, p.work, "config", "-f", ".gitmodules", "submodule."+path+".path", path)
	runGit(p.t, p.work, "config", "-f", ".gitmodules", "submodule."+path+".url", url)
	runGit(p.t, p.work, "update-index", "--add", "--cacheinfo", "160000,"+sha+","+path)
	runGit(p.t, p.work, "add", ".gitmodules")
	runGit(p.t, p.work, "commit", "-q", "-m", "add submodule "+path)
	return runGit(p.t, p.work, "rev-parse", "HEAD")
}

// push pushes refspecs from the working clone to the served repository.
func (p *project) push(refspecs ...string) {
	p.t.Helper()
	runGit(p.t, p.work, append([]string{"push", "-q", "-f", p.bare}, refspecs...)...)
}

// setRef points ref of the served repository at sha (like GitLab creating
// refs/pipelines/<id>).
func (p *project) setRef(ref, sha string) {
	p.t.Helper()
	p.push(sha + ":" + ref)
}

// branchJob is the git_info GitLab sends for a branch pipeline.
func branchJob(url, branch, sha string, pipeline, depth int) gitlab.GitInfo {
	specs := []string{fmt.Sprintf("+refs/pipelines/%d:refs/pipelines/%d", pipeline, pipeline)}
	if depth > 0 {
		specs = append(specs, "+refs/heads/"+branch+":refs/remotes/origin/"+branch)
	} else {
		specs = append(specs, "+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*")
	}
	return gitlab.GitInfo{RepoURL: url, Ref: branch, Sha: sha, RefType: "branch", Refspecs: specs, Depth: depth,
		BeforeSha: strings.Repeat("0", 40), RepoObjectFormat: "sha1"}
}

// tagJob is the git_info GitLab sends for a tag pipeline.
func tagJob(url, tag, sha string, pipeline, depth int) gitlab.GitInfo {
	specs := []string{fmt.Sprintf("+refs/pipelines/%d:refs/pipelines/%d", pipeline, pipeline)}
	if depth > 0 {
		specs = append(specs, "+refs/tags/"+tag+":refs/tags/"+tag)
	} else {
		specs = append(specs, "+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*")
	}
	return gitlab.GitInfo{RepoURL: url, Ref: tag, Sha: sha, RefType: "tag", Refspecs: specs, Depth: depth}
}

// runGit runs the git CLI in dir with a clean, fixed identity and returns
// its trimmed output; it fails the test on error.
func runGit(t testing.TB, dir string, args ...string) string {
	t.Helper()
	out, err := gitCmd(t, dir, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// gitOK runs the git CLI in dir and reports whether it succeeded.
func gitOK(t testing.TB, dir string, args ...string) bool {
	t.Helper()
	return gitCmd(t, dir, args...).Run() == nil
}

// gitHome is an empty HOME for the git CLI, so no user config leaks in; set
// by TestMain.
var gitHome string

func TestMain(m *testing.M) {
	d, err := os.MkdirTemp("", "checkout-test-home-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	gitHome = d
	code := m.Run()
	os.RemoveAll(d)
	os.Exit(code)
}

func gitCmd(t testing.TB, dir string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"HOME="+gitHome,
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=Test", "GIT_AUTHOR_EMAIL=test@example.com",
		"GIT_COMMITTER_NAME=Test", "GIT_COMMITTER_EMAIL=test@example.com",
		"GIT_TERMINAL_PROMPT=0",
	)
	return cmd
}
