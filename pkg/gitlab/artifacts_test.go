package gitlab_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"gitlab-serverless-runner/pkg/gitlab"
)

// upload is a multipart artifact upload as a server received it.
type upload struct {
	parts    int
	field    string
	filename string
	content  string
}

func parseUpload(t *testing.T, r recorded) upload {
	t.Helper()
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" {
		t.Fatalf("Content-Type = %q, want multipart/form-data", r.Header.Get("Content-Type"))
	}
	mr := multipart.NewReader(bytes.NewReader(r.Body), params["boundary"])
	var up upload
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return up
		}
		if err != nil {
			t.Fatalf("read multipart: %v", err)
		}
		b, err := io.ReadAll(p)
		if err != nil {
			t.Fatalf("read part: %v", err)
		}
		up.parts++
		up.field, up.filename, up.content = p.FormName(), p.FileName(), string(b)
	}
}

func TestUploadArtifactsRequest(t *testing.T) {
	tests := []struct {
		name      string
		opts      gitlab.ArtifactUpload
		wantFile  string
		wantQuery url.Values
	}{
		{"archive zip", gitlab.ArtifactUpload{Name: "bin", Type: "archive", Format: "zip", ExpireIn: "1 week"}, "bin.zip",
			url.Values{"artifact_type": {"archive"}, "artifact_format": {"zip"}, "expire_in": {"1 week"}}},
		{"defaults", gitlab.ArtifactUpload{}, "default.zip", url.Values{"artifact_type": {"archive"}}},
		{"junit gzip", gitlab.ArtifactUpload{Name: "junit.xml", Type: "junit", Format: "gzip"}, "junit.xml.gz",
			url.Values{"artifact_type": {"junit"}, "artifact_format": {"gzip"}}},
		{"raw keeps the name", gitlab.ArtifactUpload{Name: "gl-sast-report.json", Type: "sast", Format: "raw", ExpireIn: "never"}, "gl-sast-report.json",
			url.Values{"artifact_type": {"sast"}, "artifact_format": {"raw"}, "expire_in": {"never"}}},
		{"base name only", gitlab.ArtifactUpload{Name: "../dir/out", Format: "zip"}, "out.zip",
			url.Values{"artifact_type": {"archive"}, "artifact_format": {"zip"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := serve(t, reply{status: 201, body: "201"})
			c, _ := newClient(t, s.srv.URL)
			content := strings.Repeat("archive bytes ", 10000)
			if err := c.UploadArtifacts(t.Context(), 8123, jobToken, tt.opts, strings.NewReader(content)); err != nil {
				t.Fatal(err)
			}
			r := s.requests()[0]
			if r.Method != "POST" || r.Path != "/api/v4/jobs/8123/artifacts" {
				t.Errorf("request = %s %s, want POST /api/v4/jobs/8123/artifacts", r.Method, r.Path)
			}
			if got := r.Query.Encode(); got != tt.wantQuery.Encode() {
				t.Errorf("query = %s, want %s", got, tt.wantQuery.Encode())
			}
			up := parseUpload(t, r)
			if up.parts != 1 || up.field != "file" || up.filename != tt.wantFile || up.content != content {
				t.Errorf("upload = %d parts, last %q filename %q with %d bytes; want 1 part \"file\" named %q with %d bytes",
					up.parts, up.field, up.filename, len(up.content), tt.wantFile, len(content))
			}
			if got := r.Header.Get("JOB-TOKEN"); got != jobToken {
				t.Errorf("JOB-TOKEN = %q, want the job token", got)
			}
		})
	}
}

// onceReader hides any Seek method: the stream can be read once only.
type onceReader struct{ r io.Reader }

func (o onceReader) Read(p []byte) (int, error) { return o.r.Read(p) }

func TestUploadArtifactsStatuses(t *testing.T) {
	const content = "zip bytes"
	seekable := func() io.Reader { return strings.NewReader(content) }
	stream := func() io.Reader { return onceReader{strings.NewReader(content)} }
	tests := []struct {
		name         string
		replies      []reply
		body         func() io.Reader
		wantErr      error
		wantRequests int
		wantMsg      string
	}{
		{"201", []reply{{status: 201, body: "201"}}, stream, nil, 1, ""},
		{"400", []reply{{status: 400, body: `{"message":"invalid artifact_type"}`}}, stream, gitlab.ErrBadRequest, 1, "invalid artifact_type"},
		{"403 not retried", []reply{{status: 403}, {status: 201}}, seekable, gitlab.ErrForbidden, 1, ""},
		{"405 artifacts disabled", []reply{{status: 405}}, stream, errAny, 1, ""},
		{"413 too large", []reply{{status: 413, body: `{"message":"413 Request Entity Too Large"}`}}, stream, gitlab.ErrTooLarge, 1, "larger than the instance's maximum artifacts size"},
		{"503 then 201 with a seekable body", []reply{{status: 503}, {status: 201}}, seekable, nil, 2, ""},
		{"429 then 201 with a seekable body", []reply{{status: 429, header: map[string]string{"Retry-After": "60"}}, {status: 201}}, seekable, nil, 2, ""},
		{"503 with a consumed stream is not retried", []reply{{status: 503}, {status: 201}}, stream, gitlab.ErrUnavailable, 1, ""},
		{"5xx exhausted", []reply{{status: 500}}, seekable, gitlab.ErrUnavailable, 5, ""},
		{"307 to another host refused", []reply{{status: 307, header: map[string]string{"Location": "https://elsewhere.example.com/api/v4/jobs/8123/artifacts"}}}, seekable, errAny, 1, "another host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := serve(t, tt.replies...)
			c, _ := newClient(t, s.srv.URL)
			err := c.UploadArtifacts(t.Context(), 8123, jobToken, gitlab.ArtifactUpload{Name: "a", Format: "zip"}, tt.body())
			checkErr(t, err, tt.wantErr)
			if err != nil && !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("err = %q, want it to contain %q", err, tt.wantMsg)
			}
			reqs := s.requests()
			if len(reqs) != tt.wantRequests {
				t.Fatalf("requests = %d, want %d", len(reqs), tt.wantRequests)
			}
			for i, r := range reqs {
				if up := parseUpload(t, r); up.content != content {
					t.Errorf("request %d carried %q, want the whole archive %q", i+1, up.content, content)
				}
			}
		})
	}
	t.Run("unreachable", func(t *testing.T) {
		c, _ := newClient(t, closedURL(t))
		err := c.UploadArtifacts(t.Context(), 8123, jobToken, gitlab.ArtifactUpload{}, stream())
		checkErr(t, err, gitlab.ErrUnavailable)
	})
}

