package checkout_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"gitlab-serverless-runner/pkg/checkout"
	"gitlab-serverless-runner/pkg/gitlab"
)

const token = "glcbt-64_s3cretJobT0ken"

// files returns the worktree's files (not .git) with their contents.
func files(t *testing.T, dir string) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Name() == ".git" {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil // a submodule's gitdir file
		}
		if d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		got[filepath.ToSlash(rel)] = string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func sameFiles(t *testing.T, got, want map[string]string) {
	t.Helper()
	keys := func(m map[string]string) []string {
		var k []string
		for n := range m {
			k = append(k, n)
		}
		sort.Strings(k)
		return k
	}
	if g, w := strings.Join(keys(got), " "), strings.Join(keys(want), " "); g != w {
		t.Fatalf("worktree files: got %s, want %s", g, w)
	}
	for n, w := range want {
		if got[n] != w {
			t.Errorf("content of %s: got %q, want %q", n, got[n], w)
		}
	}
}

// assertDetachedAt checks with the git CLI that dir's HEAD is detached at
// sha and that the worktree matches it.
func assertDetachedAt(t *testing.T, dir, sha string) {
	t.Helper()
	if got := runGit(t, dir, "rev-parse", "HEAD"); got != sha {
		t.Errorf("HEAD: got %s, want %s", got, sha)
	}
	if gitOK(t, dir, "symbolic-ref", "-q", "HEAD") {
		t.Errorf("HEAD is a branch, want detached")
	}
	if got := runGit(t, dir, "status", "--porcelain", "--ignore-submodules=all"); got != "" {
		t.Errorf("git status: got %q, want a clean worktree", got)
	}
}

func TestGetChecksOutTheJobCommit(t *testing.T) {
	srv := newGitServer(t, token)
	p := srv.newProject(t, "group/app")
	first := p.commit("first", map[string]string{"README.md": "v1\n", "src/a.go": "package a\n"})
	second := p.commit("second", map[string]string{"README.md": "v2\n"})
	tip := p.commit("third", map[string]string{"src/b.go": "package b\n"})
	p.push("HEAD:refs/heads/main")
	runGit(t, p.work, "tag", "v1.0", second)
	p.push("refs/tags/v1.0")
	p.setRef("refs/pipelines/10", tip)
	p.setRef("refs/pipelines/11", second)
	// A merge-request style commit that is on no branch, only on its
	// pipeline ref.
	runGit(t, p.work, "checkout", "-q", "--detach", first)
	orphan := p.commit("detached", map[string]string{"mr.txt": "merge request\n"})
	p.setRef("refs/pipelines/12", orphan)

	tipFiles := map[string]string{"README.md": "v2\n", "src/a.go": "package a\n", "src/b.go": "package b\n"}
	tests := []struct {
		name        string
		git         gitlab.GitInfo
		wantFiles   map[string]string
		wantHistory string // commits reachable from HEAD
	}{
		{"branch depth 1", branchJob(p.url(token), "main", tip, 10, 1), tipFiles, "1"},
		{"branch full history", branchJob(p.url(token), "main", tip, 10, 0), tipFiles, "3"},
		{"tag", tagJob(p.url(token), "v1.0", second, 11, 1),
			map[string]string{"README.md": "v2\n", "src/a.go": "package a\n"}, "1"},
		{"pipeline ref on no branch", gitlab.GitInfo{RepoURL: p.url(token), Ref: "refs/merge-requests/3/head", Sha: orphan,
			Refspecs: []string{"+refs/pipelines/12:refs/pipelines/12"}, Depth: 2},
			map[string]string{"README.md": "v1\n", "src/a.go": "package a\n", "mr.txt": "merge request\n"}, "2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "group", "app")
			var trace bytes.Buffer
			res, err := checkout.Get(context.Background(), checkout.Options{Git: tt.git, Dir: dir, Strategy: checkout.StrategyClone, Trace: &trace})
			if err != nil {
				t.Fatalf("Get: %v\ntrace:\n%s", err, trace.String())
			}
			if res.Commit != tt.git.Sha {
				t.Errorf("Result.Commit: got %s, want %s", res.Commit, tt.git.Sha)
			}
			sameFiles(t, files(t, dir), tt.wantFiles)
			assertDetachedAt(t, dir, tt.git.Sha)
			assertNoToken(t, dir, token)
			if strings.Contains(trace.String(), token) {
				t.Errorf("trace contains the job token: %q", trace.String())
			}
			if got := runGit(t, dir, "rev-list", "--count", "HEAD"); got != tt.wantHistory {
				t.Errorf("commits in history: got %s, want %s", got, tt.wantHistory)
			}
			wantLine := "Checking out " + tt.git.Sha[:8] + " as detached HEAD (ref is " + tt.git.Ref + ")..."
			if !strings.Contains(trace.String(), wantLine) {
				t.Errorf("trace: got %q, want a line %q", trace.String(), wantLine)
			}
		})
	}
}

