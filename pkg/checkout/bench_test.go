package checkout_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"gitlab-serverless-runner/pkg/checkout"
)

// BenchmarkCloneSmallRepo clones a 50-file repository at depth 1 over
// loopback smart HTTP into a fresh directory, checkout and clean included
// (make bench shows it in ms/op).
func BenchmarkCloneSmallRepo(b *testing.B) {
	srv := newGitServer(b, token)
	p := srv.newProject(b, "group/small")
	files := map[string]string{}
	for i := range 50 {
		files[fmt.Sprintf("dir%d/file%02d.go", i%5, i)] = fmt.Sprintf("package dir%d\n\n// File %d.\nconst X%d = %d\n", i%5, i, i, i)
	}
	p.commit("older", map[string]string{"old.txt": "history the clone should not fetch\n"})
	sha := p.commit("small", files)
	p.push("HEAD:refs/heads/main")
	p.setRef("refs/pipelines/1", sha)
	job := branchJob(p.url(token), "main", sha, 1, 1)
	base := b.TempDir()
	ctx := context.Background()

	for i := 0; b.Loop(); i++ {
		dir := filepath.Join(base, fmt.Sprint(i))
		if _, err := checkout.Get(ctx, checkout.Options{Git: job, Dir: dir, Strategy: checkout.StrategyClone}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUntracked lists the untracked files of a checkout that a build
// filled with 10,000 files, ignored ones among them (a node_modules-like
// tree), as artifacts and caches with untracked: true do.
func BenchmarkUntracked(b *testing.B) {
	srv := newGitServer(b, token)
	p := srv.newProject(b, "group/app")
	sha := p.commit("app", map[string]string{".gitignore": "node_modules/\n", "main.js": "x\n"})
	p.push("HEAD:refs/heads/main")
	p.setRef("refs/pipelines/1", sha)
	dir := filepath.Join(b.TempDir(), "app")
	if _, err := checkout.Get(context.Background(), checkout.Options{Git: branchJob(p.url(token), "main", sha, 1, 1), Dir: dir}); err != nil {
		b.Fatal(err)
	}
	for i := range 10000 {
		writeFile(b, dir, fmt.Sprintf("node_modules/pkg%03d/lib/file%02d.js", i/100, i%100), "module.exports = 1\n")
	}
	for b.Loop() {
		if n := len(checkout.Untracked(dir)); n != 10000 {
			b.Fatalf("untracked = %d, want 10000", n)
		}
	}
}
