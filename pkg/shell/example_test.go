package shell_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/shell"
)

func ExampleScript() {
	fmt.Print(shell.Script(shell.Sh, []string{"echo hi", "if true; then\n  echo multi\nfi"}))
	// Output:
	// if [ -f "$GITLAB_ENV" ]; then set -a; . "$GITLAB_ENV"; set +a; fi
	// set -e
	// printf '\033[32;1m%s\033[0;m\n' '$ echo hi'
	// echo hi
	// printf '\033[32;1m%s\033[0;m\n' '$ if true; then # collapsed multi-line command'
	// if true; then
	//   echo multi
	// fi
}

// BenchmarkRunStep measures the overhead of one step: writing the script,
// starting the shell in its own process group, streaming its output and
// checking that nothing is left in the group.
func BenchmarkRunStep(b *testing.B) {
	cfg := shell.Config{BuildsDir: b.TempDir() + "/builds"}
	cfg.ProjectDir = cfg.BuildsDir + "/project"
	cfg.HomeDir = b.TempDir()
	s, err := shell.Open(cfg, gitlab.Variables{{Key: "A", Value: "a"}})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	step := gitlab.Step{Name: gitlab.StepScript, Script: []string{"echo $A"}}
	var trace bytes.Buffer
	for b.Loop() {
		trace.Reset()
		if r := s.Run(context.Background(), step, &trace); r.Outcome != shell.Succeeded {
			b.Fatalf("outcome %v: %v", r.Outcome, r.Err)
		}
	}
}
