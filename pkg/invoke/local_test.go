package invoke_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/invoke"
)

func TestLocalDestinations(t *testing.T) {
	tests := []struct {
		name          string
		fn            invoke.Func
		timeout       time.Duration
		wantDest      string
		wantCondition string
		wantFuncError string
		wantResponse  string // JSON, or a substring of errorMessage for failures
	}{
		{"success", func(context.Context, []byte) ([]byte, error) { return []byte(`{"state":"success"}`), nil },
			0, "ok", invoke.ConditionSuccess, "", `{"state":"success"}`},
		{"error", func(context.Context, []byte) ([]byte, error) { return nil, errors.New("clone failed") },
			0, "failed", invoke.ConditionRetriesExhausted, "Unhandled", "clone failed"},
		{"panic", func(context.Context, []byte) ([]byte, error) { panic("nil map write") },
			0, "failed", invoke.ConditionRetriesExhausted, "Unhandled", "nil map write"},
		{"timeout", func(ctx context.Context, _ []byte) ([]byte, error) {
			<-ctx.Done()
			time.Sleep(time.Millisecond)
			return nil, nil
		},
			20 * time.Millisecond, "failed", invoke.ConditionRetriesExhausted, "Unhandled", "Task timed out after"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := invoke.NewLocal(invoke.LocalConfig{})
			records := make(chan invoke.Record, 2)
			sink := func(dest string) invoke.Func {
				return func(_ context.Context, payload []byte) ([]byte, error) {
					var r invoke.Record
					if err := json.Unmarshal(payload, &r); err != nil {
						t.Errorf("record %s: %v", payload, err)
					}
					r.Version = dest + "/" + r.Version // remember which destination got it
					records <- r
					return nil, nil
				}
			}
			l.Register("ok", sink("ok"), invoke.FunctionConfig{})
			l.Register("failed", sink("failed"), invoke.FunctionConfig{})
			l.Register("executor", tt.fn, invoke.FunctionConfig{Timeout: tt.timeout, Destinations: invoke.Destinations{OnSuccess: "ok", OnFailure: "failed"}})
			payload := `{"job":{"id":42}}`
			if err := l.Invoke(context.Background(), "executor", []byte(payload), invoke.Options{}); err != nil {
				t.Fatalf("Invoke() error = %v", err)
			}
			l.Wait()
			if got, want := len(records), 1; got != want {
				t.Fatalf("records delivered = %d, want %d", got, want)
			}
			r := <-records
			if got, want := r.Version, tt.wantDest+"/1.0"; got != want {
				t.Errorf("destination/version = %q, want %q", got, want)
			}
			if got := r.RequestContext.Condition; got != tt.wantCondition {
				t.Errorf("condition = %q, want %q", got, tt.wantCondition)
			}
			if got := r.ResponseContext.FunctionError; got != tt.wantFuncError {
				t.Errorf("functionError = %q, want %q", got, tt.wantFuncError)
			}
			if got, want := r.ResponseContext.StatusCode, 200; got != want {
				t.Errorf("statusCode = %d, want %d", got, want)
			}
			if got := string(r.RequestPayload); got != payload {
				t.Errorf("requestPayload = %s, want %s", got, payload)
			}
			if got, want := r.FunctionName(), "executor"; got != want {
				t.Errorf("FunctionName() = %q, want %q", got, want)
			}
			if r.RequestContext.RequestID == "" || r.Timestamp.IsZero() || r.RequestContext.ApproximateInvokeCount != 1 {
				t.Errorf("requestContext = %+v, timestamp %v: want an id, a time and one attempt", r.RequestContext, r.Timestamp)
			}
			if tt.wantFuncError == "" {
				if got := string(r.ResponsePayload); got != tt.wantResponse {
					t.Errorf("responsePayload = %s, want %s", got, tt.wantResponse)
				}
				return
			}
			e, ok := r.Error()
			if !ok || !strings.Contains(e.ErrorMessage, tt.wantResponse) {
				t.Errorf("error payload = %+v (ok %v), want errorMessage containing %q", e, ok, tt.wantResponse)
			}
		})
	}
}

func TestLocalBoundsConcurrency(t *testing.T) {
	const limit, total = 2, 7
	l := invoke.NewLocal(invoke.LocalConfig{MaxConcurrent: limit})
	var running, peak, ran atomic.Int32
	release := make(chan struct{})
	started := make(chan struct{}, total)
	l.Register("slow", func(context.Context, []byte) ([]byte, error) {
		n := running.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		started <- struct{}{}
		<-release
		running.Add(-1)
		ran.Add(1)
		return nil, nil
	}, invoke.FunctionConfig{})
	for range total {
		if err := l.Invoke(context.Background(), "slow", []byte(`{}`), invoke.Options{}); err != nil {
			t.Fatalf("Invoke() error = %v", err)
		}
	}
	for range limit {
		<-started
	}
	close(release)
	l.Wait()
	if got := peak.Load(); got != limit {
		t.Errorf("peak concurrent invocations = %d, want %d", got, limit)
	}
	if got := ran.Load(); got != total {
		t.Errorf("invocations run = %d, want %d", got, total)
	}
}

func TestLocalInvocationOutlivesCaller(t *testing.T) {
	l := invoke.NewLocal(invoke.LocalConfig{})
	var mu sync.Mutex
	var ctxErr error
	l.Register("fn", func(ctx context.Context, _ []byte) ([]byte, error) {
		mu.Lock()
		defer mu.Unlock()
		ctxErr = ctx.Err()
		return nil, nil
	}, invoke.FunctionConfig{})
	ctx, cancel := context.WithCancel(context.Background())
	if err := l.Invoke(ctx, "fn", []byte(`{}`), invoke.Options{}); err != nil {
		t.Fatalf("Invoke() error = %v", err)
	}
	cancel()
	l.Wait()
	if ctxErr != nil {
		t.Errorf("function context error = %v, want none after the caller cancelled", ctxErr)
	}
}
