package poller_test

import (
	"maps"
	"strings"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/poller"
)

func TestParseFunctions(t *testing.T) {
	tests := []struct {
		in      string
		want    map[string]string
		wantErr bool
	}{
		{"provided.al2023=gsr-executor", map[string]string{"provided.al2023": "gsr-executor"}, false},
		{" provided.al2023 = a , python3.13=b,", map[string]string{"provided.al2023": "a", "python3.13": "b"}, false},
		{"", nil, true},
		{"provided.al2023", nil, true},
		{"=fn", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := poller.ParseFunctions(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseFunctions(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if !tt.wantErr && !maps.Equal(got, tt.want) {
				t.Errorf("ParseFunctions(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestConfigFromEnv(t *testing.T) {
	env := func(m map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
	}
	cfg, err := poller.ConfigFromEnv(env(map[string]string{
		"EXECUTOR_FUNCTIONS": "provided.al2023=gsr-executor", "POLL_WINDOW_SECONDS": "7", "MAX_LONG_POLL_SECONDS": "30",
		"CACHE_BUCKET": "caches", "VERSION": "1.2.3",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ExecutorFunctions["provided.al2023"] != "gsr-executor" || cfg.Window != 7*time.Second || cfg.MaxLongPoll != 30*time.Second ||
		cfg.CacheBucket != "caches" || cfg.PayloadBucket != "caches" || cfg.Version != "1.2.3" {
		t.Errorf("ConfigFromEnv() = %+v", cfg)
	}
	if _, err := poller.ConfigFromEnv(env(map[string]string{"POLL_WINDOW_SECONDS": "soon", "EXECUTOR_FUNCTIONS": "x"})); err == nil ||
		!strings.Contains(err.Error(), "POLL_WINDOW_SECONDS") || !strings.Contains(err.Error(), "EXECUTOR_FUNCTIONS") {
		t.Errorf("bad values: error = %v, want one naming both variables", err)
	}
}
