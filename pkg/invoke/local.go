package invoke

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"gitlab-serverless-runner/pkg/logging"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync"
	"time"
)

// Func is an in-process function: it receives the payload and returns the
// response payload or an error, as a Lambda handler does. Under Local, ctx
// carries the invocation's TenantID and RequestID.
type Func func(ctx context.Context, payload []byte) ([]byte, error)

// FunctionError is an error a Func returns to fail with Lambda's own error
// payload, such as a Runtime.ExitError or a Sandbox.Timedout from a
// function run elsewhere: Local puts Payload in the destination record as
// it is, where any other error becomes {"errorMessage": err.Error(),
// "errorType": "<its Go type>"}.
type FunctionError struct {
	Payload ErrorPayload
}

// Error implements error.
func (e *FunctionError) Error() string {
	return e.Payload.ErrorType + ": " + e.Payload.ErrorMessage
}

// ErrTenantRequired is returned (wrapped) by Local.Invoke for a function in
// tenant isolation mode invoked without a tenant id, which Lambda refuses.
var ErrTenantRequired = errors.New("invoke: a function in tenant isolation mode needs a tenant id")

// Destinations name the functions that receive a Record after each
// invocation, as Lambda's asynchronous invocation destinations; "" sends
// nothing.
type Destinations struct {
	OnSuccess string
	OnFailure string
}

// LocalConfig configures a Local invoker. The zero value is usable.
type LocalConfig struct {
	// MaxConcurrent bounds the invocations running at once (8).
	MaxConcurrent int
	// Logger receives a line per failed invocation; nil discards.
	Logger *slog.Logger
}

// FunctionConfig is the configuration of one registered function.
type FunctionConfig struct {
	// Destinations receive a record of every invocation.
	Destinations Destinations
	// Timeout ends an invocation as Lambda's function timeout does: the
	// handler's context is cancelled and a "Task timed out" failure is
	// recorded even if the handler never returns. 0 means no timeout.
	Timeout time.Duration
	// TenantIsolation makes Invoke refuse an invocation without a tenant
	// id, as Lambda refuses one for a function in tenant isolation mode.
	TenantIsolation bool
}

// Local runs registered functions in this process, each invocation in its
// own goroutine, at most MaxConcurrent at a time; invocations beyond that
// wait their turn without blocking Invoke. Like Lambda with retries off, it
// runs each invocation once and then delivers a destination record. It is
// safe for concurrent use.
type Local struct {
	mu    sync.Mutex
	funcs map[string]localFunc
	sem   chan struct{}
	wg    sync.WaitGroup
	log   *slog.Logger
}

type localFunc struct {
	fn  Func
	cfg FunctionConfig
}

var _ Invoker = (*Local)(nil)

// NewLocal returns an in-process invoker with no functions.
func NewLocal(cfg LocalConfig) *Local {
	if cfg.MaxConcurrent <= 0 {
		cfg.MaxConcurrent = 8
	}
	log := logging.OrDiscard(cfg.Logger)
	return &Local{funcs: map[string]localFunc{}, sem: make(chan struct{}, cfg.MaxConcurrent), log: log}
}

// Register makes fn invocable as name, replacing any function of that name.
func (l *Local) Register(name string, fn Func, cfg FunctionConfig) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.funcs[name] = localFunc{fn: fn, cfg: cfg}
}

// Invoke queues one invocation of function. The invocation does not
// inherit ctx's cancellation: like a Lambda event, it runs after the caller
// is gone. The handler finds opts.TenantID with TenantID.
func (l *Local) Invoke(ctx context.Context, function string, payload []byte, opts Options) error {
	l.mu.Lock()
	f, ok := l.funcs[function]
	l.mu.Unlock()
	if !ok {
		return fmt.Errorf("invoke: invoke %s: %w", function, ErrUnknownFunction)
	}
	if f.cfg.TenantIsolation && opts.TenantID == "" {
		return fmt.Errorf("invoke: invoke %s: %w", function, ErrTenantRequired)
	}
	payload = append([]byte(nil), payload...)
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		l.sem <- struct{}{}
		rec := l.run(context.WithoutCancel(ctx), function, opts.TenantID, f, payload)
		<-l.sem
		l.deliver(ctx, function, f.cfg.Destinations, rec)
	}()
	return nil
}

