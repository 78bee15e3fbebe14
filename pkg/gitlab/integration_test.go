package gitlab_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"strings"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
)

// These tests drive the client against the fake GitLab of gitlabtest, over
// real HTTP, the way the poller and executor will.

const systemID = "s_0123456789ab"

func features() gitlab.Features {
	return gitlab.Features{
		Variables: true, Artifacts: true, Cache: true, UploadMultipleArtifacts: true, UploadRawArtifacts: true,
		Refspecs: true, Masking: true, RawVariables: true, ArtifactsExclude: true, MultiBuildSteps: true,
		TraceReset: true, TraceChecksum: true, TraceSize: true, Cancelable: true, CancelGracefully: true,
		ReturnExitCode: true,
	}
}

// finalRequest is a final update carrying the trace's checksum and size.
func finalRequest(token, state string, trace []byte) gitlab.UpdateJobRequest {
	sum := fmt.Sprintf("crc32:%08x", crc32.ChecksumIEEE(trace))
	req := gitlab.UpdateJobRequest{Token: token, State: state, Checksum: sum,
		Output: gitlab.JobOutput{Checksum: sum, Bytesize: int64(len(trace))}}
	if state == gitlab.StateFailed {
		req.FailureReason = gitlab.ReasonScriptFailure
		req.ExitCode = 1
	}
	return req
}

func fakeClient(t *testing.T, srv *gitlabtest.Server) (*gitlab.Client, *sleeps) {
	t.Helper()
	c, sl := newClient(t, srv.URL())
	t.Cleanup(func() { srv.AssertNoViolations(t) })
	return c, sl
}

// takeJob polls until the fake hands out a job and accepts it.
func takeJob(t *testing.T, c *gitlab.Client, token string) *gitlab.Job {
	t.Helper()
	res, err := c.RequestJob(t.Context(), gitlab.JobRequest{Token: token, SystemID: systemID, Info: gitlab.NewInfo("test", features())})
	if err != nil || res.Job == nil {
		t.Fatalf("RequestJob = %+v, %v; want a job", res, err)
	}
	up, err := c.UpdateJob(t.Context(), res.Job.ID, gitlab.UpdateJobRequest{Token: res.Job.Token, State: gitlab.StateRunning})
	if err != nil || !up.Accepted || up.JobStatus != gitlab.StatusRunning {
		t.Fatalf("accept job: %+v, %v; want accepted, running", up, err)
	}
	return res.Job
}

