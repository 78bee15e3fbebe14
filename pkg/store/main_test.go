package store_test

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/runner"
	"gitlab-serverless-runner/pkg/store"
	"gitlab-serverless-runner/pkg/store/dynamotest"
)

func TestMain(m *testing.M) { os.Exit(dynamotest.Main(m)) }

// newStore returns a store on fresh tables of the shared DynamoDB Local.
func newStore(t testing.TB, cfg store.Config) *store.Store {
	t.Helper()
	return dynamotest.Store(t, cfg)
}

// clock is a time source tests move by hand.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

// newClock starts at the real time: DynamoDB Local deletes items whose TTL
// attribute is in the past, so a clock set in the past would lose them.
func newClock() *clock { return &clock{now: time.Now().UTC().Truncate(time.Second)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// newRunner returns a runner ready to create for owner.
func newRunner(owner, description string) *runner.Runner {
	return &runner.Runner{
		Owner:          owner,
		GitLabURL:      "https://gitlab.example.com",
		GitLabRunnerID: 42,
		SealedToken:    []byte{1, 1, 2, 3, 5, 8},
		Description:    description,
		Tags:           []string{"lambda", "arm64"},
		RunUntagged:    true,
		AccessLevel:    runner.AccessNotProtected,
		MaximumTimeout: 900,
		Runtime:        "provided.al2023",
		Concurrency:    2,
		CreationMode:   runner.CreationToken,
	}
}

func mustCreate(t testing.TB, s *store.Store, r *runner.Runner) *runner.Runner {
	t.Helper()
	if err := s.CreateRunner(context.Background(), r); err != nil {
		t.Fatalf("CreateRunner: %v", err)
	}
	return r
}

func wantCode(t testing.TB, what string, err error, code string) {
	t.Helper()
	if got := runner.ErrorCode(err); got != code {
		t.Errorf("%s: error code = %q (%v), want %q", what, got, err, code)
	}
}
