package dispatch_test

import (
	"strings"
	"testing"

	"gitlab-serverless-runner/pkg/dispatch"
)

func TestDecodeAndValidate(t *testing.T) {
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
			ev, err := dispatch.Decode([]byte(tt.raw))
			if err == nil {
				err = ev.Validate()
			}
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Decode+Validate error = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Decode+Validate error = %v, want one containing %q", err, tt.wantErr)
			case err != nil && strings.Contains(err.Error(), "glcbt-secret-token"):
				t.Errorf("Decode+Validate error %q quotes the job token", err)
			}
		})
	}
}

func TestLambdaArch(t *testing.T) {
	for goarch, want := range map[string]string{"arm64": "arm64", "amd64": "x86_64"} {
		if got := dispatch.LambdaArch(goarch); got != want {
			t.Errorf("LambdaArch(%q) = %q, want %q", goarch, got, want)
		}
	}
}

func TestNewTenantID(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		id := dispatch.NewTenantID()
		hexPart, ok := strings.CutPrefix(id, "job-")
		if !ok || len(hexPart) != 32 || strings.Trim(hexPart, "0123456789abcdef") != "" {
			t.Fatalf("tenant id %q, want job- and 32 hex digits (128 bits)", id)
		}
		if seen[id] {
			t.Fatalf("tenant id %q handed out twice", id)
		}
		seen[id] = true
	}
}
