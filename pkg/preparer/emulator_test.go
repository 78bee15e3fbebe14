package preparer_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"gitlab-serverless-runner/pkg/dispatch"
	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/jobimage"
	"gitlab-serverless-runner/pkg/jobimage/registrytest"
	"gitlab-serverless-runner/pkg/lambdatest"
	"gitlab-serverless-runner/pkg/rootfs"
)

// useBuiltExecutor makes the executor, built for this machine, the one the
// preparer puts into images for this machine's Lambda architecture, so
// that the images it derives run here. It returns that architecture and
// the executor's bootstrap.
func (w *world) useBuiltExecutor(t testing.TB) (jobimage.Arch, string) {
	t.Helper()
	arch, err := jobimage.ParseArch(runtime.GOARCH)
	if err != nil {
		t.Fatalf("no Lambda architecture for %s: %v", runtime.GOARCH, err)
	}
	bootstrap := lambdatest.Build(t, "./functions/executor")
	exe, err := os.ReadFile(bootstrap)
	if err != nil {
		t.Fatal(err)
	}
	w.setExecutor(arch, exe)
	return arch, bootstrap
}

// imageFunction is an image function the preparer made, run as Lambda
// would run it: its image pulled from the registry by digest, unpacked,
// and its entrypoint (the executor) started under the Lambda Runtime
// Interface Emulator, inside the image's root as the Lambda user with a
// read-only root.
type imageFunction struct {
	fn   *lambdatest.Function
	root string
}

