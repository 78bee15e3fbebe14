package gitlab_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/gitlab"
)

// jobPayload is the protocol notes' example with nulls and unknown fields.
const jobPayload = `{
  "id": 8123,
  "token": "glcbt-64_Zx9yW8vU7tS6rQ5pO4nM",
  "allow_git_fetch": true,
  "job_info": {"id": 8123, "name": "unit", "stage": "test", "pipeline_id": 4410,
    "project_id": 77, "project_name": "demo", "project_full_path": "acme/demo",
    "scoped_user_id": null, "time_in_queue_seconds": 1.42,
    "project_jobs_running_on_instance_runners_count": "+Inf", "brand_new_field": {"x": 1}},
  "git_info": {"repo_url": "https://gitlab-ci-token:glcbt-64_Zx9yW8vU7tS6rQ5pO4nM@gitlab.example.com/acme/demo.git",
    "ref": "main", "sha": "1f2e3d4c5b6a79881f2e3d4c5b6a79881f2e3d4c", "before_sha": "0000000000000000000000000000000000000000",
    "ref_type": "branch", "refspecs": ["+refs/pipelines/4410:refs/pipelines/4410"], "depth": 20,
    "repo_object_format": "sha1", "protected": null},
  "runner_info": {"uuid": "a1b2c3", "timeout": 3600, "runner_session_url": null},
  "variables": [
    {"key": "CI_JOB_ID", "value": "8123", "public": true, "masked": false},
    {"key": "API_KEY", "value": "s3cr3t-v4lue", "public": false, "masked": true},
    {"key": "API_KEY", "value": "override", "public": false, "masked": true}
  ],
  "steps": [{"name": "script", "script": ["make test"], "timeout": 3600, "when": "on_success", "allow_failure": false}],
  "image": {"name": "golang:1.23", "entrypoint": null, "ports": [], "executor_opts": {"docker": {"user": 1000}}, "pull_policy": null},
  "services": null,
  "artifacts": null,
  "cache": null,
  "credentials": null,
  "features": {"trace_sections": true, "failure_reasons": ["script_failure"], "tracing": {"trace_id": "t"}},
  "dependencies": null,
  "secrets": null,
  "something_new": [1, 2, 3]
}`

func TestRequestJob(t *testing.T) {
	lastUpdate := map[string]string{"X-GitLab-Last-Update": "b4d7c1a0"}
	tests := []struct {
		name      string
		replies   []reply
		wantJob   bool
		wantLast  string
		wantConfl bool
		wantErr   error
	}{
		{"201 job", []reply{{status: 201, body: jobPayload}}, true, "", false, nil},
		{"204 no job", []reply{{status: 204, header: lastUpdate}}, false, "b4d7c1a0", false, nil},
		{"204 from a long poll, no header", []reply{{status: 204}}, false, "", false, nil},
		{"409 conflict", []reply{{status: 409, body: `{"message":"409 Conflict"}`}}, false, "", true, nil},
		{"400", []reply{{status: 400, body: `{"error":"token is missing"}`}}, false, "", false, gitlab.ErrBadRequest},
		{"401 from a proxy", []reply{{status: 401}}, false, "", false, gitlab.ErrForbidden},
		{"403", []reply{{status: 403, body: `{"message":"403 Forbidden"}`}}, false, "", false, gitlab.ErrForbidden},
		{"413 body too large for long polling", []reply{{status: 413}}, false, "", false, gitlab.ErrTooLarge},
		{"422 orphaned", []reply{{status: 422}}, false, "", false, gitlab.ErrBadRequest},
		{"429 then 204", []reply{{status: 429, header: map[string]string{"Retry-After": "60"}}, {status: 204, header: lastUpdate}}, false, "b4d7c1a0", false, nil},
		{"429 exhausted", []reply{{status: 429, header: map[string]string{"Retry-After": "60"}}}, false, "", false, gitlab.ErrUnavailable},
		{"503 then 201", []reply{{status: 503}, {status: 201, body: jobPayload}}, true, "", false, nil},
		{"503 exhausted", []reply{{status: 503}}, false, "", false, gitlab.ErrUnavailable},
		{"malformed 201", []reply{{status: 201, body: `{"id": 8123, "token": `}}, false, "", false, errAny},
		{"201 without a job", []reply{{status: 201, body: `{}`}}, false, "", false, errAny},
		{"201 with a wrong type", []reply{{status: 201, body: `{"id": "x"}`}}, false, "", false, errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := serve(t, tt.replies...)
			c, _ := newClient(t, s.srv.URL)
			got, err := c.RequestJob(t.Context(), gitlab.JobRequest{Token: runnerToken, SystemID: "s_1", LastUpdate: "old"})
			checkErr(t, err, tt.wantErr)
			if (got.Job != nil) != tt.wantJob || got.LastUpdate != tt.wantLast || got.Conflict != tt.wantConfl {
				t.Errorf("result = {Job: %v, LastUpdate: %q, Conflict: %v}, want job %v, last update %q, conflict %v",
					got.Job != nil, got.LastUpdate, got.Conflict, tt.wantJob, tt.wantLast, tt.wantConfl)
			}
			var body map[string]any
			if err := json.Unmarshal(s.requests()[0].Body, &body); err != nil {
				t.Fatal(err)
			}
			if body["token"] != runnerToken || body["system_id"] != "s_1" || body["last_update"] != "old" {
				t.Errorf("body = %v, want token, system_id and last_update", body)
			}
		})
	}
	t.Run("unreachable", func(t *testing.T) {
		c, _ := newClient(t, closedURL(t))
		_, err := c.RequestJob(t.Context(), gitlab.JobRequest{Token: runnerToken})
		checkErr(t, err, gitlab.ErrUnavailable)
	})
}

