package poller_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"gitlab-serverless-runner/pkg/dispatch"
	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
	"gitlab-serverless-runner/pkg/invoke"
	"gitlab-serverless-runner/pkg/invoke/invoketest"
	"gitlab-serverless-runner/pkg/poller"
	"gitlab-serverless-runner/pkg/runner"
	"gitlab-serverless-runner/pkg/seal"
	"gitlab-serverless-runner/pkg/store"
	"gitlab-serverless-runner/pkg/store/dynamotest"
)

func TestMain(m *testing.M) { os.Exit(dynamotest.Main(m)) }

// invocation is one accepted executor invocation, decoded.
type invocation struct {
	Function string
	Opts     invoke.Options
	Event    dispatch.Event
}

// executorCalls decodes the invocations rec accepted.
func executorCalls(t testing.TB, rec *invoketest.Recorder) []invocation {
	t.Helper()
	var out []invocation
	for _, c := range rec.Accepted() {
		ev, err := c.Event()
		if err != nil {
			t.Fatalf("executor payload: %v", err)
		}
		out = append(out, invocation{Function: c.Function, Opts: c.Opts, Event: ev})
	}
	return out
}

// fakePresigner makes URLs that name the key and the method.
type fakePresigner struct{}

func (fakePresigner) PresignGet(_ context.Context, key string, ttl time.Duration) (string, error) {
	return "https://cache.example/" + key + "?method=GET&ttl=" + fmt.Sprint(int(ttl.Seconds())), nil
}

func (fakePresigner) PresignPut(_ context.Context, key string, ttl time.Duration) (string, error) {
	return "https://cache.example/" + key + "?method=PUT&ttl=" + fmt.Sprint(int(ttl.Seconds())), nil
}

// env is one test's world: a fake GitLab, DynamoDB Local and a poller.
type env struct {
	t       testing.TB
	gl      *gitlabtest.Server
	project *gitlabtest.Project
	store   *store.Store
	sealer  *seal.Keyring
	inv     *invoketest.Recorder
	poller  *poller.Poller
	glOpts  gitlab.Options
}

func newEnv(t testing.TB, opts ...gitlabtest.Option) *env {
	t.Helper()
	return newEnvWithClient(t, dynamotest.Start(t).Client(), opts...)
}

// newEnvWithClient is newEnv with a given DynamoDB client.
func newEnvWithClient(t testing.TB, db *dynamodb.Client, opts ...gitlabtest.Option) *env {
	t.Helper()
	st, err := store.New(db, store.Config{Tables: store.Prefixed(dynamotest.Prefix(t))})
	if err != nil {
		t.Fatalf("store.New: %v", err)
	}
	if err := st.CreateTables(context.Background()); err != nil {
		t.Fatalf("CreateTables: %v", err)
	}
	sealer, err := seal.ParseKeys("1:" + seal.GenerateKey())
	if err != nil {
		t.Fatalf("seal.ParseKeys: %v", err)
	}
	gl := gitlabtest.New(t, opts...)
	e := &env{
		t: t, gl: gl, store: st, sealer: sealer, inv: &invoketest.Recorder{},
		project: gl.CreateProject("group/demo", map[string]string{"README.md": "hi\n"}),
		glOpts: gitlab.Options{
			HTTPClient: gl.Client(),
			Sleep:      func(ctx context.Context, _ time.Duration) error { return ctx.Err() },
		},
	}
	e.poller = e.newPoller(e.inv)
	return e
}

func (e *env) newPoller(inv invoke.Invoker) *poller.Poller {
	e.t.Helper()
	p, err := poller.New(poller.Deps{Runners: e.store, Jobs: e.store, Sealer: e.sealer, Invoker: inv, Cache: fakePresigner{}},
		poller.Config{
			ExecutorFunctions: map[string]string{"provided.al2023": "executor-provided", "python3.13": "executor-python"},
			Version:           "test",
			GitLab:            e.glOpts,
		})
	if err != nil {
		e.t.Fatalf("poller.New: %v", err)
	}
	return p
}

// addRunner registers a runner in the fake GitLab and stores it.
func (e *env) addRunner(concurrency int, change func(*runner.Runner)) (*runner.Runner, gitlabtest.Runner) {
	e.t.Helper()
	gr := e.gl.CreateRunner(gitlabtest.RunnerOptions{Description: "lambda runner"})
	r := &runner.Runner{
		ID: runner.NewID(), Owner: "alice", GitLabURL: e.gl.URL(), GitLabRunnerID: gr.ID,
		TokenExpiresAt: gr.TokenExpiresAt, Description: gr.Description, RunUntagged: true,
		Runtime: "provided.al2023", Concurrency: concurrency, SystemID: runner.NewSystemID(),
		CreationMode: runner.CreationToken,
	}
	sealed, err := e.sealer.Seal(seal.RunnerToken(r.ID), gr.Token)
	if err != nil {
		e.t.Fatalf("Seal: %v", err)
	}
	r.SealedToken = sealed
	if change != nil {
		change(r)
	}
	if err := e.store.CreateRunner(context.Background(), r); err != nil {
		e.t.Fatalf("CreateRunner: %v", err)
	}
	return r, gr
}

func (e *env) enqueue(spec gitlabtest.JobSpec) gitlabtest.Job {
	if spec.Script == nil {
		spec.Script = []string{"make test"}
	}
	return e.gl.EnqueueJob(e.project, spec)
}

func (e *env) poll(r *runner.Runner) poller.Result {
	e.t.Helper()
	res, err := e.poller.Poll(context.Background(), dispatch.Poll{RunnerID: r.ID, Reason: dispatch.PollSchedule})
	if err != nil {
		e.t.Fatalf("Poll() error = %v", err)
	}
	return res
}

// freeSlots counts the runner's free slots by taking them all (and
// giving them back).
func (e *env) freeSlots(r *runner.Runner) int {
	e.t.Helper()
	ctx := context.Background()
	var held []runner.Slot
	for {
		s, ok, err := e.store.AcquireSlot(ctx, r.ID, r.Concurrency, time.Minute)
		if err != nil {
			e.t.Fatalf("AcquireSlot: %v", err)
		}
		if !ok {
			break
		}
		held = append(held, s)
	}
	for _, s := range held {
		if err := e.store.ReleaseSlot(ctx, s); err != nil {
			e.t.Fatalf("ReleaseSlot: %v", err)
		}
	}
	return len(held)
}

func (e *env) runnerNow(id string) *runner.Runner {
	e.t.Helper()
	r, err := e.store.GetRunner(context.Background(), id)
	if err != nil {
		e.t.Fatalf("GetRunner: %v", err)
	}
	return r
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("gave up waiting for %s", what)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

var errThrottled = errors.New("TooManyRequestsException: rate exceeded")

func hasLine(trace []byte, s string) bool { return strings.Contains(string(trace), s) }
