package checkout_test

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gitlab-serverless-runner/pkg/checkout"
)

// superproject builds group/app with submodule "libs/lib" (../lib.git),
// which itself has submodule "nested" (../nested.git), all relative URLs
// served by srv. It returns the app's job commit and the lib and nested
// commits pinned.
func superproject(t *testing.T, srv *gitServer) (app *project, appSha, libSha, nestedSha string) {
	t.Helper()
	nested := srv.newProject(t, "group/nested")
	nestedSha = nested.commit("nested", map[string]string{"nested.txt": "deep\n"})
	nested.push("HEAD:refs/heads/main")

	lib := srv.newProject(t, "group/lib")
	lib.commit("lib", map[string]string{"lib.txt": "lib\n"})
	libSha = lib.addSubmodule("nested", "../nested.git", nestedSha)
	lib.push("HEAD:refs/heads/main")

	app = srv.newProject(t, "group/app")
	app.commit("app", map[string]string{"main.txt": "app\n"})
	appSha = app.addSubmodule("libs/lib", "../lib.git", libSha)
	app.push("HEAD:refs/heads/main")
	app.setRef("refs/pipelines/7", appSha)
	return app, appSha, libSha, nestedSha
}

func TestGetSubmodules(t *testing.T) {
	srv := newGitServer(t, token)
	app, appSha, libSha, nestedSha := superproject(t, srv)

	tests := []struct {
		name           string
		strategy       checkout.SubmoduleStrategy
		paths          []string
		wantFiles      map[string]string
		wantSubmodules []string
		wantLine       string
	}{
		{"none", checkout.SubmodulesNone, nil,
			map[string]string{".gitmodules": "", "main.txt": "app\n"}, nil, "Skipping Git submodules setup\n"},
		{"normal", checkout.SubmodulesNormal, nil,
			map[string]string{".gitmodules": "", "main.txt": "app\n", "libs/lib/.gitmodules": "", "libs/lib/lib.txt": "lib\n"},
			[]string{"libs/lib"}, "Updating/initializing submodules with git depth set to 1...\n"},
		{"recursive", checkout.SubmodulesRecursive, nil,
			map[string]string{".gitmodules": "", "main.txt": "app\n", "libs/lib/.gitmodules": "", "libs/lib/lib.txt": "lib\n", "libs/lib/nested/nested.txt": "deep\n"},
			[]string{"libs/lib", "libs/lib/nested"}, "Updating/initializing submodules recursively with git depth set to 1...\n"},
		{"recursive with the only submodule excluded", checkout.SubmodulesRecursive, []string{":(exclude)libs/lib"},
			map[string]string{".gitmodules": "", "main.txt": "app\n"}, nil, "Updating/initializing submodules recursively"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "app")
			var trace bytes.Buffer
			res, err := checkout.Get(context.Background(), checkout.Options{
				Git: branchJob(app.url(token), "main", appSha, 7, 1), Dir: dir,
				Submodules: tt.strategy, SubmodulePaths: tt.paths, Trace: &trace})
			if err != nil {
				t.Fatalf("Get: %v\ntrace:\n%s", err, trace.String())
			}
			got := files(t, dir)
			for name := range tt.wantFiles {
				if strings.HasSuffix(name, ".gitmodules") {
					tt.wantFiles[name] = got[name] // content checked by git below
				}
			}
			sameFiles(t, got, tt.wantFiles)
			if g, w := strings.Join(res.Submodules, " "), strings.Join(tt.wantSubmodules, " "); g != w {
				t.Errorf("Result.Submodules: got %q, want %q", g, w)
			}
			if !strings.Contains(trace.String(), tt.wantLine) {
				t.Errorf("trace: got %q, want %q in it", trace.String(), tt.wantLine)
			}
			assertDetachedAt(t, dir, appSha)
			// The git CLI sees the submodules where they belong.
			for _, sub := range tt.wantSubmodules {
				want := libSha
				if strings.HasSuffix(sub, "nested") {
					want = nestedSha
				}
				if got := runGit(t, filepath.Join(dir, sub), "rev-parse", "HEAD"); got != want {
					t.Errorf("HEAD of submodule %s: got %s, want %s", sub, got, want)
				}
			}
			assertNoToken(t, dir, token)
		})
	}
}

func TestGetSubmoduleOnAnotherHostGetsNoToken(t *testing.T) {
	srv := newGitServer(t, token)
	other := newGitServer(t, "") // another host: public, records what it receives
	ext := other.newProject(t, "vendor/ext")
	extSha := ext.commit("ext", map[string]string{"ext.txt": "external\n"})
	ext.push("HEAD:refs/heads/main")

	app := srv.newProject(t, "group/app")
	app.commit("app", map[string]string{"main.txt": "app\n"})
	extURL := other.URL + "/vendor/ext.git"
	sha := app.addSubmodule("ext", extURL, extSha)
	app.push("HEAD:refs/heads/main")
	app.setRef("refs/pipelines/3", sha)

	dir := filepath.Join(t.TempDir(), "app")
	_, err := checkout.Get(context.Background(), checkout.Options{
		Git: branchJob(app.url(token), "main", sha, 3, 0), Dir: dir, Submodules: checkout.SubmodulesNormal})
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if got, want := files(t, dir)["ext/ext.txt"], "external\n"; got != want {
		t.Errorf("ext/ext.txt: got %q, want %q", got, want)
	}
	reqs := other.requests()
	if len(reqs) == 0 {
		t.Fatal("the other host received no request")
	}
	for _, auth := range reqs {
		if auth != "" {
			t.Errorf("the other host received Authorization %q, want none", auth)
		}
	}
}

