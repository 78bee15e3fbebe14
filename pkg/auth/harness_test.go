package auth_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/auth"
	"gitlab-serverless-runner/pkg/auth/devoidc"
	"gitlab-serverless-runner/pkg/seal"
)

// clock is a settable time source for sessions and login cookies.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// app is a tiny web app mounting package auth the way the real one does,
// served over real HTTP(S).
type app struct {
	t        *testing.T
	srv      *httptest.Server
	idp      *devoidc.Provider
	clock    *clock
	mu       sync.Mutex
	sessions *auth.Sessions
	login    *auth.Login
	// cookies records every Set-Cookie the app sent, latest last.
	cookies *cookieLog
}

type appOptions struct {
	insecure bool     // plain HTTP app with InsecureCookies
	keys     []string // session keys; default one fresh key
	login    func(*auth.LoginConfig)
	session  func(*auth.SessionConfig)
}

// me is what /me answers for a signed-in request.
type me struct {
	Sub, Issuer, Subject, Username, Name, Email, AvatarURL string
	AccessToken, RefreshToken                              string
	Expiry                                                 time.Time
	CSRF                                                   string
}

func startIDP(t *testing.T, opts devoidc.Options) *devoidc.Provider {
	t.Helper()
	idp, err := devoidc.Start(opts)
	if err != nil {
		t.Fatalf("devoidc.Start: %v", err)
	}
	t.Cleanup(func() { idp.Close() })
	return idp
}

func newApp(t *testing.T, idp *devoidc.Provider, opts appOptions) *app {
	t.Helper()
	a := &app{t: t, idp: idp, clock: newClock(), cookies: &cookieLog{}}
	mux := http.NewServeMux()
	if opts.insecure {
		a.srv = httptest.NewServer(mux)
	} else {
		a.srv = httptest.NewTLSServer(mux)
	}
	t.Cleanup(a.srv.Close)

	keys := opts.keys
	if len(keys) == 0 {
		keys = []string{seal.GenerateKey()}
	}
	a.configure(keys, opts)

	mux.HandleFunc("GET /login", func(w http.ResponseWriter, r *http.Request) { a.current().login.Begin(w, r) })
	mux.HandleFunc("GET /auth/callback", func(w http.ResponseWriter, r *http.Request) {
		a.current().login.CallbackHandler(nil).ServeHTTP(w, r)
	})
	mux.HandleFunc("GET /me", func(w http.ResponseWriter, r *http.Request) {
		sess, err := a.current().sessions.Get(r)
		if err != nil {
			http.Error(w, err.Error(), auth.StatusCode(err))
			return
		}
		id := sess.Identity
		json.NewEncoder(w).Encode(me{
			Sub: id.Sub, Issuer: id.Issuer, Subject: id.Subject, Username: id.Username, Name: id.Name,
			Email: id.Email, AvatarURL: id.AvatarURL, AccessToken: id.OAuthToken.AccessToken,
			RefreshToken: id.OAuthToken.RefreshToken, Expiry: id.OAuthToken.Expiry, CSRF: auth.CSRFToken(sess),
		})
	})
	mux.HandleFunc("POST /form", func(w http.ResponseWriter, r *http.Request) {
		sess, err := a.current().sessions.Get(r)
		if err != nil {
			http.Error(w, "not signed in", http.StatusUnauthorized)
			return
		}
		if !auth.ValidCSRF(sess, r.FormValue("csrf")) {
			http.Error(w, "bad csrf", http.StatusForbidden)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		s := a.current()
		sess, err := s.sessions.Get(r)
		if err != nil || !auth.ValidCSRF(sess, r.FormValue("csrf")) {
			http.Error(w, "bad csrf", http.StatusForbidden)
			return
		}
		s.sessions.Logout(w)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "page "+r.URL.Path) })
	return a
}

type appState struct {
	sessions *auth.Sessions
	login    *auth.Login
}

func (a *app) current() appState {
	a.mu.Lock()
	defer a.mu.Unlock()
	return appState{a.sessions, a.login}
}

