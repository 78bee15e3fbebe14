package executor_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/dispatch"
	"gitlab-serverless-runner/pkg/executor"
	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
	"gitlab-serverless-runner/pkg/lambdatest"
)

// allFeatures is what the poller advertises.
var allFeatures = gitlab.Features{
	Variables: true, Image: true, Services: true, Artifacts: true, Cache: true,
	FallbackCacheKeys: true, UploadMultipleArtifacts: true, UploadRawArtifacts: true,
	Refspecs: true, Masking: true, RawVariables: true, ArtifactsExclude: true,
	MultiBuildSteps: true, TraceReset: true, TraceChecksum: true, TraceSize: true,
	Cancelable: true, ReturnExitCode: true, CancelGracefully: true,
}

// env is one fake GitLab with a runner, and the executor that runs its
// jobs: in process (fn is nil) or the real bootstrap under the Lambda
// Runtime Interface Emulator (fn).
type env struct {
	t      testing.TB
	srv    *gitlabtest.Server
	runner gitlabtest.Runner
	client *gitlab.Client
	cfg    executor.Config
	fn     *lambdatest.Function
}

// envMaker makes a test's environment; the same test cases run with
// inProcess and with an emulator's env method.
type envMaker func(t testing.TB, opts ...gitlabtest.Option) *env

// inProcess runs jobs with an Executor in the test process.
var inProcess envMaker = newEnvTB

func newEnv(t *testing.T, opts ...gitlabtest.Option) *env { return newEnvTB(t, opts...) }

func newEnvTB(t testing.TB, opts ...gitlabtest.Option) *env {
	t.Helper()
	root := t.TempDir()
	return newEnvIn(t, filepath.Join(root, "builds"), filepath.Join(root, "home"), opts...)
}

