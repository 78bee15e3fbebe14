package preparer_test

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
	"gitlab-serverless-runner/pkg/jobimage"
	"gitlab-serverless-runner/pkg/preparer"
	"gitlab-serverless-runner/pkg/runner"
)

// The first job on an image: the preparer resolves it for the job's
// architecture, derives and pushes the executor image, creates the image
// function (on moto) and invokes it with the job's event, its dispatch
// data and a tenant of its own. The job is still GitLab's to run: pending
// (two-phase), its slot held, its record running.
func TestPrepareANewImageAndHandTheJobOver(t *testing.T) {
	w := newWorld(t)
	job := w.enqueue(w.image, gitlab.Variable{Key: "LAMBDA_ARCH", Value: "x86_64"}, gitlab.Variable{Key: "LAMBDA_MEMORY", Value: "3008"},
		gitlab.Variable{Key: "LAMBDA_EPHEMERAL_STORAGE", Value: "2048"})
	payloads := w.take()
	if len(payloads) != 1 {
		t.Fatalf("%d preparations, want 1", len(payloads))
	}
	out, err := w.preparer().Handle(context.Background(), payloads[0])
	if err != nil || out.Failed {
		t.Fatalf("Handle = %+v, %v", out, err)
	}

	got := w.handedEvents()[job.ID]
	fn := got.Function
	if fn == "" || fn != out.Function || !strings.HasPrefix(fn, w.fnCfg.FunctionPrefix+"-img-") {
		t.Fatalf("handed to %q (outcome %q), want an image function", fn, out.Function)
	}
	if !regexp.MustCompile(`^job-[0-9a-f]{32}$`).MatchString(got.TenantID) || !slices.Contains(got.Keep, "dispatch") {
		t.Errorf("invoked with tenant %q, keep %q; want a tenant of its own and the dispatch kept", got.TenantID, got.Keep)
	}
	ev := got.Event
	d := ev.Dispatch
	if d.Function != fn || d.Runtime != preparer.RuntimeImage || d.MemoryMB != 3008 || d.RunnerID != w.runner.ID || d.SlotToken == "" || d.JobID != job.ID {
		t.Errorf("dispatch = %+v; want the image function, runtime image, 3008 MB and the poller's slot", d)
	}
	if !ev.TwoPhase || ev.Job.Token == "" {
		t.Error("the event lost its two-phase flag or job token: the executor accepts the job")
	}

	// What the preparation did, for the trace.
	im := ev.Image
	if im == nil {
		t.Fatal("the event carries no image report")
	}
	bbAMD, err := remote.Image(mustRef(t, w.reg.Host+"/library/busybox:1"), remote.WithPlatform(jobimage.X8664.Platform()))
	if err != nil {
		t.Fatal(err)
	}
	base, _ := bbAMD.Digest()
	if im.Ref != w.image || im.Digest != base.String() || im.Platform != "linux/amd64" || im.Arch != "x86_64" ||
		im.MemoryMB != 3008 || im.StorageMB != 2048 || !im.Prepared || im.Function != fn {
		t.Errorf("image report = %+v; want the amd64 manifest %s, x86_64, 3008/2048 MB, prepared, %s", im, base, fn)
	}
	if got, want := stepNames(im.Steps), []string{"resolve", "derive", "push", "function"}; !slices.Equal(got, want) {
		t.Errorf("steps = %q, want %q", got, want)
	}
	if !slices.Equal(im.Entrypoint, []string{"/bin/sh", "-c"}) || !slices.Contains(im.Env, "IMAGE_FLAVOUR=test") {
		t.Errorf("entrypoint, env = %q, %q; want the test image's", im.Entrypoint, im.Env)
	}

	// The function, as Lambda has it.
	gf, err := w.lambda.GetFunction(context.Background(), &lambda.GetFunctionInput{FunctionName: aws.String(fn)})
	if err != nil {
		t.Fatal(err)
	}
	c := gf.Configuration
	if c.PackageType != lambdatypes.PackageTypeImage || aws.ToString(gf.Code.ImageUri) != im.Executor ||
		aws.ToInt32(c.MemorySize) != 3008 || aws.ToInt32(c.EphemeralStorage.Size) != 2048 ||
		len(c.Architectures) != 1 || c.Architectures[0] != lambdatypes.ArchitectureX8664 || aws.ToString(c.Role) != roleARN {
		t.Errorf("function = package %s image %s memory %d storage %d archs %v role %s", c.PackageType, aws.ToString(gf.Code.ImageUri),
			aws.ToInt32(c.MemorySize), aws.ToInt32(c.EphemeralStorage.Size), c.Architectures, aws.ToString(c.Role))
	}
	// The derived image is in the target repository, with the x86_64
	// executor as its entrypoint.
	derived, err := remote.Image(mustRef(t, im.Executor))
	if err != nil {
		t.Fatalf("the derived image %s is not in the registry: %v", im.Executor, err)
	}
	cf, _ := derived.ConfigFile()
	if !slices.Equal(cf.Config.Entrypoint, []string{jobimage.ExecutorPath}) || cf.Config.Labels[jobimage.LabelBase] != base.String() {
		t.Errorf("derived config entrypoint %q, base label %q", cf.Config.Entrypoint, cf.Config.Labels[jobimage.LabelBase])
	}

	// Still GitLab's job to run: pending until the executor accepts it.
	if s := w.gl.Job(job.ID).State; s != "pending" {
		t.Errorf("job state in GitLab = %s, want pending (the executor accepts it)", s)
	}
	if rec, err := w.store.GetJob(context.Background(), w.runner.ID, job.ID); err != nil || rec.State != runner.JobRunning {
		t.Errorf("job record = %+v, %v; want running", rec, err)
	}
	if n := w.freeSlots(); n != w.runner.Concurrency-1 {
		t.Errorf("free slots = %d, want %d (the job holds one)", n, w.runner.Concurrency-1)
	}
}