// configure (re)builds sessions and login with keys, as a restart with a
// new configuration would.
func (a *app) configure(keys []string, opts appOptions) {
	a.t.Helper()
	ring, err := seal.ParseKeys(strings.Join(keys, ","))
	if err != nil {
		a.t.Fatalf("ParseKeys: %v", err)
	}
	scfg := auth.SessionConfig{Keys: ring, InsecureCookies: opts.insecure, Now: a.clock.Now}
	if opts.session != nil {
		opts.session(&scfg)
	}
	sessions, err := auth.NewSessions(scfg)
	if err != nil {
		a.t.Fatalf("NewSessions: %v", err)
	}
	lcfg := a.idp.LoginConfig(a.srv.URL + "/auth/callback")
	lcfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	lcfg.Logger = slog.New(slog.NewTextHandler(a.t.Output(), nil))
	lcfg.DiscoveryBackoff = time.Millisecond
	if opts.login != nil {
		opts.login(&lcfg)
	}
	login, err := auth.NewLogin(lcfg, sessions)
	if err != nil {
		a.t.Fatalf("NewLogin: %v", err)
	}
	a.mu.Lock()
	a.sessions, a.login = sessions, login
	a.mu.Unlock()
}

// browser returns a cookie-jar client that follows redirects and records
// every cookie the app sets.
func (a *app) browser() *http.Client {
	a.t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		a.t.Fatalf("cookiejar.New: %v", err)
	}
	base := a.srv.Client().Transport
	return &http.Client{Jar: jar, Transport: &recordingTransport{next: base, log: a.cookies}, Timeout: 20 * time.Second}
}

// stepper returns a client sharing c's jar that does not follow redirects.
func stepper(c *http.Client) *http.Client {
	s := *c
	s.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &s
}

type cookieLog struct {
	mu  sync.Mutex
	all []*http.Cookie
}

// last returns the most recent Set-Cookie for name, or nil.
func (l *cookieLog) last(name string) *http.Cookie {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.all) - 1; i >= 0; i-- {
		if l.all[i].Name == name {
			return l.all[i]
		}
	}
	return nil
}

type recordingTransport struct {
	next http.RoundTripper
	log  *cookieLog
}

func (rt *recordingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := rt.next.RoundTrip(r)
	if err == nil {
		rt.log.mu.Lock()
		rt.log.all = append(rt.log.all, resp.Cookies()...)
		rt.log.mu.Unlock()
	}
	return resp, err
}

type response struct {
	status   int
	body     string
	location string
	url      *url.URL
}

func do(t *testing.T, c *http.Client, method, target string, form url.Values) response {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, target, body)
	if err != nil {
		t.Fatalf("new request %s %s: %v", method, target, err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s %s: %v", method, target, err)
	}
	return response{status: resp.StatusCode, body: string(b), location: resp.Header.Get("Location"), url: resp.Request.URL}
}

// signIn runs the whole flow with a redirect-following browser and returns
// who /me says is signed in.
func (a *app) signIn(c *http.Client) me {
	a.t.Helper()
	res := do(a.t, c, http.MethodGet, a.srv.URL+"/login", nil)
	if res.status != http.StatusOK {
		a.t.Fatalf("sign-in ended with %d %q, want 200", res.status, res.body)
	}
	return a.whoami(c)
}

func (a *app) whoami(c *http.Client) me {
	a.t.Helper()
	res := do(a.t, c, http.MethodGet, a.srv.URL+"/me", nil)
	if res.status != http.StatusOK {
		a.t.Fatalf("GET /me: got %d %q, want 200", res.status, res.body)
	}
	var m me
	if err := json.Unmarshal([]byte(res.body), &m); err != nil {
		a.t.Fatalf("decode /me: %v", err)
	}
	return m
}

// flow walks the sign-in one hop at a time: Begin's redirect to the
// provider, then the provider's redirect back. It returns both URLs.
func (a *app) flow(c *http.Client, beginPath string) (providerURL, callbackURL *url.URL) {
	a.t.Helper()
	s := stepper(c)
	res := do(a.t, s, http.MethodGet, a.srv.URL+beginPath, nil)
	if res.status != http.StatusFound {
		a.t.Fatalf("GET %s: got %d %q, want 302", beginPath, res.status, res.body)
	}
	providerURL = mustParse(a.t, res.location)
	return providerURL, a.authorize(c, providerURL)
}

// authorize visits the provider's authorization URL and returns where it
// sends the browser back to.
func (a *app) authorize(c *http.Client, providerURL *url.URL) *url.URL {
	a.t.Helper()
	res := do(a.t, stepper(c), http.MethodGet, providerURL.String(), nil)
	if res.status != http.StatusFound {
		a.t.Fatalf("GET provider: got %d %q, want 302", res.status, res.body)
	}
	return mustParse(a.t, res.location)
}

func mustParse(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatalf("parse URL %q: %v", s, err)
	}
	return u
}

// base returns the app's root URL, for setting cookies in a jar.
func (a *app) base() *url.URL { return mustParse(a.t, a.srv.URL+"/") }
