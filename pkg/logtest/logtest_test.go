package logtest_test

import (
	"fmt"
	"log/slog"
	"slices"
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

func TestRepeatedKeys(t *testing.T) {
	var buf logtest.Buffer
	base := slog.New(slog.NewJSONHandler(&buf, nil))
	base.With("job_id", 1).With("job_id", 1, "runner_id", 2).WithGroup("g").With("k", 1, "k", 2).Info("twice", "x", []int{1})
	base.With("job_id", 1).Info("once", "m", map[string]any{"a": map[string]int{"b": 1}})
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	tests := []struct {
		line string
		want []string
	}{
		{lines[0], []string{"job_id", "g.k"}},
		{lines[1], nil},
		{`{"a":{"b":1,"b":2},"c":[{"d":1,"d":2}]}`, []string{"a.b", "c.d"}},
	}
	for _, tt := range tests {
		got, err := logtest.RepeatedKeys([]byte(tt.line))
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("RepeatedKeys(%s) = %q, %v; want %q", tt.line, got, err, tt.want)
		}
	}
	for _, bad := range []string{`[1]`, `{"a":1} {"b":2}`, `{"a":`, `text=1`} {
		if _, err := logtest.RepeatedKeys([]byte(bad)); err == nil {
			t.Errorf("RepeatedKeys(%s) error = nil, want one", bad)
		}
	}
}
