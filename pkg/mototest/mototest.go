// Package mototest runs moto_server, the AWS-API-compatible server the tests
// of AWS control-plane calls (Lambda, ECR) run against: one server per test
// binary, started on first use on a free port of 127.0.0.1, and AWS
// configurations for it. Tests that need it fail, never skip, when it cannot
// start.
//
// The server binary is, in order: $MOTO_SERVER; .ci/venv/bin/moto_server in
// the repository (installed by .ci/install); moto_server on PATH.
//
// moto_server runs under a small shell that watches its standard input, a
// pipe from the test binary: when the binary exits in any way, the pipe
// closes and the shell kills the server.
package mototest

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
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"gitlab-serverless-runner/pkg/dynamolocal"
)

// BinaryEnv names the variable that may point at the moto_server binary.
const BinaryEnv = "MOTO_SERVER"

// Region and AccountID are those of every resource the server makes
// (moto's default account).
const (
	Region    = "us-east-1"
	AccountID = "123456789012"
)

// Server is a running moto_server.
type Server struct {
	// Endpoint is the server's base URL, http://127.0.0.1:<port>.
	Endpoint string

	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan struct{}
	tail  *tailBuffer
}

var (
	once      sync.Once
	shared    *Server
	sharedErr error
)

// Start returns the test binary's shared server, starting it on first use.
// The test fails when the server cannot start.
func Start(t testing.TB) *Server {
	t.Helper()
	once.Do(func() { shared, sharedErr = start() })
	if sharedErr != nil {
		t.Fatalf("mototest: %v", sharedErr)
	}
	return shared
}

// Main runs a package's tests and stops the shared server afterwards: use
// it from TestMain as os.Exit(mototest.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	StopShared()
	return code
}

// StopShared stops the shared server if one was started; TestMain
// functions that cannot use Main (another package's Main runs the tests)
// call it after the tests.
func StopShared() {
	if shared != nil {
		shared.Stop()
	}
}

// Config returns an AWS configuration for the server: static test
// credentials, Region, and the server as the base endpoint of every
// service.
func (s *Server) Config() aws.Config {
	return aws.Config{
		Region:       Region,
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDMOTOTEST", "moto-secret", ""),
		BaseEndpoint: aws.String(s.Endpoint),
	}
}

// Stop stops the server and waits for it.
func (s *Server) Stop() {
	s.stdin.Close()
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
}

// Binary returns the moto_server to run, or an error saying how to install
// one.
func Binary() (string, error) {
	if p := os.Getenv(BinaryEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w", BinaryEnv, p, err)
		}
		return p, nil
	}
	if root, err := dynamolocal.RepoRoot(""); err == nil {
		p := filepath.Join(root, ".ci", "venv", "bin", "moto_server")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("moto_server"); err == nil {
		return p, nil
	}
	return "", errors.New("moto_server not found: run `make deps` (it installs moto into .ci/venv), or set " + BinaryEnv)
}

// watcher starts the server and kills it when its standard input closes
// (saved on fd 3, since background jobs get /dev/null as input).
const watcher = `exec 3<&0
"$0" "$@" </dev/null 3<&- & pid=$!
(read -r _ <&3; kill $pid 2>/dev/null) &
exec 3<&-
trap 'kill $pid 2>/dev/null' TERM INT HUP
wait $pid`

func start() (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("find a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command("/bin/sh", "-c", watcher, bin, "-H", "127.0.0.1", "-p", strconv.Itoa(port))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	tail := &tailBuffer{}
	cmd.Stdout, cmd.Stderr = tail, tail
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	s := &Server{Endpoint: "http://127.0.0.1:" + strconv.Itoa(port), cmd: cmd, stdin: stdin, done: make(chan struct{}), tail: tail}
	go func() { _ = cmd.Wait(); close(s.done) }()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.Endpoint+"/moto-api/", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			return s, nil
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("%s exited at start:\n%s", bin, tail.String())
		case <-ctx.Done():
			s.Stop()
			return nil, fmt.Errorf("%s did not answer within a minute:\n%s", bin, tail.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// tailBuffer keeps the last 16 KiB written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > 16<<10 {
		b.buf = b.buf[len(b.buf)-16<<10:]
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
