package main_test

import (
	"context"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/dispatch"
	"gitlab-serverless-runner/pkg/finisher"
	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
	"gitlab-serverless-runner/pkg/invoke"
	"gitlab-serverless-runner/pkg/lambdatest"
	"gitlab-serverless-runner/pkg/poller"
	"gitlab-serverless-runner/pkg/runner"
	"gitlab-serverless-runner/pkg/seal"
	"gitlab-serverless-runner/pkg/store"
	"gitlab-serverless-runner/pkg/store/dynamotest"
)

func TestMain(m *testing.M) { os.Exit(dynamotest.Main(m)) }

// deployment is the product wired as on Lambda: the poller invokes the
// real executor bootstrap in Lambda-like execution environments (one per
// tenant id, frozen between invocations), whose destination records reach
// the finisher, against the fake GitLab and DynamoDB Local.
type deployment struct {
	t       *testing.T
	gl      *gitlabtest.Server
	h       *lambdatest.Harness
	local   *invoke.Local
	st      *store.Store
	poller  *poller.Poller
	runner  *runner.Runner
	project *gitlabtest.Project

	mu sync.Mutex
	// records are the destination records the finisher received.
	records []invoke.Record
	// onRelease, when set, is called before the finisher frees a slot.
	onRelease func(runner.Slot)
}

// watchedJobs is the finisher's job store, telling the test when a slot
// is about to be freed.
type watchedJobs struct {
	*store.Store
	d *deployment
}

func (w watchedJobs) ReleaseSlot(ctx context.Context, s runner.Slot) error {
	w.d.mu.Lock()
	f := w.d.onRelease
	w.d.mu.Unlock()
	if f != nil {
		f(s)
	}
	return w.Store.ReleaseSlot(ctx, s)
}

func deploy(t *testing.T, concurrency int) *deployment {
	t.Helper()
	gl := gitlabtest.New(t)
	glURL, _ := url.Parse(gl.URL())
	h := lambdatest.NewHarness(t, lambdatest.HarnessOptions{
		Bootstrap:       lambdatest.Build(t, "./functions/executor"),
		Name:            "executor",
		TenantIsolation: true,
		Timeout:         120 * time.Second,
		Forward:         []string{glURL.Host},
		Env: map[string]string{
			"EXECUTOR_MARGIN_SECONDS":     "5",
			"EXECUTOR_KEEPALIVE_INTERVAL": "1s",
			"EXECUTOR_STATUS_INTERVAL":    "1s",
			"AWS_REGION":                  "eu-west-1",
			// The fake GitLab listens on loopback over http.
			"ALLOW_HTTP_GITLAB":    "true",
			"ALLOW_PRIVATE_GITLAB": "true",
		},
		EnvFor: func(dir string) map[string]string {
			return map[string]string{"EXECUTOR_BUILDS_DIR": filepath.Join(dir, "builds"), "EXECUTOR_HOME_DIR": filepath.Join(dir, "home")}
		},
	})
	db := dynamotest.Start(t)
	st, err := store.New(db.Client(), store.Config{Tables: store.Prefixed(dynamotest.Prefix(t))})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateTables(context.Background()); err != nil {
		t.Fatal(err)
	}
	sealer, _ := seal.ParseKeys("1:" + seal.GenerateKey())
	glOpts := gitlab.Options{HTTPClient: gl.Client()}
	d := &deployment{t: t, gl: gl, h: h, st: st, local: invoke.NewLocal(invoke.LocalConfig{})}
	h.Register(d.local, "executor", invoke.Destinations{OnSuccess: "finisher", OnFailure: "finisher"})
	fin := finisher.New(watchedJobs{Store: st, d: d}, finisher.Config{GitLab: glOpts})
	d.local.Register("finisher", func(ctx context.Context, payload []byte) ([]byte, error) {
		out, err := fin.Handle(ctx, payload)
		if err != nil {
			t.Errorf("finisher: %v", err)
		}
		var rec invoke.Record
		_ = json.Unmarshal(payload, &rec)
		d.mu.Lock()
		d.records = append(d.records, rec)
		d.mu.Unlock()
		return json.Marshal(out)
	}, invoke.FunctionConfig{})
	d.poller, err = poller.New(poller.Deps{Runners: st, Jobs: st, Sealer: sealer, Invoker: d.local},
		poller.Config{ExecutorFunctions: map[string]string{"provided.al2023": "executor"}, GitLab: glOpts})
	if err != nil {
		t.Fatal(err)
	}
	gr := gl.CreateRunner(gitlabtest.RunnerOptions{})
	d.runner = &runner.Runner{ID: runner.NewID(), Owner: "alice", GitLabURL: gl.URL(), GitLabRunnerID: gr.ID,
		Runtime: "provided.al2023", Concurrency: concurrency, RunUntagged: true, SystemID: runner.NewSystemID()}
	d.runner.SealedToken, _ = sealer.Seal(seal.RunnerToken(d.runner.ID), gr.Token)
	if err := st.CreateRunner(context.Background(), d.runner); err != nil {
		t.Fatal(err)
	}
	d.project = gl.CreateProject("group/demo", map[string]string{"README.md": "hi\n"})
	return d
}

