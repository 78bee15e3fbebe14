package main_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"gitlab-serverless-runner/pkg/dynamolocal"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
	"gitlab-serverless-runner/pkg/logtest"
	"gitlab-serverless-runner/pkg/samtemplate"
)

// inNetNS names the clean copy of the repository when this test binary
// runs again inside a network namespace of its own (see
// TestMakeLocalAsTheREADMESays).
const inNetNS = "GSR_TEST_MAKE_LOCAL_REPO"

// defaultURL is where the README says `make local` serves the UI.
const defaultURL = "http://127.0.0.1:8080"

// TestMakeLocalAsTheREADMESays runs `make local` exactly as the README
// says: in the repository's root, with no setting at all. It runs on a
// clean copy of the repository (what git tracks, and the untracked files
// it does not ignore, plus the tools .ci/install put in .ci), so that the
// developer's own .local is never touched. The first run signs in and is
// stopped with Ctrl-C; the second finds the .local the first left,
// signs in again through the development sign-in, registers a runner for
// the fake GitLab through the form, sets its job webhook from the runner's
// page, and runs a job to success, in a directory under the absolute
// .local.
//
// The default address, 127.0.0.1:8080, may be taken on the machine
// running the tests (another `make local`, another test). Rather than
// move `make local` elsewhere, which would no longer be the default, the
// test runs inside a user and network namespace of its own, whose
// loopback nobody else listens on: this binary runs itself again there,
// with the fake GitLab, the browser and `make local` all inside.
func TestMakeLocalAsTheREADMESays(t *testing.T) {
	if repo := os.Getenv(inNetNS); repo != "" {
		makeLocalInNetNS(t, repo)
		return
	}
	root, err := dynamolocal.RepoRoot("")
	if err != nil {
		t.Fatal(err)
	}
	repo := filepath.Join(t.TempDir(), "repo")
	if err := samtemplate.CleanCopy(root, repo); err != nil {
		t.Fatal(err)
	}
	// The installed tools, as in the repository (a checkout whose tools
	// are themselves links has them in the copy already).
	for _, tool := range []string{"node_modules", "venv"} {
		dst := filepath.Join(repo, ".ci", tool)
		if err := os.RemoveAll(dst); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join(root, ".ci", tool), dst); err != nil {
			t.Fatal(err)
		}
	}
	// The namespace has no network: every module the build needs must be
	// in the module cache before.
	download := exec.Command("go", "mod", "download")
	download.Dir = repo
	if out, err := download.CombinedOutput(); err != nil {
		t.Fatalf("go mod download: %v\n%s", err, out)
	}

	args := []string{"-test.run=^TestMakeLocalAsTheREADMESays$", "-test.v"}
	if d, ok := t.Deadline(); ok {
		args = append(args, "-test.timeout="+time.Until(d).Round(time.Second).String())
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), inNetNS+"="+repo)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:                 syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET,
		UidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
		GidMappingsEnableSetgroups: false,
		Pdeathsig:                  syscall.SIGKILL,
	}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("cannot run the test in a user and network namespace of its own (are unprivileged user namespaces enabled?): %v", err)
	}
	if err != nil {
		t.Fatalf("the test inside its network namespace failed (%v):\n%s", err, out)
	}
	if !strings.Contains(string(out), "--- PASS: TestMakeLocalAsTheREADMESays") {
		t.Fatalf("the test inside its network namespace did not pass:\n%s", out)
	}
	t.Logf("inside its network namespace:\n%s", out)
}

// makeLocalInNetNS is the test itself, inside the namespace.
func makeLocalInNetNS(t *testing.T, repo string) {
	if err := loopbackUp(); err != nil {
		t.Fatalf("bring up the loopback interface of the test's network namespace: %v", err)
	}
	env, err := defaultEnv(repo)
	if err != nil {
		t.Fatal(err)
	}
	gl, proj, glRunner := newFakeGitLab(t)
	data := filepath.Join(repo, ".local")

	first := startMakeLocal(t, repo, env)
	b := newBrowser(t, defaultURL)
	if home := b.get("/"); !strings.Contains(home.body, "Development sign-in") {
		t.Errorf("home page has no development sign-in banner:\n%s", home.body)
	}
	b.signIn()
	first.interrupt(t)
	for _, f := range []string{"session.key", "sealing.key", "dev-oidc.addr", "dynamodb", "jobs"} {
		if _, err := os.Stat(filepath.Join(data, f)); err != nil {
			t.Errorf("the first run left no .local/%s: %v", f, err)
		}
	}

	second := startMakeLocal(t, repo, env)
	b = newBrowser(t, defaultURL)
	b.signIn()
	id := b.registerRunner(gl.URL(), glRunner.Token, "make local runner")
	addWebhook(t, b, gl, defaultURL, id)
	job := gl.EnqueueJob(proj, gitlabtest.JobSpec{Script: []string{"cat README.md", "echo builds-in=$CI_BUILDS_DIR"}})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	got, err := gl.WaitJob(ctx, job.ID)
	if err != nil {
		t.Fatalf("WaitJob(%d): %v", job.ID, err)
	}
	if got.State != "success" {
		t.Fatalf("job ended %s (%q), want success; trace:\n%s", got.State, got.FailureReason, got.Trace)
	}
	for _, want := range []string{"hello from the repository", "builds-in=" + filepath.Join(data, "jobs")} {
		if !strings.Contains(string(got.Trace), want) {
			t.Errorf("trace lacks %q:\n%s", want, got.Trace)
		}
	}
	b.waitPage(ctx, "/runners/"+id, "#"+strconv.FormatInt(job.ID, 10), `class="badge success"`)
	second.interrupt(t)
	gl.AssertNoViolations(t)
}

