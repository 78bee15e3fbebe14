package gitlab_test

import (
	"bytes"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/gitlab"
)

func TestPatchTraceRequest(t *testing.T) {
	tests := []struct {
		name      string
		offset    int64
		content   []byte
		debug     bool
		wantRange string
		wantDebug string
	}{
		{"first bytes", 0, []byte("hello\n"), false, "0-5", "false"},
		{"one byte", 11, []byte("x"), false, "11-11", "false"},
		{"4 KiB at 20481, debug", 20481, bytes.Repeat([]byte("a"), 4096), true, "20481-24576", "true"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := serve(t, reply{status: 202})
			c, _ := newClient(t, s.srv.URL)
			if _, err := c.PatchTrace(t.Context(), 8123, jobToken, tt.offset, tt.content, tt.debug); err != nil {
				t.Fatal(err)
			}
			r := s.requests()[0]
			checks := []struct{ name, got, want string }{
				{"method", r.Method, "PATCH"},
				{"path", r.Path, "/api/v4/jobs/8123/trace"},
				{"Content-Range", r.Header.Get("Content-Range"), tt.wantRange},
				{"Content-Type", r.Header.Get("Content-Type"), "text/plain"},
				{"JOB-TOKEN", r.Header.Get("JOB-TOKEN"), jobToken},
				{"debug_trace", r.Query.Get("debug_trace"), tt.wantDebug},
				{"body", string(r.Body), string(tt.content)},
			}
			for _, ch := range checks {
				if ch.got != ch.want {
					t.Errorf("%s = %q, want %q", ch.name, ch.got, ch.want)
				}
			}
		})
	}
}

func TestPatchTraceNeverSendsEmptyContent(t *testing.T) {
	s := serve(t, reply{status: 202})
	c, _ := newClient(t, s.srv.URL)
	got, err := c.PatchTrace(t.Context(), 8123, jobToken, 42, nil, false)
	if err != nil || got.NewOffset != 42 {
		t.Errorf("PatchTrace(empty) = %+v, %v; want NewOffset 42, nil", got, err)
	}
	if n := len(s.requests()); n != 0 {
		t.Errorf("requests = %d, want 0", n)
	}
}

func TestPatchTraceResults(t *testing.T) {
	content := []byte("0123456789") // sent at offset 100
	tests := []struct {
		name    string
		replies []reply
		want    gitlab.PatchTraceResult
		wantErr error
		abort   bool
		cancel  bool
	}{
		{"202 with Range", []reply{{status: 202, header: map[string]string{"Range": "0-110", "Job-Status": "running", "X-GitLab-Trace-Update-Interval": "60"}}},
			gitlab.PatchTraceResult{NewOffset: 110, JobStatus: "running", UpdateInterval: 60 * time.Second}, nil, false, false},
		{"202 without Range", []reply{{status: 202}}, gitlab.PatchTraceResult{NewOffset: 110}, nil, false, false},
		{"202 watched, canceling", []reply{{status: 202, header: map[string]string{"Range": "0-110", "Job-Status": "canceling", "X-GitLab-Trace-Update-Interval": "3"}}},
			gitlab.PatchTraceResult{NewOffset: 110, JobStatus: "canceling", UpdateInterval: 3 * time.Second}, nil, false, true},
		{"202 canceled", []reply{{status: 202, header: map[string]string{"Range": "0-110", "Job-Status": "canceled"}}},
			gitlab.PatchTraceResult{NewOffset: 110, JobStatus: "canceled"}, nil, true, false},
		{"202 interval capped", []reply{{status: 202, header: map[string]string{"X-GitLab-Trace-Update-Interval": "99999"}}},
			gitlab.PatchTraceResult{NewOffset: 110, UpdateInterval: 15 * time.Minute}, nil, false, false},
		{"416 server has less", []reply{{status: 416, header: map[string]string{"Range": "0-11", "Job-Status": "running"}}},
			gitlab.PatchTraceResult{NewOffset: 11, RangeMismatch: true, JobStatus: "running"}, nil, false, false},
		{"416 live trace lost", []reply{{status: 416, header: map[string]string{"Range": "0-0"}}},
			gitlab.PatchTraceResult{NewOffset: 0, RangeMismatch: true}, nil, false, false},
		{"416 without Range", []reply{{status: 416}}, gitlab.PatchTraceResult{}, errAny, false, false},
		{"400 missing Content-Range", []reply{{status: 400}}, gitlab.PatchTraceResult{}, gitlab.ErrBadRequest, false, false},
		{"403 job canceled", []reply{{status: 403, header: map[string]string{"Job-Status": "canceled"}}}, gitlab.PatchTraceResult{JobStatus: "canceled"}, gitlab.ErrForbidden, true, false},
		{"403 trace too large", []reply{{status: 403, body: `{"message":"403 Forbidden - trace size exceeded"}`}}, gitlab.PatchTraceResult{}, gitlab.ErrForbidden, true, false},
		{"404", []reply{{status: 404}}, gitlab.PatchTraceResult{}, gitlab.ErrNotFound, true, false},
		{"409 trace locked", []reply{{status: 409}}, gitlab.PatchTraceResult{}, errAny, false, false},
		{"429 then 202", []reply{{status: 429, header: map[string]string{"Retry-After": "60"}}, {status: 202, header: map[string]string{"Range": "0-110"}}},
			gitlab.PatchTraceResult{NewOffset: 110}, nil, false, false},
		{"5xx exhausted", []reply{{status: 503}}, gitlab.PatchTraceResult{}, gitlab.ErrUnavailable, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := serve(t, tt.replies...)
			c, _ := newClient(t, s.srv.URL)
			got, err := c.PatchTrace(t.Context(), 8123, jobToken, 100, content, false)
			checkErr(t, err, tt.wantErr)
			if got != tt.want {
				t.Errorf("result = %+v, want %+v", got, tt.want)
			}
			if abort := gitlab.AbortsJob(err) || got.Aborted(); abort != tt.abort {
				t.Errorf("abort = %v, want %v", abort, tt.abort)
			}
			if got.Canceling() != tt.cancel {
				t.Errorf("Canceling() = %v, want %v", got.Canceling(), tt.cancel)
			}
		})
	}
	t.Run("unreachable", func(t *testing.T) {
		c, _ := newClient(t, closedURL(t))
		_, err := c.PatchTrace(t.Context(), 1, jobToken, 0, content, false)
		checkErr(t, err, gitlab.ErrUnavailable)
	})
}
