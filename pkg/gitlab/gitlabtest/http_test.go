package gitlabtest_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
)

// response is what a test request got back.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// call sends one request with plain net/http. A []byte or string body is
// sent as is (text/plain unless a Content-Type header is given); anything
// else is sent as JSON.
func call(t *testing.T, srv *gitlabtest.Server, method, path string, header map[string]string, body any) response {
	t.Helper()
	var rd io.Reader
	ctype := ""
	switch b := body.(type) {
	case nil:
	case []byte:
		rd, ctype = bytes.NewReader(b), "text/plain"
	case string:
		rd, ctype = bytes.NewReader([]byte(b)), "text/plain"
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd, ctype = bytes.NewReader(raw), "application/json"
	}
	req, err := http.NewRequest(method, srv.URL()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	client := srv.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	res, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	got, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return response{status: res.StatusCode, header: res.Header, body: got}
}

// allFeatures is the feature map of a runner that implements everything
// GitLab can require, without two-phase commit or graceful cancel.
func allFeatures() gitlab.Features {
	return gitlab.Features{
		Variables: true, Artifacts: true, Cache: true, FallbackCacheKeys: true,
		UploadMultipleArtifacts: true, UploadRawArtifacts: true, Refspecs: true,
		Masking: true, RawVariables: true, ArtifactsExclude: true, MultiBuildSteps: true,
		TraceReset: true, TraceChecksum: true, TraceSize: true, Cancelable: true,
		ReturnExitCode: true,
	}
}

// requestJob asks for a job as a runner with features f.
func requestJob(t *testing.T, srv *gitlabtest.Server, token, lastUpdate string, f gitlab.Features) response {
	t.Helper()
	return call(t, srv, http.MethodPost, "/api/v4/jobs/request", nil, gitlab.JobRequest{
		Token: token, SystemID: "s_0123456789ab", LastUpdate: lastUpdate,
		Info: gitlab.Info{Name: "test-runner", Features: f},
	})
}

// takeJob requests a job and fails unless one is returned.
func takeJob(t *testing.T, srv *gitlabtest.Server, token string, f gitlab.Features) gitlab.Job {
	t.Helper()
	res := requestJob(t, srv, token, "", f)
	if res.status != http.StatusCreated {
		t.Fatalf("job request: got status %d (%s), want 201", res.status, res.body)
	}
	var job gitlab.Job
	res.decode(t, &job)
	return job
}

func jobHeader(token string) map[string]string { return map[string]string{"JOB-TOKEN": token} }