// writeFile creates dir/name with content, making parent directories.
func writeFile(t testing.TB, dir, name, content string) {
	t.Helper()
	f := filepath.Join(dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestGetFetchReusesThePreviousCheckout(t *testing.T) {
	srv := newGitServer(t, token)
	tests := []struct {
		name       string
		cleanFlags string
		wantLeft   []string // untracked paths still there after the second job
	}{
		{"default flags remove untracked and ignored files", "", nil},
		{"-ffd keeps ignored files", "-ffd", []string{"app.log", "build/out.bin"}},
		{"-ffdx with an exclude keeps it", "-ffdx -e build/", []string{"build/out.bin"}},
		{"-ff keeps untracked directories", "-ff", []string{"app.log", "build/out.bin", "tmp/scratch.txt"}},
		{"none keeps everything", "none", []string{"app.log", "build/out.bin", "tmp/scratch.txt", "untracked.txt"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := srv.newProject(t, "group/app"+itoa(i))
			tracked := map[string]string{".gitignore": "*.log\nbuild/\n", "keep.txt": "v1\n", "gone.txt": "old\n"}
			first := p.commit("first", tracked)
			p.push("HEAD:refs/heads/main")
			p.setRef("refs/pipelines/1", first)
			dir := filepath.Join(t.TempDir(), "app")
			job1 := branchJob(p.url(token), "main", first, 1, 1)
			res, err := checkout.Get(context.Background(), checkout.Options{Git: job1, Dir: dir, AllowGitFetch: true})
			if err != nil {
				t.Fatalf("first job: %v", err)
			}
			if res.Reused || res.Strategy != checkout.StrategyClone {
				t.Errorf("first job: got Reused %v Strategy %q, want a fresh clone", res.Reused, res.Strategy)
			}
			// What the first job's script leaves behind.
			untracked := map[string]string{"untracked.txt": "x", "app.log": "log", "build/out.bin": "bin", "tmp/scratch.txt": "s"}
			for name, c := range untracked {
				writeFile(t, dir, name, c)
			}
			writeFile(t, dir, "keep.txt", "edited by the job\n")
			writeFile(t, dir, ".git/index.lock", "")

			pipeline := 100 + i
			second := p.commit("second", map[string]string{"gone.txt": "", "new.txt": "new\n"})
			p.push("HEAD:refs/heads/main")
			p.setRef("refs/pipelines/"+itoa(pipeline), second)
			job2 := branchJob(p.url(token), "main", second, pipeline, 1)
			var trace bytes.Buffer
			res, err = checkout.Get(context.Background(), checkout.Options{Git: job2, Dir: dir, AllowGitFetch: true, CleanFlags: tt.cleanFlags, Trace: &trace})
			if err != nil {
				t.Fatalf("second job: %v\ntrace:\n%s", err, trace.String())
			}
			if !res.Reused || res.Strategy != checkout.StrategyFetch {
				t.Errorf("second job: got Reused %v Strategy %q, want the repository reused", res.Reused, res.Strategy)
			}
			if !strings.Contains(trace.String(), "Reinitialized existing Git repository") {
				t.Errorf("trace: got %q, want it to say the repository was reused", trace.String())
			}
			want := map[string]string{".gitignore": "*.log\nbuild/\n", "keep.txt": "v1\n", "new.txt": "new\n"}
			for _, name := range tt.wantLeft {
				want[name] = untracked[name]
			}
			sameFiles(t, files(t, dir), want)
			if got := runGit(t, dir, "rev-parse", "HEAD"); got != second {
				t.Errorf("HEAD: got %s, want %s", got, second)
			}
		})
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestGetFetchFallsBackToCloneWithoutUsableRepository(t *testing.T) {
	srv := newGitServer(t, token)
	p := srv.newProject(t, "group/app")
	sha := p.commit("first", map[string]string{"a.txt": "a\n"})
	p.push("HEAD:refs/heads/main")
	p.setRef("refs/pipelines/1", sha)

	tests := []struct {
		name    string
		prepare func(t *testing.T, dir string)
	}{
		{"no directory", func(t *testing.T, dir string) {}},
		{"directory without .git", func(t *testing.T, dir string) { writeFile(t, dir, "junk.txt", "junk") }},
		{".git is not a repository", func(t *testing.T, dir string) { writeFile(t, dir, ".git/junk", "junk") }},
		{".git is a file", func(t *testing.T, dir string) { writeFile(t, dir, ".git", "garbage") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "app")
			tt.prepare(t, dir)
			res, err := checkout.Get(context.Background(), checkout.Options{
				Git: branchJob(p.url(token), "main", sha, 1, 0), Dir: dir, Strategy: checkout.StrategyFetch})
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			if res.Reused || res.Strategy != checkout.StrategyClone {
				t.Errorf("got Reused %v Strategy %q, want a fresh clone", res.Reused, res.Strategy)
			}
			sameFiles(t, files(t, dir), map[string]string{"a.txt": "a\n"})
			assertDetachedAt(t, dir, sha)
		})
	}
}

func TestGetCloneRemovesTheProjectDirectory(t *testing.T) {
	srv := newGitServer(t, token)
	p := srv.newProject(t, "group/app")
	sha := p.commit("first", map[string]string{"a.txt": "a\n"})
	p.push("HEAD:refs/heads/main")
	p.setRef("refs/pipelines/1", sha)
	dir := filepath.Join(t.TempDir(), "app")
	job := branchJob(p.url(token), "main", sha, 1, 1)
	if _, err := checkout.Get(context.Background(), checkout.Options{Git: job, Dir: dir}); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, ".git/leftover", "x")
	writeFile(t, dir, "build/x.o", "x")
	res, err := checkout.Get(context.Background(), checkout.Options{Git: job, Dir: dir, AllowGitFetch: false})
	if err != nil {
		t.Fatal(err)
	}
	if res.Reused {
		t.Errorf("Reused: got true, want false for clone")
	}
	if _, err := os.Stat(filepath.Join(dir, ".git", "leftover")); !os.IsNotExist(err) {
		t.Errorf("a file left in .git by the previous job survived the clone: %v", err)
	}
	sameFiles(t, files(t, dir), map[string]string{"a.txt": "a\n"})
}

func TestGetWithoutRepository(t *testing.T) {
	tests := []struct {
		strategy  checkout.Strategy
		wantFiles map[string]string
		wantLine  string
	}{
		{checkout.StrategyNone, map[string]string{"previous.txt": "p"}, "Skipping Git repository setup\n"},
		{checkout.StrategyEmpty, map[string]string{}, "Skipping Git repository setup and creating an empty build directory\n"},
	}
	for _, tt := range tests {
		t.Run(string(tt.strategy), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "app")
			writeFile(t, dir, "previous.txt", "p")
			var trace bytes.Buffer
			// No server at all: these strategies must not touch the network.
			res, err := checkout.Get(context.Background(), checkout.Options{
				Git:      gitlab.GitInfo{RepoURL: "http://gitlab-ci-token:" + token + "@127.0.0.1:1/g/p.git", Sha: strings.Repeat("a", 40)},
				Dir:      dir,
				Strategy: tt.strategy,
				Trace:    &trace,
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.Commit != "" {
				t.Errorf("Result.Commit: got %q, want none", res.Commit)
			}
			sameFiles(t, files(t, dir), tt.wantFiles)
			if _, err := os.Stat(filepath.Join(dir, ".git")); !os.IsNotExist(err) {
				t.Errorf(".git: got %v, want none", err)
			}
			if got := trace.String(); got != tt.wantLine {
				t.Errorf("trace: got %q, want %q", got, tt.wantLine)
			}
		})
	}
}

func TestGetSkipCheckoutFetchesOnly(t *testing.T) {
	srv := newGitServer(t, token)
	p := srv.newProject(t, "group/app")
	sha := p.commit("first", map[string]string{"a.txt": "a\n"})
	p.push("HEAD:refs/heads/main")
	p.setRef("refs/pipelines/1", sha)
	dir := filepath.Join(t.TempDir(), "app")
	var trace bytes.Buffer
	res, err := checkout.Get(context.Background(), checkout.Options{
		Git: branchJob(p.url(token), "main", sha, 1, 1), Dir: dir, SkipCheckout: true,
		Submodules: checkout.SubmodulesRecursive, Trace: &trace})
	if err != nil {
		t.Fatal(err)
	}
	if res.Commit != "" {
		t.Errorf("Result.Commit: got %q, want none", res.Commit)
	}
	sameFiles(t, files(t, dir), map[string]string{})
	if !gitOK(t, dir, "cat-file", "-e", sha+"^{commit}") {
		t.Errorf("commit %s was not fetched", sha)
	}
	for _, line := range []string{"Skipping Git checkout\n", "Skipping Git submodules setup\n"} {
		if !strings.Contains(trace.String(), line) {
			t.Errorf("trace: got %q, want a line %q", trace.String(), line)
		}
	}
}

func TestGetTraceOfAClone(t *testing.T) {
	srv := newGitServer(t, token)
	p := srv.newProject(t, "group/app")
	sha := p.commit("first", map[string]string{"a.txt": "a\n"})
	p.push("HEAD:refs/heads/main")
	p.setRef("refs/pipelines/1", sha)
	dir := filepath.Join(t.TempDir(), "app")
	var trace bytes.Buffer
	if _, err := checkout.Get(context.Background(), checkout.Options{
		Git: branchJob(p.url(token), "main", sha, 1, 20), Dir: dir, Trace: &trace}); err != nil {
		t.Fatal(err)
	}
	want := "Fetching changes with git depth set to 20...\n" +
		"Initialized empty Git repository in " + filepath.Join(dir, ".git") + "/\n" +
		"Created fresh repository.\n" +
		"Checking out " + sha[:8] + " as detached HEAD (ref is main)...\n" +
		"Skipping Git submodules setup\n"
	if got := trace.String(); got != want {
		t.Errorf("trace:\ngot  %q\nwant %q", got, want)
	}
}

func TestGetFetchAfterShallowCloneForFullHistory(t *testing.T) {
	srv := newGitServer(t, token)
	p := srv.newProject(t, "group/app")
	p.commit("first", map[string]string{"a.txt": "a\n"})
	sha := p.commit("second", map[string]string{"b.txt": "b\n"})
	p.push("HEAD:refs/heads/main")
	p.setRef("refs/pipelines/1", sha)
	dir := filepath.Join(t.TempDir(), "app")

	steps := []struct {
		depth       int
		wantReused  bool
		wantHistory string
	}{
		{1, false, "1"},
		{1, true, "1"},
		{0, false, "2"}, // a shallow repository cannot be deepened: cloned afresh
		{0, true, "2"},
	}
	for i, st := range steps {
		res, err := checkout.Get(context.Background(), checkout.Options{
			Git: branchJob(p.url(token), "main", sha, 1, st.depth), Dir: dir, Strategy: checkout.StrategyFetch})
		if err != nil {
			t.Fatalf("job %d: %v", i, err)
		}
		if res.Reused != st.wantReused {
			t.Errorf("job %d (depth %d): Reused got %v, want %v", i, st.depth, res.Reused, st.wantReused)
		}
		if got := runGit(t, dir, "rev-list", "--count", "HEAD"); got != st.wantHistory {
			t.Errorf("job %d (depth %d): commits in history: got %s, want %s", i, st.depth, got, st.wantHistory)
		}
	}
}