// assertNoToken fails if token is in any file under dir/.git, submodule
// repositories included.
func assertNoToken(t *testing.T, dir, token string) {
	t.Helper()
	err := filepath.WalkDir(filepath.Join(dir, ".git"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(token)) {
			t.Errorf("%s contains the job token", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := runGit(t, dir, "config", "--get", "remote.origin.url"); strings.Contains(got, "@") {
		t.Errorf("remote.origin.url: got %q, want a URL without credentials", got)
	}
}

func TestGetFetchUpdatesSubmodules(t *testing.T) {
	srv := newGitServer(t, token)
	app, appSha, _, _ := superproject(t, srv)
	dir := filepath.Join(t.TempDir(), "app")
	opts := checkout.Options{Git: branchJob(app.url(token), "main", appSha, 7, 0), Dir: dir,
		Strategy: checkout.StrategyFetch, Submodules: checkout.SubmodulesRecursive}
	if _, err := checkout.Get(context.Background(), opts); err != nil {
		t.Fatalf("first job: %v", err)
	}
	writeFile(t, dir, "libs/lib/untracked.txt", "x")
	writeFile(t, dir, "libs/lib/lib.txt", "edited\n")

	// The library moves on and the app pins the new commit.
	lib := &project{t: t, srv: srv, path: "group/lib", work: t.TempDir(), bare: filepath.Join(srv.root, "group", "lib.git")}
	runGit(t, "", "clone", "-q", lib.bare, lib.work)
	newLib := lib.commit("lib v2", map[string]string{"lib.txt": "lib v2\n"})
	lib.push("HEAD:refs/heads/main")
	newApp := app.addSubmodule("libs/lib", "../lib.git", newLib)
	app.push("HEAD:refs/heads/main")
	app.setRef("refs/pipelines/8", newApp)

	opts.Git = branchJob(app.url(token), "main", newApp, 8, 0)
	res, err := checkout.Get(context.Background(), opts)
	if err != nil {
		t.Fatalf("second job: %v", err)
	}
	if !res.Reused {
		t.Errorf("Reused: got false, want true")
	}
	got := files(t, dir)
	if got["libs/lib/lib.txt"] != "lib v2\n" {
		t.Errorf("libs/lib/lib.txt: got %q, want %q", got["libs/lib/lib.txt"], "lib v2\n")
	}
	if _, ok := got["libs/lib/untracked.txt"]; ok {
		t.Errorf("libs/lib/untracked.txt survived the clean")
	}
	if got["libs/lib/nested/nested.txt"] != "deep\n" {
		t.Errorf("libs/lib/nested/nested.txt: got %q, want %q", got["libs/lib/nested/nested.txt"], "deep\n")
	}
	if g := runGit(t, filepath.Join(dir, "libs/lib"), "rev-parse", "HEAD"); g != newLib {
		t.Errorf("HEAD of libs/lib: got %s, want %s", g, newLib)
	}
	assertNoToken(t, dir, token)
}

func TestGetSubmodulePinnedBehindBranchTip(t *testing.T) {
	srv := newGitServer(t, token)
	lib := srv.newProject(t, "group/lib")
	old := lib.commit("old", map[string]string{"lib.txt": "old\n"})
	lib.commit("new", map[string]string{"lib.txt": "new\n"})
	lib.push("HEAD:refs/heads/main")
	app := srv.newProject(t, "group/app")
	sha := app.addSubmodule("lib", "../lib.git", old)
	app.push("HEAD:refs/heads/main")
	app.setRef("refs/pipelines/5", sha)

	one := 1
	dir := filepath.Join(t.TempDir(), "app")
	var trace bytes.Buffer
	if _, err := checkout.Get(context.Background(), checkout.Options{
		Git: branchJob(app.url(token), "main", sha, 5, 0), Dir: dir,
		Submodules: checkout.SubmodulesNormal, SubmoduleDepth: &one, Trace: &trace}); err != nil {
		t.Fatalf("Get: %v", err)
	}
	if got, want := files(t, dir)["lib/lib.txt"], "old\n"; got != want {
		t.Errorf("lib/lib.txt: got %q, want %q", got, want)
	}
	if want := "Updating/initializing submodules with git depth set to 1...\n"; !strings.Contains(trace.String(), want) {
		t.Errorf("trace: got %q, want %q in it", trace.String(), want)
	}
}

func TestGetSubmoduleWithSSHURLFailsClearly(t *testing.T) {
	srv := newGitServer(t, token)
	app := srv.newProject(t, "group/app")
	app.commit("app", map[string]string{"main.txt": "app\n"})
	sha := app.addSubmodule("lib", "git@gitlab.example.com:group/lib.git", strings.Repeat("ab", 20))
	app.push("HEAD:refs/heads/main")
	app.setRef("refs/pipelines/2", sha)
	_, err := checkout.Get(context.Background(), checkout.Options{
		Git: branchJob(app.url(token), "main", sha, 2, 1), Dir: filepath.Join(t.TempDir(), "app"), Submodules: checkout.SubmodulesNormal})
	want := `submodule lib: URL "git@gitlab.example.com:group/lib.git" uses SSH, which this runner cannot use: set GIT_SUBMODULE_FORCE_HTTPS=true`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error: got %v, want it to contain %q", err, want)
	}
}
