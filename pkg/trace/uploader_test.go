package trace_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"sync"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/trace"
)

// fakeClient is a JobClient whose methods are function fields.
type fakeClient struct {
	PatchTraceFunc func(ctx context.Context, jobID int64, jobToken string, offset int64, content []byte, debug bool) (gitlab.PatchTraceResult, error)
	UpdateJobFunc  func(ctx context.Context, jobID int64, req gitlab.UpdateJobRequest) (gitlab.UpdateJobResult, error)
}

func (f *fakeClient) PatchTrace(ctx context.Context, jobID int64, jobToken string, offset int64, content []byte, debug bool) (gitlab.PatchTraceResult, error) {
	return f.PatchTraceFunc(ctx, jobID, jobToken, offset, content, debug)
}

func (f *fakeClient) UpdateJob(ctx context.Context, jobID int64, req gitlab.UpdateJobRequest) (gitlab.UpdateJobResult, error) {
	return f.UpdateJobFunc(ctx, jobID, req)
}

type patchCall struct {
	offset int64
	size   int
}

// fakeGitLab keeps a job's stored trace the way GitLab does (416 with the
// stored length when the offset does not match) and records every call.
type fakeGitLab struct {
	mu        sync.Mutex
	stored    []byte
	patches   []patchCall
	updates   []gitlab.UpdateJobRequest
	jobStatus string // Job-Status answered to PATCHes
	// update answers the n-th (from 0) PUT; nil accepts every PUT.
	update func(n int, req gitlab.UpdateJobRequest) (gitlab.UpdateJobResult, error)
	called chan struct{}
}

func newFakeGitLab() *fakeGitLab {
	return &fakeGitLab{jobStatus: gitlab.StatusRunning, called: make(chan struct{}, 1000)}
}

func (g *fakeGitLab) client() *fakeClient {
	return &fakeClient{
		PatchTraceFunc: func(_ context.Context, jobID int64, token string, offset int64, content []byte, _ bool) (gitlab.PatchTraceResult, error) {
			g.mu.Lock()
			defer g.mu.Unlock()
			defer g.notify()
			if jobID != 42 || token != "glcbt-jobtoken" {
				return gitlab.PatchTraceResult{}, fmt.Errorf("patch job %d: %w", jobID, gitlab.ErrForbidden)
			}
			g.patches = append(g.patches, patchCall{offset, len(content)})
			if offset != int64(len(g.stored)) {
				return gitlab.PatchTraceResult{RangeMismatch: true, NewOffset: int64(len(g.stored)), JobStatus: g.jobStatus}, nil
			}
			g.stored = append(g.stored, content...)
			return gitlab.PatchTraceResult{NewOffset: int64(len(g.stored)), JobStatus: g.jobStatus}, nil
		},
		UpdateJobFunc: func(_ context.Context, jobID int64, req gitlab.UpdateJobRequest) (gitlab.UpdateJobResult, error) {
			g.mu.Lock()
			defer g.mu.Unlock()
			defer g.notify()
			if jobID != 42 || req.Token != "glcbt-jobtoken" {
				return gitlab.UpdateJobResult{}, fmt.Errorf("update job %d: %w", jobID, gitlab.ErrForbidden)
			}
			n := len(g.updates)
			g.updates = append(g.updates, req)
			if g.update == nil {
				return gitlab.UpdateJobResult{Accepted: true, JobStatus: req.State}, nil
			}
			r, err := g.update(n, req)
			if r.ResendTrace {
				g.stored = nil
			}
			return r, err
		},
	}
}

func (g *fakeGitLab) notify() {
	select {
	case g.called <- struct{}{}:
	default:
	}
}

// waitFor blocks until cond holds after some call, or the test times out.
func (g *fakeGitLab) waitFor(t *testing.T, what string, cond func(g *fakeGitLab) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for {
		g.mu.Lock()
		ok := cond(g)
		g.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-g.called:
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		}
	}
}

func (g *fakeGitLab) snapshot() (stored []byte, patches []patchCall, updates []gitlab.UpdateJobRequest) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return bytes.Clone(g.stored), append([]patchCall(nil), g.patches...), append([]gitlab.UpdateJobRequest(nil), g.updates...)
}

