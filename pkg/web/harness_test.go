package web_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"

	"gitlab-serverless-runner/pkg/auth"
	"gitlab-serverless-runner/pkg/auth/devoidc"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
	"gitlab-serverless-runner/pkg/invoke/invoketest"
	"gitlab-serverless-runner/pkg/logtest"
	"gitlab-serverless-runner/pkg/runner"
	"gitlab-serverless-runner/pkg/seal"
	"gitlab-serverless-runner/pkg/store"
	"gitlab-serverless-runner/pkg/store/dynamotest"
	"gitlab-serverless-runner/pkg/web"
)

func TestMain(m *testing.M) { os.Exit(dynamotest.Main(m)) }

// env is the app on a real HTTP server, with DynamoDB Local, the
// development OIDC provider and the fake GitLab.
type env struct {
	t        testing.TB
	cfg      web.Config
	app      *web.App
	srv      *httptest.Server
	gl       *gitlabtest.Server
	idp      *devoidc.Provider
	store    *store.Store
	sealer   *seal.Keyring
	sessions *auth.Sessions
	invoker  *invoketest.Recorder // given to the app when cfg.PollerFunction is set
	logs     *logtest.Buffer
	// secrets must never appear in a response body or a log line.
	mu      sync.Mutex
	secrets []string
	bodies  []string
}

// newEnv starts everything; tweak changes the configuration first.
func newEnv(t testing.TB, tweak func(*web.Config)) *env {
	t.Helper()
	e := &env{t: t, gl: gitlabtest.New(t), logs: &logtest.Buffer{}, invoker: &invoketest.Recorder{}}
	idp, err := devoidc.Start(devoidc.Options{User: devoidc.User{Subject: "42", Username: "ada", Name: "Ada"}})
	if err != nil {
		t.Fatalf("start OIDC provider: %v", err)
	}
	t.Cleanup(func() { idp.Close() })
	e.idp = idp

	var handler http.Handler = http.NotFoundHandler()
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) }))
	t.Cleanup(e.srv.Close)

	e.cfg = web.Config{
		BaseURL:            e.srv.URL,
		OIDCIssuer:         idp.Issuer(),
		OIDCClientID:       idp.ClientID(),
		OIDCClientSecret:   idp.ClientSecret(),
		GitLabURL:          e.gl.URL(),
		SessionKeys:        seal.GenerateKey(),
		MaxRunnersPerUser:  5,
		AllowHTTPGitLab:    true, // the fake GitLab and the provider are plain HTTP on 127.0.0.1
		AllowPrivateGitLab: true,
	}
	if tweak != nil {
		tweak(&e.cfg)
	}
	log := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	db := dynamotest.Start(t)
	e.store, err = store.New(db.Client(), store.Config{Tables: store.Prefixed(dynamotest.Prefix(t)), MaxRunnersPerUser: e.cfg.MaxRunnersPerUser})
	if err != nil {
		t.Fatalf("store.New: %v", err)
	}
	if err := e.store.CreateTables(context.Background()); err != nil {
		t.Fatalf("CreateTables: %v", err)
	}
	e.sealer, err = seal.ParseKeys(seal.GenerateKey())
	if err != nil {
		t.Fatal(err)
	}
	sessions, login, err := web.NewAuth(e.cfg, log)
	if err != nil {
		t.Fatalf("NewAuth: %v", err)
	}
	e.sessions = sessions
	deps := web.Deps{
		Users: e.store, Runners: e.store, Jobs: e.store, Sealer: e.sealer,
		Sessions: sessions, Login: login, Logger: log,
	}
	if e.cfg.PollerFunction != "" {
		deps.Invoker = e.invoker
	}
	e.app, err = web.New(e.cfg, deps)
	if err != nil {
		t.Fatalf("web.New: %v", err)
	}
	handler = e.app
	t.Cleanup(func() { e.checkNoSecrets() })
	return e
}

// secret records a value that must never leak.
func (e *env) secret(s string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.secrets = append(e.secrets, s)
	return s
}