// newEnvIn starts a fake GitLab (trace interval 1 s unless opts say
// otherwise) for an executor using buildsDir and homeDir.
func newEnvIn(t testing.TB, buildsDir, homeDir string, opts ...gitlabtest.Option) *env {
	t.Helper()
	opts = append([]gitlabtest.Option{gitlabtest.WithTraceUpdateInterval(1, 1)}, opts...)
	srv := gitlabtest.New(t, opts...)
	c, err := gitlab.New(srv.URL(), gitlab.Options{HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	return &env{
		t: t, srv: srv, client: c,
		runner: srv.CreateRunner(gitlabtest.RunnerOptions{Description: "lambda runner"}),
		cfg: executor.Config{
			Version:           "1.2.3",
			Revision:          testRevision,
			ReleaseCLI:        testBinary(t),
			Runtime:           "provided.al2023",
			BuildsDir:         buildsDir,
			HomeDir:           homeDir,
			ScratchDir:        t.TempDir(),
			TraceInterval:     200 * time.Millisecond,
			KeepAliveInterval: time.Second,
			DeadlineMargin:    time.Second,
			Logger:            slog.New(slog.NewTextHandler(io.Discard, nil)),
		},
	}
}

// take enqueues a job and picks it up as the poller would, returning the
// executor's event.
func (e *env) take(p *gitlabtest.Project, spec gitlabtest.JobSpec) dispatch.Event {
	e.t.Helper()
	job := e.srv.EnqueueJob(p, spec)
	res, err := e.client.RequestJob(context.Background(), gitlab.JobRequest{
		Token: e.runner.Token, SystemID: "s_executor0001", Info: gitlab.NewInfo("1.2.3", allFeatures),
	})
	if err != nil {
		e.t.Fatalf("request job: %v", err)
	}
	if res.Job == nil || res.Job.ID != job.ID {
		e.t.Fatalf("request job: got %+v, want job %d (state %s)", res.Job, job.ID, e.srv.Job(job.ID).State)
	}
	return dispatch.Event{
		GitLabURL: e.srv.URL(),
		Job:       res.Job,
		Runner:    dispatch.Runner{ID: e.runner.ID, Description: "lambda runner", ShortToken: gitlab.ShortToken(e.runner.Token)},
	}
}

func (e *env) executor() *executor.Executor {
	e.t.Helper()
	x, err := executor.New(e.cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return x
}

// run runs ev with a generous invocation deadline and waits for GitLab's
// final state.
func (e *env) run(ev dispatch.Event) (dispatch.Result, gitlabtest.Job) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return e.runCtx(ctx, ev)
}

func (e *env) runCtx(ctx context.Context, ev dispatch.Event) (dispatch.Result, gitlabtest.Job) {
	e.t.Helper()
	res := e.exec(ctx, ev)
	wctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got, err := e.srv.WaitJob(wctx, ev.Job.ID)
	if err != nil {
		e.t.Fatalf("job %d never reached a final state (result %+v): %v; trace:\n%s", ev.Job.ID, res, err, e.srv.Job(ev.Job.ID).Trace)
	}
	return res, got
}

// exec runs ev and returns the executor's Result: in process with ctx as
// the invocation's context, or as one invocation of the emulated function
// (whose deadline is the function's timeout; ctx bounds the request).
func (e *env) exec(ctx context.Context, ev dispatch.Event) dispatch.Result {
	e.t.Helper()
	if e.fn == nil {
		return e.executor().Run(ctx, ev)
	}
	b, err := json.Marshal(ev)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.invoke(ctx, b)
}

// start runs ev in the background; the channel delivers its Result.
func (e *env) start(ctx context.Context, ev dispatch.Event) <-chan dispatch.Result {
	done := make(chan dispatch.Result, 1)
	go func() { done <- e.exec(ctx, ev) }()
	return done
}

// invoke sends one raw event to the emulated function and decodes its
// Result. Test failures here use Errorf: invoke may run outside the test's
// goroutine.
func (e *env) invoke(ctx context.Context, raw []byte) dispatch.Result {
	resp, err := e.fn.Invoke(ctx, raw)
	if err != nil || resp.FunctionError != "" {
		e.t.Errorf("invoke: %v %s\nlogs:\n%s", err, resp.FunctionError, e.fn.Logs())
		return dispatch.Result{}
	}
	var res dispatch.Result
	if err := json.Unmarshal(resp.Payload, &res); err != nil {
		e.t.Errorf("decode result %s: %v", resp.Payload, err)
	}
	return res
}

// handle sends a raw event through the Lambda handler.
func (e *env) handle(raw any) dispatch.Result {
	e.t.Helper()
	b, ok := raw.([]byte)
	if !ok {
		var err error
		if b, err = json.Marshal(raw); err != nil {
			e.t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if e.fn != nil {
		return e.invoke(ctx, b)
	}
	res, err := e.executor().Handle(ctx, b)
	if err != nil {
		e.t.Fatalf("Handle() error = %v, want nil (results carry failures)", err)
	}
	return res
}

func project(e *env, files map[string]string) *gitlabtest.Project {
	if files == nil {
		files = map[string]string{"README.md": "hello\n"}
	}
	return e.srv.CreateProject("group/demo", files)
}

func wantContains(t *testing.T, trace []byte, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if !strings.Contains(string(trace), s) {
			t.Errorf("trace does not contain %q; trace:\n%s", s, trace)
		}
	}
}

func wantNotContains(t *testing.T, trace []byte, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if s != "" && strings.Contains(string(trace), s) {
			t.Errorf("trace contains %q, want it absent; trace:\n%s", s, trace)
		}
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func executorEvent(e *env, job *gitlab.Job, twoPhase bool) dispatch.Event {
	return dispatch.Event{
		GitLabURL: e.srv.URL(), Job: job, TwoPhase: twoPhase,
		Runner: dispatch.Runner{ID: e.runner.ID, Description: "lambda runner", ShortToken: gitlab.ShortToken(e.runner.Token)},
	}
}
