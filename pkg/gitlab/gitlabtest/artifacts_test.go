package gitlabtest_test

import (
	"bytes"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"

	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
)

type part struct{ field, filename, content string }

// upload posts a multipart body with parts to the job's artifacts endpoint.
func upload(t *testing.T, srv *gitlabtest.Server, jobID int64, token, query string, parts ...part) response {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, p := range parts {
		var w io.Writer
		var err error
		if p.filename != "" {
			w, err = mw.CreateFormFile(p.field, p.filename)
		} else {
			w, err = mw.CreateFormField(p.field)
		}
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, p.content)
	}
	mw.Close()
	return call(t, srv, http.MethodPost, fmt.Sprintf("/api/v4/jobs/%d/artifacts?%s", jobID, query),
		map[string]string{"JOB-TOKEN": token, "Content-Type": mw.FormDataContentType()}, buf.Bytes())
}

func TestUploadArtifacts(t *testing.T) {
	srv, job := runningJob(t, allFeatures(), gitlabtest.WithMaxArtifactSize(1<<20))
	big := strings.Repeat("z", 1<<20)
	tests := []struct {
		name      string
		token     string
		query     string
		parts     []part
		want      int
		violation string
	}{
		{"archive", job.Token, "artifact_type=archive&artifact_format=zip&expire_in=1+week", []part{{"file", "bin.zip", "PK-data"}}, 201, ""},
		{"defaults", job.Token, "", []part{{"file", "default.zip", "PK2"}}, 201, ""},
		{"report", job.Token, "artifact_type=junit&artifact_format=gzip", []part{{"file", "junit.xml.gz", "gz"}}, 201, ""},
		{"exactly the limit", job.Token, "", []part{{"file", "big.zip", big}}, 201, ""},
		{"wrong token", "glcbt-wrong", "", []part{{"file", "bin.zip", "x"}}, 403, ""},
		{"too large", job.Token, "", []part{{"file", "big.zip", big + "!"}}, 413, ""},
		{"unknown format", job.Token, "artifact_format=rar", []part{{"file", "bin.rar", "x"}}, 400, ""},
		{"no file part", job.Token, "", []part{{"other", "", "x"}}, 400, "0 \"file\" parts"},
		{"two file parts", job.Token, "", []part{{"file", "a.zip", "a"}, {"file", "b.zip", "b"}}, 400, "2 \"file\" parts"},
		{"extra part", job.Token, "", []part{{"metadata", "", "x"}, {"file", "c.zip", "c"}}, 201, "unexpected multipart part"},
		{"wrong extension", job.Token, "artifact_format=gzip&artifact_type=junit", []part{{"file", "junit.xml", "x"}}, 201, "does not end in"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(srv.Violations())
			res := upload(t, srv, job.ID, tt.token, tt.query, tt.parts...)
			if res.status != tt.want {
				t.Fatalf("got %d (%s), want %d", res.status, res.body, tt.want)
			}
			if tt.want == 201 && string(res.body) != "201" {
				t.Fatalf("got body %q, want 201", res.body)
			}
			v := srv.Violations()[before:]
			found := slices.ContainsFunc(v, func(s string) bool { return strings.Contains(s, tt.violation) })
			if tt.violation == "" && len(v) != 0 || tt.violation != "" && !found {
				t.Fatalf("got violations %q, want %q", v, tt.violation)
			}
		})
	}
	got := srv.Job(job.ID)
	a, ok := got.Artifact(gitlab.ArtifactTypeArchive)
	if !ok || len(got.Artifacts) != 6 {
		t.Fatalf("got %d artifacts, want 6 with an archive", len(got.Artifacts))
	}
	first := got.Artifacts[0]
	b, err := first.Bytes()
	if err != nil || string(b) != "PK-data" || first.Type != "archive" || first.Format != "zip" || first.ExpireIn != "1 week" || first.Filename != "bin.zip" || first.Size != 7 {
		t.Fatalf("got first artifact %+v (%q, %v), want bin.zip archive/zip expiring in 1 week with PK-data", first, b, err)
	}
	if st, err := os.Stat(first.Path); err != nil || st.Size() != 7 {
		t.Fatalf("got stored file %v, %v; want 7 bytes on disk", st, err)
	}
	if junit, _ := got.Artifact("junit"); junit.Format != "gzip" {
		t.Fatalf("got junit format %q, want gzip", junit.Format)
	}
	if a.Filename != "c.zip" {
		t.Fatalf("got last archive %q, want c.zip", a.Filename)
	}
}

