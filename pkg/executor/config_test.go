package executor_test

import (
	"path/filepath"
	"strings"
	"testing"

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

func TestDecodeEvent(t *testing.T) {
	tests := []struct {
		name    string
		raw     string
		wantErr string
	}{
		{"valid", `{"gitlab_url":"https://gitlab.example.com","job":{"id":1,"token":"glcbt-secret-token","git_info":{"repo_url":"https://gitlab.example.com/g/p.git"}}}`, ""},
		{"payload URL only", `{"payload_url":"https://bucket.example.com/e?X-Amz-Signature=x"}`, ""},
		{"ftp URL", `{"gitlab_url":"ftp://gitlab.example.com","job":{"id":1,"token":"t"}}`, "gitlab_url: not an http(s) URL"},
		{"no token", `{"gitlab_url":"https://gitlab.example.com","job":{"id":1}}`, "job.token is missing"},
		{"negative limit", `{"gitlab_url":"https://gitlab.example.com","output_limit":-1,"job":{"id":1,"token":"t","git_info":{"repo_url":"https://x/g/p.git"}}}`, "output_limit is negative"},
		{"bad cache URL", `{"gitlab_url":"https://gitlab.example.com","cache":{"k":{"get_url":"file:///etc/passwd"}},"job":{"id":1,"token":"t","git_info":{"repo_url":"https://x/g/p.git"}}}`, `cache URL for key "k"`},
		{"wrong type", `{"gitlab_url":"https://gitlab.example.com","job":{"id":"one","token":"glcbt-secret-token"}}`, "field job.id has the wrong type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := executor.DecodeEvent([]byte(tt.raw))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("DecodeEvent() error = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("DecodeEvent() error = %v, want one containing %q", err, tt.wantErr)
			case err != nil && strings.Contains(err.Error(), "glcbt-secret-token"):
				t.Errorf("DecodeEvent() error %q quotes the job token", err)
			}
		})
	}
}