// poll runs one poll of the runner; it must hand over want jobs.
func (d *deployment) poll(want int) {
	d.t.Helper()
	res, err := d.poller.Poll(context.Background(), dispatch.Poll{RunnerID: d.runner.ID})
	if err != nil || res.Jobs != want {
		d.t.Fatalf("Poll() = %+v, %v; want %d jobs handed over", res, err, want)
	}
}

// heldSlots is how many of the runner's slots are held.
func (d *deployment) heldSlots() int {
	ctx := context.Background()
	var got []runner.Slot
	for {
		s, ok, err := d.st.AcquireSlot(ctx, d.runner.ID, d.runner.Concurrency, time.Minute)
		if err != nil {
			d.t.Fatal(err)
		}
		if !ok {
			break
		}
		got = append(got, s)
	}
	for _, s := range got {
		_ = d.st.ReleaseSlot(ctx, s)
	}
	return d.runner.Concurrency - len(got)
}

// TestHarnessRunsThePipeline checks the wiring the adversarial tests
// build on: the poller invokes the executor through invoke.Local with the
// dispatch's tenant id, the executor's real bootstrap runs each job in an
// environment of that tenant, and its destination record reaches the
// finisher.
func TestHarnessRunsThePipeline(t *testing.T) {
	d := deploy(t, 1)
	for i, script := range []string{`cat README.md`, `echo "second job"`} {
		job := d.gl.EnqueueJob(d.project, gitlabtest.JobSpec{Script: []string{script}})
		if _, err := d.poller.Poll(context.Background(), dispatch.Poll{RunnerID: d.runner.ID}); err != nil {
			t.Fatalf("Poll: %v", err)
		}
		d.local.Wait()
		got := d.gl.Job(job.ID)
		if got.State != "success" {
			t.Fatalf("job %d = %s; trace:\n%s\nenvironments:\n%s", i+1, got.State, got.Trace, envLogs(d.h))
		}
		rec, err := d.st.GetJob(context.Background(), d.runner.ID, job.ID)
		if err != nil || rec.State != runner.JobSuccess {
			t.Errorf("job %d record = %+v, %v; want success", i+1, rec, err)
		}
	}
	invs := d.h.Invocations()
	d.mu.Lock()
	records := d.records
	d.mu.Unlock()
	if len(invs) != 2 || len(records) != 2 {
		t.Fatalf("%d invocations, %d finisher records; want 2 and 2", len(invs), len(records))
	}
	for i, inv := range invs {
		if inv.TenantID == "" || inv.Environment.TenantID != inv.TenantID {
			t.Errorf("invocation %d: tenant %q in %s of tenant %q", i+1, inv.TenantID, inv.Environment.ID, inv.Environment.TenantID)
		}
		if records[i].RequestContext.RequestID != inv.RequestID {
			t.Errorf("record %d is for request %s, invocation %s", i+1, records[i].RequestContext.RequestID, inv.RequestID)
		}
	}
	t.Logf("2 jobs: %d environments for %d tenant ids", len(d.h.Environments()), len(tenants(invs)))
}

func tenants(invs []*lambdatest.Invocation) map[string]bool {
	m := map[string]bool{}
	for _, inv := range invs {
		m[inv.TenantID] = true
	}
	return m
}

func envLogs(h *lambdatest.Harness) string {
	var b strings.Builder
	for _, e := range h.Environments() {
		b.WriteString("== " + e.ID + " (" + string(e.State()) + ")\n" + e.Logs())
	}
	return b.String()
}

