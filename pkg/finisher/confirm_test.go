package finisher_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"gitlab-serverless-runner/pkg/finisher"
	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/runner"
	"gitlab-serverless-runner/pkg/store"
)

// TestFinisherTakesNoOutcomeOnTheExecutorsWord: a job that reaches the
// Runtime API can end its invocation with a forged result. The finisher
// asks GitLab, which still runs the job: the job is failed in GitLab with a
// line saying so, never recorded as a success.
func TestFinisherTakesNoOutcomeOnTheExecutorsWord(t *testing.T) {
	for _, forged := range []string{
		`{"state":"success","reported":true}`,
		`{"state":"failed","failure_reason":"script_failure","reported":true}`,
	} {
		t.Run(forged, func(t *testing.T) {
			var w *world
			w = newWorld(t, func(ctx context.Context, p []byte) ([]byte, error) {
				w.accept(ctx, p)
				return []byte(forged), nil
			}, 0)
			job := w.run()
			if job.State != "failed" || job.FailureReason != gitlab.ReasonRunnerSystemFailure {
				t.Errorf("job in GitLab = %s (%s), want failed (runner_system_failure)", job.State, job.FailureReason)
			}
			if !strings.Contains(string(job.Trace), "still showed this job running") {
				t.Errorf("trace %q lacks the line saying why the job was failed", job.Trace)
			}
			rec, err := w.store.GetJob(context.Background(), w.runner.ID, job.ID)
			if err != nil || rec.State != runner.JobFailed || rec.FailureReason != string(gitlab.ReasonRunnerSystemFailure) {
				t.Errorf("job record = %+v, %v; want failed (runner_system_failure)", rec, err)
			}
			if !w.slotFree() {
				t.Error("slot still held after the job was failed in GitLab")
			}
			outsiderViolations(t, w.gl)
		})
	}
}

// failingTransport fails the first n requests as a network error would.
type failingTransport struct {
	n    atomic.Int32
	base http.RoundTripper
}

func (f *failingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if f.n.Add(-1) >= 0 {
		return nil, errors.New("connection reset by peer")
	}
	return f.base.RoundTrip(r)
}

// releaseFailing is a job store whose first ReleaseSlot fails.
type releaseFailing struct {
	*store.Store
	failed atomic.Bool
}

func (r *releaseFailing) ReleaseSlot(ctx context.Context, s runner.Slot) error {
	if r.failed.CompareAndSwap(false, true) {
		return errors.New("ProvisionedThroughputExceededException")
	}
	return r.Store.ReleaseSlot(ctx, s)
}

// TestFinisherRetriedRecordClosesTheJob: Lambda delivers a record again
// when the finisher fails. Whether GitLab could not be asked, or the job
// was recorded but its slot not freed, the delivery that succeeds closes
// the job and frees the slot; until then the slot stays held.
func TestFinisherRetriedRecordClosesTheJob(t *testing.T) {
	tests := []struct {
		name    string
		breakIt func(w *world) *finisher.Finisher
	}{
		{"GitLab unreachable at first", func(w *world) *finisher.Finisher {
			hc := *w.gl.Client()
			hc.Transport = &failingTransport{base: hc.Transport}
			hc.Transport.(*failingTransport).n.Store(1)
			opts := w.glOpts
			opts.HTTPClient, opts.MaxAttempts = &hc, 1
			return finisher.New(w.store, finisher.Config{DefaultMemoryMB: 3008, GitLab: opts})
		}},
		{"slot release failed at first", func(w *world) *finisher.Finisher {
			return finisher.New(&releaseFailing{Store: w.store}, finisher.Config{DefaultMemoryMB: 3008, GitLab: w.glOpts})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w *world
			w = newWorld(t, func(ctx context.Context, p []byte) ([]byte, error) {
				ev, c := w.accept(ctx, p)
				return succeed(ctx, c, ev, 1000)
			}, 0)
			w.failing = true
			w.finisher = tt.breakIt(w)
			job := w.run()
			if len(w.errs) != 1 || w.errs[0] == nil {
				t.Fatalf("first delivery: errors %v, want one", w.errs)
			}
			if w.slotFree() {
				t.Fatal("slot freed by a delivery that failed")
			}
			// Lambda's retry: the same record again.
			out, err := w.finisher.Finish(context.Background(), w.records[0])
			if err != nil {
				t.Fatalf("retried Finish() = %+v, %v", out, err)
			}
			rec, err := w.store.GetJob(context.Background(), w.runner.ID, job.ID)
			if err != nil || rec.State != runner.JobSuccess {
				t.Errorf("job record = %+v, %v; want success", rec, err)
			}
			if !w.slotFree() {
				t.Error("slot still held after the retried record")
			}
			if got := w.gl.Job(job.ID).State; got != "success" {
				t.Errorf("job in GitLab = %s, want success", got)
			}
		})
	}
}
