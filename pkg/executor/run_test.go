package executor_test

import (
	"fmt"
	"hash/crc32"
	"testing"

	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
)

func TestJobOutcomes(t *testing.T) { testJobOutcomes(t, inProcess) }

func testJobOutcomes(t *testing.T, mk envMaker) {
	tests := []struct {
		name       string
		spec       gitlabtest.JobSpec
		wantState  string
		wantReason gitlab.FailureReason
		wantExit   int
		wantTrace  []string
	}{
		{
			name:      "success",
			spec:      gitlabtest.JobSpec{BeforeScript: []string{"echo before"}, Script: []string{"echo hello from $CI_JOB_NAME", "cat README.md"}},
			wantState: "success",
			wantTrace: []string{
				"Running with gitlab-serverless-runner ", " on lambda runner ",
				"Using AWS Lambda runtime provided.al2023",
				"section_start:", ":prepare_executor\r\x1b[0K", ":get_sources\r\x1b[0K", ":step_script\r\x1b[0K",
				"$ echo before", "before\n", "hello from test\n", "hello\n",
				"Job succeeded",
			},
		},
		{
			name:       "script failure with exit code",
			spec:       gitlabtest.JobSpec{Script: []string{"echo failing", "exit 3", "echo never"}},
			wantState:  "failed",
			wantReason: "script_failure",
			wantExit:   3,
			wantTrace:  []string{"failing\n", "ERROR: Job failed: exit code 3"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := mk(t)
			ev := e.take(project(e, nil), tt.spec)
			res, got := e.run(ev)
			if got.State != tt.wantState || got.FailureReason != tt.wantReason || got.ExitCode != tt.wantExit {
				t.Errorf("GitLab job = %s/%q/exit %d, want %s/%q/exit %d; trace:\n%s", got.State, got.FailureReason, got.ExitCode, tt.wantState, tt.wantReason, tt.wantExit, got.Trace)
			}
			if res.State != tt.wantState || res.FailureReason != tt.wantReason || res.ExitCode != tt.wantExit || !res.Reported || res.JobID != ev.Job.ID {
				t.Errorf("Result = %+v, want job %d state %s reason %q exit %d reported", res, ev.Job.ID, tt.wantState, tt.wantReason, tt.wantExit)
			}
			wantContains(t, got.Trace, tt.wantTrace...)
			wantContains(t, got.Trace, "Running with gitlab-serverless-runner "+e.cfg.Version)
			wantNotContains(t, got.Trace, "never\n")
			last := got.Updates[len(got.Updates)-1].Request
			if want := fmt.Sprintf("crc32:%08x", crc32.ChecksumIEEE(got.Trace)); last.Output.Checksum != want || last.Output.Bytesize != int64(len(got.Trace)) {
				t.Errorf("final update output = %+v, want checksum %s bytesize %d", last.Output, want, len(got.Trace))
			}
			e.srv.AssertNoViolations(t)
		})
	}
}

func TestTwoPhaseAcceptsTheJob(t *testing.T) { testTwoPhaseAcceptsTheJob(t, inProcess) }

func testTwoPhaseAcceptsTheJob(t *testing.T, mk envMaker) {
	e := mk(t)
	p := project(e, nil)
	e.srv.EnqueueJob(p, gitlabtest.JobSpec{Script: []string{"echo accepted"}})
	features := allFeatures
	features.TwoPhaseJobCommit = true
	r, err := e.client.RequestJob(t.Context(), gitlab.JobRequest{Token: e.runner.Token, SystemID: "s_executor0001", Info: gitlab.NewInfo("1", features)})
	if err != nil || r.Job == nil {
		t.Fatalf("request job: %+v, %v", r, err)
	}
	if s := e.srv.Job(r.Job.ID).State; s != "pending" {
		t.Fatalf("job state after a two-phase request = %s, want pending", s)
	}
	res, got := e.run(executorEvent(e, r.Job, true))
	if got.State != "success" || res.State != "success" {
		t.Fatalf("job = %s, result %+v, want success; trace:\n%s", got.State, res, got.Trace)
	}
	if first := got.Updates[0].Request; first.State != "running" {
		t.Errorf("first update state = %q, want running (the acceptance)", first.State)
	}
	e.srv.AssertNoViolations(t)
}
