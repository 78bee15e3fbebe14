package retry_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/retry"
)

func TestSleep(t *testing.T) {
	if err := retry.Sleep(context.Background(), time.Millisecond); err != nil {
		t.Errorf("Sleep(1ms) = %v, want nil", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if err := retry.Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("Sleep(1h) on a done context = %v, want context.Canceled", err)
	}
	if time.Since(start) > time.Minute {
		t.Error("Sleep on a done context waited")
	}
	if err := retry.Sleep(ctx, 0); !errors.Is(err, context.Canceled) {
		t.Errorf("Sleep(0) on a done context = %v, want its error", err)
	}
}
