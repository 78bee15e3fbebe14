// Package mototest runs moto_server, the AWS-API-compatible server the tests
// of AWS control-plane calls (Lambda, ECR) run against: one server per test
// binary, started on first use on a free port of 127.0.0.1, and AWS
// configurations for it. Tests that need it fail, never skip, when it cannot
// start.
//
// The server binary is, in order: $MOTO_SERVER; .ci/venv/bin/moto_server in
// the repository (installed by .ci/install); moto_server on PATH.
//
// moto_server runs under pkg/serverproc: when the test binary exits in any
// way, the server is killed too.
package mototest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"gitlab-serverless-runner/pkg/dynamolocal"
	"gitlab-serverless-runner/pkg/serverproc"
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

	proc *serverproc.Process
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
func (s *Server) Stop() { s.proc.Stop() }

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

func start() (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	port, err := serverproc.FreePort()
	if err != nil {
		return nil, fmt.Errorf("find a free port: %w", err)
	}
	proc, err := serverproc.Start(serverproc.Options{Path: bin, Args: []string{"-H", "127.0.0.1", "-p", strconv.Itoa(port)}})
	if err != nil {
		return nil, err
	}
	s := &Server{Endpoint: "http://127.0.0.1:" + strconv.Itoa(port), proc: proc}
	if err := serverproc.WaitHTTP(context.Background(), s.Endpoint+"/moto-api/", time.Minute, proc.Done()); err != nil {
		proc.Stop()
		return nil, fmt.Errorf("%s: %w:\n%s", bin, err, proc.Tail())
	}
	return s, nil
}
