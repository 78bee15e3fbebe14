package main_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/dynamolocal"
	"gitlab-serverless-runner/pkg/logtest"
)

// TestMakeLocal checks that `make local` installs what it needs, builds
// this command and runs it with a data directory, as the README says.
func TestMakeLocal(t *testing.T) {
	root, err := dynamolocal.RepoRoot("")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"default", nil, []string{".ci/install", "build -o bin/local ./functions/local", `LOCAL_DATA_DIR=".local" bin/local`}},
		{"in memory", []string{"LOCAL_DATA_DIR="}, []string{`LOCAL_DATA_DIR="" bin/local`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command("make", append([]string{"-n", "local"}, tt.args...)...)
			cmd.Dir = root
			cmd.Env = withoutEnv(os.Environ(), "LOCAL_DATA_DIR")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("make -n local: %v\n%s", err, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("make -n local does not run %q; it prints:\n%s", w, out)
				}
			}
		})
	}
}

func withoutEnv(env []string, name string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}

var javaPIDRE = regexp.MustCompile(`DynamoDB Local started.* pid=(\d+)`)

// TestBinaryStartsAndStopsOnSIGINT builds the command, runs it as `make
// local` does (from the repository root, with a data directory) on a free
// port, and stops it with SIGINT: it exits 0 and leaves no java behind.
func TestBinaryStartsAndStopsOnSIGINT(t *testing.T) {
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

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(bin)
	cmd.Dir = root
	cmd.Env = append(withoutEnv(os.Environ(), "LOCAL_DATA_DIR"),
		"LOCAL_ADDR="+addr, "LOCAL_DATA_DIR="+t.TempDir(), "LOCAL_OIDC_ADDR=127.0.0.1:0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start: %v", err)
	}
	defer cmd.Process.Kill()
	var logs logtest.Buffer
	pidc := make(chan int, 1)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			logs.Write(append(sc.Bytes(), '\n'))
			if m := javaPIDRE.FindStringSubmatch(sc.Text()); m != nil {
				pid, _ := strconv.Atoi(m[1])
				pidc <- pid
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()

	ctx := t.Context()
	javaPID := 0
	select {
	case javaPID = <-pidc:
	case <-ctx.Done():
		t.Fatalf("the command never logged DynamoDB Local's start:\n%s", logs.String())
	}
	waitHealthy(ctx, t, "http://"+addr+"/healthz")

	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	// Read the output to its end before Wait, which closes the pipe: the
	// last lines (the stop) would otherwise be lost.
	select {
	case <-readDone:
	case <-ctx.Done():
		t.Fatalf("the command's output never ended after SIGINT:\n%s", logs.String())
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("after SIGINT the command ended with %v, want exit status 0; logs:\n%s", err, logs.String())
	}
	if processExists(javaPID) {
		t.Errorf("DynamoDB Local (pid %d) still runs after the command exited", javaPID)
	}
	if !strings.Contains(logs.String(), "stopped") {
		t.Errorf("logs do not say the system stopped:\n%s", logs.String())
	}
}

// waitHealthy polls url until it answers 200 ok; the test's timeout bounds
// it.
func waitHealthy(ctx context.Context, t *testing.T, url string) {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		resp, err := client.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.TrimSpace(string(b)) == "ok" {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s never answered 200 ok (last error %v)", url, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
