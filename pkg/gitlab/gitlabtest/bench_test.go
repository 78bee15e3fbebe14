package gitlabtest_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
)

// BenchmarkJobRoundTrip measures the fake's cost for one job: request,
// one trace PATCH and the final PUT, over loopback HTTP.
func BenchmarkJobRoundTrip(b *testing.B) {
	srv := gitlabtest.New(b)
	proj := srv.CreateProject("group/demo", map[string]string{"a.txt": "a"})
	r := srv.CreateRunner(gitlabtest.RunnerOptions{})
	client := srv.Client()
	trace := bytes.Repeat([]byte("log line\n"), 100)
	send := func(method, url string, header map[string]string, body []byte) *http.Response {
		req, _ := http.NewRequest(method, srv.URL()+url, bytes.NewReader(body))
		for k, v := range header {
			req.Header.Set(k, v)
		}
		res, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		return res
	}
	reqBody, _ := json.Marshal(gitlab.JobRequest{Token: r.Token, SystemID: "s_bench"})
	for b.Loop() {
		srv.EnqueueJob(proj, gitlabtest.JobSpec{})
		res := send(http.MethodPost, "/api/v4/jobs/request", map[string]string{"Content-Type": "application/json"}, reqBody)
		var job gitlab.Job
		if err := json.NewDecoder(res.Body).Decode(&job); err != nil {
			b.Fatal(err)
		}
		res.Body.Close()
		res = send(http.MethodPatch, fmt.Sprintf("/api/v4/jobs/%d/trace", job.ID), map[string]string{
			"JOB-TOKEN": job.Token, "Content-Type": "text/plain", "Content-Range": fmt.Sprintf("0-%d", len(trace)-1),
		}, trace)
		res.Body.Close()
		upd, _ := json.Marshal(final(job.Token, "success", trace))
		res = send(http.MethodPut, fmt.Sprintf("/api/v4/jobs/%d", job.ID), map[string]string{
			"JOB-TOKEN": job.Token, "Content-Type": "application/json",
		}, upd)
		if res.StatusCode != http.StatusOK {
			b.Fatalf("final update: got %d, want 200", res.StatusCode)
		}
		res.Body.Close()
	}
	if v := srv.Violations(); len(v) > 0 {
		b.Fatalf("violations: %q", v)
	}
}