func (e *env) checkNoSecrets() {
	e.mu.Lock()
	defer e.mu.Unlock()
	logs := e.logs.String()
	for _, s := range e.secrets {
		for i, b := range e.bodies {
			if strings.Contains(b, s) {
				e.t.Errorf("response body %d contains a secret token", i)
			}
		}
		if strings.Contains(logs, s) {
			e.t.Errorf("the logs contain a secret token")
		}
	}
}

// client is one browser: a cookie jar, no automatic redirects.
type client struct {
	e    *env
	http *http.Client
	csrf string
}

type response struct {
	status int
	body   string
	header http.Header
}

func (e *env) newClient() *client {
	jar, _ := cookiejar.New(nil)
	return &client{e: e, http: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

// signIn makes a browser signed in as the given user, with a session
// minted by the app's own Sessions (the full OIDC flow has its own test).
func (e *env) signIn(sub, username, oauthToken string) *client {
	e.t.Helper()
	id := auth.Identity{Sub: sub, Issuer: e.idp.Issuer(), Subject: sub, Username: username,
		OAuthToken: auth.Token{AccessToken: oauthToken}}
	if _, err := e.store.UpsertUser(context.Background(), sub, username); err != nil {
		e.t.Fatalf("UpsertUser: %v", err)
	}
	rec := httptest.NewRecorder()
	sess, err := e.sessions.Create(rec, id)
	if err != nil {
		e.t.Fatalf("create session: %v", err)
	}
	c := e.newClient()
	u, _ := url.Parse(e.srv.URL)
	c.http.Jar.SetCookies(u, rec.Result().Cookies())
	c.csrf = sess.CSRF
	return c
}

func (c *client) do(method, path string, form url.Values) response {
	c.e.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, c.e.srv.URL+path, body)
	if err != nil {
		c.e.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	c.e.mu.Lock()
	c.e.bodies = append(c.e.bodies, string(b))
	c.e.mu.Unlock()
	return response{status: resp.StatusCode, body: string(b), header: resp.Header}
}

func (c *client) get(path string) response { return c.do(http.MethodGet, path, nil) }

// submit posts a form with the CSRF token, and _method for PUT and DELETE.
func (c *client) submit(method, path string, form url.Values) response {
	if form == nil {
		form = url.Values{}
	}
	if form.Get("csrf") == "" {
		form.Set("csrf", c.csrf)
	}
	if method != http.MethodPost {
		form.Set("_method", method)
	}
	return c.do(http.MethodPost, path, form)
}

var runnerPathRE = regexp.MustCompile(`^/runners/([0-9a-f]{20})$`)

// created returns the id of the runner a create redirected to.
func created(t testing.TB, r response) string {
	t.Helper()
	if r.status != http.StatusSeeOther {
		t.Fatalf("create: status = %d, want 303; body:\n%s", r.status, r.body)
	}
	m := runnerPathRE.FindStringSubmatch(r.header.Get("Location"))
	if m == nil {
		t.Fatalf("create: Location = %q, want /runners/<id>", r.header.Get("Location"))
	}
	return m[1]
}

// tokenForm is a valid new-runner form for a glrt- token.
func (e *env) tokenForm(token string) url.Values {
	return url.Values{
		"mode": {"token"}, "gitlab_url": {e.gl.URL()}, "token": {token},
		"description": {"lambda runner"}, "run_untagged": {"1"},
		"runtime": {"provided.al2023"}, "concurrency": {"2"}, "long_poll": {"0"},
	}
}

// storedRunners returns the owner's runners in the store.
func (e *env) storedRunners(owner string) []*runner.Runner {
	e.t.Helper()
	rs, err := e.store.ListRunnersByOwner(context.Background(), owner)
	if err != nil {
		e.t.Fatalf("ListRunnersByOwner: %v", err)
	}
	return rs
}

// closedURL returns an http URL on 127.0.0.1 where nothing listens.
func closedURL(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}
