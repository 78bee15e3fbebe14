package executor_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/executor"
	"gitlab-serverless-runner/pkg/gitlab"
)

func TestProjectDir(t *testing.T) {
	tests := []struct {
		name    string
		repoURL string
		project int64
		vars    gitlab.Variables
		want    string
	}{
		{"namespace and project", "https://gitlab-ci-token:tok@gitlab.example.com/group/sub/demo.git", 7, nil, "/b/group/sub/demo"},
		{"no .git suffix", "http://127.0.0.1:8080/group/demo", 7, nil, "/b/group/demo"},
		{"empty strategy", "https://gitlab.example.com/group/demo.git", 7, gitlab.Variables{{Key: "GIT_STRATEGY", Value: "empty"}}, "/b/group/demo-empty"},
		{"dot-dot path falls back", "https://gitlab.example.com/group/../../etc.git", 7, nil, "/b/project-7"},
		{"no path falls back", "https://gitlab.example.com", 9, nil, "/b/project-9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			job := &gitlab.Job{GitInfo: gitlab.GitInfo{RepoURL: tt.repoURL}, JobInfo: gitlab.JobInfo{ProjectID: tt.project}, Variables: tt.vars}
			if got := executor.ProjectDir("/b", job); got != filepath.FromSlash(tt.want) {
				t.Errorf("ProjectDir() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCleanupFromEnv(t *testing.T) {
	tests := []struct {
		name      string
		runtime   string
		ppid      int
		want      executor.Cleanup
		wantParse string
	}{
		{"outside Lambda", "", 1, executor.CleanupLocal, "local"},
		{"Lambda: init is our parent", "127.0.0.1:9001", 1, executor.CleanupSystem, "system"},
		{"emulator on a shared machine", "127.0.0.1:9001", 4242, executor.CleanupDescendants, "descendants"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			getenv := func(k string) string {
				if k == "AWS_LAMBDA_RUNTIME_API" {
					return tt.runtime
				}
				return ""
			}
			got := executor.CleanupFromEnv(getenv, tt.ppid)
			if got != tt.want || got.String() != tt.wantParse {
				t.Errorf("CleanupFromEnv() = %v, want %v", got, tt.want)
			}
			if p, err := executor.ParseCleanup(tt.wantParse); err != nil || p != tt.want {
				t.Errorf("ParseCleanup(%q) = %v, %v, want %v", tt.wantParse, p, err, tt.want)
			}
		})
	}
	if _, err := executor.ParseCleanup("everything"); err == nil {
		t.Error("ParseCleanup(everything) error = nil, want an error")
	}
}

func TestRuntimeFromEnv(t *testing.T) {
	for _, tt := range []struct{ env, want string }{
		{"AWS_Lambda_python3.12", "python3.12"},
		{"AWS_Lambda_nodejs22.x", "nodejs22.x"},
		{"", executor.DefaultRuntime},
	} {
		if got := executor.RuntimeFromEnv(func(string) string { return tt.env }); got != tt.want {
			t.Errorf("RuntimeFromEnv(%q) = %q, want %q", tt.env, got, tt.want)
		}
	}
}

func TestConfigFromEnv(t *testing.T) {
	env := map[string]string{
		"EXECUTOR_MARGIN_SECONDS": "45", "EXECUTOR_STATUS_INTERVAL": "2s", "EXECUTOR_CLEANUP": "descendants",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "3008", "AWS_EXECUTION_ENV": "AWS_Lambda_python3.14",
	}
	cfg, err := executor.ConfigFromEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok }, 1)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DeadlineMargin != 45*time.Second || cfg.StatusInterval != 2*time.Second || cfg.Cleanup != executor.CleanupDescendants ||
		cfg.MemoryMB != 3008 || cfg.Runtime != "python3.14" {
		t.Errorf("ConfigFromEnv() = margin %v, status %v, cleanup %v, memory %d, runtime %q",
			cfg.DeadlineMargin, cfg.StatusInterval, cfg.Cleanup, cfg.MemoryMB, cfg.Runtime)
	}
	env["EXECUTOR_MARGIN_SECONDS"] = "30s"
	if _, err := executor.ConfigFromEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok }, 1); err == nil ||
		!strings.Contains(err.Error(), "EXECUTOR_MARGIN_SECONDS") {
		t.Errorf("a margin that is not whole seconds: error = %v, want one naming EXECUTOR_MARGIN_SECONDS", err)
	}
}
