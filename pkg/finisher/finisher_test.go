package finisher_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/dispatch"
	"gitlab-serverless-runner/pkg/finisher"
	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
	"gitlab-serverless-runner/pkg/invoke"
	"gitlab-serverless-runner/pkg/poller"
	"gitlab-serverless-runner/pkg/runner"
	"gitlab-serverless-runner/pkg/seal"
	"gitlab-serverless-runner/pkg/store"
	"gitlab-serverless-runner/pkg/store/dynamotest"
)

func TestMain(m *testing.M) { os.Exit(dynamotest.Main(m)) }

// world runs poller → in-process executor → finisher against the fake
// GitLab and DynamoDB Local, as local mode wires them.
type world struct {
	t        *testing.T
	gl       *gitlabtest.Server
	store    *store.Store
	local    *invoke.Local
	poller   *poller.Poller
	finisher *finisher.Finisher
	glOpts   gitlab.Options
	runner   *runner.Runner
	sealer   *seal.Keyring

	mu       sync.Mutex
	outcomes []finisher.Outcome
	records  []invoke.Record
	errs     []error
	// failing: a test expects the finisher to fail and collects its
	// errors in errs instead of failing.
	failing bool
}

func newWorld(t *testing.T, executor invoke.Func, timeout time.Duration) *world {
	t.Helper()
	st := dynamotest.Store(t, store.Config{})
	sealer, _ := seal.ParseKeys("1:" + seal.GenerateKey())
	gl := gitlabtest.New(t)
	w := &world{t: t, gl: gl, store: st, sealer: sealer, local: invoke.NewLocal(invoke.LocalConfig{}),
		glOpts: gitlab.Options{HTTPClient: gl.Client(), Sleep: func(ctx context.Context, _ time.Duration) error { return ctx.Err() }}}
	var err error
	w.poller, err = poller.New(poller.Deps{Runners: st, Jobs: st, Sealer: sealer, Invoker: w.local},
		poller.Config{ExecutorFunctions: map[string]string{"provided.al2023": "executor"}, GitLab: w.glOpts})
	if err != nil {
		t.Fatalf("poller.New: %v", err)
	}
	w.finisher = finisher.New(st, finisher.Config{DefaultMemoryMB: 3008, GitLab: w.glOpts})
	w.local.Register("executor", executor, invoke.FunctionConfig{Timeout: timeout,
		Destinations: invoke.Destinations{OnSuccess: "finisher", OnFailure: "finisher"}})
	w.local.Register("finisher", func(ctx context.Context, payload []byte) ([]byte, error) {
		out, err := w.finisher.Handle(ctx, payload)
		var rec invoke.Record
		_ = json.Unmarshal(payload, &rec)
		w.mu.Lock()
		w.outcomes = append(w.outcomes, out)
		w.records = append(w.records, rec)
		w.errs = append(w.errs, err)
		failing := w.failing
		w.mu.Unlock()
		if err != nil && !failing {
			t.Errorf("finisher: %v", err)
		}
		return nil, err
	}, invoke.FunctionConfig{})

	gr := gl.CreateRunner(gitlabtest.RunnerOptions{})
	r := &runner.Runner{ID: runner.NewID(), Owner: "alice", GitLabURL: gl.URL(), GitLabRunnerID: gr.ID,
		Runtime: "provided.al2023", Concurrency: 1, RunUntagged: true}
	r.SealedToken, _ = sealer.Seal(seal.RunnerToken(r.ID), gr.Token)
	if err := st.CreateRunner(context.Background(), r); err != nil {
		t.Fatalf("CreateRunner: %v", err)
	}
	w.runner = r
	return w
}

// run enqueues a job, polls, and waits for executor and finisher.
func (w *world) run() gitlabtest.Job {
	w.t.Helper()
	p := w.gl.CreateProject("group/demo", map[string]string{"README.md": "hi\n"})
	job := w.gl.EnqueueJob(p, gitlabtest.JobSpec{Script: []string{"make"}})
	if _, err := w.poller.Poll(context.Background(), dispatch.Poll{RunnerID: w.runner.ID}); err != nil {
		w.t.Fatalf("Poll: %v", err)
	}
	w.local.Wait()
	return w.gl.Job(job.ID)
}

func (w *world) slotFree() bool {
	s, ok, err := w.store.AcquireSlot(context.Background(), w.runner.ID, 1, time.Minute)
	if err != nil {
		w.t.Fatalf("AcquireSlot: %v", err)
	}
	if ok {
		_ = w.store.ReleaseSlot(context.Background(), s)
	}
	return ok
}

