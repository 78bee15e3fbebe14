package shell

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"gitlab-serverless-runner/pkg/sandbox"
)

// A Launcher starts the shell of each step of a Session: on this machine
// (Direct, the default), or in another view of it that shows the job's
// directories at the same paths, such as a container image's root file
// system (local mode's image jobs, package localimage).
//
// A Session calls LookPath when it opens, to pick the shell, then Run once
// per step, one step at a time.
type Launcher interface {
	// LookPath returns the path of the executable file name in one of the
	// directories of path (a PATH value), as the step will see it, or ""
	// when there is none.
	LookPath(name, path string) string
	// Run runs c and waits for it. When ctx ends, Run stops c and every
	// process c started (SIGTERM, then SIGKILL after a grace period) and
	// returns once they are stopped; when c exits, what it left running is
	// stopped too. The error is nil for exit status 0, an *exec.ExitError
	// for another status, or another error saying why c could not run.
	Run(ctx context.Context, c Command) error
}

// Command is one step's shell, as a Launcher runs it.
type Command struct {
	// Path is the program, found by the Launcher's LookPath: the step's
	// shell, or the entrypoint that runs it (Config.Entrypoint); Args are
	// its arguments, the program name excluded.
	Path string
	Args []string
	// Env is the step's whole environment.
	Env []string
	// Dir is the working directory.
	Dir string
	// Stdin is the shell's standard input; nil means none (/dev/null).
	Stdin io.Reader
	// Output receives the shell's standard output and standard error, in
	// the order they were written.
	Output *os.File
}

// Direct runs steps on this machine, each in a process group of its own
// that is stopped with sandbox.StopGroup when the step's context ends and
// again when its shell exits, so background processes never outlive their
// step. Processes that leave the group (setsid) are the sandbox's clean-up
// to catch.
type Direct struct {
	// KillGrace is the time between SIGTERM and SIGKILL; zero means
	// DefaultKillGrace.
	KillGrace time.Duration
}

var _ Launcher = Direct{}

// LookPath searches path (not the executor's own PATH) on this machine.
func (Direct) LookPath(name, path string) string {
	for _, dir := range filepath.SplitList(path) {
		if dir == "" || !filepath.IsAbs(dir) {
			continue
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// Run implements Launcher.
func (d Direct) Run(ctx context.Context, c Command) error {
	grace := d.KillGrace
	if grace <= 0 {
		grace = DefaultKillGrace
	}
	cmd := exec.Command(c.Path, c.Args...)
	cmd.Dir, cmd.Env, cmd.Stdin = c.Dir, c.Env, c.Stdin
	cmd.Stdout, cmd.Stderr = c.Output, c.Output
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	pgid := cmd.Process.Pid
	var err error
	select {
	case err = <-waited:
	case <-ctx.Done():
		_ = sandbox.StopGroup(context.Background(), pgid, grace)
		err = <-waited
	}
	// What the step started in the background dies with it.
	_ = sandbox.StopGroup(context.Background(), pgid, grace)
	return err
}
