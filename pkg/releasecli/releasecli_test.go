package releasecli_test

import (
	"bytes"
	"context"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
	"gitlab-serverless-runner/pkg/releasecli"
)

// runningJob starts a job on a new project of srv and returns the project
// and the job's environment, as the job's script sees it.
func runningJob(t *testing.T, srv *gitlabtest.Server) (*gitlabtest.Project, map[string]string) {
	t.Helper()
	p := srv.CreateProject("group/app", map[string]string{"README.md": "app\n", "CHANGELOG.md": "## v1.0.0\n\n- first\n"})
	p.AddMilestone("m1")
	r := srv.CreateRunner(gitlabtest.RunnerOptions{})
	srv.EnqueueJob(p, gitlabtest.JobSpec{Script: []string{"true"}})
	c, err := gitlab.New(srv.URL(), gitlab.Options{HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.RequestJob(context.Background(), gitlab.JobRequest{Token: r.Token, Info: gitlab.NewInfo("test", gitlab.Features{Variables: true})})
	if err != nil || res.Job == nil {
		t.Fatalf("request job: %+v, %v", res, err)
	}
	env := map[string]string{}
	for _, v := range res.Job.Variables {
		env[v.Key] = v.Value
	}
	return p, env
}

func run(t *testing.T, env map[string]string, args ...string) (int, string) {
	t.Helper()
	var out bytes.Buffer
	clock := func() time.Time { return time.Date(2024, 6, 10, 8, 0, 0, 0, time.UTC) }
	code := releasecli.Main(context.Background(), args, func(k string) string { return env[k] }, &out, &out,
		releasecli.Options{Version: "1.2.3", Now: clock})
	return code, out.String()
}

func TestCreateAsTheReleaseStepRunsIt(t *testing.T) {
	srv := gitlabtest.New(t)
	p, env := runningJob(t, srv)
	code, out := run(t, env, "create", "--name", "Release v1.0.0", "--description", "Created by CI",
		"--tag-name", "v1.0.0", "--tag-message", "Annotated", "--ref", env["CI_COMMIT_SHA"],
		"--released-at", "2024-05-01T10:00:00Z", "--milestone", "m1",
		"--assets-link", `{"name":"binary","url":"https://example.com/bin","link_type":"package","direct_asset_path":"/bin/app"}`)
	if code != 0 {
		t.Fatalf("exit %d, want 0; output:\n%s", code, out)
	}
	rels := srv.Releases(p)
	if len(rels) != 1 {
		t.Fatalf("releases = %+v, want one", rels)
	}
	r := rels[0]
	want := gitlabtest.Release{TagName: "v1.0.0", Name: "Release v1.0.0", Description: "Created by CI", TagMessage: "Annotated",
		Ref: env["CI_COMMIT_SHA"], SHA: env["CI_COMMIT_SHA"], Milestones: []string{"m1"}}
	if r.TagName != want.TagName || r.Name != want.Name || r.Description != want.Description || r.TagMessage != want.TagMessage ||
		r.Ref != want.Ref || r.SHA != want.SHA || strings.Join(r.Milestones, ",") != "m1" || r.JobID == 0 ||
		!r.ReleasedAt.Equal(time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)) {
		t.Errorf("release = %+v, want %+v made with the job token", r, want)
	}
	if len(r.Links) != 1 || r.Links[0].Name != "binary" || r.Links[0].LinkType != "package" || r.Links[0].DirectAssetPath != "/bin/app" {
		t.Errorf("links = %+v", r.Links)
	}
	for _, line := range []string{
		`time="2024-06-10T08:00:00Z" level=info msg="Creating Release..." assets-links=1 cli=release-cli command=create milestones=m1 name="Release v1.0.0" project-id=` + env["CI_PROJECT_ID"],
		`level=info msg="Release created successfully!"`,
		`tag-name=v1.0.0`, `version=1.2.3`,
	} {
		if !strings.Contains(out, line) {
			t.Errorf("output lacks %q:\n%s", line, out)
		}
	}
	if strings.Contains(out, env["CI_JOB_TOKEN"]) {
		t.Errorf("output has the job token:\n%s", out)
	}
	srv.AssertNoViolations(t)
}

func TestCreateDefaultsAndFailures(t *testing.T) {
	srv := gitlabtest.New(t)
	p, env := runningJob(t, srv)

	// Defaults from the environment: the tag from CI_COMMIT_TAG, the ref
	// from CI_COMMIT_SHA; the description from a file of the working
	// directory.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "NOTES.md"), []byte("notes from a file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	env["CI_COMMIT_TAG"] = "v2.0.0"
	if code, out := run(t, env, "create", "--description", "NOTES.md"); code != 0 {
		t.Fatalf("exit %d; output:\n%s", code, out)
	}
	rels := srv.Releases(p)
	if len(rels) != 1 || rels[0].TagName != "v2.0.0" || rels[0].SHA != env["CI_COMMIT_SHA"] || rels[0].Description != "notes from a file\n" || rels[0].Name != "v2.0.0" {
		t.Fatalf("releases = %+v", rels)
	}

	for _, tt := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"the tag has a release", nil, []string{"create", "--tag-name", "v2.0.0"}, `level=fatal msg="run app"`},
		{"GitLab's message", nil, []string{"create", "--tag-name", "v2.0.0"}, `409 Conflict: Release already exists`},
		{"no tag", map[string]string{"CI_COMMIT_TAG": ""}, []string{"create", "--name", "x"}, `Required flag \"tag-name\" not set`},
		{"unknown milestone", nil, []string{"create", "--tag-name", "v3", "--milestone", "nope"}, "Milestone(s) not found: nope"},
		{"bad JSON link", nil, []string{"create", "--tag-name", "v3", "--assets-link", "{name"}, "--assets-link: invalid JSON"},
		{"bad time", nil, []string{"create", "--tag-name", "v3", "--released-at", "yesterday"}, "is not an ISO 8601 time"},
		{"other command", nil, []string{"get", "--tag-name", "v1"}, `command \"get\" is not offered`},
		{"unknown flag", nil, []string{"create", "--tag-name", "v3", "--draft"}, "flag provided but not defined: -draft"},
		{"wrong token", map[string]string{"CI_JOB_TOKEN": "glcbt-64_wrong"}, []string{"create", "--tag-name", "v4", "--ref", "main"}, "401 Unauthorized"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := map[string]string{}
			for k, v := range env {
				e[k] = v
			}
			for k, v := range tt.env {
				e[k] = v
			}
			code, out := run(t, e, tt.args...)
			if code != 1 || !strings.Contains(out, tt.want) {
				t.Errorf("exit %d, output:\n%s\nwant exit 1 and %q", code, out, tt.want)
			}
		})
	}
	if n := len(srv.Releases(p)); n != 1 {
		t.Errorf("releases after the failures = %d, want 1", n)
	}
	if code, out := run(t, env, "--version"); code != 0 || !strings.Contains(out, "release-cli version 1.2.3") {
		t.Errorf("--version: exit %d, %q", code, out)
	}
}

