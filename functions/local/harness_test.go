package main_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	local "gitlab-serverless-runner/functions/local"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
	"gitlab-serverless-runner/pkg/logtest"
)

// env is an environment for ConfigFromEnv.
type env map[string]string

func (e env) lookup(k string) (string, bool) { v, ok := e[k]; return v, ok }

// running is a local system started by a test.
type running struct {
	sys    *local.System
	cancel context.CancelFunc
	logs   *logtest.Buffer
	done   bool
}

// startSystem starts the local system in process with the environment e
// (plus a free port and a short poll interval unless e says otherwise).
func startSystem(t *testing.T, e env) *running {
	t.Helper()
	vars := env{"LOCAL_ADDR": "127.0.0.1:0", "LOCAL_POLL_INTERVAL": "250ms"}
	for k, v := range e {
		vars[k] = v
	}
	cfg, err := local.ConfigFromEnv(vars.lookup)
	if err != nil {
		t.Fatalf("ConfigFromEnv: %v", err)
	}
	logs := &logtest.Buffer{}
	cfg.Logger = newTestLogger(logs)
	ctx, cancel := context.WithCancel(context.Background())
	sys, err := local.Start(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatalf("Start: %v", err)
	}
	r := &running{sys: sys, cancel: cancel, logs: logs}
	t.Cleanup(func() {
		r.stop(t)
		if t.Failed() {
			t.Logf("logs of the local system:\n%s", logs.String())
		}
	})
	return r
}

// stop cancels the system's context, as Ctrl-C does, and checks that it
// stops cleanly and that its DynamoDB Local is gone.
func (r *running) stop(t *testing.T) {
	t.Helper()
	if r.done {
		return
	}
	r.done = true
	pid := r.sys.DynamoDBPID()
	r.cancel()
	if err := r.sys.Wait(); err != nil {
		t.Errorf("Wait after cancel = %v, want nil", err)
	}
	if pid > 0 && processExists(pid) {
		t.Errorf("DynamoDB Local (pid %d) still runs after the system stopped", pid)
	}
}

// processExists reports whether pid runs (zombies count as gone).
func processExists(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}

// browser is a person using the UI: a cookie jar and the CSRF token of
// the last form seen.
type browser struct {
	t    *testing.T
	base string
	http *http.Client
}

func newBrowser(t *testing.T, base string) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, base: base, http: &http.Client{Jar: jar, Timeout: time.Minute}}
}

// at returns a browser with the same cookies for another base URL (the
// same system after a restart on another port).
func (b *browser) at(base string) *browser {
	c := *b
	c.base = base
	old, _ := url.Parse(b.base)
	nu, _ := url.Parse(base)
	c.http.Jar.SetCookies(nu, c.http.Jar.Cookies(old))
	return &c
}

type page struct {
	status int
	url    string
	body   string
}

func (b *browser) do(method, path string, form url.Values) page {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.base+path, body)
	if err != nil {
		b.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := b.http.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return page{status: resp.StatusCode, url: resp.Request.URL.String(), body: string(out)}
}

func (b *browser) get(path string) page { b.t.Helper(); return b.do(http.MethodGet, path, nil) }

// signIn clicks "Sign in with GitLab" and follows the development
// provider's redirects back to the app.
func (b *browser) signIn() {
	b.t.Helper()
	p := b.do(http.MethodPost, "/", url.Values{})
	if p.status != http.StatusOK {
		b.t.Fatalf("sign-in ended with status %d at %s:\n%s", p.status, p.url, p.body)
	}
	if got := b.get("/runners"); got.status != http.StatusOK || !strings.Contains(got.body, "Sign out") {
		b.t.Fatalf("GET /runners after sign-in: status %d, want 200 with a Sign out button:\n%s", got.status, got.body)
	}
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// registerRunner fills in the new-runner form with a glrt- token and
// returns the new runner's id (from the page it lands on).
func (b *browser) registerRunner(gitlabURL, token, description string) string {
	b.t.Helper()
	p := b.get("/runners/new")
	m := csrfRE.FindStringSubmatch(p.body)
	if p.status != http.StatusOK || m == nil {
		b.t.Fatalf("GET /runners/new: status %d, no CSRF token:\n%s", p.status, p.body)
	}
	p = b.do(http.MethodPost, "/runners", url.Values{
		"csrf": {m[1]}, "mode": {"token"}, "gitlab_url": {gitlabURL}, "token": {token},
		"description": {description}, "run_untagged": {"1"},
		"runtime": {"provided.al2023"}, "concurrency": {"2"}, "long_poll": {"0"},
	})
	id := strings.TrimPrefix(mustParse(b.t, p.url).Path, "/runners/")
	if p.status != http.StatusOK || id == "" || strings.Contains(id, "/") || id == "new" {
		b.t.Fatalf("POST /runners: status %d at %s, want the new runner's page:\n%s", p.status, p.url, p.body)
	}
	return id
}

func mustParse(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// waitPage reloads path until its body contains every one of want, as a
// person refreshing the page would; the test's timeout bounds it.
func (b *browser) waitPage(ctx context.Context, path string, want ...string) page {
	b.t.Helper()
	for {
		p := b.get(path)
		missing := ""
		for _, w := range want {
			if !strings.Contains(p.body, w) {
				missing = w
				break
			}
		}
		if missing == "" {
			return p
		}
		select {
		case <-ctx.Done():
			b.t.Fatalf("GET %s never showed %q; last page (status %d):\n%s", path, missing, p.status, p.body)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// newFakeGitLab starts the fake GitLab and a project with a runner.
func newFakeGitLab(t *testing.T) (*gitlabtest.Server, *gitlabtest.Project, gitlabtest.Runner) {
	t.Helper()
	gl := gitlabtest.New(t)
	proj := gl.CreateProject("group/demo", map[string]string{"README.md": "hello from the repository\n"})
	return gl, proj, gl.CreateRunner(gitlabtest.RunnerOptions{Description: "laptop"})
}