// Two jobs on one new image, prepared at once by two preparation
// functions, make one function; a later job finds it ready and skips the
// derivation and the creation.
func TestTwoJobsPrepareOneImage(t *testing.T) {
	w := newWorld(t)
	j1, j2 := w.enqueue(w.image), w.enqueue(w.image)
	payloads := w.take()
	if len(payloads) != 2 {
		t.Fatalf("%d preparations, want 2", len(payloads))
	}
	var wg sync.WaitGroup
	for _, p := range payloads {
		prep := w.preparer()
		wg.Add(1)
		go func() {
			defer wg.Done()
			if out, err := prep.Handle(context.Background(), p); err != nil || out.Failed {
				t.Errorf("Handle = %+v, %v", out, err)
			}
		}()
	}
	wg.Wait()
	ev := w.handedEvents()
	if ev[j1.ID].Function == "" || ev[j1.ID].Function != ev[j2.ID].Function {
		t.Fatalf("jobs handed to %q and %q, want one function", ev[j1.ID].Function, ev[j2.ID].Function)
	}
	if fns := w.functions(); len(fns) != 1 {
		t.Errorf("functions on Lambda = %q, want 1", fns)
	}
	if ev[j1.ID].TenantID == ev[j2.ID].TenantID {
		t.Error("two dispatches share a tenant id")
	}

	j3 := w.enqueue(w.image)
	payloads = w.take()
	out, err := w.preparer().Handle(context.Background(), payloads[0])
	if err != nil || out.Failed {
		t.Fatalf("Handle = %+v, %v", out, err)
	}
	im := w.handedEvents()[j3.ID].Event.Image
	if im.Prepared || !slices.Equal(stepNames(im.Steps), []string{"resolve", "lookup"}) || im.Function != ev[j1.ID].Function {
		t.Errorf("third job: prepared %v, steps %q, function %s; want the ready function found", im.Prepared, stepNames(im.Steps), im.Function)
	}
	if fns := w.functions(); len(fns) != 1 {
		t.Errorf("functions on Lambda = %q, want still 1", fns)
	}
}

