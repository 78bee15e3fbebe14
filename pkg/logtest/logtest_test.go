package logtest_test

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"gitlab-serverless-runner/pkg/logtest"
)

func TestBufferKeepsEveryLineOfConcurrentLoggers(t *testing.T) {
	tests := []struct {
		name       string
		goroutines int
		lines      int
	}{
		{"one writer", 1, 50},
		{"many writers", 16, 50},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs logtest.Buffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			var wg sync.WaitGroup
			for g := range tt.goroutines {
				wg.Go(func() {
					for i := range tt.lines {
						log.Info("line", "writer", g, "n", i)
						_ = logs.String() // a test may read while loggers write
					}
				})
			}
			wg.Wait()
			out := logs.String()
			if got, want := strings.Count(out, "\n"), tt.goroutines*tt.lines; got != want {
				t.Errorf("lines = %d, want %d", got, want)
			}
			for g := range tt.goroutines {
				if want := fmt.Sprintf("writer=%d n=%d\n", g, tt.lines-1); !strings.Contains(out, want) {
					t.Errorf("logs lack %q", want)
				}
			}
		})
	}
}