func TestFakeGitLabRunnerLifecycle(t *testing.T) {
	srv := gitlabtest.New(t, gitlabtest.WithTokenExpiry(30*24*time.Hour))
	c, _ := fakeClient(t, srv)
	ctx := t.Context()
	proj := srv.CreateProject("group/demo", map[string]string{"README.md": "hi\n"})
	user := srv.AddUser("alice", proj)

	// Legacy registration, then verify and reset the token.
	reg, err := c.RegisterRunner(ctx, gitlab.RegisterRequest{
		Token:          srv.RegistrationToken(),
		RunnerSettings: gitlab.RunnerSettings{Description: "legacy", Tags: []string{"lambda"}, RunUntagged: true},
		Info:           gitlab.NewInfo("test", features()),
	})
	if err != nil || reg.ID == 0 || reg.Token == "" || reg.TokenExpiresAt == nil {
		t.Fatalf("RegisterRunner = %+v, %v; want id, token and expiry", reg, err)
	}
	if r, _ := srv.Runner(reg.ID); strings.Join(r.Tags, ",") != "lambda" || r.Description != "legacy" {
		t.Errorf("registered runner = tags %v, description %q; want [lambda], legacy", r.Tags, r.Description)
	}
	ver, err := c.VerifyRunner(ctx, gitlab.VerifyRequest{Token: reg.Token, SystemID: systemID})
	if err != nil || ver.ID != reg.ID {
		t.Fatalf("VerifyRunner = %+v, %v; want id %d", ver, err, reg.ID)
	}
	if got := gitlab.TokenExpiringSoon(time.Now(), ver.TokenExpiresAt, time.Now()); got {
		t.Errorf("TokenExpiringSoon(fresh 30-day token) = true, want false")
	}
	reset, err := c.ResetRunnerToken(ctx, reg.Token)
	if err != nil || reset.Token == "" || reset.Token == reg.Token {
		t.Fatalf("ResetRunnerToken = %+v, %v; want a new token", reset, err)
	}
	_, err = c.VerifyRunner(ctx, gitlab.VerifyRequest{Token: reg.Token})
	checkErr(t, err, gitlab.ErrForbidden)
	if err := c.UnregisterRunner(ctx, reset.Token); err != nil {
		t.Fatalf("UnregisterRunner: %v", err)
	}
	_, err = c.VerifyRunner(ctx, gitlab.VerifyRequest{Token: reset.Token})
	checkErr(t, err, gitlab.ErrForbidden)

	// Created runners, with the user's PAT and OAuth token.
	for _, tok := range []string{user.PAT, user.OAuthToken} {
		created, err := c.CreateUserRunner(ctx, tok, gitlab.CreateRunnerRequest{
			RunnerType: gitlab.RunnerTypeProject, ProjectID: proj.ID,
			RunnerSettings: gitlab.RunnerSettings{Description: "created", Tags: []string{"a", "b"}},
		})
		if err != nil || !strings.HasPrefix(created.Token, "glrt-") {
			t.Fatalf("CreateUserRunner = %+v, %v; want a glrt- token", created, err)
		}
		if _, err := c.VerifyRunner(ctx, gitlab.VerifyRequest{Token: created.Token, SystemID: systemID, Info: &gitlab.Info{Name: "x"}}); err != nil {
			t.Fatalf("VerifyRunner(created): %v", err)
		}
		if err := c.UnregisterRunnerManager(ctx, created.Token, systemID); err != nil {
			t.Fatalf("UnregisterRunnerManager: %v", err)
		}
		err = c.UnregisterRunnerManager(ctx, created.Token, systemID)
		checkErr(t, err, gitlab.ErrNotFound)
	}
	_, err = c.CreateUserRunner(ctx, "glpat-unknown", gitlab.CreateRunnerRequest{RunnerType: gitlab.RunnerTypeProject, ProjectID: proj.ID})
	if err == nil {
		t.Errorf("CreateUserRunner(unknown PAT) = nil error, want one")
	}
}

func TestFakeGitLabRegistrationDisabled(t *testing.T) {
	srv := gitlabtest.New(t, gitlabtest.WithRegistrationTokensDisabled())
	c, _ := fakeClient(t, srv)
	_, err := c.RegisterRunner(t.Context(), gitlab.RegisterRequest{Token: srv.RegistrationToken()})
	checkErr(t, err, gitlab.ErrGone)
}

