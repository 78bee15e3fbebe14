package shell

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"gitlab-serverless-runner/pkg/gitlab"
)

// Values of CI_JOB_STATUS.
const (
	StatusRunning  = "running"
	StatusSuccess  = "success"
	StatusFailed   = "failed"
	StatusCanceled = "canceled"
	StatusTimedOut = "timedout"
)

// ErrTimedOut, given as the cause to a context.CancelCauseFunc, makes a
// stopped step report TimedOut rather than Canceled. A context that passes
// its deadline reports TimedOut without it.
var ErrTimedOut = errors.New("shell: job timed out")

// Outcome is how a step ended.
type Outcome int

const (
	// Succeeded: the script exited 0.
	Succeeded Outcome = iota
	// Failed: the script exited non-zero (Result.ExitCode); the job fails
	// with script_failure.
	Failed
	// Canceled: the context was canceled; the process group was stopped.
	Canceled
	// TimedOut: the context passed its deadline or was canceled with
	// ErrTimedOut; the process group was stopped.
	TimedOut
	// SystemFailure: the script could not be run (Result.Err says why).
	SystemFailure
)

// String returns the outcome's name.
func (o Outcome) String() string {
	switch o {
	case Succeeded:
		return "succeeded"
	case Failed:
		return "failed"
	case Canceled:
		return "canceled"
	case TimedOut:
		return "timed out"
	case SystemFailure:
		return "system failure"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// Result is the end of one step.
type Result struct {
	Outcome Outcome
	// ExitCode is the script's exit code when Failed (128+n when a signal
	// n ended the shell), 0 otherwise.
	ExitCode int
	// Err explains any outcome but Succeeded: the exit status, the
	// context's cause, or why the script could not run.
	Err error
}

// JobStatus is the CI_JOB_STATUS that after_script should see after a
// script step that ended with r.
func (r Result) JobStatus() string {
	switch r.Outcome {
	case Succeeded:
		return StatusSuccess
	case Canceled:
		return StatusCanceled
	case TimedOut:
		return StatusTimedOut
	}
	return StatusFailed
}

// Run runs one script step (`script`, which GitLab builds from
// before_script and script, or another such as `release`) in a new shell
// with CI_JOB_STATUS=running, writing its stdout and stderr to w. The step
// stops when ctx ends: the whole process group gets SIGTERM, then SIGKILL
// after the kill grace, and the result is TimedOut if ctx passed its
// deadline or its cause is ErrTimedOut, Canceled otherwise. The caller
// builds ctx from the job deadline and GitLab's cancellation; the step's
// own timeout field is not applied here. Background processes the step
// leaves in its process group are stopped the same way when it ends.
// after_script must go through RunAfterScript.
func (s *Session) Run(ctx context.Context, step gitlab.Step, w io.Writer) Result {
	return s.run(ctx, step.Name, step.Script, StatusRunning, w)
}

// RunAfterScript runs after_script in a shell of its own with
// CI_JOB_STATUS=status (StatusSuccess, StatusFailed, StatusCanceled or
// StatusTimedOut), bounded by the after-script timeout and by ctx, which
// should carry the job deadline but not the cancellation of the script.
// Its result is for the logs only and must never change the job's: on
// anything but success it writes a warning saying so to w.
func (s *Session) RunAfterScript(ctx context.Context, script []string, status string, w io.Writer) Result {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.AfterScriptTimeout)
	defer cancel()
	r := s.run(ctx, gitlab.StepAfterScript, script, status, w)
	var why string
	switch r.Outcome {
	case Succeeded:
		return r
	case Failed:
		why = fmt.Sprintf("exit code %d", r.ExitCode)
	case TimedOut:
		why = "timed out"
	case Canceled:
		why = "canceled"
	default:
		why = "could not run"
	}
	fmt.Fprintf(w, "%sWARNING: after_script failed, but job will continue unaffected: %s%s\n", ansiYellow, why, ansiReset)
	return r
}

func (s *Session) run(ctx context.Context, name string, commands []string, status string, w io.Writer) Result {
	if ctx.Err() != nil {
		return stopped(ctx)
	}
	s.runs++
	path := filepath.Join(s.tempDir, fmt.Sprintf("script-%d-%s.sh", s.runs, fileSafe(name)))
	if err := os.WriteFile(path, []byte(script(s.shellKind, commands, s.cfg.DebugTrace)), 0o600); err != nil {
		return Result{Outcome: SystemFailure, Err: fmt.Errorf("shell: write %s script: %w", name, err)}
	}
	defer os.Remove(path)

	args := []string{path}
	if s.shellKind == Bash {
		args = []string{"--noprofile", "--norc", path}
	}
	// One pipe for stdout and stderr keeps their order as the job wrote it.
	pr, pw, err := os.Pipe()
	if err != nil {
		return Result{Outcome: SystemFailure, Err: fmt.Errorf("shell: run %s: %w", name, err)}
	}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		drain(w, pr)
	}()
	c := Command{
		Path: s.shellPath, Args: args, Dir: s.cfg.ProjectDir, Output: pw,
		Env: append(withoutKey(s.env, "CI_JOB_STATUS"), "CI_JOB_STATUS="+status),
	}
	if ep := s.cfg.Entrypoint; len(ep) > 0 {
		bin := ep[0]
		if !strings.Contains(bin, "/") {
			if p := s.cfg.Launcher.LookPath(bin, lookupEnv(s.env, "PATH")); p != "" {
				bin = p
			}
		}
		argv := append([]string{s.shellPath}, args...)
		c.Path, c.Args = bin, append(append([]string(nil), ep[1:]...), argv...)
		quoted := make([]string, len(argv))
		for i, a := range argv {
			quoted[i] = quote(a)
		}
		c.Stdin = strings.NewReader("exec " + strings.Join(quoted, " ") + "\n")
	}
	runErr := s.cfg.Launcher.Run(ctx, c)
	pw.Close()
	// A process that left the group (setsid) may still hold the pipe: give
	// the output a grace period, then stop reading.
	t := time.NewTimer(s.cfg.KillGrace)
	select {
	case <-copied:
	case <-t.C:
	}
	t.Stop()
	pr.Close()
	<-copied

	if ctx.Err() != nil {
		return stopped(ctx)
	}
	return exitResult(name, runErr)
}