// TestHostileJobCannotReachAnotherJobNorForgeItsOutcome is the attack of
// issue 10, end to end. A job finds the Runtime API by reading
// /proc/net/tcp (its environment does not name it), reads its own event
// again, posts a forged success as its invocation's response and waits on
// /next for whatever its environment receives next, while another job of
// the same runner, with a masked variable, runs. The hostile job
//  1. never receives the other job's event;
//  2. ends failed in GitLab with a trace line that says why: never
//     success, never left running;
//  3. frees no slot while GitLab still runs it.
func TestHostileJobCannotReachAnotherJobNorForgeItsOutcome(t *testing.T) {
	d := deploy(t, 2)
	report := filepath.Join(t.TempDir(), "intruder.jsonl")
	const secret = "victim-masked-value-4f1c"
	hostile := d.gl.EnqueueJob(d.project, gitlabtest.JobSpec{Name: "hostile",
		Script: []string{`"$INTRUDER" -report "$REPORT" -next 1 -next-timeout 90s`},
		Variables: []gitlab.Variable{
			{Key: "INTRUDER", Value: lambdatest.Intruder(t)}, {Key: "REPORT", Value: report},
		}})
	var victim gitlabtest.Job
	// A slot must never be freed while GitLab still runs the job that
	// holds it.
	var early []string
	d.onRelease = func(slot runner.Slot) {
		for _, j := range []gitlabtest.Job{hostile, victim} {
			rec, err := d.st.GetJob(context.Background(), d.runner.ID, j.ID)
			if err == nil && rec.SlotIndex == slot.Index && rec.DispatchedWith(slot.Token) {
				if state := d.gl.Job(j.ID).State; state == "running" || state == "pending" {
					early = append(early, "the slot of job "+j.Name+" was freed while GitLab had it "+state)
				}
			}
		}
	}

	// The hostile job runs, forges its result; its invocation ends and
	// its environment, where the intruder waits on /next, is frozen.
	d.poll(1)
	d.local.Wait()
	// The next job of the same runner, after the hostile one's
	// environment went idle: where Lambda would route it if tenants were
	// shared.
	victim = d.gl.EnqueueJob(d.project, gitlabtest.JobSpec{Name: "victim",
		Script:    []string{`echo "victim ran with ${#VICTIM_SECRET} bytes of secret"`},
		Variables: []gitlab.Variable{{Key: "VICTIM_SECRET", Value: secret, Masked: true}},
	})
	d.poll(1)
	d.local.Wait()

	// 1. The hostile job saw only its own invocation.
	steps, err := lambdatest.ReadIntruderSteps(report)
	if err != nil {
		t.Fatal(err)
	}
	var reread, forged bool
	for _, s := range steps {
		if strings.Contains(string(s.Event), secret) || strings.Contains(string(s.Event), `"victim"`) {
			t.Errorf("the hostile job received the victim's event: %+v", s)
		}
		if s.Step == "next" && s.RequestID != "" {
			t.Errorf("the hostile job's environment received another invocation: %+v", s)
		}
		reread = reread || s.Step == "reread" && s.Status == 200
		forged = forged || s.Step == "forge" && s.Status/100 == 2
	}
	if !reread || !forged {
		t.Fatalf("the attack did not run as written (reread %v, forged %v); the test proves nothing. steps: %+v", reread, forged, steps)
	}

	// 2. GitLab has the hostile job failed, with a line saying why.
	got := d.gl.Job(hostile.ID)
	if got.State != "failed" || got.FailureReason != gitlab.ReasonRunnerSystemFailure {
		t.Errorf("hostile job in GitLab = %s (%s), want failed (runner_system_failure)", got.State, got.FailureReason)
	}
	if !strings.Contains(string(got.Trace), "still showed this job running") {
		t.Errorf("hostile job's trace lacks the line that says why it failed:\n%s", got.Trace)
	}
	rec, err := d.st.GetJob(context.Background(), d.runner.ID, hostile.ID)
	if err != nil || rec.State != runner.JobFailed {
		t.Errorf("hostile job's record = %+v, %v; want failed", rec, err)
	}
	// The victim ran untouched, its secret masked.
	v := d.gl.Job(victim.ID)
	if v.State != "success" || !strings.Contains(string(v.Trace), "victim ran with 24 bytes of secret") || strings.Contains(string(v.Trace), secret) {
		t.Errorf("victim = %s; trace:\n%s", v.State, v.Trace)
	}

	// 3. No slot was freed early, and both are free now.
	for _, e := range early {
		t.Error(e)
	}
	if n := d.heldSlots(); n != 0 {
		t.Errorf("%d slots still held after both jobs ended", n)
	}
	// Each job had an environment, and a tenant, of its own.
	invs := d.h.Invocations()
	if len(invs) != 2 || invs[0].Environment == invs[1].Environment || invs[0].TenantID == invs[1].TenantID {
		t.Errorf("invocations %+v: want two, in two environments of two tenants", invs)
	}
}

// take enqueues a job and takes it as the poller would, returning its
// executor event (without dispatch data: these tests invoke directly).
func (d *deployment) take(script ...string) (dispatch.Event, gitlabtest.Job) {
	d.t.Helper()
	job := d.gl.EnqueueJob(d.project, gitlabtest.JobSpec{Script: script})
	c, err := gitlab.New(d.gl.URL(), gitlab.Options{HTTPClient: d.gl.Client()})
	if err != nil {
		d.t.Fatal(err)
	}
	gr := d.gl.Runners()[0]
	res, err := c.RequestJob(context.Background(), gitlab.JobRequest{Token: gr.Token, SystemID: d.runner.SystemID})
	if err != nil || res.Job == nil || res.Job.ID != job.ID {
		d.t.Fatalf("RequestJob() = %+v, %v; want job %d", res, err, job.ID)
	}
	return dispatch.Event{GitLabURL: d.gl.URL(), Job: res.Job}, job
}

