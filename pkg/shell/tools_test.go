package shell_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/shell"
)

func TestDebugTraceTracesCommands(t *testing.T) {
	for _, sh := range shells {
		t.Run(sh, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Shell = sh
			cfg.DebugTrace = true
			s := open(t, cfg, gitlab.Variables{{Key: "GREETING", Value: "hello"}})
			trace := mustSucceed(t, s, `echo "$GREETING world"`)
			if !strings.Contains(trace, "+ echo 'hello world'") && !strings.Contains(trace, "+ echo hello world") {
				t.Errorf("trace has no xtrace line for the command:\n%s", trace)
			}
			cfg2 := testConfig(t)
			cfg2.Shell = sh
			quiet := mustSucceed(t, open(t, cfg2, nil), `echo "plain"`)
			if strings.Contains(quiet, "+ echo") {
				t.Errorf("trace without DebugTrace has xtrace lines:\n%s", quiet)
			}
		})
	}
}

func TestToolsAreOfferedAtTheEndOfPATH(t *testing.T) {
	dir := t.TempDir()
	tool := filepath.Join(dir, "real-tool")
	if err := os.WriteFile(tool, []byte("#!/bin/sh\necho \"tool called as $(basename \"$0\") with $*\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.Tools = map[string]string{"release-cli": tool}
	s := open(t, cfg, nil)
	trace := mustSucceed(t, s, `release-cli create --name "a b"`, `echo "path=$PATH"`)
	if !strings.Contains(trace, "tool called as release-cli with create --name a b\n") {
		t.Errorf("the tool did not run under its command name:\n%s", trace)
	}
	env := envOf(t, s, cfg)
	if !strings.HasSuffix(env["PATH"], ":"+filepath.Join(cfg.ProjectDir+".tmp", "bin")) {
		t.Errorf("PATH = %q, want the tools directory last", env["PATH"])
	}

	// The job's own program of that name comes first.
	own := filepath.Join(dir, "own")
	if err := os.MkdirAll(own, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(own, "release-cli"), []byte("#!/bin/sh\necho own release-cli\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg2 := testConfig(t)
	cfg2.Tools = cfg.Tools
	s2 := open(t, cfg2, gitlab.Variables{{Key: "PATH", Value: own + ":$PATH"}})
	if trace := mustSucceed(t, s2, "release-cli"); !strings.Contains(trace, "own release-cli\n") {
		t.Errorf("the job's own program was not preferred:\n%s", trace)
	}

	bad := testConfig(t)
	bad.Tools = map[string]string{"../escape": tool}
	if _, err := shell.Open(bad, nil); err == nil {
		t.Errorf("Open with a tool name holding a slash: no error")
	}
}

func TestSessionVariablesAreTheJobsEnvironment(t *testing.T) {
	cfg := testConfig(t)
	s := open(t, cfg, gitlab.Variables{
		{Key: "APP", Value: "web"},
		{Key: "OUT", Value: "$CI_PROJECT_DIR/$APP/dist"},
		{Key: "CONF", Value: "x", File: true},
	})
	vs := s.Variables()
	if got, want := vs.Expand("$OUT"), cfg.ProjectDir+"/web/dist"; got != want {
		t.Errorf("$OUT = %q, want %q", got, want)
	}
	if got, want := vs.Get("CONF"), filepath.Join(cfg.ProjectDir+".tmp", "CONF"); got != want {
		t.Errorf("file variable = %q, want its path %q", got, want)
	}
	if vs.Get("PATH") == "" {
		t.Errorf("PATH missing from the session's variables")
	}
}
