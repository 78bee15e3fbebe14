package main_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	local "gitlab-serverless-runner/functions/local"
	"gitlab-serverless-runner/pkg/auth/devoidc"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
)

func newTestLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func TestSignInRegisterRunnerAndStop(t *testing.T) {
	gl, _, glRunner := newFakeGitLab(t)
	r := startSystem(t, nil)
	b := newBrowser(t, r.sys.URL())

	home := b.get("/")
	if !strings.Contains(home.body, "Development sign-in") {
		t.Errorf("home page has no development sign-in banner:\n%s", home.body)
	}
	if !strings.Contains(r.logs.String(), "DEVELOPMENT SIGN-IN") {
		t.Errorf("logs do not say the development sign-in is on:\n%s", r.logs.String())
	}
	b.signIn()
	id := b.registerRunner(gl.URL(), glRunner.Token, "my laptop runner")

	p := b.get("/runners/" + id)
	if !strings.Contains(p.body, "my laptop runner") {
		t.Errorf("GET /runners/%s does not show the description:\n%s", id, p.body)
	}
	if !strings.Contains(p.body, "Development sign-in") {
		t.Errorf("runner page has no development sign-in banner")
	}
	if got := b.get("/runners"); !strings.Contains(got.body, "/runners/"+id) {
		t.Errorf("GET /runners does not list runner %s:\n%s", id, got.body)
	}
	if strings.Contains(r.logs.String(), glRunner.Token) {
		t.Errorf("the runner token appears in the logs")
	}
	r.stop(t)
	if _, err := b.http.Get(r.sys.URL() + "/healthz"); err == nil {
		t.Errorf("the UI still answers after the system stopped")
	}
	gl.AssertNoViolations(t)
}

func TestDataSurvivesRestart(t *testing.T) {
	gl, proj, glRunner := newFakeGitLab(t)
	dir := t.TempDir()
	first := startSystem(t, env{"LOCAL_DATA_DIR": dir})
	b := newBrowser(t, first.sys.URL())
	b.signIn()
	id := b.registerRunner(gl.URL(), glRunner.Token, "kept across restarts")
	first.stop(t)

	for _, f := range []string{"session.key", "sealing.key", "dev-oidc.addr"} {
		info, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Errorf("data directory has no %s: %v", f, err)
			continue
		}
		if perm := info.Mode().Perm(); perm&0o077 != 0 {
			t.Errorf("%s has mode %v, want it readable by its owner only", f, perm)
		}
	}

	second := startSystem(t, env{"LOCAL_DATA_DIR": dir})
	b2 := b.at(second.sys.URL())
	// The session cookie from before the restart still opens, and the
	// runner registered then is still there.
	p := b2.get("/runners/" + id)
	if p.status != 200 || !strings.Contains(p.body, "kept across restarts") {
		t.Errorf("GET /runners/%s after restart with the old session: status %d, want 200 with the runner:\n%s", id, p.status, p.body)
	}
	// Signing in again is the same user: the runner is still theirs.
	fresh := newBrowser(t, second.sys.URL())
	fresh.signIn()
	if p := fresh.get("/runners"); !strings.Contains(p.body, "/runners/"+id) {
		t.Errorf("after signing in again the runner list lacks %s:\n%s", id, p.body)
	}
	// The runner token sealed before the restart still opens: the runner
	// takes and runs a job.
	job := gl.EnqueueJob(proj, gitlabtest.JobSpec{Script: []string{"echo after-restart"}})
	got, err := gl.WaitJob(t.Context(), job.ID)
	if err != nil {
		t.Fatalf("WaitJob: %v", err)
	}
	if got.State != "success" || !strings.Contains(string(got.Trace), "after-restart") {
		t.Errorf("job after restart ended %s, want success with its output; trace:\n%s", got.State, got.Trace)
	}
	gl.AssertNoViolations(t)
}

func TestConfigFromEnv(t *testing.T) {
	tests := []struct {
		name    string
		env     env
		wantErr string
		check   func(t *testing.T, c local.Config)
	}{
		{
			name: "defaults",
			env:  env{},
			check: func(t *testing.T, c local.Config) {
				if !c.DevSignIn {
					t.Errorf("DevSignIn = false with no OIDC_ISSUER, want true")
				}
				if !c.Web.AllowHTTPGitLab || !c.Web.AllowPrivateGitLab {
					t.Errorf("AllowHTTPGitLab, AllowPrivateGitLab = %v, %v; want both true by default in local mode",
						c.Web.AllowHTTPGitLab, c.Web.AllowPrivateGitLab)
				}
				if got, want := c.Web.GitLabURL, "https://gitlab.com"; got != want {
					t.Errorf("Web.GitLabURL = %q, want %q", got, want)
				}
				if c.Web.BaseURL != "" {
					t.Errorf("Web.BaseURL = %q, want it derived from the listen address", c.Web.BaseURL)
				}
			},
		},
		{
			name: "settings",
			env: env{"LOCAL_POLL_INTERVAL": "10s", "LOCAL_MAX_JOBS": "3", "LOCAL_DATA_DIR": "/data",
				"ALLOW_PRIVATE_GITLAB": "false", "BASE_URL": "http://127.0.0.1:9999"},
			check: func(t *testing.T, c local.Config) {
				if c.PollInterval != 10*time.Second || c.MaxJobs != 3 || c.DataDir != "/data" {
					t.Errorf("PollInterval, MaxJobs, DataDir = %v, %d, %q; want 10s, 3, /data", c.PollInterval, c.MaxJobs, c.DataDir)
				}
				if c.Web.AllowPrivateGitLab {
					t.Errorf("ALLOW_PRIVATE_GITLAB=false was not honoured")
				}
				if got, want := c.Web.BaseURL, "http://127.0.0.1:9999"; got != want {
					t.Errorf("Web.BaseURL = %q, want %q", got, want)
				}
			},
		},
		{
			name: "real GitLab sign-in",
			env:  env{"OIDC_ISSUER": "https://gitlab.example.com", "OIDC_CLIENT_ID": "id", "OIDC_CLIENT_SECRET": "s3cret"},
			check: func(t *testing.T, c local.Config) {
				if c.DevSignIn {
					t.Errorf("DevSignIn = true with OIDC_ISSUER set, want false")
				}
				if got, want := c.Web.GitLabURL, "https://gitlab.example.com"; got != want {
					t.Errorf("Web.GitLabURL = %q, want the issuer %q", got, want)
				}
			},
		},
		{name: "issuer without client", env: env{"OIDC_ISSUER": "https://gitlab.example.com"}, wantErr: "OIDC_CLIENT_ID"},
		{name: "bad poll interval", env: env{"LOCAL_POLL_INTERVAL": "often"}, wantErr: "LOCAL_POLL_INTERVAL"},
		{name: "zero poll interval", env: env{"LOCAL_POLL_INTERVAL": "0s"}, wantErr: "LOCAL_POLL_INTERVAL"},
		{name: "bad max jobs", env: env{"LOCAL_MAX_JOBS": "-1"}, wantErr: "LOCAL_MAX_JOBS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := local.ConfigFromEnv(tt.env.lookup)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ConfigFromEnv error = %v, want one naming %s", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "s3cret") {
					t.Errorf("error %q contains the client secret", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ConfigFromEnv: %v", err)
			}
			tt.check(t, c)
		})
	}
}

