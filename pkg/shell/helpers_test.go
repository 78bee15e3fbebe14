package shell_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/shell"
)

// testConfig returns a Config with every directory inside a test temp dir.
func testConfig(t *testing.T) shell.Config {
	t.Helper()
	root := t.TempDir()
	builds := filepath.Join(root, "builds")
	return shell.Config{
		BuildsDir:  builds,
		ProjectDir: filepath.Join(builds, "acme", "demo"),
		HomeDir:    filepath.Join(root, "home"),
		BaseEnv:    shell.SanitizedBaseEnv(os.Environ()),
	}
}

func open(t *testing.T, cfg shell.Config, vars gitlab.Variables) *shell.Session {
	t.Helper()
	s, err := shell.Open(cfg, vars)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// runScript runs commands as the script step and returns the result and
// the trace.
func runScript(t *testing.T, s *shell.Session, commands ...string) (shell.Result, string) {
	t.Helper()
	var trace bytes.Buffer
	r := s.Run(context.Background(), gitlab.Step{Name: gitlab.StepScript, Script: commands}, &trace)
	return r, trace.String()
}

// mustSucceed runs commands and fails the test unless they succeed.
func mustSucceed(t *testing.T, s *shell.Session, commands ...string) string {
	t.Helper()
	r, trace := runScript(t, s, commands...)
	if r.Outcome != shell.Succeeded {
		t.Fatalf("script %q: outcome %v (%v), want succeeded; trace:\n%s", commands, r.Outcome, r.Err, trace)
	}
	return trace
}

// envOf runs `env -0` in the job and returns its environment as a map.
func envOf(t *testing.T, s *shell.Session, cfg shell.Config) map[string]string {
	t.Helper()
	out := filepath.Join(cfg.BuildsDir, "env.out")
	mustSucceed(t, s, `env -0 > "`+out+`"`)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, kv := range strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00") {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	return env
}

var shells = []string{shell.Bash, shell.Sh}
