package invoke

import "context"

// invocationKey is the context key of the invocation a Func runs.
type invocationKey struct{}

// invocation is what Local tells a Func about the invocation it runs.
type invocation struct {
	tenantID  string
	requestID string
}

// TenantID returns the tenant id of the invocation a Func runs, as Local
// passes it in the handler's context (Options.TenantID); "" when the
// invocation has none or ctx does not come from Local. A Func that stands
// for a tenant-isolated function routes the invocation by it.
func TenantID(ctx context.Context) string {
	inv, _ := ctx.Value(invocationKey{}).(invocation)
	return inv.tenantID
}

// RequestID returns the request id Local gave the invocation a Func runs,
// the same id its destination record carries; "" when ctx does not come
// from Local.
func RequestID(ctx context.Context) string {
	inv, _ := ctx.Value(invocationKey{}).(invocation)
	return inv.requestID
}
