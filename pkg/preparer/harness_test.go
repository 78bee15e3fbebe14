package preparer_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"gitlab-serverless-runner/pkg/awsclients"
	"gitlab-serverless-runner/pkg/dispatch"
	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
	"gitlab-serverless-runner/pkg/imagefn"
	"gitlab-serverless-runner/pkg/invoke/invoketest"
	"gitlab-serverless-runner/pkg/jobimage"
	"gitlab-serverless-runner/pkg/jobimage/registrytest"
	"gitlab-serverless-runner/pkg/mototest"
	"gitlab-serverless-runner/pkg/poller"
	"gitlab-serverless-runner/pkg/preparer"
	"gitlab-serverless-runner/pkg/rootfs"
	"gitlab-serverless-runner/pkg/runner"
	"gitlab-serverless-runner/pkg/seal"
	"gitlab-serverless-runner/pkg/store"
	"gitlab-serverless-runner/pkg/store/dynamotest"
)

func TestMain(m *testing.M) {
	rootfs.InitMain()
	code := dynamotest.Main(m)
	mototest.StopShared()
	os.Exit(code)
}

const (
	roleARN     = "arn:aws:iam::" + mototest.AccountID + ":role/gsr-executor"
	finisherARN = "arn:aws:lambda:" + mototest.Region + ":" + mototest.AccountID + ":function:gsr-finisher"
	// preparerFn is the preparation function's name as the poller knows it.
	preparerFn = "gsr-preparer"
)

// world is one test's deployment: a fake GitLab with a project and a
// runner, the store on DynamoDB Local, a poller that sends image jobs to
// the preparer, an in-process registry holding the test image (both
// architectures) and receiving derived images, Lambda on moto_server and
// the records of image functions.
type world struct {
	t        testing.TB
	gl       *gitlabtest.Server
	project  *gitlabtest.Project
	store    *store.Store
	runner   *runner.Runner
	reg      *registrytest.Registry
	lambda   *lambda.Client
	fnCfg    imagefn.Config
	polls    *invoketest.Recorder // what the poller invoked (the preparer)
	handed   *invoketest.Recorder // what the preparer invoked (image functions)
	glOpts   gitlab.Options
	exeDir   string
	image    string // the test image, both architectures
	amd64    string // an image for amd64 only
	poller   *poller.Poller
	bounds   preparer.Bounds
	executor map[jobimage.Arch][]byte
}

func newWorld(t testing.TB) *world {
	t.Helper()
	ctx := context.Background()
	db := dynamotest.Start(t)
	st, err := store.New(db.Client(), store.Config{Tables: store.Prefixed(dynamotest.Prefix(t))})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateTables(ctx); err != nil {
		t.Fatal(err)
	}
	moto := mototest.Start(t)
	moto.CreateRole(t, "gsr-executor")
	prefix := dynamotest.Prefix(t)
	w := &world{t: t, store: st, gl: gitlabtest.New(t), polls: &invoketest.Recorder{}, handed: &invoketest.Recorder{},
		reg: registrytest.New(t, registrytest.Options{}), lambda: awsclients.Lambda(moto.Config(), moto.Endpoint)}
	w.fnCfg = imagefn.Config{
		FunctionPrefix: strings.ToLower(strings.ReplaceAll(prefix, "_", "-"))[:20],
		RoleARN:        roleARN, FinisherARN: finisherARN,
		Environment:  map[string]string{"EXECUTOR_CLEANUP": "system"},
		Table:        prefix + "image-functions",
		PollInterval: 20 * time.Millisecond,
	}
	if err := imagefn.CreateTable(ctx, db.Client(), w.fnCfg.Table); err != nil {
		t.Fatal(err)
	}
	w.project = w.gl.CreateProject("group/app", map[string]string{"README.md": "hi\n"})
	w.glOpts = gitlab.Options{HTTPClient: w.gl.Client(), Sleep: func(ctx context.Context, _ time.Duration) error { return ctx.Err() }}

	bbAMD, bbARM := registrytest.BusyboxImage(t, "amd64"), registrytest.BusyboxImage(t, "arm64")
	w.reg.PushIndex(t, "library/busybox:1", registrytest.Index(t, bbAMD, bbARM))
	w.reg.Push(t, "library/amd64only:1", bbAMD)
	w.image, w.amd64 = w.reg.Host+"/library/busybox:1", w.reg.Host+"/library/amd64only:1"

	// Executor binaries for both architectures; their content only
	// matters to the tests that run them.
	w.exeDir = t.TempDir()
	w.executor = map[jobimage.Arch][]byte{}
	for _, a := range []jobimage.Arch{jobimage.ARM64, jobimage.X8664} {
		w.setExecutor(a, []byte("#!/bin/sh\necho executor for "+string(a)+"\n"))
	}

	sealer, err := seal.ParseKeys("1:" + seal.GenerateKey())
	if err != nil {
		t.Fatal(err)
	}
	gr := w.gl.CreateRunner(gitlabtest.RunnerOptions{Description: "image runner"})
	w.runner = &runner.Runner{
		ID: runner.NewID(), Owner: "alice", GitLabURL: w.gl.URL(), GitLabRunnerID: gr.ID,
		TokenExpiresAt: gr.TokenExpiresAt, Description: gr.Description, RunUntagged: true,
		Runtime: "provided.al2023", Concurrency: 4, SystemID: runner.NewSystemID(), CreationMode: runner.CreationToken,
	}
	if w.runner.SealedToken, err = sealer.Seal(seal.RunnerToken(w.runner.ID), gr.Token); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateRunner(ctx, w.runner); err != nil {
		t.Fatal(err)
	}
	w.poller, err = poller.New(poller.Deps{Runners: st, Jobs: st, Sealer: sealer, Invoker: w.polls},
		poller.Config{ExecutorFunctions: map[string]string{"provided.al2023": "gsr-executor"}, PreparerFunction: preparerFn, GitLab: w.glOpts})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// setExecutor makes bin the executor for arch.
func (w *world) setExecutor(arch jobimage.Arch, bin []byte) {
	w.t.Helper()
	dir := filepath.Join(w.exeDir, string(arch))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		w.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "executor"), bin, 0o755); err != nil {
		w.t.Fatal(err)
	}
	w.executor[arch] = bin
}

