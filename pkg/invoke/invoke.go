package invoke

import (
	"context"
	"errors"

	"gitlab-serverless-runner/pkg/envvar"
)

// Invoker starts a function asynchronously: Invoke returns once the
// invocation is queued, not when the function has run. Delivery is
// at-least-once, so handlers must tolerate a duplicate. Implementations are
// safe for concurrent use.
type Invoker interface {
	// Invoke queues one invocation of function with payload, a JSON
	// object. An error means the invocation was not queued (unknown
	// function, throttled, network failure): the caller still owns the
	// work.
	Invoke(ctx context.Context, function string, payload []byte, opts Options) error
}

// Options refine one invocation. The zero value is a plain invocation.
type Options struct {
	// TenantID runs the invocation in the tenant's own execution
	// environments (Lambda tenant isolation mode); "" for functions that
	// are not multi-tenant.
	TenantID string
	// Keep names top-level fields of payload that stay in the event when
	// the payload is too large and is passed by reference (payload_url):
	// small fields a destination record's reader needs without fetching
	// the payload.
	Keep []string
}

// ErrUnknownFunction is returned (wrapped) for a function that does not
// exist.
var ErrUnknownFunction = errors.New("invoke: unknown function")

// EndpointFromEnv reads LAMBDA_ENDPOINT through lookup (os.LookupEnv when
// nil): the Lambda API to invoke functions through instead of AWS's, such
// as `sam local start-lambda`; "" means AWS.
func EndpointFromEnv(lookup envvar.Lookup) string {
	return envvar.New(lookup).String("LAMBDA_ENDPOINT")
}
