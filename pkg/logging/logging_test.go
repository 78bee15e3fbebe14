package logging_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"gitlab-serverless-runner/pkg/logging"
)

func TestFromEnv(t *testing.T) {
	tests := []struct {
		level     string
		wantDebug bool
		wantInfo  bool
		wantWarn  string
	}{
		{"", false, true, ""},
		{"debug", true, true, ""},
		{"WARN", false, false, ""},
		{"loud", false, true, "LOG_LEVEL ignored"},
	}
	for _, tt := range tests {
		t.Run(tt.level, func(t *testing.T) {
			var buf bytes.Buffer
			log := logging.FromEnv(&buf, func(k string) (string, bool) { return tt.level, k == "LOG_LEVEL" && tt.level != "" })
			log.Debug("debug line")
			log.Info("info line")
			out := buf.String()
			if strings.Contains(out, "debug line") != tt.wantDebug || strings.Contains(out, "info line") != tt.wantInfo {
				t.Errorf("LOG_LEVEL=%q wrote %q; want debug %v, info %v", tt.level, out, tt.wantDebug, tt.wantInfo)
			}
			if tt.wantWarn != "" && !strings.Contains(out, tt.wantWarn) {
				t.Errorf("LOG_LEVEL=%q: output %q does not say %q", tt.level, out, tt.wantWarn)
			}
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				if line != "" && !json.Valid([]byte(line)) {
					t.Errorf("line %q is not JSON", line)
				}
			}
		})
	}
}

func TestOrDiscard(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	if logging.OrDiscard(log) != log {
		t.Error("OrDiscard replaced a logger it was given")
	}
	quiet := logging.OrDiscard(nil)
	if quiet == nil {
		t.Fatal("OrDiscard(nil) is nil; callers would panic on their first line")
	}
	quiet.Error("nothing")
	if quiet.Enabled(context.Background(), slog.LevelError) {
		t.Error("OrDiscard(nil) logs; it should write nothing")
	}
}