// client returns a GitLab client for an executor stand-in.
func (w *world) client(ev dispatch.Event) *gitlab.Client {
	c, err := gitlab.New(ev.GitLabURL, w.glOpts)
	if err != nil {
		w.t.Fatalf("gitlab.New: %v", err)
	}
	return c
}

const started = "Running with gitlab-serverless-runner\n"

// accept does what every executor does first: PUT running and a trace.
func (w *world) accept(ctx context.Context, payload []byte) (dispatch.Event, *gitlab.Client) {
	ev, err := dispatch.Decode(payload)
	if err != nil {
		w.t.Errorf("executor event: %v", err)
		return ev, nil
	}
	c := w.client(ev)
	if _, err := c.UpdateJob(ctx, ev.Job.ID, gitlab.UpdateJobRequest{Token: ev.Job.Token, State: gitlab.StateRunning}); err != nil {
		w.t.Errorf("accept: %v", err)
	}
	if _, err := c.PatchTrace(ctx, ev.Job.ID, ev.Job.Token, 0, []byte(started), false); err != nil {
		w.t.Errorf("trace: %v", err)
	}
	return ev, c
}

// succeed does what an executor does last when the job accepted went well:
// the final update for the trace accept sent, then the result it returns,
// reporting durationMS.
func succeed(ctx context.Context, c *gitlab.Client, ev dispatch.Event, durationMS int) ([]byte, error) {
	_, err := c.FinalUpdate(ctx, ev.Job.ID, gitlab.UpdateJobRequest{Token: ev.Job.Token, State: gitlab.StateSuccess,
		Output: gitlab.JobOutput{Checksum: fmt.Sprintf("crc32:%08x", crc32.ChecksumIEEE([]byte(started))), Bytesize: int64(len(started))}}, nil)
	if err != nil {
		return nil, err
	}
	return fmt.Appendf(nil, `{"job_id":%d,"state":"success","duration_ms":%d,"reported":true,"memory_mb":1769,"arch":"x86_64","storage_mb":4096}`, ev.Job.ID, durationMS), nil
}

// outsiderViolations are the only protocol deviations allowed when the
// finisher fails a job whose trace it did not write: it finds the trace's
// end with a PATCH answered 416, and cannot send the checksum of bytes it
// never saw.
func outsiderViolations(t *testing.T, gl *gitlabtest.Server) {
	t.Helper()
	for _, v := range gl.Violations() {
		if !strings.Contains(v, "Content-Range starts at 0") && !strings.Contains(v, "without output.checksum") {
			t.Errorf("violation: %s", v)
		}
	}
}

func TestFinisherFailsJobsWhoseExecutorDied(t *testing.T) {
	tests := []struct {
		name       string
		timeout    time.Duration
		executor   func(w *world) invoke.Func
		wantReason gitlab.FailureReason
		wantLine   string
		wantTrace  string // trace the executor wrote before the line
	}{
		{"crash after accepting", 0, func(w *world) invoke.Func {
			return func(ctx context.Context, p []byte) ([]byte, error) {
				w.accept(ctx, p)
				panic("runtime error: index out of range")
			}
		}, gitlab.ReasonRunnerSystemFailure, "crashed before reporting the job's result (Runtime.ExitError)", started},
		{"killed at the time limit", 100 * time.Millisecond, func(w *world) invoke.Func {
			return func(ctx context.Context, p []byte) ([]byte, error) {
				w.accept(ctx, p)
				<-ctx.Done()
				return nil, ctx.Err()
			}
		}, gitlab.ReasonJobExecutionTimeout, "stopped by Lambda's time limit", started},
		{"error before accepting the two-phase job", 0, func(w *world) invoke.Func {
			return func(context.Context, []byte) ([]byte, error) { return nil, errors.New("exec format error") }
		}, gitlab.ReasonRunnerSystemFailure, "crashed before reporting", ""},
		{"returned without a final update", 0, func(w *world) invoke.Func {
			return func(ctx context.Context, p []byte) ([]byte, error) {
				ev, _ := w.accept(ctx, p)
				return fmt.Appendf(nil, `{"job_id":%d,"state":"","reported":false,"error":"GitLab did not accept the final update"}`, ev.Job.ID), nil
			}
		}, gitlab.ReasonRunnerSystemFailure, "without reporting the job's result: GitLab did not accept the final update", started},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w *world
			w = newWorld(t, func(ctx context.Context, p []byte) ([]byte, error) { return tt.executor(w)(ctx, p) }, tt.timeout)
			job := w.run()
			if job.State != "failed" || job.FailureReason != tt.wantReason {
				t.Errorf("job in GitLab = %s (%s), want failed (%s)", job.State, job.FailureReason, tt.wantReason)
			}
			if !strings.HasPrefix(string(job.Trace), tt.wantTrace) || !strings.Contains(string(job.Trace), tt.wantLine) {
				t.Errorf("trace = %q, want %q followed by a line saying %q", job.Trace, tt.wantTrace, tt.wantLine)
			}
			rec, err := w.store.GetJob(context.Background(), w.runner.ID, job.ID)
			if err != nil || rec.State != runner.JobFailed || rec.FailureReason != string(tt.wantReason) || rec.MemoryMB != 3008 {
				t.Errorf("job record = %+v, %v; want failed (%s) with the default 3008 MB (a dead executor reports none)", rec, err, tt.wantReason)
			}
			if !w.slotFree() {
				t.Error("slot still held after the executor died")
			}
			outsiderViolations(t, w.gl)
		})
	}
}