func TestCreateTrustsTheRunnersCA(t *testing.T) {
	srv := gitlabtest.New(t, gitlabtest.WithTLS())
	p, env := runningJob(t, srv)
	code, out := run(t, env, "create", "--tag-name", "v1", "--ref", "main")
	if code != 1 || !strings.Contains(out, "certificate") {
		t.Fatalf("without the CA: exit %d, output:\n%s\nwant a certificate failure", code, out)
	}
	caFile := filepath.Join(t.TempDir(), "CI_SERVER_TLS_CA_FILE")
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(caFile, ca, 0o600); err != nil {
		t.Fatal(err)
	}
	env["CI_SERVER_TLS_CA_FILE"] = caFile
	if code, out := run(t, env, "create", "--tag-name", "v1", "--ref", "main"); code != 0 {
		t.Fatalf("with CI_SERVER_TLS_CA_FILE: exit %d, output:\n%s", code, out)
	}
	delete(env, "CI_SERVER_TLS_CA_FILE")
	env["ADDITIONAL_CA_CERT_BUNDLE"] = string(ca)
	if code, out := run(t, env, "create", "--tag-name", "v2", "--ref", "main"); code != 0 {
		t.Fatalf("with ADDITIONAL_CA_CERT_BUNDLE: exit %d, output:\n%s", code, out)
	}
	if n := len(srv.Releases(p)); n != 2 {
		t.Errorf("releases = %d, want 2", n)
	}
}