func TestRequestJobDecodesThePayload(t *testing.T) {
	s := serve(t, reply{status: 201, body: jobPayload})
	c, _ := newClient(t, s.srv.URL)
	got, err := c.RequestJob(t.Context(), gitlab.JobRequest{Token: runnerToken})
	if err != nil {
		t.Fatal(err)
	}
	j := got.Job
	checks := []struct {
		name      string
		got, want any
	}{
		{"id", j.ID, int64(8123)},
		{"token", j.Token, "glcbt-64_Zx9yW8vU7tS6rQ5pO4nM"},
		{"project path", j.JobInfo.ProjectFullPath, "acme/demo"},
		{"sha", j.GitInfo.Sha, "1f2e3d4c5b6a79881f2e3d4c5b6a79881f2e3d4c"},
		{"timeout", j.RunnerInfo.Timeout, 3600},
		{"last API_KEY wins", j.Variables.Get("API_KEY"), "override"},
		{"steps", len(j.Steps), 1},
		{"image", j.Image.Name, "golang:1.23"},
		{"null artifacts", j.Artifacts == nil, true},
		{"null protected", j.GitInfo.Protected == nil, true},
	}
	for _, ch := range checks {
		if fmt.Sprint(ch.got) != fmt.Sprint(ch.want) {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
}

func TestUpdateJob(t *testing.T) {
	status := func(s string) map[string]string { return map[string]string{"Job-Status": s} }
	tests := []struct {
		name    string
		replies []reply
		want    gitlab.UpdateJobResult
		wantErr error
		abort   bool // AbortsJob(err) or result.Aborted()
		cancel  bool
	}{
		{"200 running", []reply{{status: 200, header: status("running")}}, gitlab.UpdateJobResult{JobStatus: "running", Accepted: true}, nil, false, false},
		{"200 canceling", []reply{{status: 200, header: status("canceling")}}, gitlab.UpdateJobResult{JobStatus: "canceling", Accepted: true}, nil, false, true},
		{"200 canceled", []reply{{status: 200, header: status("canceled")}}, gitlab.UpdateJobResult{JobStatus: "canceled", Accepted: true}, nil, true, false},
		{"202 with interval", []reply{{status: 202, header: map[string]string{"Job-Status": "running", "X-GitLab-Trace-Update-Interval": "4"}}}, gitlab.UpdateJobResult{JobStatus: "running", RetryAfter: 4 * time.Second}, nil, false, false},
		{"202 without interval", []reply{{status: 202}}, gitlab.UpdateJobResult{RetryAfter: 3 * time.Second}, nil, false, false},
		{"202 interval capped", []reply{{status: 202, header: map[string]string{"X-GitLab-Trace-Update-Interval": "3600"}}}, gitlab.UpdateJobResult{RetryAfter: 15 * time.Minute}, nil, false, false},
		{"412 resend trace", []reply{{status: 412}}, gitlab.UpdateJobResult{ResendTrace: true}, nil, false, false},
		{"400", []reply{{status: 400, body: `{"message":"400 Bad request - invalid state"}`}}, gitlab.UpdateJobResult{}, gitlab.ErrBadRequest, false, false},
		{"403 with Job-Status", []reply{{status: 403, header: status("canceled"), body: `{"message":"403 Forbidden - Job is not running"}`}}, gitlab.UpdateJobResult{JobStatus: "canceled"}, gitlab.ErrForbidden, true, false},
		{"403 token expired", []reply{{status: 403, body: `{"message":"403 Forbidden - Job token has expired"}`}}, gitlab.UpdateJobResult{}, gitlab.ErrForbidden, true, false},
		{"404", []reply{{status: 404}}, gitlab.UpdateJobResult{}, gitlab.ErrNotFound, true, false},
		{"409 two-phase conflict", []reply{{status: 409}}, gitlab.UpdateJobResult{}, errAny, false, false},
		{"429 then 200", []reply{{status: 429, header: map[string]string{"Retry-After": "1"}}, {status: 200, header: status("running")}}, gitlab.UpdateJobResult{JobStatus: "running", Accepted: true}, nil, false, false},
		{"5xx exhausted", []reply{{status: 500}}, gitlab.UpdateJobResult{}, gitlab.ErrUnavailable, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := serve(t, tt.replies...)
			c, _ := newClient(t, s.srv.URL)
			req := gitlab.UpdateJobRequest{Token: jobToken, State: gitlab.StateFailed, FailureReason: gitlab.ReasonScriptFailure, ExitCode: 2,
				Output: gitlab.JobOutput{Checksum: "crc32:7d3a9c11", Bytesize: 20481}}
			got, err := c.UpdateJob(t.Context(), 8123, req)
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
			var ge *gitlab.Error
			if errors.As(err, &ge) && ge.JobStatus != tt.want.JobStatus {
				t.Errorf("error JobStatus = %q, want %q", ge.JobStatus, tt.want.JobStatus)
			}
			var body gitlab.UpdateJobRequest
			if err := json.Unmarshal(s.requests()[0].Body, &body); err != nil || body.Token != jobToken || body.State != "failed" || body.ExitCode != 2 || body.Output.Checksum != "crc32:7d3a9c11" || body.Output.Bytesize != 20481 {
				t.Errorf("body = %s, want the request", s.requests()[0].Body)
			}
		})
	}
	t.Run("unreachable", func(t *testing.T) {
		c, _ := newClient(t, closedURL(t))
		_, err := c.UpdateJob(t.Context(), 1, gitlab.UpdateJobRequest{Token: jobToken})
		checkErr(t, err, gitlab.ErrUnavailable)
	})
}

func TestFinalUpdate(t *testing.T) {
	accepted := reply{status: 200, header: map[string]string{"Job-Status": "success"}}
	wait := func(s string) reply {
		return reply{status: 202, header: map[string]string{"Job-Status": "running", "X-GitLab-Trace-Update-Interval": s}}
	}
	errResend := errors.New("trace store gone")
	tests := []struct {
		name        string
		replies     []reply
		resendErr   error
		nilResend   bool
		wantErr     error
		wantPUTs    int
		wantResends int
		wantWaits   []time.Duration
	}{
		{"200 at once", []reply{accepted}, nil, false, nil, 1, 0, nil},
		{"202 twice then 200", []reply{wait("1"), wait("2"), accepted}, nil, false, nil, 3, 0, []time.Duration{time.Second, 2 * time.Second}},
		{"202 interval capped at 15 min", []reply{wait("7200"), accepted}, nil, false, nil, 2, 0, []time.Duration{15 * time.Minute}},
		{"412 resends the trace", []reply{{status: 412}, accepted}, nil, false, nil, 2, 1, []time.Duration{3 * time.Second}},
		{"403 stops", []reply{{status: 403, header: map[string]string{"Job-Status": "canceled"}}}, nil, false, gitlab.ErrForbidden, 1, 0, nil},
		{"404 stops", []reply{{status: 404}}, nil, false, gitlab.ErrNotFound, 1, 0, nil},
		{"400 returned", []reply{{status: 400}}, nil, false, gitlab.ErrBadRequest, 1, 0, nil},
		{"202 forever is bounded", []reply{wait("64")}, nil, false, gitlab.ErrUnavailable, 30, 0, nil},
		{"412 with a failing resend", []reply{{status: 412}}, errResend, false, errResend, 1, 1, nil},
		{"412 without resend", []reply{{status: 412}}, nil, true, errAny, 1, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := serve(t, tt.replies...)
			c, sl := newClient(t, s.srv.URL)
			resends := 0
			resend := func(ctx context.Context) error {
				resends++
				return tt.resendErr
			}
			if tt.nilResend {
				resend = nil
			}
			req := gitlab.UpdateJobRequest{Token: jobToken, State: gitlab.StateSuccess, Output: gitlab.JobOutput{Checksum: "crc32:00000000", Bytesize: 1}}
			got, err := c.FinalUpdate(t.Context(), 8123, req, resend)
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("err = %v, want nil", err)
			case tt.wantErr == nil:
				if !got.Accepted {
					t.Errorf("result = %+v, want Accepted", got)
				}
			case err == nil:
				t.Fatalf("err = nil, want %v", tt.wantErr)
			case tt.wantErr != errAny && !errors.Is(err, tt.wantErr):
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
			if got := len(s.requests()); got != tt.wantPUTs {
				t.Errorf("PUTs = %d, want %d", got, tt.wantPUTs)
			}
			if resends != tt.wantResends {
				t.Errorf("trace resends = %d, want %d", resends, tt.wantResends)
			}
			if tt.wantWaits != nil && fmt.Sprint(sl.all()) != fmt.Sprint(tt.wantWaits) {
				t.Errorf("waits = %v, want %v", sl.all(), tt.wantWaits)
			}
			for i, r := range s.requests() {
				if string(r.Body) != string(s.requests()[0].Body) {
					t.Errorf("PUT %d body = %s, want the same PUT as the first: %s", i+1, r.Body, s.requests()[0].Body)
				}
			}
		})
	}
}

// A 202 whose Job-Status says the job was canceled or failed ends the
// final update: there is nothing more to apply (protocol doc 3.4).
func TestFinalUpdateStopsWhenTheJobEnded(t *testing.T) {
	for _, status := range []string{"canceled", "failed"} {
		t.Run(status, func(t *testing.T) {
			s := serve(t, reply{status: 202, header: map[string]string{"Job-Status": status, "X-GitLab-Trace-Update-Interval": "1"}})
			c, sl := newClient(t, s.srv.URL)
			req := gitlab.UpdateJobRequest{Token: jobToken, State: gitlab.StateSuccess, Output: gitlab.JobOutput{Checksum: "crc32:00000000", Bytesize: 1}}
			got, err := c.FinalUpdate(t.Context(), 8123, req, nil)
			if err != nil || !got.Aborted() || got.Accepted {
				t.Fatalf("FinalUpdate() = %+v, %v; want the ended job's result and no error", got, err)
			}
			if n := len(s.requests()); n != 1 || len(sl.all()) != 0 {
				t.Errorf("PUTs = %d, waits = %v; want one PUT and no wait", n, sl.all())
			}
		})
	}
}