func TestDownloadArtifacts(t *testing.T) {
	srv := gitlabtest.New(t)
	proj := srv.CreateProject("group/demo", map[string]string{"a.txt": "a"})
	r := srv.CreateRunner(gitlabtest.RunnerOptions{})
	build := srv.EnqueueJob(proj, gitlabtest.JobSpec{Name: "build"})
	lint := srv.EnqueueJob(proj, gitlabtest.JobSpec{Name: "lint"})
	buildJob := takeJob(t, srv, r.Token, allFeatures())
	takeJob(t, srv, r.Token, allFeatures())
	if res := upload(t, srv, build.ID, buildJob.Token, "", part{"file", "artifacts.zip", "zip-bytes"}); res.status != 201 {
		t.Fatalf("upload: got %d", res.status)
	}
	put(t, srv, buildJob, final(buildJob.Token, "success", nil))

	test := srv.EnqueueJob(proj, gitlabtest.JobSpec{Name: "test", Dependencies: []int64{build.ID, lint.ID}})
	testJob := takeJob(t, srv, r.Token, allFeatures())
	if testJob.ID != test.ID || len(testJob.Dependencies) != 2 {
		t.Fatalf("got job %d with %d dependencies, want %d with 2", testJob.ID, len(testJob.Dependencies), test.ID)
	}
	dep := testJob.Dependencies[0]
	if dep.ID != build.ID || dep.Name != "build" || dep.Token != testJob.Token || dep.ArtifactsFile == nil ||
		dep.ArtifactsFile.Filename != "artifacts.zip" || dep.ArtifactsFile.Size != 9 {
		t.Fatalf("got dependency %+v, want build with artifacts.zip of 9 bytes and the current job's token", dep)
	}
	if testJob.Dependencies[1].ArtifactsFile != nil {
		t.Fatalf("got artifacts_file for lint, want none (nothing uploaded)")
	}

	path := fmt.Sprintf("/api/v4/jobs/%d/artifacts", build.ID)
	tests := []struct {
		name  string
		path  string
		token string
		want  int
	}{
		{"running job token", path, testJob.Token, 200},
		{"finished job token", path, buildJob.Token, 403},
		{"no token", path, "", 403},
		{"no artifacts", fmt.Sprintf("/api/v4/jobs/%d/artifacts", lint.ID), testJob.Token, 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := call(t, srv, http.MethodGet, tt.path, jobHeader(tt.token), nil)
			if res.status != tt.want {
				t.Fatalf("got %d, want %d", res.status, tt.want)
			}
			if tt.want == 200 && string(res.body) != "zip-bytes" {
				t.Fatalf("got body %q, want zip-bytes", res.body)
			}
		})
	}

	t.Run("direct download", func(t *testing.T) {
		res := call(t, srv, http.MethodGet, path+"?direct_download=true", jobHeader(testJob.Token), nil)
		loc, err := url.Parse(res.header.Get("Location"))
		if res.status != http.StatusFound || err != nil || !strings.HasPrefix(loc.Path, "/objects/") || loc.Query().Get("X-Amz-Signature") == "" {
			t.Fatalf("got %d Location %q, want 302 to a presigned object URL", res.status, res.header.Get("Location"))
		}
		obj := call(t, srv, http.MethodGet, loc.RequestURI(), nil, nil)
		if obj.status != 200 || string(obj.body) != "zip-bytes" {
			t.Fatalf("object: got %d %q, want 200 zip-bytes", obj.status, obj.body)
		}
		q := loc.Query()
		q.Set("X-Amz-Signature", strings.Repeat("0", 64))
		if forged := call(t, srv, http.MethodGet, loc.Path+"?"+q.Encode(), nil, nil); forged.status != http.StatusForbidden {
			t.Fatalf("forged signature: got %d, want 403", forged.status)
		}
	})
	if v := srv.Violations(); len(v) != 1 || !strings.Contains(v[0], "no JOB-TOKEN") {
		t.Fatalf("got violations %q, want only the missing token", v)
	}
}