// drain copies r to w until r ends; after a write error it keeps reading
// and discards, so the job never blocks on a full pipe.
func drain(w io.Writer, r io.Reader) {
	buf := make([]byte, 32*1024)
	var werr error
	for {
		n, err := r.Read(buf)
		if n > 0 && werr == nil {
			_, werr = w.Write(buf[:n])
		}
		if err != nil {
			return
		}
	}
}

// stopped is the result of a step stopped because ctx ended.
func stopped(ctx context.Context) Result {
	cause := context.Cause(ctx)
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(cause, context.DeadlineExceeded) || errors.Is(cause, ErrTimedOut) {
		return Result{Outcome: TimedOut, Err: cause}
	}
	return Result{Outcome: Canceled, Err: cause}
}

func exitResult(name string, err error) Result {
	if err == nil {
		return Result{Outcome: Succeeded}
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code := exit.ExitCode()
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
		return Result{Outcome: Failed, ExitCode: code, Err: fmt.Errorf("shell: script exited with code %d", code)}
	}
	return Result{Outcome: SystemFailure, Err: fmt.Errorf("shell: run %s: %w", name, err)}
}

func withoutKey(env []string, key string) []string {
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); k != key {
			out = append(out, kv)
		}
	}
	return out
}

// fileSafe keeps letters, digits, '-' and '_' of a step name.
func fileSafe(name string) string {
	return strings.Map(func(r rune) rune {
		if r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, name)
}
