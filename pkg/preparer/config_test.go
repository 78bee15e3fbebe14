package preparer_test

import (
	"strings"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/jobimage"
	"gitlab-serverless-runner/pkg/preparer"
)

// templateEnv is the preparer's environment as template.yaml sets it.
func templateEnv() map[string]string {
	return map[string]string{
		"IMAGE_REPOSITORY":      "123456789012.dkr.ecr.eu-west-1.amazonaws.com/gsr-images",
		"IMAGE_PULL_THROUGH":    "index.docker.io=gsr-docker-hub, registry.gitlab.com=gsr-gitlab",
		"IMAGE_FUNCTIONS_TABLE": "gsr-image-functions", "IMAGE_FUNCTION_PREFIX": "gsr",
		"IMAGE_FUNCTION_TIMEOUT": "900", "IMAGE_FUNCTION_UNUSED_DAYS": "10",
		"IMAGE_MEMORY_MIN": "128", "IMAGE_MEMORY_MAX": "10240", "IMAGE_MEMORY_DEFAULT": "2048",
		"IMAGE_STORAGE_MIN": "512", "IMAGE_STORAGE_MAX": "10240", "IMAGE_STORAGE_DEFAULT": "2048",
		"IMAGE_ARCHITECTURES": "arm64,x86_64", "IMAGE_ARCHITECTURE_DEFAULT": "arm64",
		"EXECUTOR_ROLE_ARN": "arn:aws:iam::123456789012:role/gsr-executor",
		"FINISHER_ARN":      "arn:aws:lambda:eu-west-1:123456789012:function:gsr-finisher",
		"LOG_LEVEL":         "debug", "ALLOW_HTTP_GITLAB": "true",
	}
}

func TestSettingsFromEnv(t *testing.T) {
	env := templateEnv()
	s, err := preparer.SettingsFromEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	if s.Repository != env["IMAGE_REPOSITORY"] || s.Table != "gsr-image-functions" || s.FunctionPrefix != "gsr" ||
		s.Timeout != 900*time.Second || s.UnusedDays != 10 {
		t.Errorf("settings = %+v", s)
	}
	if s.PullThrough["index.docker.io"] != "gsr-docker-hub" || s.PullThrough["registry.gitlab.com"] != "gsr-gitlab" || len(s.PullThrough) != 2 {
		t.Errorf("PullThrough = %v", s.PullThrough)
	}
	b := s.Config.Bounds
	if b.MinMemory != 128 || b.MaxMemory != 10240 || b.DefaultMemory != 2048 || b.DefaultStorage != 2048 ||
		len(b.Archs) != 2 || b.DefaultArch != jobimage.ARM64 {
		t.Errorf("Bounds = %+v", b)
	}
	if s.Environment["EXECUTOR_CLEANUP"] != "system" || s.Environment["LOG_LEVEL"] != "debug" || s.Environment["ALLOW_HTTP_GITLAB"] != "true" {
		t.Errorf("the image functions' Environment = %v", s.Environment)
	}
	if !s.Config.URLPolicy.AllowHTTP || s.Config.URLPolicy.AllowPrivate {
		t.Errorf("URLPolicy = %+v, want http allowed, private addresses not", s.Config.URLPolicy)
	}
}

func TestSettingsFromEnvNamesWhatIsWrong(t *testing.T) {
	tests := []struct {
		name string
		edit map[string]string
		want string
	}{
		{"nothing set", nil, "IMAGE_REPOSITORY, IMAGE_FUNCTIONS_TABLE, IMAGE_FUNCTION_PREFIX, EXECUTOR_ROLE_ARN, FINISHER_ARN must be set"},
		{"pull-through without a prefix", map[string]string{"IMAGE_PULL_THROUGH": "index.docker.io"}, `IMAGE_PULL_THROUGH: "index.docker.io" is not host=prefix`},
		{"unknown architecture", map[string]string{"IMAGE_ARCHITECTURES": "arm64,sparc"}, "IMAGE_ARCHITECTURES"},
		{"default outside the bounds", map[string]string{"IMAGE_MEMORY_DEFAULT": "20000"}, "default memory 20000 MB"},
		{"bad URL policy", map[string]string{"ALLOW_PRIVATE_GITLAB": "maybe"}, "ALLOW_PRIVATE_GITLAB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := templateEnv()
			if tt.edit == nil {
				env = map[string]string{}
			}
			for k, v := range tt.edit {
				env[k] = v
			}
			_, err := preparer.SettingsFromEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want one naming %q", err, tt.want)
			}
		})
	}
}
