package gitlabtest_test

import (
	"context"
	"fmt"
	"hash/crc32"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
)

// runningJob starts a fake with opts and hands one job to a runner with
// features f.
func runningJob(t *testing.T, f gitlab.Features, opts ...gitlabtest.Option) (*gitlabtest.Server, gitlab.Job) {
	t.Helper()
	srv := gitlabtest.New(t, opts...)
	proj := srv.CreateProject("group/demo", map[string]string{"a.txt": "a"})
	r := srv.CreateRunner(gitlabtest.RunnerOptions{})
	srv.EnqueueJob(proj, gitlabtest.JobSpec{Script: []string{"echo hi"}})
	return srv, takeJob(t, srv, r.Token, f)
}

func patch(t *testing.T, srv *gitlabtest.Server, job gitlab.Job, contentRange string, body string) response {
	t.Helper()
	h := jobHeader(job.Token)
	if contentRange != "" {
		h["Content-Range"] = contentRange
	}
	return call(t, srv, http.MethodPatch, fmt.Sprintf("/api/v4/jobs/%d/trace?debug_trace=false", job.ID), h, body)
}

func put(t *testing.T, srv *gitlabtest.Server, job gitlab.Job, req gitlab.UpdateJobRequest) response {
	t.Helper()
	return call(t, srv, http.MethodPut, "/api/v4/jobs/"+strconv.FormatInt(job.ID, 10), jobHeader(job.Token), req)
}

func final(token, state string, trace []byte) gitlab.UpdateJobRequest {
	sum := fmt.Sprintf("crc32:%08x", crc32.ChecksumIEEE(trace))
	return gitlab.UpdateJobRequest{Token: token, State: state, Checksum: sum,
		Output: gitlab.JobOutput{Checksum: sum, Bytesize: int64(len(trace))}}
}

func TestPatchTrace(t *testing.T) {
	srv, job := runningJob(t, allFeatures(), gitlabtest.WithTraceUpdateInterval(7, 1))
	steps := []struct {
		name         string
		token        string
		contentRange string
		body         string
		wantStatus   int
		wantRange    string
		wantInterval string
	}{
		{"no Content-Range", job.Token, "", "x", 400, "", ""},
		{"wrong token", "glcbt-wrong", "0-4", "hello", 403, "", ""},
		{"first chunk", job.Token, "0-4", "hello", 202, "0-5", "7"},
		{"second chunk", job.Token, "5-10", " world", 202, "0-11", "7"},
		{"start beyond the end", job.Token, "15-20", "abcdef", 416, "0-11", ""},
		{"start before the end", job.Token, "8-20", "abcdefghijklm", 416, "0-11", ""},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			j := job
			j.Token = st.token
			res := patch(t, srv, j, st.contentRange, st.body)
			if res.status != st.wantStatus || res.header.Get("Range") != st.wantRange ||
				res.header.Get("X-GitLab-Trace-Update-Interval") != st.wantInterval {
				t.Fatalf("got %d Range %q interval %q, want %d %q %q", res.status, res.header.Get("Range"),
					res.header.Get("X-GitLab-Trace-Update-Interval"), st.wantStatus, st.wantRange, st.wantInterval)
			}
			if st.wantStatus == 202 && res.header.Get("Job-Status") != "running" {
				t.Fatalf("got Job-Status %q, want running", res.header.Get("Job-Status"))
			}
		})
	}
	if got := string(srv.Job(job.ID).Trace); got != "hello world" {
		t.Fatalf("got trace %q, want %q", got, "hello world")
	}
	if v := srv.Violations(); len(v) != 3 {
		t.Fatalf("got violations %q, want 3 (missing Content-Range, two wrong offsets)", v)
	}

	t.Run("watched job gets the short interval", func(t *testing.T) {
		srv.WatchJob(job.ID, true)
		res := patch(t, srv, job, "11-11", "!")
		if res.header.Get("X-GitLab-Trace-Update-Interval") != "1" {
			t.Fatalf("got interval %q, want 1", res.header.Get("X-GitLab-Trace-Update-Interval"))
		}
	})
}

func TestPatchTraceDefaults(t *testing.T) {
	srv, job := runningJob(t, allFeatures())
	if res := patch(t, srv, job, "0-1", "ab"); res.header.Get("X-GitLab-Trace-Update-Interval") != "60" {
		t.Fatalf("got interval %q, want GitLab's 60", res.header.Get("X-GitLab-Trace-Update-Interval"))
	}
	srv.WatchJob(job.ID, true)
	if res := patch(t, srv, job, "2-3", "cd"); res.header.Get("X-GitLab-Trace-Update-Interval") != "3" {
		t.Fatalf("watched: got interval %q, want 3", res.header.Get("X-GitLab-Trace-Update-Interval"))
	}
	srv.AssertNoViolations(t)
}

