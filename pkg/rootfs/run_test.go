package rootfs_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"gitlab-serverless-runner/pkg/jobimage"
	"gitlab-serverless-runner/pkg/jobimage/registrytest"
	"gitlab-serverless-runner/pkg/rootfs"
)

// hostArch is the Lambda architecture whose test image runs here.
func hostArch(t *testing.T) (jobimage.Arch, string) {
	t.Helper()
	arch, err := jobimage.ParseArch(runtime.GOARCH)
	if err != nil {
		t.Fatalf("no Lambda architecture for %s: %v", runtime.GOARCH, err)
	}
	return arch, runtime.GOARCH
}

// testRoot unpacks the test image for this machine's architecture.
func testRoot(t *testing.T) string {
	t.Helper()
	_, arch := hostArch(t)
	root, err := unpack(t, registrytest.BusyboxImage(t, arch))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// run runs script with sh in root and returns its output.
func run(t *testing.T, c rootfs.Command, script string) (stdout, stderr string, err error) {
	t.Helper()
	var o, e bytes.Buffer
	c.Args = []string{"/bin/sh", "-c", script}
	c.Stdout, c.Stderr = &o, &e
	if c.Env == nil {
		c.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = rootfs.Run(ctx, c)
	return o.String(), e.String(), err
}

// The image a job names, derived into an executor image, pulled from the
// registry, unpacked and run as Lambda would: the Lambda user, read-only
// root, a writable /tmp and builds directory.
func TestRunDerivedImageAsTheLambdaUser(t *testing.T) {
	arch, _ := hostArch(t)
	reg := registrytest.New(t, registrytest.Options{})
	reg.PushIndex(t, "jobs/tool:1", registrytest.Index(t,
		registrytest.BusyboxImage(t, "amd64"), registrytest.BusyboxImage(t, "arm64")))
	ctx := context.Background()
	res, err := (&jobimage.Resolver{AllowPrivateRegistries: true}).Resolve(ctx, reg.Host+"/jobs/tool:1", arch, nil)
	if err != nil {
		t.Fatal(err)
	}
	derived, err := (&jobimage.Deriver{Target: reg.Repo("gsr/executors")}).Derive(ctx, res, []byte("#!/bin/sh\necho \"executor ok as $(id -u)\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(derived.Image)
	if err != nil {
		t.Fatal(err)
	}
	cache := &rootfs.Cache{Dir: filepath.Join(t.TempDir(), "cache")}
	root, err := cache.Unpack(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	builds := t.TempDir()
	script := `set -e
test "$(id -u)" = 993
test "$(id -g)" = 990
echo "var=$JOB_VAR"
greet world
` + jobimage.ExecutorPath + `
echo scratch > /tmp/x && cat /tmp/x
cd /tmp/builds/project && echo built > out.txt
cat /proc/1/cmdline | tr '\000' ' '; echo
ls /opt/old
test ! -e /etc/gone
echo x > /dev/null
head -c 4 /dev/zero | wc -c
if mkdir /usr/local/lib 2>/tmp/err; then echo "wrote /usr"; exit 1; fi
cat /tmp/err
`
	out, errOut, err := run(t, rootfs.Command{
		Root: root, Env: append(cf.Config.Env, "JOB_VAR=from the job"), Dir: "/tmp",
		Binds: []rootfs.Bind{{Source: builds, Target: "/tmp/builds/project"}},
	}, script)
	if err != nil {
		t.Fatalf("script failed: %v\nstdout:\n%s\nstderr:\n%s", err, out, errOut)
	}
	for _, want := range []string{
		"var=from the job\n", "hello from greet: world\n", "executor ok as 993\n", "scratch\n",
		"gsr-rootfs-init \n", "b\n", "4\n", "Read-only file system",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if b, err := os.ReadFile(filepath.Join(builds, "out.txt")); err != nil || string(b) != "built\n" {
		t.Errorf("builds/out.txt = %q, %v; want built", b, err)
	}
}

// What needs root, as `apt-get install` or `apk add` do, fails on the
// read-only root; so does taking root back.
func TestRunCannotWriteTheImage(t *testing.T) {
	root := testRoot(t)
	for name, script := range map[string]string{
		"install into /usr":   "mkdir -p /usr/lib/apt-like && echo pkg > /usr/bin/newtool",
		"overwrite /etc":      "echo hacked > /etc/passwd",
		"dpkg lock":           "touch /var/lib/dpkg/lock-frontend || mkdir -p /var/lib/dpkg",
		"remount rw":          "mount -o remount,rw /",
		"chmod a system file": "chmod 777 /bin/busybox",
		"write through /proc": "echo hacked > /proc/1/root/etc/passwd",
	} {
		t.Run(name, func(t *testing.T) {
			_, errOut, err := run(t, rootfs.Command{Root: root}, script)
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() == 0 {
				t.Fatalf("script succeeded or did not run: %v (stderr %q)", err, errOut)
			}
			if !strings.Contains(errOut, "Read-only file system") && !strings.Contains(errOut, "ermission denied") &&
				!strings.Contains(errOut, "not permitted") {
				t.Errorf("stderr %q; want EROFS, EACCES or EPERM", errOut)
			}
		})
	}
	if b, _ := os.ReadFile(filepath.Join(root, "etc/passwd")); strings.Contains(string(b), "hacked") {
		t.Error("/etc/passwd of the cached image was changed")
	}
	if _, err := os.Stat(filepath.Join(root, "usr/bin/newtool")); !os.IsNotExist(err) {
		t.Errorf("the cached image gained /usr/bin/newtool (err %v)", err)
	}
}

func TestRunSeesNothingOfTheHost(t *testing.T) {
	root := testRoot(t)
	hostDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(hostDir, "host-file"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, err := run(t, rootfs.Command{Root: root}, `
test ! -e `+hostDir+`/host-file && echo no-host-file
test ! -e `+root+` && echo no-cache-path
ls /proc | grep -c '^[0-9]'
ls /
`)
	if err != nil {
		t.Fatalf("%v: %s", err, errOut)
	}
	if !strings.Contains(out, "no-host-file\nno-cache-path\n") {
		t.Errorf("host paths visible:\n%s", out)
	}
	// Only the init, the shell and ls (and grep) are in the PID namespace.
	if lines := strings.Split(out, "\n"); len(lines) < 3 || lines[2] > "4" {
		t.Errorf("processes visible in /proc: %q; want only the command's", lines[2])
	}
}

func TestRunReportsExitStatusAndStartFailures(t *testing.T) {
	root := testRoot(t)
	_, _, err := run(t, rootfs.Command{Root: root}, "exit 7")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 7 {
		t.Errorf("exit 7 gave %v", err)
	}
	err = rootfs.Run(context.Background(), rootfs.Command{Root: root, Args: []string{"bash", "-c", "true"}, Env: []string{"PATH=/bin"}})
	if err == nil || !strings.Contains(err.Error(), "bash: command not found in the image") {
		t.Errorf("missing command gave %v", err)
	}
	_, _, err = run(t, rootfs.Command{Root: root, Binds: []rootfs.Bind{{Source: t.TempDir(), Target: "/nonexistent"}}}, "true")
	if err == nil || !strings.Contains(err.Error(), "does not exist in the image") {
		t.Errorf("missing bind target gave %v", err)
	}
	_, _, err = run(t, rootfs.Command{Root: root, Dir: "/nowhere"}, "true")
	if err == nil || !strings.Contains(err.Error(), "working directory /nowhere") {
		t.Errorf("missing working directory gave %v", err)
	}
}

// A command's leftover processes die with it; a cancelled context ends
// everything at once.
func TestRunEndsEveryProcess(t *testing.T) {
	root := testRoot(t)
	start := time.Now()
	_, _, err := run(t, rootfs.Command{Root: root}, "sleep 60 & echo started")
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("Run waited %v for a background process", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	err = rootfs.Run(ctx, rootfs.Command{Root: root, Args: []string{"/bin/sleep", "60"}})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("cancelled Run gave %v", err)
	}
}

// A stopped command gets SIGTERM, it and what it started in the
// background, and the grace to act on it; what ignores it is killed when
// the grace runs out.
func TestRunStopsGracefully(t *testing.T) {
	root := testRoot(t)
	for _, tt := range []struct {
		name, script, want string
	}{
		// The child says it started once its trap is set; the shell
		// waits for it when stopped, so the child's output is not lost
		// to the namespace's end.
		{"traps TERM", `trap 'echo shell got TERM; wait; exit 3' TERM; (trap 'echo child got TERM; exit 0' TERM; echo started; while :; do sleep 0.1; done) & wait`, "child got TERM\n"},
		{"ignores TERM", `trap '' TERM; echo started; while :; do sleep 0.1; done`, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pr, pw, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer pr.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() {
				done <- rootfs.Run(ctx, rootfs.Command{Root: root, Args: []string{"/bin/sh", "-c", tt.script},
					Env: []string{"PATH=/bin"}, Stdout: pw, Stderr: pw, KillGrace: 2 * time.Second})
				pw.Close()
			}()
			buf := make([]byte, 64)
			n, _ := pr.Read(buf)
			if !strings.HasPrefix(string(buf[:n]), "started") {
				t.Fatalf("first output %q, want started", buf[:n])
			}
			start := time.Now()
			cancel()
			var err2 error
			select {
			case err2 = <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("Run did not return after its context ended")
			}
			rest, _ := io.ReadAll(pr)
			if !errors.Is(err2, context.Canceled) {
				t.Errorf("Run = %v, want the context's error", err2)
			}
			if tt.want != "" && !strings.Contains(string(rest), tt.want) {
				t.Errorf("output after the stop %q lacks %q", rest, tt.want)
			}
			if tt.want == "" && time.Since(start) < time.Second {
				t.Errorf("a command ignoring SIGTERM was killed after %v, before its grace", time.Since(start))
			}
		})
	}
}
