package trace_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
	"gitlab-serverless-runner/pkg/trace"
)

// startJob runs the fake GitLab, has a runner take one job with a masked
// variable and returns the client, the job and the server.
func startJob(t *testing.T, opts ...gitlabtest.Option) (*gitlabtest.Server, *gitlab.Client, *gitlab.Job) {
	t.Helper()
	srv := gitlabtest.New(t, opts...)
	proj := srv.CreateProject("group/demo", map[string]string{"README.md": "hi\n"})
	r := srv.CreateRunner(gitlabtest.RunnerOptions{})
	srv.EnqueueJob(proj, gitlabtest.JobSpec{
		Script:    []string{"make test"},
		Variables: []gitlab.Variable{{Key: "DEPLOY_PASSWORD", Value: "correct-horse-battery", Masked: true}},
	})
	client, err := gitlab.New(srv.URL(), gitlab.Options{HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	res, err := client.RequestJob(t.Context(), gitlab.JobRequest{
		Token:    r.Token,
		SystemID: "s_0123456789ab",
		Info: gitlab.Info{Name: "trace-test", Features: gitlab.Features{
			Variables: true, Masking: true, TraceReset: true, TraceChecksum: true, TraceSize: true,
			Cancelable: true, CancelGracefully: true, ReturnExitCode: true,
		}},
	})
	if err != nil || res.Job == nil {
		t.Fatalf("request job: got %+v, %v; want a job", res, err)
	}
	return srv, client, res.Job
}

func newJobTrace(t *testing.T, client *gitlab.Client, job *gitlab.Job, change ...func(*trace.UploaderConfig)) (*trace.Writer, *trace.Buffer, *trace.Uploader) {
	t.Helper()
	buf := newBuffer(t)
	w := trace.NewWriter(buf, trace.WriterOptions{Mask: trace.MaskOptionsFor(job)})
	cfg := trace.ConfigFor(job, client, buf)
	cfg.Interval = time.Millisecond
	cfg.MaxInterval = 5 * time.Millisecond
	cfg.MinBackoff = time.Millisecond
	cfg.MaxBackoff = 4 * time.Millisecond
	cfg.Logger = slog.New(slog.DiscardHandler)
	for _, f := range change {
		f(&cfg)
	}
	u, err := trace.NewUploader(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return w, buf, u
}

// waitStored waits until GitLab holds n bytes of the job's trace.
func waitStored(t *testing.T, srv *gitlabtest.Server, id int64, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for len(srv.Job(id).Trace) != n {
		if time.Now().After(deadline) {
			t.Fatalf("GitLab holds %d trace bytes, want %d", len(srv.Job(id).Trace), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestUploaderAgainstFakeGitLab(t *testing.T) {
	srv, client, job := startJob(t, gitlabtest.WithPendingTraceChunks(2, 1))
	w, buf, u := newJobTrace(t, client, job)
	u.Start(t.Context())

	w.SectionStart("step_script", `Executing "step_script" stage of the job script`)
	w.Notef("$ make test")
	w.Printf("password is correct-horse-battery, token glcbt-%s\n", "abc123")
	waitStored(t, srv, job.ID, int(buf.Size()))

	// GitLab loses the tail of the live trace: the next PATCH gets 416
	// and the uploader resumes where GitLab is.
	srv.TruncateTrace(job.ID, 10)
	w.Printf("ok  \tpkg\t0.1s\n")
	w.SectionEnd("step_script")
	w.Printf("Job succeeded\n")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := u.Success(t.Context()); err != nil {
		t.Fatalf("Success: %v", err)
	}

	got, err := srv.WaitJob(t.Context(), job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != "success" {
		t.Errorf("job state = %q, want success", got.State)
	}
	if want := contents(t, buf); string(got.Trace) != want {
		t.Errorf("GitLab's trace = %q, want %q", got.Trace, want)
	}
	for _, secret := range []string{"correct-horse-battery", "abc123", job.Token} {
		if strings.Contains(string(got.Trace), secret) {
			t.Errorf("GitLab's trace contains %q", secret)
		}
	}
	if !strings.Contains(string(got.Trace), "password is [MASKED], token glcbt-[MASKED]\n") {
		t.Errorf("GitLab's trace = %q, want the masked line", got.Trace)
	}
	var statuses []int
	for _, up := range got.Updates {
		if up.Request.State == "success" {
			statuses = append(statuses, up.Status)
		}
	}
	if want := []int{202, 202, 200}; len(statuses) != 3 || statuses[0] != want[0] || statuses[1] != want[1] || statuses[2] != want[2] {
		t.Errorf("final update statuses = %v, want %v", statuses, want)
	}
	if n := len(srv.RequestsTo(gitlabtest.EndpointPatchTrace)); n < 2 {
		t.Errorf("got %d trace PATCHes, want at least 2 (incremental, then the resume)", n)
	}
	srv.AssertNoViolations(t)
}

func TestUploaderFailAgainstFakeGitLab(t *testing.T) {
	srv, client, job := startJob(t)
	w, _, u := newJobTrace(t, client, job)
	w.Errorf("Job failed: exit code 2")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := u.Fail(t.Context(), gitlab.ReasonScriptFailure, 2); err != nil {
		t.Fatal(err)
	}
	got, err := srv.WaitJob(t.Context(), job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != "failed" || got.FailureReason != "script_failure" || got.ExitCode != 2 {
		t.Errorf("job = %s %s exit %d, want failed script_failure exit 2", got.State, got.FailureReason, got.ExitCode)
	}
	srv.AssertNoViolations(t)
}

func TestUploaderCancellationAgainstFakeGitLab(t *testing.T) {
	srv, client, job := startJob(t)
	// Idle keep-alives are how the uploader hears of the second cancel:
	// nothing is written after it.
	w, _, u := newJobTrace(t, client, job, func(c *trace.UploaderConfig) { c.ForceSendInterval = time.Nanosecond })
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	u.Start(ctx)

	if err := srv.CancelJob(job.ID); err != nil {
		t.Fatal(err)
	}
	w.Printf("still running\n")
	select {
	case <-u.Canceling():
	case <-ctx.Done():
		t.Fatal("Canceling() not closed after GitLab moved the job to canceling")
	}
	if u.IsAborted() {
		t.Fatal("aborted on a graceful cancel")
	}

	// A second cancel makes it canceled: abort at once.
	if err := srv.CancelJob(job.ID); err != nil {
		t.Fatal(err)
	}
	select {
	case <-u.Aborted():
	case <-ctx.Done():
		t.Fatal("Aborted() not closed after GitLab canceled the job")
	}
	if err := u.Fail(ctx, gitlab.ReasonJobCanceled, 0); err != trace.ErrAborted {
		t.Errorf("Fail after abort = %v, want ErrAborted", err)
	}
	got := srv.Job(job.ID)
	if got.State != "canceled" {
		t.Errorf("job state = %q, want canceled", got.State)
	}
	srv.AssertNoViolations(t)
}

func TestUploaderGracefulCancelFinishesCanceled(t *testing.T) {
	srv, client, job := startJob(t)
	w, _, u := newJobTrace(t, client, job)
	u.Start(t.Context())
	if err := srv.CancelJob(job.ID); err != nil {
		t.Fatal(err)
	}
	w.Printf("running after_script\n")
	select {
	case <-u.Canceling():
	case <-time.After(20 * time.Second):
		t.Fatal("Canceling() not closed")
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := u.Fail(t.Context(), gitlab.ReasonJobCanceled, 0); err != nil {
		t.Fatalf("Fail: %v", err)
	}
	got, err := srv.WaitJob(t.Context(), job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != "canceled" {
		t.Errorf("job state = %q, want canceled", got.State)
	}
	if string(got.Trace) != "running after_script\n" {
		t.Errorf("trace = %q, want %q", got.Trace, "running after_script\n")
	}
	srv.AssertNoViolations(t)
}
