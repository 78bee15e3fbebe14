package localimage_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/jobimage/registrytest"
	"gitlab-serverless-runner/pkg/shell"
)

// sessionMaker opens a shell session whose steps run through one
// launcher.
type sessionMaker func(t *testing.T) (*shell.Session, shell.Config)

// onHost runs steps with shell.Direct.
func onHost(t *testing.T) (*shell.Session, shell.Config) {
	root := t.TempDir()
	cfg := shell.Config{
		BuildsDir: filepath.Join(root, "builds"), ProjectDir: filepath.Join(root, "builds", "g", "p"),
		HomeDir: filepath.Join(root, "home"), BaseEnv: shell.SanitizedBaseEnv(os.Environ()),
		KillGrace: 500 * time.Millisecond,
	}
	return openSession(t, cfg), cfg
}

// inImage runs steps in the test image, prepared as a job's.
func inImage(t *testing.T) (*shell.Session, shell.Config) {
	reg, _ := testRegistry(t, registrytest.Options{})
	im := newImages(t)
	im.KillGrace = 500 * time.Millisecond
	p, _, err := prepare(t, im, reg.Host+"/jobs/tool:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := shell.Config{
		BuildsDir: p.BuildsDir, ProjectDir: filepath.Join(p.BuildsDir, "g", "p"), HomeDir: p.HomeDir,
		BaseEnv: p.Env, Launcher: p.Launcher, KillGrace: 500 * time.Millisecond,
	}
	return openSession(t, cfg), cfg
}

func openSession(t *testing.T, cfg shell.Config) *shell.Session {
	t.Helper()
	s, err := shell.Open(cfg, gitlab.Variables{{Key: "GREETING", Value: "hello"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

var launchers = map[string]sessionMaker{"host": onHost, "image": inImage}

// The steps' contract holds whichever launcher runs them: exit codes,
// output in order, variables, and no process of a step outliving it,
// whether it ended on its own, was cancelled, or ignored SIGTERM.
func TestLaunchersKeepTheStepContract(t *testing.T) {
	for name, mk := range launchers {
		t.Run(name, func(t *testing.T) {
			t.Run("exit code and output", func(t *testing.T) {
				s, cfg := mk(t)
				var out bytes.Buffer
				r := s.Run(context.Background(), gitlab.Step{Name: "script", Script: []string{
					`echo "$GREETING to stdout"`, "echo to-stderr >&2", "pwd", "exit 7", "echo never"}}, &out)
				if r.Outcome != shell.Failed || r.ExitCode != 7 {
					t.Errorf("outcome %v exit %d (%v), want failed with 7", r.Outcome, r.ExitCode, r.Err)
				}
				want := "hello to stdout\n" + "\x1b[32;1m$ echo to-stderr >&2\x1b[0;m\nto-stderr\n" + "\x1b[32;1m$ pwd\x1b[0;m\n" + cfg.ProjectDir + "\n"
				if !strings.Contains(out.String(), want) || strings.Contains(out.String(), "never\n") {
					t.Errorf("output %q, want it to contain %q and stop at exit 7", out.String(), want)
				}
			})
			t.Run("background processes end with their step", func(t *testing.T) {
				s, _ := mk(t)
				tag := fmt.Sprint(100000 + rand.IntN(800000))
				var out bytes.Buffer
				r := s.Run(context.Background(), gitlab.Step{Name: "script", Script: []string{"sleep " + tag + " &", "echo started"}}, &out)
				if r.Outcome != shell.Succeeded {
					t.Fatalf("outcome %v (%v): %s", r.Outcome, r.Err, out.String())
				}
				if pids := processesWith(t, tag); len(pids) != 0 {
					t.Errorf("background sleep %s still runs as %v after its step", tag, pids)
				}
			})
			for _, ignore := range []bool{false, true} {
				t.Run(fmt.Sprintf("cancelled, ignoring SIGTERM %v", ignore), func(t *testing.T) {
					s, _ := mk(t)
					tag := fmt.Sprint(100000 + rand.IntN(800000))
					script := []string{"sleep " + tag + " &", "echo started", "sleep " + tag}
					if ignore {
						script = append([]string{"trap '' TERM"}, script...)
					}
					ctx, cancel := context.WithCancelCause(context.Background())
					defer cancel(nil)
					done := make(chan shell.Result, 1)
					go func() { done <- s.Run(ctx, gitlab.Step{Name: "script", Script: script}, &bytes.Buffer{}) }()
					deadline := time.Now().Add(30 * time.Second)
					for len(processesWith(t, tag)) < 2 {
						if time.Now().After(deadline) {
							t.Fatal("the step's two sleeps never started")
						}
						time.Sleep(20 * time.Millisecond)
					}
					stop := errors.New("canceled by GitLab")
					cancel(stop)
					var r shell.Result
					select {
					case r = <-done:
					case <-time.After(30 * time.Second):
						t.Fatal("the cancelled step did not end")
					}
					if r.Outcome != shell.Canceled || !errors.Is(r.Err, stop) {
						t.Errorf("outcome %v (%v), want canceled by its cause", r.Outcome, r.Err)
					}
					if pids := processesWith(t, tag); len(pids) != 0 {
						t.Errorf("processes %v of the cancelled step still run", pids)
					}
				})
			}
		})
	}
}