// TestOneEnvironmentServesOneJob: whatever routes a second invocation into
// an environment that ran a job (one tenant id used twice, as sam local
// or a misconfigured caller could), the executor runs no second job
// there: it ends the environment without running it, and the invocation
// fails as a crash would, for the finisher to fail in GitLab.
func TestOneEnvironmentServesOneJob(t *testing.T) {
	d := deploy(t, 1)
	ctx := context.Background()
	first, firstJob := d.take("echo first job ran")
	payload, _ := first.Marshal()
	a, err := d.h.Invoke(ctx, "one-tenant", payload)
	if err != nil || a.Error != nil || d.gl.Job(firstJob.ID).State != "success" {
		t.Fatalf("first invocation: %+v, %v; job %s", a, err, d.gl.Job(firstJob.ID).State)
	}
	second, secondJob := d.take("echo second job ran")
	payload, _ = second.Marshal()
	b, err := d.h.Invoke(ctx, "one-tenant", payload)
	if err != nil {
		t.Fatal(err)
	}
	if b.Environment != a.Environment {
		t.Fatalf("the harness routed the second invocation to %s, not the first's %s: the test proves nothing", b.Environment.ID, a.Environment.ID)
	}
	if b.Error == nil || !b.RuntimeExited {
		t.Errorf("second invocation in a used environment = %s (error %+v, runtime exited %v); want it refused by the executor's exit", b.Payload, b.Error, b.RuntimeExited)
	}
	got := d.gl.Job(secondJob.ID)
	if strings.Contains(string(got.Trace), "second job ran") || got.State == "success" {
		t.Errorf("the second job ran in the used environment: %s\n%s", got.State, got.Trace)
	}
	if !strings.Contains(b.Environment.Logs(), "a second invocation reached an execution environment that already ran a job") {
		t.Errorf("the executor did not say why it ended the environment:\n%s", b.Environment.Logs())
	}
}

// TestWithoutTenantTheEnvironmentEndsAfterItsJob: an invocation without a
// tenant id (the emulator, sam local) can be followed by any other in the
// same environment, so the executor ends it once the job is reported; the
// next job starts in a new process.
func TestWithoutTenantTheEnvironmentEndsAfterItsJob(t *testing.T) {
	gl := gitlabtest.New(t)
	fn := lambdatest.Start(t, lambdatest.Build(t, "./functions/executor"), lambdatest.Options{Env: map[string]string{
		"EXECUTOR_BUILDS_DIR": filepath.Join(t.TempDir(), "builds"), "EXECUTOR_HOME_DIR": filepath.Join(t.TempDir(), "home"),
		"ALLOW_HTTP_GITLAB": "true", "ALLOW_PRIVATE_GITLAB": "true", "AWS_REGION": "eu-west-1",
	}})
	gr := gl.CreateRunner(gitlabtest.RunnerOptions{})
	project := gl.CreateProject("group/demo", map[string]string{"README.md": "hi\n"})
	c, _ := gitlab.New(gl.URL(), gitlab.Options{HTTPClient: gl.Client()})
	for i := range 2 {
		job := gl.EnqueueJob(project, gitlabtest.JobSpec{Script: []string{"echo job ran"}})
		res, err := c.RequestJob(context.Background(), gitlab.JobRequest{Token: gr.Token, SystemID: "s_0123456789ab"})
		if err != nil || res.Job == nil {
			t.Fatalf("RequestJob: %+v, %v", res, err)
		}
		payload, _ := dispatch.Event{GitLabURL: gl.URL(), Job: res.Job}.Marshal()
		resp, err := fn.Invoke(context.Background(), payload)
		if err != nil || resp.FunctionError != "" || !resp.RuntimeExited {
			t.Fatalf("job %d: response %s, function error %q, runtime exited %v, %v; want the result, then the process ended", i+1, resp.Payload, resp.FunctionError, resp.RuntimeExited, err)
		}
		if got := gl.Job(job.ID).State; got != "success" {
			t.Errorf("job %d = %s, want success", i+1, got)
		}
		if n := strings.Count(fn.Logs(), `"msg":"executor: ready"`); n != i+1 {
			t.Errorf("after job %d the executor started %d times, want %d (one process per job)", i+1, n, i+1)
		}
	}
}