// loopbackUp brings up the loopback interface, which a new network
// namespace starts with down.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// defaultEnv is this process's environment without any variable local
// mode reads, and without make's own (a `make test` around this test), so
// that `make local` runs with its defaults, as from a fresh terminal.
func defaultEnv(repo string) ([]string, error) {
	reads, err := samtemplate.EnvReads(repo, "./functions/local")
	if err != nil {
		return nil, err
	}
	drop := map[string]bool{"MAKEFLAGS": true, "MFLAGS": true, "MAKELEVEL": true, "MAKEOVERRIDES": true}
	for _, r := range reads {
		drop[r.Name] = true
	}
	if !drop["LOCAL_DATA_DIR"] || !drop["LOCAL_ADDR"] {
		return nil, errors.New("samtemplate.EnvReads does not list LOCAL_DATA_DIR and LOCAL_ADDR among local mode's variables")
	}
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !drop[name] && name != inNetNS {
			env = append(env, kv)
		}
	}
	return env, nil
}

// makeRun is one `make local` running in its own process group, as in a
// terminal.
type makeRun struct {
	cmd  *exec.Cmd
	logs *logtest.Buffer
	done chan struct{} // closed when its output ended
}

// startMakeLocal runs `make local` in repo and waits until the UI answers
// on the default address.
func startMakeLocal(t *testing.T, repo string, env []string) *makeRun {
	t.Helper()
	cmd := exec.Command("make", "local")
	cmd.Dir, cmd.Env = repo, env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	r := &makeRun{cmd: cmd, logs: &logtest.Buffer{}, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatalf("make local: %v", err)
	}
	go func() {
		defer close(r.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			r.logs.Write(append(sc.Bytes(), '\n'))
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // a run the test did not stop
		if t.Failed() {
			t.Logf("output of make local:\n%s", r.logs.String())
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute) // the first build of bin/local
	defer cancel()
	go func() {
		select {
		case <-r.done:
			cancel() // make ended before the UI answered
		case <-ctx.Done():
		}
	}()
	if err := waitUI(ctx); err != nil {
		t.Fatalf("make local: the UI never answered at %s (%v); output:\n%s", defaultURL, err, r.logs.String())
	}
	return r
}

// waitUI waits for the UI's health check at the default address.
func waitUI(ctx context.Context) error {
	c := &http.Client{Timeout: 2 * time.Second}
	for {
		resp, err := c.Get(defaultURL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// interrupt presses Ctrl-C: SIGINT to the whole process group, make and
// bin/local alike. Everything stops, DynamoDB Local included.
func (r *makeRun) interrupt(t *testing.T) {
	t.Helper()
	if err := syscall.Kill(-r.cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.done:
	case <-time.After(time.Minute):
		t.Fatalf("make local still runs a minute after Ctrl-C; output:\n%s", r.logs.String())
	}
	_ = r.cmd.Wait() // make reports the interrupt with its own status
	logs := r.logs.String()
	if !strings.Contains(logs, "msg=stopped") {
		t.Errorf("bin/local did not log its stop after Ctrl-C; output:\n%s", logs)
	}
	if m := javaPIDRE.FindStringSubmatch(logs); m == nil {
		t.Errorf("bin/local never logged DynamoDB Local's start; output:\n%s", logs)
	} else if pid, _ := strconv.Atoi(m[1]); processExists(pid) {
		t.Errorf("DynamoDB Local (pid %d) still runs after Ctrl-C", pid)
	}
	if err := waitUI(contextWithTimeout(t, time.Second)); err == nil {
		t.Errorf("%s still answers after Ctrl-C", defaultURL)
	}
}

func contextWithTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}
