package gitlabtest_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
)

func TestReleasesAPI(t *testing.T) {
	srv, proj, job := gitJob(t)
	proj.AddMilestone("v1")
	c, err := gitlab.New(srv.URL(), gitlab.Options{MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	rel, err := c.CreateRelease(ctx, proj.ID, job.Token, gitlab.ReleaseRequest{
		TagName: "v1.0.0", TagMessage: "first release", Name: "Version 1", Description: "Notes",
		Ref: job.GitInfo.Sha, Milestones: []string{"v1"}, ReleasedAt: &at,
		Assets: &gitlab.ReleaseAssets{Links: []gitlab.ReleaseLink{{Name: "bin", URL: "https://example.com/bin", LinkType: "package"}}},
	})
	if err != nil {
		t.Fatalf("CreateRelease: %v", err)
	}
	if rel.TagName != "v1.0.0" || rel.Name != "Version 1" || !rel.ReleasedAt.Equal(at) || len(rel.Assets.Links) != 1 || len(rel.Milestones) != 1 {
		t.Errorf("answer = %+v", rel)
	}
	got := srv.Releases(proj)
	if len(got) != 1 {
		t.Fatalf("releases = %+v, want one", got)
	}
	r := got[0]
	if r.SHA != job.GitInfo.Sha || !r.CreatedTag || r.TagMessage != "first release" || r.JobID != job.ID || r.Description != "Notes" {
		t.Errorf("release = %+v", r)
	}
	if !proj.HasTag("v1.0.0") || proj.RefSHA("refs/tags/v1.0.0") != job.GitInfo.Sha {
		t.Errorf("tag v1.0.0 not created at the ref")
	}

	for _, tt := range []struct {
		name   string
		token  string
		req    gitlab.ReleaseRequest
		status int
		msg    string
	}{
		{"same tag again", job.Token, gitlab.ReleaseRequest{TagName: "v1.0.0"}, http.StatusConflict, "Release already exists"},
		{"new tag without ref", job.Token, gitlab.ReleaseRequest{TagName: "v2"}, http.StatusUnprocessableEntity, "Ref is not specified"},
		{"unknown milestone", job.Token, gitlab.ReleaseRequest{TagName: "v3", Ref: "main", Milestones: []string{"nope"}}, http.StatusBadRequest, "Milestone(s) not found: nope"},
		{"wrong token", "glcbt-nope", gitlab.ReleaseRequest{TagName: "v4", Ref: "main"}, http.StatusUnauthorized, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.CreateRelease(ctx, proj.ID, tt.token, tt.req)
			var ge *gitlab.Error
			if !errors.As(err, &ge) || ge.StatusCode != tt.status || !strings.Contains(ge.Message, tt.msg) {
				t.Errorf("err = %v, want status %d with %q", err, tt.status, tt.msg)
			}
		})
	}
	if n := len(srv.Releases(proj)); n != 1 {
		t.Errorf("releases after refusals = %d, want 1", n)
	}
	res := call(t, srv, http.MethodGet, "/api/v4/projects/"+strconv.FormatInt(proj.ID, 10)+"/releases", map[string]string{"JOB-TOKEN": job.Token}, nil)
	var list []map[string]any
	res.decode(t, &list)
	if res.status != http.StatusOK || len(list) != 1 || list[0]["tag_name"] != "v1.0.0" {
		t.Errorf("GET releases = %d %s", res.status, res.body)
	}
	srv.AssertNoViolations(t)
}

func TestLFSBatchAPI(t *testing.T) {
	srv := gitlabtest.New(t)
	proj := srv.CreateProject("group/media", map[string]string{"README.md": "hi\n"})
	content := "big binary content\x00\x01"
	proj.CommitLFS(map[string]string{"assets/logo.bin": content}, "Add logo")
	r := srv.CreateRunner(gitlabtest.RunnerOptions{})
	srv.EnqueueJob(proj, gitlabtest.JobSpec{})
	job := takeJob(t, srv, r.Token, allFeatures())

	sum := sha256.Sum256([]byte(content))
	oid := hex.EncodeToString(sum[:])
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("gitlab-ci-token:"+job.Token))
	lfs := map[string]string{"Content-Type": "application/vnd.git-lfs+json", "Accept": "application/vnd.git-lfs+json"}
	withAuth := func(h map[string]string, auth string) map[string]string {
		out := map[string]string{}
		for k, v := range h {
			out[k] = v
		}
		if auth != "" {
			out["Authorization"] = auth
		}
		return out
	}
	batch := map[string]any{"operation": "download", "transfers": []string{"basic"}, "hash_algo": "sha256",
		"objects": []map[string]any{{"oid": oid, "size": len(content)}, {"oid": strings.Repeat("0", 64), "size": 3}}}

	res := call(t, srv, http.MethodPost, "/group/media.git/info/lfs/objects/batch", withAuth(lfs, basic), batch)
	var answer struct {
		Objects []struct {
			OID     string `json:"oid"`
			Actions struct {
				Download struct {
					Href   string            `json:"href"`
					Header map[string]string `json:"header"`
				} `json:"download"`
			} `json:"actions"`
			Error *struct {
				Code int `json:"code"`
			} `json:"error"`
		} `json:"objects"`
	}
	res.decode(t, &answer)
	if res.status != http.StatusOK || len(answer.Objects) != 2 || answer.Objects[1].Error == nil || answer.Objects[1].Error.Code != 404 {
		t.Fatalf("batch = %d %s", res.status, res.body)
	}
	dl := answer.Objects[0].Actions.Download
	if !strings.HasPrefix(dl.Href, srv.URL()+"/group/media.git/gitlab-lfs/objects/") || dl.Header["Authorization"] != basic {
		t.Fatalf("download action = %+v", dl)
	}
	got := call(t, srv, http.MethodGet, strings.TrimPrefix(dl.Href, srv.URL()), dl.Header, nil)
	if got.status != http.StatusOK || string(got.body) != content {
		t.Errorf("download = %d %q, want the content", got.status, got.body)
	}
	if res := call(t, srv, http.MethodGet, strings.TrimPrefix(dl.Href, srv.URL()), nil, nil); res.status != http.StatusUnauthorized {
		t.Errorf("download without credentials = %d, want 401", res.status)
	}
	if res := call(t, srv, http.MethodPost, "/group/media.git/info/lfs/objects/batch", lfs, batch); res.status != http.StatusUnauthorized {
		t.Errorf("batch without credentials = %d, want 401", res.status)
	}
	upload := map[string]any{"operation": "upload", "objects": []map[string]any{{"oid": oid, "size": len(content)}}}
	if res := call(t, srv, http.MethodPost, "/group/media.git/info/lfs/objects/batch", withAuth(lfs, basic), upload); res.status != http.StatusForbidden {
		t.Errorf("upload batch with a job token = %d, want 403", res.status)
	}
	if n := len(srv.RequestsTo(gitlabtest.EndpointLFSBatch)); n != 3 {
		t.Errorf("requests recorded as LFS batch = %d, want 3", n)
	}
	if !slices.ContainsFunc(srv.RequestsTo(gitlabtest.EndpointLFSObject), func(r gitlabtest.Request) bool { return r.Status == http.StatusOK }) {
		t.Errorf("no successful request recorded as an LFS object download")
	}
	srv.AssertNoViolations(t)
}