// A preparation that fails fails the job in GitLab with a line saying why
// and the right reason, records it failed and frees its slot; nothing is
// invoked.
func TestAFailedPreparationFailsTheJob(t *testing.T) {
	for _, tt := range []struct {
		name       string
		ref        func(*world) string
		vars       []gitlab.Variable
		bounds     preparer.Bounds
		reason     gitlab.FailureReason
		wantInLine string
		// knows adds image_pull_failure to the reasons the job's GitLab
		// accepts (current GitLab does not list it).
		knows bool
	}{
		{"no such image, on a GitLab that knows image_pull_failure", func(w *world) string { return w.reg.Host + "/library/nope:1" }, nil, preparer.Bounds{},
			gitlab.ReasonImagePullFailure, "The image cannot be pulled: image %REG%/library/nope:1: not found on %REG%", true},
		{"no such image", func(w *world) string { return w.reg.Host + "/library/nope:1" }, nil, preparer.Bounds{},
			gitlab.ReasonImagePullFailure, "The image cannot be pulled: image %REG%/library/nope:1: not found on %REG%: check the name and the tag or digest", false},
		{"no variant for the architecture", func(w *world) string { return w.amd64 }, []gitlab.Variable{{Key: "LAMBDA_ARCH", Value: "arm64"}}, preparer.Bounds{},
			gitlab.ReasonImagePullFailure, "no variant for linux/arm64 (Lambda architecture arm64); the image is for linux/amd64 only: choose another LAMBDA_ARCH or image", false},
		{"not a reference", func(*world) string { return "UPPER CASE:tag" }, nil, preparer.Bounds{},
			gitlab.ReasonImagePullFailure, "not a valid image reference", false},
		{"bad DOCKER_AUTH_CONFIG", func(w *world) string { return w.image }, []gitlab.Variable{{Key: "DOCKER_AUTH_CONFIG", Value: "{not json", Masked: true}}, preparer.Bounds{},
			gitlab.ReasonImagePullFailure, "DOCKER_AUTH_CONFIG is not a Docker config JSON object", false},
		{"memory over the bounds", func(w *world) string { return w.image }, []gitlab.Variable{{Key: "LAMBDA_MEMORY", Value: "8192"}}, preparer.Bounds{MaxMemory: 4096},
			gitlab.ReasonRunnerConfigurationError, `LAMBDA_MEMORY="8192" is not allowed on this runner: set it to a number of MB from 128 to 4096, or leave it unset for 2048`, false},
		{"architecture not allowed", func(w *world) string { return w.image }, []gitlab.Variable{{Key: "LAMBDA_ARCH", Value: "x86_64"}}, preparer.Bounds{Archs: []jobimage.Arch{jobimage.ARM64}},
			gitlab.ReasonRunnerConfigurationError, `LAMBDA_ARCH="x86_64" is not allowed on this runner: set it to arm64, or leave it unset for arm64`, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			w.bounds = tt.bounds
			spec := gitlabtest.JobSpec{Image: &gitlab.Image{Name: tt.ref(w)}, Variables: tt.vars, Script: []string{"true"}}
			if tt.knows {
				spec.Payload = func(j *gitlab.Job) {
					j.Features.FailureReasons = append(slices.Clone(j.Features.FailureReasons), string(gitlab.ReasonImagePullFailure))
				}
			}
			job := w.gl.EnqueueJob(w.project, spec)
			reasons := slices.Clone(gitlabtest.FailureReasons)
			if tt.knows {
				reasons = append(reasons, string(gitlab.ReasonImagePullFailure))
			}
			sent := tt.reason.For(reasons)
			out, err := w.preparer().Handle(context.Background(), w.take()[0])
			if err != nil {
				t.Fatal(err)
			}
			want := strings.ReplaceAll(tt.wantInLine, "%REG%", w.reg.Host)
			if !out.Failed || out.FailureReason != sent || !strings.Contains(out.Message, want) {
				t.Errorf("outcome = %+v; want failed with %s saying %q", out, sent, want)
			}
			g := w.gl.Job(job.ID)
			last := g.Updates[len(g.Updates)-1].Request
			if g.State != "failed" || last.State != "failed" || last.FailureReason != sent || !strings.Contains(string(g.Trace), "ERROR: ") || !strings.Contains(string(g.Trace), want) {
				t.Errorf("GitLab job = %s (sent %s %s), trace %q; want failed with %s and the line", g.State, last.State, last.FailureReason, g.Trace, sent)
			}
			if strings.Contains(string(g.Trace), "{not json") {
				t.Error("the trace quotes DOCKER_AUTH_CONFIG")
			}
			rec, err := w.store.GetJob(context.Background(), w.runner.ID, job.ID)
			if err != nil || rec.State != runner.JobFailed || rec.FailureReason != string(sent) {
				t.Errorf("job record = %+v, %v; want failed with %s", rec, err, sent)
			}
			if n := w.freeSlots(); n != w.runner.Concurrency {
				t.Errorf("free slots = %d, want all %d", n, w.runner.Concurrency)
			}
			if n := len(w.handed.Calls()); n != 0 {
				t.Errorf("%d invocations after a failed preparation", n)
			}
		})
	}
}

func stepNames(steps []dispatchStep) []string {
	var out []string
	for _, s := range steps {
		out = append(out, s.Name)
	}
	return out
}

func mustRef(t testing.TB, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// A job canceled in GitLab while it waits for its preparation is not
// prepared: it is closed as canceled and its slot freed.
func TestAJobCanceledBeforeItsPreparationIsNotPrepared(t *testing.T) {
	w := newWorld(t)
	job := w.enqueue(w.image)
	payload := w.take()[0]
	if err := w.gl.CancelJob(job.ID); err != nil {
		t.Fatal(err)
	}
	out, err := w.preparer().Handle(context.Background(), payload)
	if err != nil || !out.Aborted || out.Failed {
		t.Fatalf("Handle = %+v, %v; want aborted", out, err)
	}
	if n := len(w.handed.Calls()); n != 0 || len(w.functions()) != 0 {
		t.Errorf("%d invocations and functions %q for a canceled job", n, w.functions())
	}
	if rec, err := w.store.GetJob(context.Background(), w.runner.ID, job.ID); err != nil || rec.State != runner.JobCanceled {
		t.Errorf("job record = %+v, %v; want canceled", rec, err)
	}
	if n := w.freeSlots(); n != w.runner.Concurrency {
		t.Errorf("free slots = %d, want all %d", n, w.runner.Concurrency)
	}
}