func TestUploadArtifactsFollowsA307OnTheSameHost(t *testing.T) {
	target := serve(t, reply{status: 201})
	// Same host name (127.0.0.1), another port: GitLab moved the API.
	moved := serve(t, reply{status: 307, header: map[string]string{"Location": target.srv.URL + "/api/v4/jobs/8123/artifacts"}})
	c, _ := newClient(t, moved.srv.URL)
	if err := c.UploadArtifacts(t.Context(), 8123, jobToken, gitlab.ArtifactUpload{Name: "a"}, strings.NewReader("data")); err != nil {
		t.Fatal(err)
	}
	reqs := target.requests()
	if len(reqs) != 1 {
		t.Fatalf("requests at the new location = %d, want 1", len(reqs))
	}
	if up := parseUpload(t, reqs[0]); up.content != "data" || reqs[0].Query.Get("artifact_type") != "archive" {
		t.Errorf("redirected upload = %+v, query %v; want the archive and the query", up, reqs[0].Query)
	}
}

func TestDownloadArtifacts(t *testing.T) {
	const archive = "PK\x03\x04 zip archive"
	// storage is object storage: it must never see the job token.
	var mu sync.Mutex
	var storageTokens []string
	storageStatus := http.StatusOK
	storage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		storageTokens = append(storageTokens, r.Header.Get("JOB-TOKEN"))
		status := storageStatus
		mu.Unlock()
		w.WriteHeader(status)
		if status == http.StatusOK {
			fmt.Fprint(w, archive)
		}
	}))
	t.Cleanup(storage.Close)
	presigned := storage.URL + "/bucket/artifacts.zip?X-Amz-Signature=abc"

	tests := []struct {
		name          string
		replies       []reply
		storageStatus int
		wantErr       error
		wantRequests  int
		wantStorage   int
	}{
		{"200 from GitLab", []reply{{status: 200, header: map[string]string{"Content-Type": "application/zip"}, body: archive}}, 200, nil, 1, 0},
		{"302 to object storage", []reply{{status: 302, header: map[string]string{"Location": presigned}}}, 200, nil, 1, 1},
		{"307 to object storage", []reply{{status: 307, header: map[string]string{"Location": presigned}}}, 200, nil, 1, 1},
		{"object storage failing, GitLab serves", []reply{{status: 302, header: map[string]string{"Location": presigned}}, {status: 302, header: map[string]string{"Location": presigned}}, {status: 302, header: map[string]string{"Location": presigned}}, {status: 302, header: map[string]string{"Location": presigned}}, {status: 302, header: map[string]string{"Location": presigned}}, {status: 200, body: archive}}, 500, nil, 6, 5},
		{"object storage 403 is final", []reply{{status: 302, header: map[string]string{"Location": presigned}}}, 403, gitlab.ErrForbidden, 1, 1},
		{"401", []reply{{status: 401}}, 200, gitlab.ErrForbidden, 1, 0},
		{"403", []reply{{status: 403, body: `{"message":"403 Forbidden"}`}}, 200, gitlab.ErrForbidden, 1, 0},
		{"404", []reply{{status: 404, body: `{"message":"404 Not Found"}`}}, 200, gitlab.ErrNotFound, 1, 0},
		{"429 then 200", []reply{{status: 429, header: map[string]string{"Retry-After": "1"}}, {status: 200, body: archive}}, 200, nil, 2, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			storageTokens, storageStatus = nil, tt.storageStatus
			mu.Unlock()
			s := serve(t, tt.replies...)
			c, _ := newClient(t, s.srv.URL)
			var buf bytes.Buffer
			n, err := c.DownloadArtifacts(t.Context(), 8120, jobToken, &buf)
			checkErr(t, err, tt.wantErr)
			if err == nil && (buf.String() != archive || n != int64(len(archive))) {
				t.Errorf("downloaded %d bytes %q, want %q", n, buf.String(), archive)
			}
			reqs := s.requests()
			if len(reqs) != tt.wantRequests {
				t.Fatalf("GitLab requests = %d, want %d", len(reqs), tt.wantRequests)
			}
			if got := reqs[0].Query.Get("direct_download"); got != "true" {
				t.Errorf("first request direct_download = %q, want true", got)
			}
			for i, r := range reqs {
				if r.Path != "/api/v4/jobs/8120/artifacts" || r.Header.Get("JOB-TOKEN") != jobToken {
					t.Errorf("request %d = %s with JOB-TOKEN %q, want the dependency's artifacts with the job token", i+1, r.Path, r.Header.Get("JOB-TOKEN"))
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if len(storageTokens) != tt.wantStorage {
				t.Errorf("object storage requests = %d, want %d", len(storageTokens), tt.wantStorage)
			}
			for _, tok := range storageTokens {
				if tok != "" {
					t.Errorf("object storage got JOB-TOKEN %q, want none", tok)
				}
			}
			if err != nil && strings.Contains(err.Error(), "X-Amz-Signature") {
				t.Errorf("err = %q shows the presigned URL", err)
			}
		})
	}
	t.Run("unreachable", func(t *testing.T) {
		c, _ := newClient(t, closedURL(t))
		_, err := c.DownloadArtifacts(t.Context(), 1, jobToken, io.Discard)
		checkErr(t, err, gitlab.ErrUnavailable)
	})
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestDownloadArtifactsReportsAFailingWriter(t *testing.T) {
	s := serve(t, reply{status: 200, body: "data"})
	c, _ := newClient(t, s.srv.URL)
	_, err := c.DownloadArtifacts(t.Context(), 1, jobToken, failingWriter{})
	if err == nil || !strings.Contains(err.Error(), "disk full") || errors.Is(err, gitlab.ErrUnavailable) {
		t.Errorf("err = %v, want the writer's error, not ErrUnavailable", err)
	}
	if got := len(s.requests()); got != 1 {
		t.Errorf("requests = %d, want 1", got)
	}
}
