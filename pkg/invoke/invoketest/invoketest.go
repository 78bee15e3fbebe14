// Package invoketest provides the recorder that tests use in place of an
// invoke.Invoker: it records every invocation and can refuse some or act
// on them, as a test needs.
package invoketest

import (
	"context"
	"sync"

	"gitlab-serverless-runner/pkg/dispatch"
	"gitlab-serverless-runner/pkg/invoke"
)

// Invocation is one recorded call of Invoke.
type Invocation struct {
	Function string
	Payload  []byte
	Opts     invoke.Options
	// Err is what Invoke returned: non-nil when the invocation was
	// refused.
	Err error
}

// Poll decodes the payload as a poller event.
func (i Invocation) Poll() (dispatch.Poll, error) { return dispatch.DecodePoll(i.Payload) }

// Event decodes the payload as an executor event.
func (i Invocation) Event() (dispatch.Event, error) { return dispatch.Decode(i.Payload) }

// Recorder is an invoke.Invoker that records invocations. Its zero value
// accepts every invocation and does nothing else. It is safe for
// concurrent use.
type Recorder struct {
	// Fail, when set, is asked about each invocation: a non-nil error
	// refuses it (Invoke returns the error; the invocation is still
	// recorded, with Err set).
	Fail func(Invocation) error
	// Then, when set, runs after an accepted invocation was recorded, in
	// the caller's goroutine, e.g. to act as the invoked function would.
	// Its error is returned by Invoke.
	Then func(ctx context.Context, inv Invocation) error

	mu    sync.Mutex
	calls []Invocation
}

var _ invoke.Invoker = (*Recorder)(nil)

// Invoke implements invoke.Invoker.
func (r *Recorder) Invoke(ctx context.Context, function string, payload []byte, opts invoke.Options) error {
	inv := Invocation{Function: function, Payload: append([]byte(nil), payload...), Opts: opts}
	if r.Fail != nil {
		inv.Err = r.Fail(inv)
	}
	r.mu.Lock()
	r.calls = append(r.calls, inv)
	r.mu.Unlock()
	if inv.Err != nil || r.Then == nil {
		return inv.Err
	}
	return r.Then(ctx, inv)
}

// Calls returns the invocations recorded so far, in order, refused ones
// included.
func (r *Recorder) Calls() []Invocation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Invocation(nil), r.calls...)
}

// Accepted returns the invocations that were not refused.
func (r *Recorder) Accepted() []Invocation {
	var out []Invocation
	for _, c := range r.Calls() {
		if c.Err == nil {
			out = append(out, c)
		}
	}
	return out
}
