package executor_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/executor"
	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/sandbox"
	"gitlab-serverless-runner/pkg/urlpolicy"
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
		"ALLOW_HTTP_GITLAB": "true",
	}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	cfg, err := executor.ConfigFromEnv(lookup)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DeadlineMargin != 45*time.Second || cfg.StatusInterval != 2*time.Second || cfg.Cleanup != sandbox.CleanupDescendants ||
		cfg.MemoryMB != 3008 || cfg.Runtime != "python3.14" {
		t.Errorf("ConfigFromEnv() = margin %v, status %v, cleanup %v, memory %d, runtime %q",
			cfg.DeadlineMargin, cfg.StatusInterval, cfg.Cleanup, cfg.MemoryMB, cfg.Runtime)
	}
	if !strings.Contains(cfg.CleanupRule, "EXECUTOR_CLEANUP") {
		t.Errorf("CleanupRule = %q, want it to name EXECUTOR_CLEANUP", cfg.CleanupRule)
	}
	if cfg.URLPolicy == nil || *cfg.URLPolicy != (urlpolicy.Policy{AllowHTTP: true}) {
		t.Errorf("URLPolicy = %+v, want http allowed and private addresses refused", cfg.URLPolicy)
	}
	for name, bad := range map[string]string{"EXECUTOR_MARGIN_SECONDS": "30s", "EXECUTOR_CLEANUP": "everything", "ALLOW_PRIVATE_GITLAB": "maybe"} {
		good := env[name]
		env[name] = bad
		if _, err := executor.ConfigFromEnv(lookup); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s=%q: error = %v, want one naming %s", name, bad, err, name)
		}
		env[name] = good
	}
}

// On Lambda the executor reports the size of its /tmp, the function's
// ephemeral storage, for the job's cost; as df measures it.
func TestConfigFromEnvMeasuresTmpOnLambda(t *testing.T) {
	out, err := exec.Command("df", "-m", "--output=size", os.TempDir()).Output()
	if err != nil {
		t.Fatalf("df: %v", err)
	}
	fields := strings.Fields(string(out))
	want, err := strconv.Atoi(fields[len(fields)-1])
	if err != nil {
		t.Fatalf("df said %q", out)
	}
	for _, tt := range []struct {
		env  map[string]string
		want int
	}{
		{map[string]string{"AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001"}, want},
		{map[string]string{}, 0}, // not on Lambda: the machine's disk is not the job's to pay for
	} {
		cfg, err := executor.ConfigFromEnv(func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok })
		if err != nil {
			t.Fatal(err)
		}
		if d := cfg.StorageMB - tt.want; d < -1 || d > 1 {
			t.Errorf("with %v StorageMB = %d, want %d", tt.env, cfg.StorageMB, tt.want)
		}
	}
}
