package archive_test

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gitlab-serverless-runner/pkg/archive"
)

// selectTree is a project dir with an "outside" sibling holding a secret.
func selectTree(t *testing.T) (project, outside string) {
	t.Helper()
	base := t.TempDir()
	project = filepath.Join(base, "project")
	outside = filepath.Join(base, "outside")
	makeTree(t, outside, file("secret.txt", "secret"))
	makeTree(t, project,
		file("README.md", "readme"),
		file("src/main.go", "package main"),
		file("src/lib/util.go", "package lib"),
		file("src/lib/util_test.go", "package lib"),
		file("build/app", "binary"),
		file("build/tmp/x.o", "x"),
		file("build/tmp/y.o", "y"),
		file("docs/a.txt", "a"),
		file("weird[1].txt", "weird"),
		dir("empty"),
		link("link-dir", "src"),
		link("link-file", "README.md"),
		link("outlink", "../outside"),
		link("abslink", outside),
	)
	return project, outside
}

func TestSelect(t *testing.T) {
	project, outside := selectTree(t)
	everything := []string{
		"README.md", "abslink", "build", "build/app", "build/tmp", "build/tmp/x.o", "build/tmp/y.o",
		"docs", "docs/a.txt", "empty", "link-dir", "link-file", "outlink",
		"src", "src/lib", "src/lib/util.go", "src/lib/util_test.go", "src/main.go", "weird[1].txt",
	}
	tests := []struct {
		name     string
		spec     archive.Spec
		want     []string
		wantWarn []string // substrings, one per expected warning line; nil means no warnings
	}{
		{name: "literal file", spec: archive.Spec{Paths: []string{"README.md"}}, want: []string{"README.md"}},
		{name: "leading dot slash", spec: archive.Spec{Paths: []string{"./docs/a.txt"}}, want: []string{"docs/a.txt"}},
		{name: "literal directory walked", spec: archive.Spec{Paths: []string{"src"}},
			want: []string{"src", "src/lib", "src/lib/util.go", "src/lib/util_test.go", "src/main.go"}},
		{name: "trailing slash directory", spec: archive.Spec{Paths: []string{"build/tmp/"}},
			want: []string{"build/tmp", "build/tmp/x.o", "build/tmp/y.o"}},
		{name: "empty directory", spec: archive.Spec{Paths: []string{"empty"}}, want: []string{"empty"}},
		{name: "star stays in a segment", spec: archive.Spec{Paths: []string{"src/*.go"}}, want: []string{"src/main.go"}},
		{name: "double star crosses segments", spec: archive.Spec{Paths: []string{"**/*.go"}},
			want: []string{"src/lib/util.go", "src/lib/util_test.go", "src/main.go"}},
		{name: "question mark", spec: archive.Spec{Paths: []string{"src/lib/util?test.go"}}, want: []string{"src/lib/util_test.go"}},
		{name: "character class", spec: archive.Spec{Paths: []string{"build/tmp/[x].o"}}, want: []string{"build/tmp/x.o"}},
		{name: "alternatives", spec: archive.Spec{Paths: []string{"{README.md,docs/*.txt}"}}, want: []string{"README.md", "docs/a.txt"}},
		{name: "glob matching a directory walks it", spec: archive.Spec{Paths: []string{"bu*"}},
			want: []string{"build", "build/app", "build/tmp", "build/tmp/x.o", "build/tmp/y.o"}},
		{name: "duplicates once", spec: archive.Spec{Paths: []string{"src/main.go", "src/*.go", "src/main.go"}}, want: []string{"src/main.go"}},
		{name: "exclude glob", spec: archive.Spec{Paths: []string{"src"}, Exclude: []string{"**/*_test.go"}},
			want: []string{"src", "src/lib", "src/lib/util.go", "src/main.go"}},
		{name: "exclude is not recursive", spec: archive.Spec{Paths: []string{"build"}, Exclude: []string{"build/tmp"}},
			want: []string{"build", "build/app", "build/tmp/x.o", "build/tmp/y.o"}},
		{name: "exclude directory contents", spec: archive.Spec{Paths: []string{"build"}, Exclude: []string{"build/tmp/**"}},
			want: []string{"build", "build/app"}},
		{name: "exclude with dot slash", spec: archive.Spec{Paths: []string{"docs"}, Exclude: []string{"./docs/a.txt"}},
			want: []string{"docs"}},
		{name: "missing literal warns", spec: archive.Spec{Paths: []string{"nope.txt"}},
			wantWarn: []string{"nope.txt: no matching files"}},
		{name: "missing glob warns", spec: archive.Spec{Paths: []string{"*.nope", "README.md"}},
			want: []string{"README.md"}, wantWarn: []string{"*.nope: no matching files"}},
		{name: "invalid pattern warns", spec: archive.Spec{Paths: []string{"src/[.go"}},
			wantWarn: []string{"src/[.go: invalid pattern"}},
		{name: "relative escape warns", spec: archive.Spec{Paths: []string{"../outside/secret.txt"}},
			wantWarn: []string{"../outside/secret.txt: not a subpath of the project directory"}},
		{name: "escape hidden in the middle warns", spec: archive.Spec{Paths: []string{"src/../../outside/secret.txt"}},
			wantWarn: []string{"not a subpath of the project directory"}},
		{name: "absolute outside warns", spec: archive.Spec{Paths: []string{filepath.Join(outside, "secret.txt")}},
			wantWarn: []string{"not a subpath of the project directory"}},
		{name: "absolute inside is made relative", spec: archive.Spec{Paths: []string{filepath.Join(project, "README.md")}},
			want: []string{"README.md"}},
		{name: "through a symlink leaving the project warns", spec: archive.Spec{Paths: []string{"outlink/secret.txt"}},
			wantWarn: []string{"outlink/secret.txt: outlink/secret.txt is not a subpath of the project directory"}},
		{name: "through an absolute symlink warns", spec: archive.Spec{Paths: []string{"abslink/secret.txt"}},
			wantWarn: []string{"is not a subpath of the project directory"}},
		{name: "glob through a symlink leaving the project warns", spec: archive.Spec{Paths: []string{"outlink/*"}},
			wantWarn: []string{"outlink/*: outlink/secret.txt is not a subpath of the project directory", "outlink/*: no matching files"}},
		{name: "symlinks stored as links, not followed", spec: archive.Spec{Paths: []string{"link-dir", "link-file", "outlink"}},
			want: []string{"link-dir", "link-file", "outlink"}},
		{name: "through a symlink inside the project", spec: archive.Spec{Paths: []string{"link-dir/main.go"}},
			want: []string{"link-dir/main.go"}},
		{name: "double star does not follow symlinks", spec: archive.Spec{Paths: []string{"**"}}, want: everything},
		{name: "dot is everything", spec: archive.Spec{Paths: []string{"."}}, want: everything},
		{name: "untracked files are literal", spec: archive.Spec{Untracked: []string{"weird[1].txt", "docs/a.txt"}},
			want: []string{"docs/a.txt", "weird[1].txt"}},
		{name: "untracked outside warns", spec: archive.Spec{Untracked: []string{"../outside/secret.txt"}},
			wantWarn: []string{"not a subpath of the project directory"}},
		{name: "untracked and paths together, excluded", spec: archive.Spec{Paths: []string{"README.md"}, Untracked: []string{"docs/a.txt"}, Exclude: []string{"docs/*"}},
			want: []string{"README.md"}},
		{name: "nothing asked", spec: archive.Spec{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var warn strings.Builder
			got, err := archive.Select(project, tt.spec, &warn)
			if err != nil {
				t.Fatalf("Select: %v", err)
			}
			if len(got) == 0 {
				got = nil
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("files:\n got %q\nwant %q", got, tt.want)
			}
			lines := strings.Split(strings.TrimSuffix(warn.String(), "\n"), "\n")
			if warn.Len() == 0 {
				lines = nil
			}
			if len(lines) != len(tt.wantWarn) {
				t.Fatalf("warnings: got %q, want %d lines containing %q", lines, len(tt.wantWarn), tt.wantWarn)
			}
			for i, w := range tt.wantWarn {
				if !strings.HasPrefix(lines[i], "WARNING: ") || !strings.Contains(lines[i], w) {
					t.Errorf("warning %d: got %q, want a WARNING containing %q", i, lines[i], w)
				}
			}
		})
	}
}

func TestSelectDeterministic(t *testing.T) {
	project, _ := selectTree(t)
	spec := archive.Spec{Paths: []string{"src", "**/*.o", "README.md", "docs"}}
	first, err := archive.Select(project, spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.IsSorted(first) {
		t.Errorf("got %q, want sorted", first)
	}
	reversed := archive.Spec{Paths: slices.Clone(spec.Paths)}
	slices.Reverse(reversed.Paths)
	for range 3 {
		got, err := archive.Select(project, reversed, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, first) {
			t.Fatalf("got %q, want %q", got, first)
		}
	}
}

func TestSelectMissingProjectDir(t *testing.T) {
	_, err := archive.Select(filepath.Join(t.TempDir(), "nope"), archive.Spec{Paths: []string{"x"}}, nil)
	if err == nil {
		t.Fatal("got nil error, want an error for a missing project dir")
	}
}