// startImageFunction starts the function name as Lambda would.
func (w *world) startImageFunction(t testing.TB, name string) *imageFunction {
	t.Helper()
	ctx := context.Background()
	gf, err := w.lambda.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(mustRef(t, aws.ToString(gf.Code.ImageUri)))
	if err != nil {
		t.Fatalf("pull %s: %v", aws.ToString(gf.Code.ImageUri), err)
	}
	cache := &rootfs.Cache{Dir: t.TempDir()}
	root, err := cache.Unpack(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != jobimage.ExecutorPath {
		t.Fatalf("image entrypoint %q, want the executor", cf.Config.Entrypoint)
	}
	env := map[string]string{
		"GSR_ROOTFS":    root,
		"GSR_IMAGE_ENV": strings.Join(cf.Config.Env, "\n"),
		// As Lambda sets them for a function.
		"AWS_LAMBDA_FUNCTION_NAME":        name,
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "3008",
		"AWS_LAMBDA_FUNCTION_TIMEOUT":     "120",
		"AWS_REGION":                      "eu-west-1",
		"AWS_ACCESS_KEY_ID":               "ASIAIMAGEFUNCTIONKEY1",
		"AWS_SECRET_ACCESS_KEY":           "image-function-secret-access-key",
		// The fake GitLab is on loopback, over http.
		"ALLOW_HTTP_GITLAB": "true", "ALLOW_PRIVATE_GITLAB": "true",
		"EXECUTOR_MARGIN_SECONDS": "5",
	}
	var pass []string
	for k, v := range gf.Configuration.Environment.Variables {
		env[k] = v
		pass = append(pass, k)
	}
	env["GSR_PASS"] = strings.Join(append(pass, "ALLOW_HTTP_GITLAB", "ALLOW_PRIVATE_GITLAB", "EXECUTOR_MARGIN_SECONDS"), ",")
	boot := lambdatest.Build(t, "./pkg/preparer/testdata/rootfsboot")
	return &imageFunction{fn: lambdatest.Start(t, boot, lambdatest.Options{Env: env}), root: root}
}

// run invokes the function with an event the preparer sent it and waits
// for the job's end in GitLab.
func (f *imageFunction) run(t testing.TB, w *world, h handed) (dispatch.Result, string) {
	t.Helper()
	payload, err := h.Event.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	resp, err := f.fn.Invoke(ctx, payload)
	if err != nil || resp.FunctionError != "" {
		t.Fatalf("invoke: %v %s\nlogs:\n%s", err, resp.FunctionError, f.fn.Logs())
	}
	var res dispatch.Result
	if err := json.Unmarshal(resp.Payload, &res); err != nil {
		t.Fatalf("result %s: %v", resp.Payload, err)
	}
	job, err := w.gl.WaitJob(ctx, h.Event.Job.ID)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(job.Trace)
}

// The whole path of a job with image:, on this machine: the poller hands
// it to the preparer, which derives the image with the real executor and
// makes its function (on moto); that function's image, pulled and
// unpacked, runs the job to success under the emulator as the Lambda user
// on a read-only root. A second job that installs system packages fails
// with the line that says why.
func TestAnImageJobRunsInItsDerivedImage(t *testing.T) {
	w := newWorld(t)
	arch, _ := w.useBuiltExecutor(t)

	job := w.gl.EnqueueJob(w.project, imageJob(w.image, string(arch),
		`greet from the image`, `id -u`, `echo "home=$HOME flavour=$IMAGE_FLAVOUR image=$CI_JOB_IMAGE"`,
		`if touch /etc/written 2>/dev/null; then echo root is writable; else echo root is read-only; fi`,
		`echo kept > "$CI_PROJECT_DIR/out.txt" && cat "$CI_PROJECT_DIR/out.txt"`))
	out, err := w.preparer().Handle(context.Background(), w.take()[0])
	if err != nil || out.Failed {
		t.Fatalf("Handle = %+v, %v", out, err)
	}
	h := w.handedEvents()[job.ID]
	f := w.startImageFunction(t, h.Function)
	res, trace := f.run(t, w, h)
	if res.State != "success" || !res.Reported || res.MemoryMB != 3008 {
		t.Fatalf("result = %+v; trace:\n%s\nlogs:\n%s", res, trace, f.fn.Logs())
	}
	for _, want := range []string{
		"prepare_image", "Preparing the image " + w.image + " for AWS Lambda", "resolve", "function",
		"hello from greet: from the image", "\n993\n", "home=/tmp/home flavour=test image=" + w.image,
		"root is read-only", "kept", "Job succeeded",
	} {
		if !strings.Contains(trace, want) {
			t.Errorf("trace lacks %q:\n%s", want, trace)
		}
	}
	if _, err := os.Stat(filepath.Join(f.root, "etc", "written")); err == nil {
		t.Error("the job wrote into the image's root")
	}

	// An image with apt-get: its package database is in the read-only root.
	bb := registrytest.BusyboxImage(t, runtime.GOARCH)
	ls, _ := bb.Layers()
	cf, _ := bb.ConfigFile()
	apt := registrytest.Layer(t,
		registrytest.Entry{Name: "var/", Type: '5'}, registrytest.Entry{Name: "var/lib/", Type: '5'},
		registrytest.Entry{Name: "var/lib/dpkg/", Type: '5'},
		registrytest.Entry{Name: "usr/bin/apt-get", Mode: 0o755, Body: []byte(aptGet)})
	w.reg.Push(t, "library/debianish:1", registrytest.Image(t, runtime.GOARCH, cf.Config, append(ls, apt)...))
	job = w.gl.EnqueueJob(w.project, imageJob(w.reg.Host+"/library/debianish:1", string(arch), `apt-get update`, `apt-get install -y curl`))
	if out, err := w.preparer().Handle(context.Background(), w.take()[0]); err != nil || out.Failed {
		t.Fatalf("Handle = %+v, %v", out, err)
	}
	h = w.handedEvents()[job.ID]
	f = w.startImageFunction(t, h.Function)
	res, trace = f.run(t, w, h)
	if res.State != "failed" || res.FailureReason != gitlab.ReasonScriptFailure {
		t.Fatalf("result = %+v; trace:\n%s", res, trace)
	}
	for _, want := range []string{"Read-only file system", "ERROR: This job needs root or a writable root file system",
		"only /tmp is writable, so apt-get install, apk add and other package managers cannot work", "Use an image that already has what the job installs"} {
		if !strings.Contains(trace, want) {
			t.Errorf("trace lacks %q:\n%s", want, trace)
		}
	}
}

// TestAnImageWithoutAShellIsRefused: a distroless image has no shell to
// run the job's scripts in; the job fails with a line that says so and
// what to use instead.
func TestAnImageWithoutAShellIsRefused(t *testing.T) {
	w := newWorld(t)
	arch, _ := w.useBuiltExecutor(t)
	tool := registrytest.Layer(t,
		registrytest.Entry{Name: "opt/", Type: '5'}, registrytest.Entry{Name: "opt/tools/", Type: '5'},
		registrytest.Entry{Name: "opt/tools/app", Mode: 0o755, Body: registrytest.Busybox(t)})
	w.reg.Push(t, "library/distroless:1", registrytest.Image(t, runtime.GOARCH, v1.Config{Env: []string{"PATH=/opt/tools"}}, tool))
	job := w.gl.EnqueueJob(w.project, imageJob(w.reg.Host+"/library/distroless:1", string(arch), `echo should not run`))
	if out, err := w.preparer().Handle(context.Background(), w.take()[0]); err != nil || out.Failed {
		t.Fatalf("Handle = %+v, %v", out, err)
	}
	h := w.handedEvents()[job.ID]
	f := w.startImageFunction(t, h.Function)
	res, trace := f.run(t, w, h)
	if res.State != "failed" || res.FailureReason != gitlab.ReasonScriptFailure {
		t.Fatalf("result = %+v; trace:\n%s\nlogs:\n%s", res, trace, f.fn.Logs())
	}
	for _, want := range []string{"has no shell", "Use an image with a shell"} {
		if !strings.Contains(trace, want) {
			t.Errorf("trace lacks %q:\n%s", want, trace)
		}
	}
	if strings.Contains(trace, "should not run\n") {
		t.Errorf("a script ran:\n%s", trace)
	}
}

// aptGet does what apt-get does first: it takes dpkg's lock, a file in
// the image's root, and says what apt says when it cannot.
const aptGet = `#!/bin/sh
if ! : > /var/lib/dpkg/lock-frontend; then
  echo "E: Unable to acquire the dpkg frontend lock (/var/lib/dpkg/lock-frontend), are you root?" >&2
  exit 100
fi
echo "apt-get $*: done"
`