func TestTraceResumeAfterLoss(t *testing.T) {
	srv, job := runningJob(t, allFeatures())
	patch(t, srv, job, "0-9", "0123456789")
	srv.TruncateTrace(job.ID, 4)
	res := patch(t, srv, job, "10-12", "abc")
	if res.status != http.StatusRequestedRangeNotSatisfiable || res.header.Get("Range") != "0-6" {
		t.Fatalf("got %d Range %q, want 416 0-6", res.status, res.header.Get("Range"))
	}
	if res := patch(t, srv, job, "6-12", "6789abc"); res.status != http.StatusAccepted || res.header.Get("Range") != "0-13" {
		t.Fatalf("resume: got %d Range %q, want 202 0-13", res.status, res.header.Get("Range"))
	}
	trace := []byte("0123456789abc")
	if res := put(t, srv, job, final(job.Token, "success", trace)); res.status != http.StatusOK {
		t.Fatalf("final: got %d, want 200", res.status)
	}
	srv.AssertNoViolations(t)
}

func TestTraceViolations(t *testing.T) {
	tests := []struct {
		name         string
		contentRange string
		body         string
		want         string
	}{
		{"empty body", "0--1", "", "empty body"},
		{"range end does not match the body", "0-9", "abc", "does not match"},
		{"malformed range", "bytes 0-2/3", "abc", "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, job := runningJob(t, allFeatures())
			patch(t, srv, job, tt.contentRange, tt.body)
			v := srv.Violations()
			if len(v) != 1 || !strings.Contains(v[0], tt.want) {
				t.Fatalf("got violations %q, want one containing %q", v, tt.want)
			}
		})
	}
}

func TestTraceSizeLimit(t *testing.T) {
	srv, job := runningJob(t, allFeatures(), gitlabtest.WithTraceSizeLimit(8))
	patch(t, srv, job, "0-4", "01234")
	res := patch(t, srv, job, "5-9", "56789")
	if res.status != http.StatusForbidden {
		t.Fatalf("got %d, want 403", res.status)
	}
	if got := srv.Job(job.ID); got.State != "failed" || got.FailureReason != "trace_size_exceeded" {
		t.Fatalf("got %s/%s, want failed/trace_size_exceeded", got.State, got.FailureReason)
	}
}

func TestUpdateJob(t *testing.T) {
	srv, job := runningJob(t, allFeatures())
	trace := []byte("all good\n")
	patch(t, srv, job, "0-8", string(trace))

	if res := put(t, srv, job, gitlab.UpdateJobRequest{Token: job.Token, State: "running"}); res.status != 200 || res.header.Get("Job-Status") != "running" {
		t.Fatalf("running: got %d %q, want 200 running", res.status, res.header.Get("Job-Status"))
	}
	// The token may come from the JOB-TOKEN header alone.
	if res := put(t, srv, job, gitlab.UpdateJobRequest{State: "running"}); res.status != 200 {
		t.Fatalf("header token: got %d, want 200", res.status)
	}
	wrong := job
	wrong.Token = "glcbt-wrong"
	if res := put(t, srv, wrong, gitlab.UpdateJobRequest{Token: wrong.Token, State: "running"}); res.status != 403 || res.header.Get("Job-Status") != "running" {
		t.Fatalf("wrong token: got %d %q, want 403 running", res.status, res.header.Get("Job-Status"))
	}
	req := final(job.Token, "failed", trace)
	req.FailureReason, req.ExitCode = "script_failure", 2
	if res := put(t, srv, job, req); res.status != 200 || res.header.Get("Job-Status") != "failed" {
		t.Fatalf("final: got %d %q, want 200 failed", res.status, res.header.Get("Job-Status"))
	}
	got := srv.Job(job.ID)
	if got.State != "failed" || got.FailureReason != "script_failure" || got.ExitCode != 2 || len(got.Updates) != 4 {
		t.Fatalf("got %s/%s exit %d with %d updates, want failed/script_failure exit 2 with 4", got.State, got.FailureReason, got.ExitCode, len(got.Updates))
	}
	if got.Updates[3].Request.Token != "" || got.Updates[3].Request.Output.Bytesize != int64(len(trace)) {
		t.Fatalf("got recorded update %+v, want the body without its token", got.Updates[3].Request)
	}
	srv.AssertNoViolations(t)

	if res := put(t, srv, job, req); res.status != 403 || res.header.Get("Job-Status") != "failed" {
		t.Fatalf("after final: got %d %q, want 403 failed", res.status, res.header.Get("Job-Status"))
	}
	if res := patch(t, srv, job, "9-9", "x"); res.status != 403 {
		t.Fatalf("PATCH after final: got %d, want 403", res.status)
	}
	if v := srv.Violations(); len(v) != 1 || !strings.Contains(v[0], "after the job is failed") {
		t.Fatalf("got violations %q, want PATCH after final", v)
	}
}