func newUploader(t *testing.T, client trace.JobClient, buf *trace.Buffer, change func(*trace.UploaderConfig)) *trace.Uploader {
	t.Helper()
	cfg := trace.UploaderConfig{
		Client:      client,
		JobID:       42,
		JobToken:    "glcbt-jobtoken",
		Trace:       buf,
		Interval:    time.Millisecond,
		MaxInterval: 5 * time.Millisecond,
		MinBackoff:  time.Millisecond,
		MaxBackoff:  4 * time.Millisecond,
		Logger:      slog.New(slog.DiscardHandler),
	}
	if change != nil {
		change(&cfg)
	}
	u, err := trace.NewUploader(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func write(t *testing.T, buf *trace.Buffer, s string) {
	t.Helper()
	if _, err := buf.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
}

func checksum(b []byte) string { return fmt.Sprintf("crc32:%08x", crc32.ChecksumIEEE(b)) }

func TestUploaderStreamsThenSucceeds(t *testing.T) {
	g := newFakeGitLab()
	buf := newBuffer(t)
	u := newUploader(t, g.client(), buf, nil)
	u.Start(t.Context())

	write(t, buf, "Running with gitlab-serverless-runner\n")
	g.waitFor(t, "first line", func(g *fakeGitLab) bool { return len(g.stored) == 38 })
	write(t, buf, "$ make test\nok\n")
	g.waitFor(t, "second write", func(g *fakeGitLab) bool { return len(g.stored) == 38+15 })

	if err := u.Success(t.Context()); err != nil {
		t.Fatalf("Success: %v", err)
	}
	stored, _, updates := g.snapshot()
	want := "Running with gitlab-serverless-runner\n$ make test\nok\n"
	if string(stored) != want {
		t.Errorf("stored trace = %q, want %q", stored, want)
	}
	last := updates[len(updates)-1]
	wantReq := gitlab.UpdateJobRequest{
		Token:    "glcbt-jobtoken",
		State:    "success",
		Checksum: checksum([]byte(want)),
		Output:   gitlab.JobOutput{Checksum: checksum([]byte(want)), Bytesize: int64(len(want))},
	}
	if fmt.Sprint(last) != fmt.Sprint(wantReq) {
		t.Errorf("final update = %+v, want %+v", last, wantReq)
	}
}

func TestUploaderFinalSendsRestInChunks(t *testing.T) {
	g := newFakeGitLab()
	buf := newBuffer(t)
	content := bytes.Repeat([]byte("0123456789abcdef"), (5<<20)/2/16) // 2.5 MiB
	write(t, buf, string(content))
	u := newUploader(t, g.client(), buf, nil)
	if err := u.Success(t.Context()); err != nil {
		t.Fatal(err)
	}
	stored, patches, updates := g.snapshot()
	wantPatches := []patchCall{{0, 1 << 20}, {1 << 20, 1 << 20}, {2 << 20, 1 << 19}}
	if fmt.Sprint(patches) != fmt.Sprint(wantPatches) {
		t.Errorf("patches = %v, want %v", patches, wantPatches)
	}
	if !bytes.Equal(stored, content) {
		t.Errorf("stored trace differs from the buffer (%d bytes, want %d)", len(stored), len(content))
	}
	if len(updates) != 1 {
		t.Errorf("got %d updates, want 1", len(updates))
	}
}

func TestUploaderResumesAtServerOffset(t *testing.T) {
	g := newFakeGitLab()
	g.stored = []byte("0123456789") // an earlier PATCH whose answer was lost
	buf := newBuffer(t)
	write(t, buf, "0123456789abcdef")
	u := newUploader(t, g.client(), buf, nil)
	u.Start(t.Context())
	g.waitFor(t, "resumed patch", func(g *fakeGitLab) bool { return len(g.stored) == 16 })
	if err := u.Success(t.Context()); err != nil {
		t.Fatal(err)
	}
	stored, patches, _ := g.snapshot()
	if got, want := string(stored), "0123456789abcdef"; got != want {
		t.Errorf("stored = %q, want %q", got, want)
	}
	if want := []patchCall{{0, 16}, {10, 6}}; fmt.Sprint(patches) != fmt.Sprint(want) {
		t.Errorf("patches = %v, want %v", patches, want)
	}
}

func TestUploaderFinalUpdate(t *testing.T) {
	forbidden := fmt.Errorf("update: %w", gitlab.ErrForbidden)
	unavailable := fmt.Errorf("update: %w", gitlab.ErrUnavailable)
	tests := []struct {
		name        string
		attempts    int
		update      func(n int, req gitlab.UpdateJobRequest) (gitlab.UpdateJobResult, error)
		wantErr     error // nil: success; errAny: any error
		wantUpdates int
		wantPatches []patchCall
	}{
		{
			name: "accepted",
			update: func(int, gitlab.UpdateJobRequest) (gitlab.UpdateJobResult, error) {
				return gitlab.UpdateJobResult{Accepted: true}, nil
			},
			wantUpdates: 1,
			wantPatches: []patchCall{{0, 5}},
		},
		{
			name: "202 twice then accepted",
			update: func(n int, _ gitlab.UpdateJobRequest) (gitlab.UpdateJobResult, error) {
				if n < 2 {
					return gitlab.UpdateJobResult{RetryAfter: time.Millisecond, JobStatus: "running"}, nil
				}
				return gitlab.UpdateJobResult{Accepted: true}, nil
			},
			wantUpdates: 3,
			wantPatches: []patchCall{{0, 5}},
		},
		{
			name: "412 resends the whole trace",
			update: func(n int, _ gitlab.UpdateJobRequest) (gitlab.UpdateJobResult, error) {
				if n == 0 {
					return gitlab.UpdateJobResult{ResendTrace: true}, nil
				}
				return gitlab.UpdateJobResult{Accepted: true}, nil
			},
			wantUpdates: 2,
			wantPatches: []patchCall{{0, 5}, {0, 5}},
		},
		{
			name: "errors retried with backoff",
			update: func(n int, _ gitlab.UpdateJobRequest) (gitlab.UpdateJobResult, error) {
				if n < 2 {
					return gitlab.UpdateJobResult{}, unavailable
				}
				return gitlab.UpdateJobResult{Accepted: true}, nil
			},
			wantUpdates: 3,
			wantPatches: []patchCall{{0, 5}},
		},
		{
			name:     "gives up after the attempts",
			attempts: 3,
			update: func(int, gitlab.UpdateJobRequest) (gitlab.UpdateJobResult, error) {
				return gitlab.UpdateJobResult{}, unavailable
			},
			wantErr:     gitlab.ErrUnavailable,
			wantUpdates: 3,
			wantPatches: []patchCall{{0, 5}},
		},
		{
			name: "403 stops",
			update: func(int, gitlab.UpdateJobRequest) (gitlab.UpdateJobResult, error) {
				return gitlab.UpdateJobResult{}, forbidden
			},
			wantErr:     trace.ErrAborted,
			wantUpdates: 1,
			wantPatches: []patchCall{{0, 5}},
		},
		{
			name: "job canceled stops",
			update: func(int, gitlab.UpdateJobRequest) (gitlab.UpdateJobResult, error) {
				return gitlab.UpdateJobResult{JobStatus: "canceled", RetryAfter: time.Millisecond}, nil
			},
			wantErr:     trace.ErrAborted,
			wantUpdates: 1,
			wantPatches: []patchCall{{0, 5}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := newFakeGitLab()
			g.update = tc.update
			buf := newBuffer(t)
			write(t, buf, "hello")
			u := newUploader(t, g.client(), buf, func(c *trace.UploaderConfig) { c.FinalAttempts = tc.attempts })
			err := u.Success(t.Context())
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("Success() = %v, want %v", err, tc.wantErr)
			}
			stored, patches, updates := g.snapshot()
			if len(updates) != tc.wantUpdates {
				t.Errorf("got %d updates, want %d", len(updates), tc.wantUpdates)
			}
			for i, r := range updates {
				if fmt.Sprint(r) != fmt.Sprint(updates[0]) {
					t.Errorf("update %d = %+v, want the same as the first %+v", i, r, updates[0])
				}
			}
			if fmt.Sprint(patches) != fmt.Sprint(tc.wantPatches) {
				t.Errorf("patches = %v, want %v", patches, tc.wantPatches)
			}
			if tc.wantErr == nil && string(stored) != "hello" {
				t.Errorf("stored = %q, want %q", stored, "hello")
			}
		})
	}
}

func TestUploaderFail(t *testing.T) {
	tests := []struct {
		name       string
		reason     gitlab.FailureReason
		exitCode   int
		supported  []string
		wantReason gitlab.FailureReason
	}{
		{"script failure", "script_failure", 2, nil, "script_failure"},
		{"empty reason", "", 1, nil, "script_failure"},
		{"timeout", "job_execution_timeout", 0, nil, "job_execution_timeout"},
		{"unsupported mapped", "image_pull_failure", 0, []string{"script_failure"}, "runner_system_failure"},
		{"supported kept", "runner_configuration_error", 0, []string{"runner_configuration_error"}, "runner_configuration_error"},
		{"canceled", "job_canceled", 0, []string{"unknown_failure"}, "unknown_failure"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := newFakeGitLab()
			buf := newBuffer(t)
			write(t, buf, "ERROR: Job failed\n")
			u := newUploader(t, g.client(), buf, func(c *trace.UploaderConfig) { c.FailureReasons = tc.supported })
			if err := u.Fail(t.Context(), tc.reason, tc.exitCode); err != nil {
				t.Fatal(err)
			}
			_, _, updates := g.snapshot()
			if len(updates) != 1 {
				t.Fatalf("got %d updates, want 1", len(updates))
			}
			got := updates[0]
			if got.State != "failed" || got.FailureReason != tc.wantReason || got.ExitCode != tc.exitCode {
				t.Errorf("update = state %q reason %q exit %d, want failed %q %d", got.State, got.FailureReason, got.ExitCode, tc.wantReason, tc.exitCode)
			}
			if want := checksum([]byte("ERROR: Job failed\n")); got.Output.Checksum != want || got.Output.Bytesize != 18 {
				t.Errorf("output = %+v, want %s and 18 bytes", got.Output, want)
			}
		})
	}
}