func TestStartRefuses(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	tests := []struct {
		name string
		env  env
		want string
	}{
		{"development sign-in beyond loopback", env{"LOCAL_ADDR": "0.0.0.0:0"}, "loopback"},
		{"address in use", env{"LOCAL_ADDR": busy.Addr().String()}, "LOCAL_ADDR"},
		{"DynamoDB Local missing", env{"DYNAMODB_LOCAL_JAR": "/nonexistent/DynamoDBLocal.jar"}, "DYNAMODB_LOCAL_JAR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vars := env{"LOCAL_ADDR": "127.0.0.1:0"}
			for k, v := range tt.env {
				vars[k] = v
			}
			cfg, err := local.ConfigFromEnv(vars.lookup)
			if err != nil {
				t.Fatalf("ConfigFromEnv: %v", err)
			}
			cfg.Logger = newTestLogger(io.Discard)
			sys, err := local.Start(context.Background(), cfg)
			if err == nil {
				t.Fatalf("Start succeeded at %s, want an error mentioning %q", sys.URL(), tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Start error = %q, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestMainRejectsArguments(t *testing.T) {
	err := local.Main(context.Background(), []string{"serve"}, env{}.lookup, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "environment") {
		t.Errorf("Main with an argument = %v, want an error pointing at the environment variables", err)
	}
}

// TestCacheStoreRefusesUnsignedRequests: the local stand-in for the cache
// bucket answers only URLs the poller signed, so a job reaches only its
// own runner's cache.
func TestCacheStoreRefusesUnsignedRequests(t *testing.T) {
	r := startSystem(t, nil)
	far := strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)
	tests := []struct {
		name   string
		method string
		query  string
	}{
		{"no signature", http.MethodGet, "key=runner/x/project/1/deps&method=GET&expires=" + far},
		{"forged signature", http.MethodGet, "key=runner/x/project/1/deps&method=GET&expires=" + far + "&signature=00"},
		{"forged put", http.MethodPut, "key=runner/x/project/1/deps&method=PUT&expires=" + far + "&signature=00"},
		{"escaping key", http.MethodGet, "key=../../session.key&method=GET&expires=" + far + "&signature=00"},
		{"method mismatch", http.MethodPut, "key=runner/x/project/1/deps&method=GET&expires=" + far + "&signature=00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, r.sys.URL()+"/_local/cache?"+tt.query, strings.NewReader("payload"))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got, want := resp.StatusCode, http.StatusForbidden; got != want {
				t.Errorf("%s /_local/cache?%s: status %d, want %d", tt.method, tt.query, got, want)
			}
		})
	}
}

// TestSignInWithConfiguredIssuer configures an OIDC issuer, as with a real
// GitLab: people sign in there, and no development banner shows.
func TestSignInWithConfiguredIssuer(t *testing.T) {
	idp, err := devoidc.Start(devoidc.Options{User: devoidc.User{Subject: "77", Username: "grace"}})
	if err != nil {
		t.Fatalf("start the stand-in GitLab OIDC provider: %v", err)
	}
	t.Cleanup(func() { idp.Close() })
	r := startSystem(t, env{
		"OIDC_ISSUER": idp.Issuer(), "OIDC_CLIENT_ID": idp.ClientID(), "OIDC_CLIENT_SECRET": idp.ClientSecret(),
	})
	b := newBrowser(t, r.sys.URL())
	if home := b.get("/"); strings.Contains(home.body, "Development sign-in") {
		t.Errorf("the development banner shows with an OIDC issuer configured")
	}
	b.signIn()
	if p := b.get("/runners"); !strings.Contains(p.body, "grace") {
		t.Errorf("GET /runners after sign-in does not show the issuer's user grace:\n%s", p.body)
	}
	if logs := r.logs.String(); strings.Contains(logs, "DEVELOPMENT SIGN-IN") {
		t.Errorf("logs announce the development sign-in with an OIDC issuer configured")
	}
	if strings.Contains(r.logs.String(), idp.ClientSecret()) {
		t.Errorf("the OIDC client secret appears in the logs")
	}
}
