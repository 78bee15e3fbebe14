// Package serverproc runs a local server program (DynamoDB Local's java,
// moto_server) as a child that never outlives the program that started it,
// and waits until it answers HTTP.
//
// The server runs under a small shell that watches its standard input, a
// pipe from this process. Stop closes the pipe; if this process dies in any
// way (even SIGKILL) the kernel closes it too, and the shell kills the
// server. The shell and the server share a process group of their own, so
// a terminal's Ctrl-C reaches this process only and shutdown stays ordered.
package serverproc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// stopGrace is how long Stop waits for the shell to end the server before
// it kills the whole process group.
const stopGrace = 10 * time.Second

// tailSize is how much of the server's output is kept for error messages.
const tailSize = 64 << 10

// Options says what to run.
type Options struct {
	// Path is the server's executable, Args its arguments.
	Path string
	Args []string
	// Dir is its working directory; empty means this process's.
	Dir string
	// Output receives its standard output and error, besides the last
	// 64 KiB kept for Tail.
	Output io.Writer
}

// Process is a running server.
type Process struct {
	pid      int // the server's, not the shell's
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	exited   chan struct{}
	stopOnce sync.Once
	tail     tailBuffer
}

// script starts the server in the background and reports its pid on fd 3.
// A watcher reads the shell's standard input (saved on fd 4, since
// background jobs get /dev/null) and kills the server when it closes. The
// shell kills the server on TERM, INT and HUP too, and exits when it exits.
const script = `"$0" "$@" 3>&- </dev/null & pid=$!
echo "$pid" >&3; exec 3>&-
exec 4<&0
(read -r _ <&4; kill $pid 2>/dev/null) & watcher=$!
exec 4<&-
trap 'kill $pid 2>/dev/null' TERM INT HUP
wait $pid; status=$?
wait $pid
kill $watcher 2>/dev/null
exit $status`

// Start starts the server and returns once its pid is known; WaitHTTP
// tells when it answers.
func Start(opts Options) (*Process, error) {
	p := &Process{exited: make(chan struct{})}
	cmd := exec.Command("/bin/sh", append([]string{"-c", script, opts.Path}, opts.Args...)...)
	cmd.Dir = opts.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out io.Writer = &p.tail
	if opts.Output != nil {
		out = io.MultiWriter(&p.tail, opts.Output)
	}
	cmd.Stdout, cmd.Stderr = out, out
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("open stdin: %w", err)
	}
	pidR, pidW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("open pid pipe: %w", err)
	}
	cmd.ExtraFiles = []*os.File{pidW}
	if err := cmd.Start(); err != nil {
		pidR.Close()
		pidW.Close()
		return nil, fmt.Errorf("start %s: %w", opts.Path, err)
	}
	pidW.Close()
	p.cmd, p.stdin = cmd, stdin
	go func() { _ = cmd.Wait(); close(p.exited) }()

	line, err := bufio.NewReader(pidR).ReadString('\n')
	pidR.Close()
	if err == nil {
		p.pid, err = strconv.Atoi(strings.TrimSpace(line))
	}
	if err != nil {
		p.Stop()
		return nil, fmt.Errorf("read the server's pid: %w\n%s", err, p.Tail())
	}
	return p, nil
}

// PID returns the server's process id (not its shell's).
func (p *Process) PID() int { return p.pid }

// Done is closed once the server has exited, whether through Stop or not.
func (p *Process) Done() <-chan struct{} { return p.exited }

// Tail returns the last 64 KiB of the server's output.
func (p *Process) Tail() string { return p.tail.String() }

// Stop stops the server and waits until it has exited. It is safe to call
// more than once and from several goroutines.
func (p *Process) Stop() {
	p.stopOnce.Do(func() {
		_ = p.stdin.Close() // the shell kills the server, waits for it and exits
		select {
		case <-p.exited:
		case <-time.After(stopGrace):
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.exited
		}
		// The server is the shell's child, so the shell's wait returned
		// after it died; one that ignored SIGTERM is handled by the group
		// kill.
		if p.pid > 0 && Alive(p.pid) {
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		}
	})
	<-p.exited
}

// WaitHTTP polls url until it answers HTTP with any status, ctx ends,
// timeout passes or exited (nil: never) is closed.
func WaitHTTP(ctx context.Context, url string, timeout time.Duration, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("build request: %w", err)
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-exited:
			return errors.New("the server exited before answering")
		case <-ctx.Done():
			return fmt.Errorf("wait for an answer from %s: %w", url, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// FreePort returns a port of 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Alive reports whether a process with pid exists and is not a zombie.
func Alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true // no /proc (not Linux): the signal check must do
	}
	// The state follows the parenthesised command name.
	if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2] != 'Z'
	}
	return true
}

// tailBuffer keeps the last tailSize bytes written.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - tailSize; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
