package checkout_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sort"
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