// preparer returns a preparation function's logic, as a new cold one
// would have it.
func (w *world) preparer() *preparer.Preparer {
	w.t.Helper()
	fns, err := imagefn.New(w.lambda, dynamotest.Start(w.t).Client(), w.fnCfg)
	if err != nil {
		w.t.Fatal(err)
	}
	p, err := preparer.New(preparer.Deps{
		Resolver:  &jobimage.Resolver{AllowPrivateRegistries: true},
		Deriver:   &jobimage.Deriver{Target: w.reg.Repo("gsr/executors")},
		Functions: fns, Executors: &preparer.ExecutorDir{Dir: w.exeDir},
		Invoker: w.handed, Jobs: w.store,
	}, preparer.Config{Bounds: w.bounds, GitLab: w.glOpts, KeepAlive: 50 * time.Millisecond})
	if err != nil {
		w.t.Fatal(err)
	}
	return p
}

// enqueue adds a job with image ref and the variables.
func (w *world) enqueue(ref string, vars ...gitlab.Variable) gitlabtest.Job {
	return w.gl.EnqueueJob(w.project, gitlabtest.JobSpec{Image: &gitlab.Image{Name: ref}, Variables: vars, Script: []string{"greet hi"}})
}

// take polls once and returns the preparation payloads the poller sent,
// one per job taken.
func (w *world) take() [][]byte {
	w.t.Helper()
	before := len(w.polls.Accepted())
	if _, err := w.poller.Poll(context.Background(), dispatch.Poll{RunnerID: w.runner.ID, Reason: dispatch.PollSchedule}); err != nil {
		w.t.Fatal(err)
	}
	var out [][]byte
	for _, c := range w.polls.Accepted()[before:] {
		if c.Function != preparerFn {
			w.t.Fatalf("the poller invoked %s, want the preparer", c.Function)
		}
		out = append(out, c.Payload)
	}
	return out
}

// handedEvents decodes what the preparer invoked, by job id.
func (w *world) handedEvents() map[int64]handed {
	w.t.Helper()
	out := map[int64]handed{}
	for _, c := range w.handed.Accepted() {
		ev, err := c.Event()
		if err != nil {
			w.t.Fatal(err)
		}
		out[ev.Job.ID] = handed{Function: c.Function, TenantID: c.Opts.TenantID, Keep: c.Opts.Keep, Event: ev}
	}
	return out
}

type handed struct {
	Function, TenantID string
	Keep               []string
	Event              dispatch.Event
}

// freeSlots counts the runner's free slots.
func (w *world) freeSlots() int {
	w.t.Helper()
	ctx := context.Background()
	var held []runner.Slot
	for {
		s, ok, err := w.store.AcquireSlot(ctx, w.runner.ID, w.runner.Concurrency, time.Minute)
		if err != nil {
			w.t.Fatal(err)
		}
		if !ok {
			break
		}
		held = append(held, s)
	}
	for _, s := range held {
		if err := w.store.ReleaseSlot(ctx, s); err != nil {
			w.t.Fatal(err)
		}
	}
	return len(held)
}

// functions lists the image functions on moto.
func (w *world) functions() []string {
	w.t.Helper()
	out, err := w.lambda.ListFunctions(context.Background(), &lambda.ListFunctionsInput{})
	if err != nil {
		w.t.Fatal(err)
	}
	var names []string
	for _, f := range out.Functions {
		if strings.HasPrefix(aws.ToString(f.FunctionName), w.fnCfg.FunctionPrefix) {
			names = append(names, aws.ToString(f.FunctionName))
		}
	}
	return names
}

type dispatchStep = dispatch.Step

// imageJob is a job on image ref for arch running script.
func imageJob(ref, arch string, script ...string) gitlabtest.JobSpec {
	return gitlabtest.JobSpec{Image: &gitlab.Image{Name: ref}, Script: script,
		Variables: []gitlab.Variable{{Key: "LAMBDA_ARCH", Value: arch}, {Key: "LAMBDA_MEMORY", Value: "3008"}}}
}