func TestFinisherRecordsReportedOutcome(t *testing.T) {
	var w *world
	w = newWorld(t, func(ctx context.Context, p []byte) ([]byte, error) {
		ev, c := w.accept(ctx, p)
		return succeed(ctx, c, ev, 1234)
	}, 0)
	job := w.run()
	if job.State != "success" {
		t.Errorf("job in GitLab = %s, want success", job.State)
	}
	rec, err := w.store.GetJob(context.Background(), w.runner.ID, job.ID)
	if err != nil || rec.State != runner.JobSuccess || rec.Duration != 1234*time.Millisecond || rec.MemoryMB != 1769 ||
		rec.Arch != "x86_64" || rec.StorageMB != 4096 || rec.FinishedAt == nil {
		t.Errorf("job record = %+v, %v; want success, 1.234 s, the 1769 MB, x86_64 and 4096 MB of /tmp the executor reported, finished", rec, err)
	}
	if !w.slotFree() {
		t.Error("slot still held after the job finished")
	}
	w.gl.AssertNoViolations(t)

	// The same record delivered again changes nothing.
	w.mu.Lock()
	rec1 := w.records[0]
	w.mu.Unlock()
	out, err := w.finisher.Finish(context.Background(), rec1)
	if err != nil || !out.Duplicate || out.FailedInGitLab {
		t.Errorf("second Finish() = %+v, %v; want a duplicate, nothing sent to GitLab", out, err)
	}
}

func TestFinisherFetchesPayloadByReference(t *testing.T) {
	var w *world
	var full []byte
	w = newWorld(t, func(ctx context.Context, p []byte) ([]byte, error) {
		full = append([]byte(nil), p...)
		w.accept(ctx, p)
		return nil, errors.New("out of memory")
	}, 0)
	// Run once with the finisher off to keep the record for a by-reference
	// replay.
	w.local.Register("finisher", func(context.Context, []byte) ([]byte, error) { return nil, nil }, invoke.FunctionConfig{})
	job := w.run()
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) { _, _ = rw.Write(full) }))
	defer srv.Close()
	ev, _ := dispatch.Decode(full)
	ref, _ := json.Marshal(map[string]any{"payload_url": srv.URL + "/payload.json", "dispatch": ev.Dispatch})
	rec := invoke.Record{Version: "1.0", Timestamp: time.Now(), RequestPayload: ref,
		RequestContext:  invoke.RequestContext{Condition: invoke.ConditionRetriesExhausted, FunctionARN: "arn:aws:lambda:us-east-1:1:function:executor"},
		ResponseContext: invoke.ResponseContext{StatusCode: 200, FunctionError: "Unhandled"},
		ResponsePayload: json.RawMessage(`{"errorMessage":"Runtime exited with error: signal: killed","errorType":"Runtime.ExitError"}`)}
	out, err := w.finisher.Finish(context.Background(), rec)
	if err != nil || !out.FailedInGitLab {
		t.Fatalf("Finish() = %+v, %v; want the job failed in GitLab", out, err)
	}
	if got := w.gl.Job(job.ID); got.State != "failed" || got.FailureReason != gitlab.ReasonRunnerSystemFailure {
		t.Errorf("job in GitLab = %s (%s), want failed (runner_system_failure)", got.State, got.FailureReason)
	}
	if !w.slotFree() {
		t.Error("slot still held")
	}
}

func TestFinisherDropsRecordsWithoutDispatch(t *testing.T) {
	f := finisher.New(nil, finisher.Config{})
	out, err := f.Handle(context.Background(), []byte(`{"version":"1.0","requestContext":{"condition":"Success"},"requestPayload":{"hello":1}}`))
	if err != nil || out != (finisher.Outcome{}) {
		t.Errorf("Handle() = %+v, %v; want nothing done", out, err)
	}
	if _, err := f.Handle(context.Background(), []byte(`not json`)); err == nil {
		t.Error("Handle(not json) error = nil, want one")
	}
}
