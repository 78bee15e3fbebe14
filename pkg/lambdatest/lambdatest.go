// Package lambdatest runs the project's Lambda functions for tests the way
// Lambda does: the function's main is built as a linux `bootstrap` binary
// (CGO_ENABLED=0, -tags lambda.norpc, -trimpath, as the Makefile builds it for
// SAM) and started under the Lambda Runtime Interface Emulator, which is
// invoked over HTTP. A missing emulator fails the test with a hint; it never
// skips.
//
// Start runs one emulator: one warm environment that serves invocation
// after invocation. Harness runs a function as Lambda keeps it, in as many
// execution environments as its invocations need, each isolated in its own
// namespaces, routed by tenant id and frozen between invocations; Intruder
// is a hostile job for the tests that must show a job cannot reach beyond
// its own environment.
package lambdatest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/logtest"
)

// RepoRoot returns the module root (the directory holding go.mod) above the
// working directory of the test.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("lambdatest: getwd: %v", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("lambdatest: no go.mod above the working directory")
		}
		dir = parent
	}
}

var (
	buildMu    sync.Mutex
	buildCache = map[string]string{}
)

// Build compiles the main package at pkg (a path relative to the module
// root, such as "./functions/executor") into a bootstrap binary for this
// machine's architecture and returns its path. Builds are cached for the
// life of the test binary.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := buildCache[pkg]; ok {
		return p
	}
	root := RepoRoot(t)
	dir, err := os.MkdirTemp("", "lambdatest-build-*")
	if err != nil {
		t.Fatalf("lambdatest: temp dir: %v", err)
	}
	out := filepath.Join(dir, "bootstrap")
	cmd := exec.Command("go", "build", "-tags", "lambda.norpc", "-trimpath", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("lambdatest: build %s: %v\n%s", pkg, err, b)
	}
	buildCache[pkg] = out
	return out
}

// EmulatorPath finds the aws-lambda-rie binary: $AWS_LAMBDA_RIE, then PATH,
// then $(go env GOPATH)/bin.
func EmulatorPath() (string, error) {
	if p := os.Getenv("AWS_LAMBDA_RIE"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("aws-lambda-rie"); err == nil {
		return p, nil
	}
	out, err := exec.Command("go", "env", "GOPATH").Output()
	if err == nil {
		p := filepath.Join(strings.TrimSpace(string(out)), "bin", "aws-lambda-rie")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("aws-lambda-rie not found: run `make deps` (it installs the Lambda Runtime Interface Emulator)")
}

// Function is one bootstrap running under the emulator. Invocations are
// serialised, as in one Lambda execution environment, which stays warm
// between them.
type Function struct {
	URL    string // the emulator's invoke endpoint
	cmd    *exec.Cmd
	logs   *logtest.Buffer
	mu     sync.Mutex
	exited chan struct{}
}

// Options configures Start.
type Options struct {
	// Env is added to the function's environment (as Lambda configuration
	// would set it). AWS_LAMBDA_FUNCTION_TIMEOUT sets the emulator's timeout.
	Env map[string]string
	// Dir is the working directory of the bootstrap; default a temp dir.
	Dir string
	// Logs receives the emulator's and the function's output as well.
	Logs io.Writer
}

// Start runs bootstrap under the emulator and returns when it accepts
// invocations. The emulator and everything it started stop at test clean-up.
func Start(t testing.TB, bootstrap string, opts Options) *Function {
	t.Helper()
	rie, err := EmulatorPath()
	if err != nil {
		t.Fatalf("lambdatest: %v", err)
	}
	invokeAddr := freeAddr(t)
	apiAddr := freeAddr(t)
	cmd := exec.Command(rie,
		"--runtime-interface-emulator-address", invokeAddr,
		"--runtime-api-address", apiAddr,
		bootstrap)
	cmd.Dir = opts.Dir
	if cmd.Dir == "" {
		cmd.Dir = t.TempDir()
	}
	env := os.Environ()
	for k, v := range opts.Env {
		env = append(env, k+"="+v)
	}
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	logs := &logtest.Buffer{}
	var out io.Writer = logs
	if opts.Logs != nil {
		out = io.MultiWriter(logs, opts.Logs)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("lambdatest: start emulator: %v", err)
	}
	f := &Function{URL: "http://" + invokeAddr + "/2015-03-31/functions/function/invocations", cmd: cmd, logs: logs, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(f.exited) }()
	t.Cleanup(f.stop)
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", invokeAddr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-f.exited:
			t.Fatalf("lambdatest: emulator exited at start:\n%s", logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("lambdatest: emulator did not listen on %s:\n%s", invokeAddr, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return f
}

// Invoke sends one invocation and returns the function's response payload.
// A function error (the handler returned an error, the process crashed or
// the function timed out) comes back as the payload with FunctionError set.
func (f *Function) Invoke(ctx context.Context, payload []byte) (Response, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.URL, bytes.NewReader(payload))
	if err != nil {
		return Response{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return Response{}, fmt.Errorf("lambdatest: invoke: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return Response{}, fmt.Errorf("lambdatest: read response: %w", err)
	}
	r := Response{StatusCode: resp.StatusCode, Payload: body}
	// A bootstrap that exits right after posting its response gets 502
	// with that response: the invocation answered, and its environment
	// ends (the emulator starts the bootstrap again for the next one).
	if resp.StatusCode == http.StatusBadGateway && json.Valid(body) && !bytes.Contains(body, []byte(`"errorType"`)) {
		r.RuntimeExited = true
		return r, nil
	}
	// The emulator answers a timeout with 200 and this text.
	if resp.StatusCode != http.StatusOK || bytes.Contains(body, []byte(`"errorType"`)) || bytes.HasPrefix(body, []byte("Task timed out after ")) {
		r.FunctionError = string(body)
	}
	return r, nil
}

// Logs returns everything the emulator and the function printed so far.
func (f *Function) Logs() string { return f.logs.String() }

// Response is the result of one invocation.
type Response struct {
	StatusCode    int
	Payload       []byte
	FunctionError string
	// RuntimeExited: the bootstrap ended its process right after posting
	// Payload (the emulator answers 502 then); the next invocation starts
	// it again.
	RuntimeExited bool
}

func (f *Function) stop() {
	if f.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-f.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-f.exited:
	case <-time.After(3 * time.Second):
		_ = syscall.Kill(-f.cmd.Process.Pid, syscall.SIGKILL)
		<-f.exited
	}
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("lambdatest: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}
