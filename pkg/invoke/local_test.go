package invoke_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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

// TestLocalTellsTheFuncItsInvocation checks that a Func finds the
// invocation's tenant id and the request id its destination record carries,
// and that a destination invocation has no tenant.
func TestLocalTellsTheFuncItsInvocation(t *testing.T) {
	l := invoke.NewLocal(invoke.LocalConfig{})
	type seen struct{ tenant, request string }
	var mu sync.Mutex
	var fn, dest seen
	var rec invoke.Record
	l.Register("fn", func(ctx context.Context, _ []byte) ([]byte, error) {
		mu.Lock()
		defer mu.Unlock()
		fn = seen{invoke.TenantID(ctx), invoke.RequestID(ctx)}
		return []byte(`{}`), nil
	}, invoke.FunctionConfig{Destinations: invoke.Destinations{OnSuccess: "dest"}})
	l.Register("dest", func(ctx context.Context, payload []byte) ([]byte, error) {
		mu.Lock()
		defer mu.Unlock()
		dest = seen{invoke.TenantID(ctx), invoke.RequestID(ctx)}
		return nil, json.Unmarshal(payload, &rec)
	}, invoke.FunctionConfig{})
	if err := l.Invoke(context.Background(), "fn", []byte(`{}`), invoke.Options{TenantID: "tenant-a"}); err != nil {
		t.Fatalf("Invoke() error = %v", err)
	}
	l.Wait()
	if fn.tenant != "tenant-a" {
		t.Errorf("TenantID(ctx) = %q, want tenant-a", fn.tenant)
	}
	if fn.request == "" || fn.request != rec.RequestContext.RequestID {
		t.Errorf("RequestID(ctx) = %q, want the record's request id %q", fn.request, rec.RequestContext.RequestID)
	}
	if dest.tenant != "" || dest.request == "" || dest.request == fn.request {
		t.Errorf("destination invocation: tenant %q, request %q; want no tenant and a request id of its own", dest.tenant, dest.request)
	}
	if got := invoke.TenantID(context.Background()); got != "" {
		t.Errorf("TenantID outside Local = %q, want empty", got)
	}
}

// TestLocalRecordsAFunctionErrorAsIs checks that a Func failing with a
// *FunctionError gets Lambda's error payload in its record, unchanged.
func TestLocalRecordsAFunctionErrorAsIs(t *testing.T) {
	l := invoke.NewLocal(invoke.LocalConfig{})
	records := make(chan invoke.Record, 1)
	want := invoke.ErrorPayload{ErrorMessage: "RequestId: 1 Error: Runtime exited with error: exit status 3", ErrorType: "Runtime.ExitError"}
	l.Register("fn", func(context.Context, []byte) ([]byte, error) {
		return nil, fmt.Errorf("run: %w", &invoke.FunctionError{Payload: want})
	}, invoke.FunctionConfig{Destinations: invoke.Destinations{OnFailure: "dest"}})
	l.Register("dest", func(_ context.Context, payload []byte) ([]byte, error) {
		var r invoke.Record
		err := json.Unmarshal(payload, &r)
		records <- r
		return nil, err
	}, invoke.FunctionConfig{})
	if err := l.Invoke(context.Background(), "fn", []byte(`{}`), invoke.Options{}); err != nil {
		t.Fatalf("Invoke() error = %v", err)
	}
	l.Wait()
	r := <-records
	got, ok := r.Error()
	if !ok || got.ErrorType != want.ErrorType || got.ErrorMessage != want.ErrorMessage {
		t.Errorf("record error = %+v (ok %v), want %+v", got, ok, want)
	}
	if !r.Failed() || r.ResponseContext.FunctionError != invoke.FunctionErrorUnhandled {
		t.Errorf("record = %+v, want a failed invocation", r.ResponseContext)
	}
}

// TestLocalTenantIsolationNeedsATenant checks that a function in tenant
// isolation mode refuses, at Invoke, an invocation without a tenant id, as
// Lambda does, and runs nothing.
func TestLocalTenantIsolationNeedsATenant(t *testing.T) {
	l := invoke.NewLocal(invoke.LocalConfig{})
	var ran atomic.Int32
	l.Register("fn", func(context.Context, []byte) ([]byte, error) { ran.Add(1); return nil, nil },
		invoke.FunctionConfig{TenantIsolation: true})
	err := l.Invoke(context.Background(), "fn", []byte(`{}`), invoke.Options{})
	if !errors.Is(err, invoke.ErrTenantRequired) {
		t.Errorf("Invoke() without a tenant = %v, want ErrTenantRequired", err)
	}
	if err := l.Invoke(context.Background(), "fn", []byte(`{}`), invoke.Options{TenantID: "t"}); err != nil {
		t.Errorf("Invoke() with a tenant = %v", err)
	}
	l.Wait()
	if got := ran.Load(); got != 1 {
		t.Errorf("invocations run = %d, want 1", got)
	}
}