// Wait blocks until every queued invocation, and every destination
// invocation they caused, has finished.
func (l *Local) Wait() {
	l.wg.Wait()
}

// outcome is what one handler call produced.
type outcome struct {
	resp  []byte
	err   error
	panic string
}

// run calls the handler once and builds the destination record.
func (l *Local) run(ctx context.Context, function, tenantID string, f localFunc, payload []byte) Record {
	requestID := newRequestID()
	ctx = context.WithValue(ctx, invocationKey{}, invocation{tenantID: tenantID, requestID: requestID})
	start := time.Now()
	if f.cfg.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.cfg.Timeout)
		defer cancel()
	}
	done := make(chan outcome, 1)
	go func() {
		var o outcome
		defer func() {
			if p := recover(); p != nil {
				o = outcome{panic: fmt.Sprint(p) + "\n" + string(debug.Stack())}
			}
			done <- o
		}()
		o.resp, o.err = f.fn(ctx, payload)
	}()
	var o outcome
	var timedOut bool
	if f.cfg.Timeout > 0 {
		select {
		case o = <-done:
		case <-ctx.Done():
			timedOut = true
		}
	} else {
		o = <-done
	}

	rec := Record{
		Version:   "1.0",
		Timestamp: time.Now().UTC(),
		RequestContext: RequestContext{
			RequestID:              requestID,
			FunctionARN:            "arn:aws:lambda:local:000000000000:function:" + function + ":$LATEST",
			Condition:              ConditionSuccess,
			ApproximateInvokeCount: 1,
		},
		RequestPayload:  json.RawMessage(payload),
		ResponseContext: ResponseContext{StatusCode: 200, ExecutedVersion: "$LATEST"},
	}
	var failure *ErrorPayload
	var fe *FunctionError
	switch {
	case timedOut:
		failure = &ErrorPayload{
			ErrorMessage: fmt.Sprintf("%s %s Task timed out after %.2f seconds", time.Now().UTC().Format("2006-01-02T15:04:05.000Z"), requestID, time.Since(start).Seconds()),
			ErrorType:    "Sandbox.Timedout",
		}
	case o.panic != "":
		msg, stack, _ := strings.Cut(o.panic, "\n")
		failure = &ErrorPayload{ErrorMessage: msg, ErrorType: "Runtime.ExitError", StackTrace: strings.Split(stack, "\n")}
	case errors.As(o.err, &fe):
		failure = &fe.Payload
	case o.err != nil:
		failure = &ErrorPayload{ErrorMessage: o.err.Error(), ErrorType: fmt.Sprintf("%T", o.err)}
	}
	if failure != nil {
		l.log.Warn("function failed", "function", function, "request_id", requestID, "error_type", failure.ErrorType, "error", failure.ErrorMessage)
		rec.RequestContext.Condition = ConditionRetriesExhausted
		rec.ResponseContext.FunctionError = FunctionErrorUnhandled
		rec.ResponsePayload, _ = json.Marshal(failure)
		return rec
	}
	if len(o.resp) > 0 && json.Valid(o.resp) {
		rec.ResponsePayload = json.RawMessage(o.resp)
	} else if len(o.resp) > 0 {
		rec.ResponsePayload, _ = json.Marshal(string(o.resp))
	}
	return rec
}

// deliver sends rec to the destination matching its outcome.
func (l *Local) deliver(ctx context.Context, function string, dest Destinations, rec Record) {
	target := dest.OnSuccess
	if rec.Failed() {
		target = dest.OnFailure
	}
	if target == "" {
		return
	}
	body, err := json.Marshal(rec)
	if err == nil {
		err = l.Invoke(ctx, target, body, Options{})
	}
	if err != nil {
		l.log.Error("destination not delivered", "function", function, "destination", target, "request_id", rec.RequestContext.RequestID, "error", err)
	}
}

func newRequestID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
