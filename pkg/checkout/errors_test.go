package checkout_test

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"gitlab-serverless-runner/pkg/checkout"
	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/urlpolicy"
)

func TestGetFailsClearlyWithoutLeakingTheToken(t *testing.T) {
	srv := newGitServer(t, token)
	p := srv.newProject(t, "group/app")
	sha := p.commit("first", map[string]string{"a.txt": "a\n"})
	p.push("HEAD:refs/heads/main")
	p.setRef("refs/pipelines/1", sha)
	missing := strings.Repeat("1234abcd", 5)
	wrong := "glcbt-64_wr0ngT0kenValue"

	tests := []struct {
		name     string
		git      gitlab.GitInfo
		secret   string // must not appear in the error or trace
		wantErrs []string
	}{
		{"wrong token", branchJob(p.url(wrong), "main", sha, 1, 1), wrong,
			[]string{"fetch " + srv.URL + "/group/app.git", "refused the job's credentials"}},
		{"sha not reachable", branchJob(p.url(token), "main", missing, 1, 1), token,
			[]string{"find commit " + missing, "not reachable", "+refs/pipelines/1:refs/pipelines/1"}},
		{"pipeline ref missing", branchJob(p.url(token), "main", sha, 99, 1), token,
			[]string{"no ref for one of the job's refspecs", "refs/pipelines/99"}},
		{"repository missing", branchJob(srv.repoURL("group/nope", token), "main", sha, 1, 1), token,
			[]string{"fetch " + srv.URL + "/group/nope.git"}},
		{"invalid URL", gitlab.GitInfo{RepoURL: "http://gitlab-ci-token:" + token + "@127.0.0.1:bad/x.git", Sha: sha}, token,
			[]string{"parse repository URL"}},
		{"sha is not a sha", branchJob(p.url(token), "main", "main", 1, 1), token,
			[]string{`commit sha "main" is not a full sha1`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var trace bytes.Buffer
			_, err := checkout.Get(context.Background(), checkout.Options{Git: tt.git, Dir: filepath.Join(t.TempDir(), "app"), Trace: &trace})
			if err == nil {
				t.Fatal("Get: got no error")
			}
			t.Logf("error: %v", err)
			for _, want := range tt.wantErrs {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error: got %q, want it to contain %q", err, want)
				}
			}
			if strings.Contains(err.Error(), tt.secret) || strings.Contains(trace.String(), tt.secret) {
				t.Errorf("the token leaked: error %q, trace %q", err, trace.String())
			}
		})
	}
}

func TestGetRejectsInvalidSettings(t *testing.T) {
	git := gitlab.GitInfo{RepoURL: "http://gitlab-ci-token:" + token + "@127.0.0.1:1/g/p.git", Sha: strings.Repeat("a", 40)}
	depth := -1
	tests := []struct {
		name    string
		opts    checkout.Options
		wantErr string
	}{
		{"strategy", checkout.Options{Strategy: "rsync"}, `GIT_STRATEGY "rsync"`},
		{"submodule strategy", checkout.Options{Submodules: "all"}, `GIT_SUBMODULE_STRATEGY "all"`},
		{"clean flags", checkout.Options{CleanFlags: "-fdn"}, "option -n is not supported"},
		{"clean flags without force", checkout.Options{CleanFlags: "-dx"}, "has no -f"},
		{"submodule depth", checkout.Options{SubmoduleDepth: &depth}, "submodule depth -1"},
		{"sha256", checkout.Options{Git: gitlab.GitInfo{RepoObjectFormat: "sha256"}}, `object format "sha256"`},
		{"CA without certificate", checkout.Options{CAPEM: []byte("not a certificate")}, "no certificate found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.opts
			if o.Git.RepoURL == "" {
				g := git
				g.RepoObjectFormat = o.Git.RepoObjectFormat
				o.Git = g
			}
			o.Dir = filepath.Join(t.TempDir(), "app")
			_, err := checkout.Get(context.Background(), o)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error: got %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestGetTrustsTheGivenCA(t *testing.T) {
	srv := startGitServer(t, token, httptest.NewTLSServer)
	p := srv.newProject(t, "group/app")
	sha := p.commit("first", map[string]string{"a.txt": "a\n"})
	p.push("HEAD:refs/heads/main")
	p.setRef("refs/pipelines/1", sha)
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})

	tests := []struct {
		name    string
		ca      []byte
		wantErr string
	}{
		{"with the server's CA", caPEM, ""},
		{"without it", nil, "certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "app")
			_, err := checkout.Get(context.Background(), checkout.Options{
				Git: branchJob(p.url(token), "main", sha, 1, 1), Dir: dir, CAPEM: tt.ca})
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Get: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error: got %v, want it to contain %q", err, tt.wantErr)
			case tt.wantErr == "":
				assertDetachedAt(t, dir, sha)
			}
		})
	}
}

func TestGetStopsWhenTheContextIsDone(t *testing.T) {
	srv := newGitServer(t, token)
	p := srv.newProject(t, "group/app")
	sha := p.commit("first", map[string]string{"a.txt": "a\n"})
	p.push("HEAD:refs/heads/main")
	p.setRef("refs/pipelines/1", sha)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := checkout.Get(ctx, checkout.Options{Git: branchJob(p.url(token), "main", sha, 1, 1), Dir: filepath.Join(t.TempDir(), "app")})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error: got %v, want one wrapping context.Canceled", err)
	}
}

// TestGetDialsThroughTheGivenClient: every git request goes through the
// HTTPClient's transport, custom CA or not, so a URL policy's transport
// refuses a GitLab on a refused address before anything is sent.
func TestGetDialsThroughTheGivenClient(t *testing.T) {
	srv := startGitServer(t, token, httptest.NewTLSServer)
	p := srv.newProject(t, "group/app")
	sha := p.commit("first", map[string]string{"a.txt": "a\n"})
	p.push("HEAD:refs/heads/main")
	p.setRef("refs/pipelines/1", sha)
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})

	strict := urlpolicy.Policy{}
	_, err := checkout.Get(context.Background(), checkout.Options{
		Git: branchJob(p.url(token), "main", sha, 1, 1), Dir: filepath.Join(t.TempDir(), "app"), CAPEM: caPEM,
		HTTPClient: &http.Client{Transport: strict.Transport()}})
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1 is a loopback address, which this installation does not contact") {
		t.Errorf("Get through a strict policy: error %v, want the loopback address refused", err)
	}
	if reqs := srv.requests(); len(reqs) != 0 {
		t.Errorf("the git server received %v, want nothing", reqs)
	}

	dev := urlpolicy.Policy{AllowPrivate: true}
	dir := filepath.Join(t.TempDir(), "app")
	if _, err := checkout.Get(context.Background(), checkout.Options{
		Git: branchJob(p.url(token), "main", sha, 1, 1), Dir: dir, CAPEM: caPEM,
		HTTPClient: &http.Client{Transport: dev.Transport()}}); err != nil {
		t.Fatalf("Get with private addresses allowed: %v", err)
	}
	assertDetachedAt(t, dir, sha)
}
