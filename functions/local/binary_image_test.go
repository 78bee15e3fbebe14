package main_test

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"gitlab-serverless-runner/pkg/dynamolocal"
	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
	"gitlab-serverless-runner/pkg/jobimage/registrytest"
	"gitlab-serverless-runner/pkg/logtest"
)

// TestBinaryRunsImageJob builds the command as `make local` does and runs
// an image job from the test registry to success with it: the binary
// itself serves as the init of the job's steps (rootfs.InitMain in main).
func TestBinaryRunsImageJob(t *testing.T) {
	root, err := dynamolocal.RepoRoot("")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "local")
	build := exec.Command("go", "build", "-o", bin, "./functions/local")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	gl, proj, glRunner := newFakeGitLab(t)
	reg := registrytest.New(t, registrytest.Options{})
	reg.Push(t, "jobs/tool:1", registrytest.BusyboxImage(t, runtime.GOARCH))

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(bin)
	cmd.Dir = root
	cmd.Env = append(withoutEnv(os.Environ(), "LOCAL_DATA_DIR"),
		"LOCAL_ADDR="+addr, "LOCAL_DATA_DIR="+t.TempDir(), "LOCAL_OIDC_ADDR=127.0.0.1:0", "LOCAL_POLL_INTERVAL=250ms")
	var logs logtest.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start: %v", err)
	}
	exited := false
	defer func() {
		if !exited {
			cmd.Process.Signal(syscall.SIGINT)
			cmd.Wait()
		}
		if t.Failed() {
			t.Logf("the command's logs:\n%s", logs.String())
		}
	}()
	ctx := t.Context()
	waitHealthy(ctx, t, "http://"+addr+"/healthz")
	b := newBrowser(t, "http://"+addr)
	b.signIn()
	b.registerRunner(gl.URL(), glRunner.Token, "laptop")

	job := gl.EnqueueJob(proj, gitlabtest.JobSpec{
		Image:  &gitlab.Image{Name: reg.Host + "/jobs/tool:1"},
		Script: []string{"greet from-the-binary", `echo "uid=$(id -u)"`},
	})
	got, err := gl.WaitJob(ctx, job.ID)
	if err != nil {
		t.Fatalf("WaitJob: %v", err)
	}
	if got.State != "success" {
		t.Fatalf("job ended %s (%q), want success; trace:\n%s", got.State, got.FailureReason, got.Trace)
	}
	for _, want := range []string{"hello from greet: from-the-binary\n", "uid=993\n"} {
		if !strings.Contains(string(got.Trace), want) {
			t.Errorf("trace lacks %q:\n%s", want, got.Trace)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	exited = true
	if err := cmd.Wait(); err != nil {
		t.Errorf("after SIGINT the command ended with %v, want exit status 0", err)
	}
	gl.AssertNoViolations(t)
}
