// Package retry holds the one wait every retry and poll loop of the product
// uses: a sleep that ends early, with the context's error, when the context
// is done.
package retry

import (
	"context"
	"time"
)

// Sleep waits d, or until ctx is done; it returns ctx.Err() in that case
// and nil otherwise. A d of zero or less does not wait.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