func TestUploaderFinalExactlyOnce(t *testing.T) {
	g := newFakeGitLab()
	buf := newBuffer(t)
	u := newUploader(t, g.client(), buf, nil)
	u.Start(t.Context())
	if err := u.Success(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := u.Fail(t.Context(), "script_failure", 1); !errors.Is(err, trace.ErrFinished) {
		t.Errorf("Fail after Success = %v, want ErrFinished", err)
	}
	if err := u.Success(t.Context()); !errors.Is(err, trace.ErrFinished) {
		t.Errorf("second Success = %v, want ErrFinished", err)
	}
	if _, _, updates := g.snapshot(); len(updates) != 1 || updates[0].State != "success" {
		t.Errorf("updates = %+v, want one success", updates)
	}
}

func TestUploaderCancellation(t *testing.T) {
	g := newFakeGitLab()
	buf := newBuffer(t)
	u := newUploader(t, g.client(), buf, nil)
	u.Start(t.Context())

	g.mu.Lock()
	g.jobStatus = gitlab.StatusCanceling
	g.mu.Unlock()
	write(t, buf, "working\n")
	select {
	case <-u.Canceling():
	case <-time.After(20 * time.Second):
		t.Fatal("Canceling() not closed after Job-Status: canceling")
	}
	if u.IsAborted() {
		t.Errorf("aborted on canceling, want only a graceful cancel")
	}

	// The trace keeps flowing while canceling.
	g.mu.Lock()
	g.jobStatus = gitlab.StatusCanceled
	g.mu.Unlock()
	write(t, buf, "after_script\n")
	select {
	case <-u.Aborted():
	case <-time.After(20 * time.Second):
		t.Fatal("Aborted() not closed after Job-Status: canceled")
	}
	if err := u.Fail(t.Context(), gitlab.ReasonJobCanceled, 0); !errors.Is(err, trace.ErrAborted) {
		t.Errorf("Fail after abort = %v, want ErrAborted", err)
	}
	stored, _, updates := g.snapshot()
	if len(updates) != 0 {
		t.Errorf("got %d updates after abort, want none", len(updates))
	}
	if got, want := string(stored), "working\nafter_script\n"; got != want {
		t.Errorf("stored = %q, want %q", got, want)
	}
}

func TestUploaderAbortsOn403(t *testing.T) {
	buf := newBuffer(t)
	write(t, buf, "x")
	var mu sync.Mutex
	patches := 0
	client := &fakeClient{
		PatchTraceFunc: func(context.Context, int64, string, int64, []byte, bool) (gitlab.PatchTraceResult, error) {
			mu.Lock()
			defer mu.Unlock()
			patches++
			return gitlab.PatchTraceResult{}, fmt.Errorf("patch: %w", gitlab.ErrForbidden)
		},
		UpdateJobFunc: func(context.Context, int64, gitlab.UpdateJobRequest) (gitlab.UpdateJobResult, error) {
			t.Error("UpdateJob called after a 403")
			return gitlab.UpdateJobResult{}, nil
		},
	}
	u := newUploader(t, client, buf, nil)
	u.Start(t.Context())
	select {
	case <-u.Aborted():
	case <-time.After(20 * time.Second):
		t.Fatal("Aborted() not closed after a 403")
	}
	if err := u.Success(t.Context()); !errors.Is(err, trace.ErrAborted) {
		t.Errorf("Success after 403 = %v, want ErrAborted", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if patches != 1 {
		t.Errorf("got %d patches, want 1 (none after the 403)", patches)
	}
}

func TestUploaderTouchesWhenIdle(t *testing.T) {
	g := newFakeGitLab()
	g.update = func(n int, req gitlab.UpdateJobRequest) (gitlab.UpdateJobResult, error) {
		return gitlab.UpdateJobResult{Accepted: true, JobStatus: gitlab.StatusCanceling}, nil
	}
	buf := newBuffer(t)
	write(t, buf, "abc")
	u := newUploader(t, g.client(), buf, func(c *trace.UploaderConfig) { c.ForceSendInterval = time.Nanosecond })
	u.Start(t.Context())
	g.waitFor(t, "a keep-alive update", func(g *fakeGitLab) bool { return len(g.updates) > 0 })
	select {
	case <-u.Canceling():
	case <-time.After(20 * time.Second):
		t.Fatal("Canceling() not closed after a keep-alive answered canceling")
	}
	_, patches, updates := g.snapshot()
	want := gitlab.UpdateJobRequest{Token: "glcbt-jobtoken", State: "running", Output: gitlab.JobOutput{Checksum: checksum([]byte("abc")), Bytesize: 3}}
	if fmt.Sprint(updates[0]) != fmt.Sprint(want) {
		t.Errorf("keep-alive = %+v, want %+v", updates[0], want)
	}
	if len(patches) == 0 {
		t.Errorf("keep-alive sent before the trace")
	}
}

// TestCheckStatusRefusedStopsEverything: a status check answered 403
// aborts the job; from then on the uploader sends nothing, neither its
// loop's PATCHes nor the final update, and a second check sends nothing
// either. A canceling answer only marks the job canceling.
func TestCheckStatusRefusedStopsEverything(t *testing.T) {
	g := newFakeGitLab()
	g.update = func(n int, req gitlab.UpdateJobRequest) (gitlab.UpdateJobResult, error) {
		if n == 0 {
			return gitlab.UpdateJobResult{JobStatus: gitlab.StatusCanceling}, nil
		}
		return gitlab.UpdateJobResult{JobStatus: gitlab.StatusCanceled}, fmt.Errorf("update job: %w", gitlab.ErrForbidden)
	}
	buf := newBuffer(t)
	// The loop's next PATCH is an hour away: only the checks talk.
	u := newUploader(t, g.client(), buf, func(c *trace.UploaderConfig) { c.Interval, c.MaxInterval = time.Hour, time.Hour })
	u.Start(t.Context())
	write(t, buf, "Running with gitlab-serverless-runner\n")

	if err := u.CheckStatus(t.Context()); err != nil {
		t.Fatalf("CheckStatus (canceling) = %v, want nil", err)
	}
	select {
	case <-u.Canceling():
	default:
		t.Error("Canceling is not closed after a canceling answer")
	}
	if u.IsAborted() {
		t.Error("aborted after a canceling answer")
	}
	if err := u.CheckStatus(t.Context()); !errors.Is(err, trace.ErrAborted) {
		t.Fatalf("CheckStatus (403) = %v, want ErrAborted", err)
	}
	if !u.IsAborted() {
		t.Error("not aborted after a 403")
	}
	_, patches, updates := g.snapshot()
	if err := u.CheckStatus(t.Context()); !errors.Is(err, trace.ErrAborted) {
		t.Errorf("CheckStatus after the 403 = %v, want ErrAborted", err)
	}
	if err := u.Fail(t.Context(), gitlab.ReasonJobCanceled, 0); !errors.Is(err, trace.ErrAborted) {
		t.Errorf("Fail after the 403 = %v, want ErrAborted", err)
	}
	_, patchesAfter, updatesAfter := g.snapshot()
	if len(patchesAfter) != len(patches) || len(updatesAfter) != len(updates) {
		t.Errorf("after the 403: %d PATCHes and %d PUTs more, want none", len(patchesAfter)-len(patches), len(updatesAfter)-len(updates))
	}
	if len(updates) != 2 || updates[0].State != gitlab.StatusRunning || updates[0].Output.Bytesize != 38 {
		t.Errorf("updates = %+v, want two keep-alives with the trace's size", updates)
	}
	if err := u.CheckStatus(t.Context()); !errors.Is(err, trace.ErrAborted) && !errors.Is(err, trace.ErrFinished) {
		t.Errorf("CheckStatus after Fail = %v, want ErrAborted or ErrFinished", err)
	}
}