func TestFakeGitLabJobWithTraceResumeAndFinalUpdate(t *testing.T) {
	srv := gitlabtest.New(t, gitlabtest.WithPendingTraceChunks(2, 2))
	c, sl := fakeClient(t, srv)
	ctx := t.Context()
	proj := srv.CreateProject("group/demo", map[string]string{"README.md": "hi\n"})
	runner := srv.CreateRunner(gitlabtest.RunnerOptions{})

	// Nothing queued: 204 with a queue version to send back.
	res, err := c.RequestJob(ctx, gitlab.JobRequest{Token: runner.Token, SystemID: systemID, Info: gitlab.NewInfo("test", features())})
	if err != nil || res.Job != nil || res.LastUpdate == "" {
		t.Fatalf("RequestJob(empty queue) = %+v, %v; want no job and a last update", res, err)
	}
	again, err := c.RequestJob(ctx, gitlab.JobRequest{Token: runner.Token, SystemID: systemID, LastUpdate: res.LastUpdate, Info: gitlab.NewInfo("test", features())})
	if err != nil || again.Job != nil {
		t.Fatalf("RequestJob(same last update) = %+v, %v; want no job", again, err)
	}

	// A job arrives; the request is refused twice (rate limit, outage)
	// before the transport gets it.
	enq := srv.EnqueueJob(proj, gitlabtest.JobSpec{Script: []string{"echo hi"}})
	srv.Inject(gitlabtest.EndpointJobRequest, gitlabtest.Fault{Status: 429, Header: gitlabtest.RetryAfter(2 * time.Second)})
	srv.Inject(gitlabtest.EndpointJobRequest, gitlabtest.Fault{Status: 503})
	job := takeJob(t, c, runner.Token)
	if job.ID != enq.ID || job.GitInfo.Sha != proj.SHA() {
		t.Fatalf("job = %d at %s, want %d at %s", job.ID, job.GitInfo.Sha, enq.ID, proj.SHA())
	}
	if waits := sl.all(); len(waits) != 2 || waits[0] != 2*time.Second {
		t.Errorf("waits = %v, want 2s (Retry-After) then a back-off", waits)
	}

	// Trace in two PATCHes, then GitLab loses the tail: 416, resume.
	var trace []byte
	offset := int64(0)
	send := func(chunk string) {
		t.Helper()
		trace = append(trace, chunk...)
		for offset < int64(len(trace)) {
			r, err := c.PatchTrace(ctx, job.ID, job.Token, offset, trace[offset:], false)
			if err != nil {
				t.Fatalf("PatchTrace at %d: %v", offset, err)
			}
			if r.Aborted() || r.Canceling() {
				t.Fatalf("PatchTrace = %+v, want the job running", r)
			}
			offset = r.NewOffset
		}
	}
	send("Running on Lambda\n")
	send("$ echo hi\nhi\n")
	srv.TruncateTrace(job.ID, 5)
	r, err := c.PatchTrace(ctx, job.ID, job.Token, offset, []byte("Job succeeded\n"), false)
	if err != nil || !r.RangeMismatch || r.NewOffset != int64(len(trace))-5 {
		t.Fatalf("PatchTrace after truncation = %+v, %v; want a 416 with offset %d", r, err, len(trace)-5)
	}
	offset = r.NewOffset
	send("Job succeeded\n")

	// Final update: 202 twice (trace chunks pending), then 200.
	before := len(sl.all())
	got, err := c.FinalUpdate(ctx, job.ID, finalRequest(job.Token, gitlab.StateSuccess, trace), func(context.Context) error {
		t.Error("resendTrace called, want no 412")
		return nil
	})
	if err != nil || !got.Accepted {
		t.Fatalf("FinalUpdate = %+v, %v; want accepted", got, err)
	}
	if waits := sl.all()[before:]; fmt.Sprint(waits) != fmt.Sprint([]time.Duration{2 * time.Second, 2 * time.Second}) {
		t.Errorf("final update waits = %v, want [2s 2s]", waits)
	}
	final, err := srv.WaitJob(ctx, job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if final.State != gitlab.StatusSuccess || !bytes.Equal(final.Trace, trace) {
		t.Errorf("job = %s with trace %q, want success with %q", final.State, final.Trace, trace)
	}

}

func TestFakeGitLabCancellation(t *testing.T) {
	srv := gitlabtest.New(t)
	c, _ := fakeClient(t, srv)
	ctx := t.Context()
	proj := srv.CreateProject("group/demo", map[string]string{"README.md": "hi\n"})
	runner := srv.CreateRunner(gitlabtest.RunnerOptions{})
	srv.EnqueueJob(proj, gitlabtest.JobSpec{Script: []string{"sleep 100"}})
	job := takeJob(t, c, runner.Token)

	trace := []byte("$ sleep 100\n")
	r, err := c.PatchTrace(ctx, job.ID, job.Token, 0, trace, false)
	if err != nil || r.Canceling() {
		t.Fatalf("PatchTrace = %+v, %v; want running", r, err)
	}
	if err := srv.CancelJob(job.ID); err != nil {
		t.Fatal(err)
	}
	// The manager advertised cancel_gracefully: canceling, then a final
	// update that GitLab turns into canceled.
	more := []byte("Job canceled\n")
	r, err = c.PatchTrace(ctx, job.ID, job.Token, r.NewOffset, more, false)
	if err != nil || !r.Canceling() {
		t.Fatalf("PatchTrace after cancel = %+v, %v; want Job-Status canceling", r, err)
	}
	trace = append(trace, more...)
	req := finalRequest(job.Token, gitlab.StateFailed, trace)
	req.FailureReason = gitlab.ReasonUnknownFailure
	if _, err := c.FinalUpdate(ctx, job.ID, req, nil); err != nil {
		t.Fatalf("FinalUpdate: %v", err)
	}
	final, err := srv.WaitJob(ctx, job.ID)
	if err != nil || final.State != gitlab.StatusCanceled {
		t.Fatalf("job state = %q, %v; want canceled", final.State, err)
	}
	// Canceled: every further call aborts.
	_, err = c.UpdateJob(ctx, job.ID, gitlab.UpdateJobRequest{Token: job.Token, State: gitlab.StateRunning})
	if !gitlab.AbortsJob(err) {
		t.Errorf("UpdateJob after cancel: err = %v, want an abort (403/404)", err)
	}
}

func TestFakeGitLabArtifacts(t *testing.T) {
	srv := gitlabtest.New(t, gitlabtest.WithMaxArtifactSize(1<<20))
	c, _ := fakeClient(t, srv)
	ctx := t.Context()
	proj := srv.CreateProject("group/demo", map[string]string{"README.md": "hi\n"})
	runner := srv.CreateRunner(gitlabtest.RunnerOptions{})
	build := srv.EnqueueJob(proj, gitlabtest.JobSpec{Name: "build", Script: []string{"make"}})
	job := takeJob(t, c, runner.Token)

	archive := bytes.Repeat([]byte("PK zip bytes "), 1000)
	srv.Inject(gitlabtest.EndpointUploadArtifacts, gitlabtest.Fault{Status: 502})
	up := gitlab.ArtifactUpload{Name: "bin", Type: gitlab.ArtifactTypeArchive, Format: gitlab.ArtifactFormatZip, ExpireIn: "1 week"}
	if err := c.UploadArtifacts(ctx, job.ID, job.Token, up, bytes.NewReader(archive)); err != nil {
		t.Fatalf("UploadArtifacts: %v", err)
	}
	err := c.UploadArtifacts(ctx, job.ID, job.Token, up, bytes.NewReader(make([]byte, 2<<20)))
	checkErr(t, err, gitlab.ErrTooLarge)
	trace := []byte("built\n")
	if _, err := c.PatchTrace(ctx, job.ID, job.Token, 0, trace, false); err != nil {
		t.Fatal(err)
	}
	if _, err := c.FinalUpdate(ctx, job.ID, finalRequest(job.Token, gitlab.StateSuccess, trace), nil); err != nil {
		t.Fatal(err)
	}
	stored, ok := srv.Job(build.ID).Artifact(gitlab.ArtifactTypeArchive)
	if !ok || stored.Filename != "bin.zip" || stored.ExpireIn != "1 week" || stored.Size != int64(len(archive)) {
		t.Errorf("stored artifact = %+v, %v; want bin.zip, 1 week, %d bytes", stored, ok, len(archive))
	}

	// A later job downloads it, through object storage.
	srv.EnqueueJob(proj, gitlabtest.JobSpec{Name: "test", Script: []string{"make test"}, Dependencies: []int64{build.ID}})
	next := takeJob(t, c, runner.Token)
	if len(next.Dependencies) != 1 || next.Dependencies[0].ID != build.ID {
		t.Fatalf("dependencies = %+v, want job %d", next.Dependencies, build.ID)
	}
	var buf bytes.Buffer
	n, err := c.DownloadArtifacts(ctx, build.ID, next.Dependencies[0].Token, &buf)
	if err != nil || n != int64(len(archive)) || !bytes.Equal(buf.Bytes(), archive) {
		t.Fatalf("DownloadArtifacts = %d bytes, %v; want the %d-byte archive", n, err, len(archive))
	}
	if len(srv.RequestsTo(gitlabtest.EndpointObjectStorage)) != 1 {
		t.Errorf("object storage requests = %d, want 1 (direct download)", len(srv.RequestsTo(gitlabtest.EndpointObjectStorage)))
	}
	_, err = c.DownloadArtifacts(ctx, build.ID, "glcbt-64_notavalidtoken", &buf)
	checkErr(t, err, gitlab.ErrForbidden)
	if errors.Is(err, gitlab.ErrUnavailable) {
		t.Errorf("err = %v, want a final 403", err)
	}
}