func TestUpdateJobChecksumMismatch(t *testing.T) {
	srv, job := runningJob(t, allFeatures())
	patch(t, srv, job, "0-4", "hello")
	res := put(t, srv, job, final(job.Token, "success", []byte("hellO")))
	if res.status != http.StatusOK {
		t.Fatalf("got %d, want 200 (GitLab only logs mismatches)", res.status)
	}
	v := srv.Violations()
	if len(v) != 1 || !strings.Contains(v[0], "checksum") {
		t.Fatalf("got violations %q, want a checksum mismatch", v)
	}
}

func TestUpdateJobInvalidStates(t *testing.T) {
	tests := []struct {
		name string
		req  func(token string) gitlab.UpdateJobRequest
		want string
	}{
		{"canceled is not a runner state", func(tok string) gitlab.UpdateJobRequest {
			return gitlab.UpdateJobRequest{Token: tok, State: "canceled"}
		}, "invalid state"},
		{"final without checksum", func(tok string) gitlab.UpdateJobRequest {
			return gitlab.UpdateJobRequest{Token: tok, State: "success"}
		}, "without output.checksum"},
		{"pending outside two-phase", func(tok string) gitlab.UpdateJobRequest {
			return gitlab.UpdateJobRequest{Token: tok, State: "pending"}
		}, "pending"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, job := runningJob(t, allFeatures())
			put(t, srv, job, tt.req(job.Token))
			v := srv.Violations()
			if len(v) != 1 || !strings.Contains(v[0], tt.want) {
				t.Fatalf("got violations %q, want one containing %q", v, tt.want)
			}
		})
	}
}

func TestFinalUpdatePendingChunks(t *testing.T) {
	srv, job := runningJob(t, allFeatures(), gitlabtest.WithPendingTraceChunks(2, 0))
	trace := []byte("x")
	patch(t, srv, job, "0-0", "x")
	for i, want := range []int{202, 202, 200} {
		res := put(t, srv, job, final(job.Token, "success", trace))
		if res.status != want {
			t.Fatalf("PUT %d: got %d, want %d", i, res.status, want)
		}
		if want == 202 && (res.header.Get("X-GitLab-Trace-Update-Interval") != "1" || res.header.Get("Job-Status") != "running") {
			t.Fatalf("PUT %d: got interval %q status %q, want 1 and running", i, res.header.Get("X-GitLab-Trace-Update-Interval"), res.header.Get("Job-Status"))
		}
	}
	if got := srv.Job(job.ID).State; got != "success" {
		t.Fatalf("got state %s, want success", got)
	}
	srv.AssertNoViolations(t)
}

func TestCancelJob(t *testing.T) {
	graceful := allFeatures()
	graceful.CancelGracefully = true
	t.Run("graceful", func(t *testing.T) {
		srv, job := runningJob(t, graceful)
		if err := srv.CancelJob(job.ID); err != nil {
			t.Fatal(err)
		}
		if res := patch(t, srv, job, "0-1", "ab"); res.status != 202 || res.header.Get("Job-Status") != "canceling" {
			t.Fatalf("PATCH: got %d %q, want 202 canceling", res.status, res.header.Get("Job-Status"))
		}
		if res := put(t, srv, job, gitlab.UpdateJobRequest{Token: job.Token, State: "running"}); res.header.Get("Job-Status") != "canceling" {
			t.Fatalf("PUT: got Job-Status %q, want canceling", res.header.Get("Job-Status"))
		}
		req := final(job.Token, "failed", []byte("ab"))
		req.FailureReason = "unknown_failure"
		if res := put(t, srv, job, req); res.status != 200 || res.header.Get("Job-Status") != "canceled" {
			t.Fatalf("final: got %d %q, want 200 canceled", res.status, res.header.Get("Job-Status"))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		got, err := srv.WaitJob(ctx, job.ID)
		if err != nil || got.State != "canceled" {
			t.Fatalf("got %s, %v; want canceled", got.State, err)
		}
		srv.AssertNoViolations(t)
	})
	t.Run("without cancel_gracefully", func(t *testing.T) {
		srv, job := runningJob(t, allFeatures())
		if err := srv.CancelJob(job.ID); err != nil {
			t.Fatal(err)
		}
		// The runner learns of an abrupt cancel from the next PATCH's 403;
		// that PATCH is not a protocol violation.
		if res := patch(t, srv, job, "0-1", "ab"); res.status != 403 || res.header.Get("Job-Status") != "canceled" {
			t.Fatalf("PATCH: got %d %q, want 403 canceled", res.status, res.header.Get("Job-Status"))
		}
		if res := put(t, srv, job, gitlab.UpdateJobRequest{Token: job.Token, State: "running"}); res.status != 403 || res.header.Get("Job-Status") != "canceled" {
			t.Fatalf("PUT: got %d %q, want 403 canceled", res.status, res.header.Get("Job-Status"))
		}
		srv.AssertNoViolations(t)
		if err := srv.CancelJob(job.ID); err == nil {
			t.Fatal("canceling a canceled job: got no error")
		}
	})
}
