package auth_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/auth"
	"gitlab-serverless-runner/pkg/auth/devoidc"
	"gitlab-serverless-runner/pkg/seal"
)

func TestSignIn(t *testing.T) {
	user := devoidc.User{Subject: "4242", Username: "ada", Name: "Ada Lovelace", Email: "ada@example.com", AvatarURL: "https://example.com/ada.png"}
	tests := []struct {
		name       string
		insecure   bool
		wantSecure bool
	}{
		{name: "https app sets Secure cookies", insecure: false, wantSecure: true},
		{name: "plain http development drops Secure", insecure: true, wantSecure: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			idp := startIDP(t, devoidc.Options{User: user})
			a := newApp(t, idp, appOptions{insecure: tt.insecure})
			c := a.browser()

			res := do(t, c, http.MethodGet, a.srv.URL+"/login?return_to=/runners%3Fpage%3D2", nil)
			if res.status != http.StatusOK || res.url.Path != "/runners" || res.url.RawQuery != "page=2" {
				t.Fatalf("sign-in landed on %d %s, want 200 /runners?page=2", res.status, res.url)
			}

			for _, name := range []string{"gsr_login", auth.DefaultSessionCookie} {
				ck := a.cookies.last(name)
				if ck == nil {
					t.Fatalf("cookie %s was never set", name)
				}
				if !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/" || ck.Secure != tt.wantSecure {
					t.Errorf("cookie %s: got HttpOnly=%v SameSite=%v Path=%q Secure=%v, want HttpOnly=true SameSite=Lax Path=/ Secure=%v",
						name, ck.HttpOnly, ck.SameSite, ck.Path, ck.Secure, tt.wantSecure)
				}
			}
			if got, want := a.cookies.last("gsr_login").MaxAge, -1; got != want {
				t.Errorf("login cookie after callback: got MaxAge %d, want %d (cleared)", got, want)
			}
			sessionCookie := a.cookies.last(auth.DefaultSessionCookie)
			if got, want := sessionCookie.MaxAge, int((12 * time.Hour).Seconds()); got != want {
				t.Errorf("session cookie MaxAge: got %d, want %d", got, want)
			}

			got := a.whoami(c)
			want := me{
				Sub: idp.Issuer() + "|4242", Issuer: idp.Issuer(), Subject: "4242", Username: "ada",
				Name: "Ada Lovelace", Email: "ada@example.com", AvatarURL: "https://example.com/ada.png",
			}
			if got.Sub != want.Sub || got.Issuer != want.Issuer || got.Subject != want.Subject || got.Username != want.Username ||
				got.Name != want.Name || got.Email != want.Email || got.AvatarURL != want.AvatarURL {
				t.Errorf("identity: got %+v, want %+v", got, want)
			}
			if got.AccessToken == "" || got.RefreshToken == "" {
				t.Errorf("OAuth token: got access %t refresh %t, want both present", got.AccessToken != "", got.RefreshToken != "")
			}
			if !got.Expiry.After(time.Now()) || got.Expiry.After(time.Now().Add(time.Hour)) {
				t.Errorf("token expiry: got %s, want within the next hour", got.Expiry)
			}
			// Sealed: neither the value nor its base64 decoding holds the
			// token or the profile. (Two random bytes can spell "ada", so
			// the profile is looked for whole.)
			decoded, _ := base64.RawURLEncoding.DecodeString(sessionCookie.Value)
			for _, clear := range []string{got.AccessToken, got.RefreshToken, "Ada Lovelace", "ada@example.com"} {
				if strings.Contains(sessionCookie.Value, clear) || bytes.Contains(decoded, []byte(clear)) {
					t.Errorf("session cookie holds %q in clear", clear)
				}
			}
			if got.CSRF == "" {
				t.Errorf("CSRF token: got empty, want a token")
			}
		})
	}
}

func TestBeginRequestsPKCEStateNonceAndScopes(t *testing.T) {
	tests := []struct {
		name      string
		login     func(*auth.LoginConfig)
		wantScope string
		wantUser  string
	}{
		{name: "default scopes", wantScope: "openid profile email read_user", wantUser: "developer"},
		{name: "create runner scope", login: func(c *auth.LoginConfig) { c.CreateRunnerScope = auth.ScopeCreateRunner },
			wantScope: "openid profile email read_user create_runner", wantUser: "developer"},
		{name: "api scope for older GitLab", login: func(c *auth.LoginConfig) { c.CreateRunnerScope = auth.ScopeAPI },
			wantScope: "openid profile email read_user api", wantUser: "developer"},
		{name: "custom scopes get openid", login: func(c *auth.LoginConfig) { c.Scopes = []string{"email"} },
			wantScope: "email openid", wantUser: ""}, // no profile scope, no username
	}
	idp := startIDP(t, devoidc.Options{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newApp(t, idp, appOptions{login: tt.login})
			c := a.browser()
			res := do(t, stepper(c), http.MethodGet, a.srv.URL+"/login", nil)
			if res.status != http.StatusFound {
				t.Fatalf("GET /login: got %d, want 302", res.status)
			}
			u := mustParse(t, res.location)
			q := u.Query()
			if got, want := q.Get("scope"), tt.wantScope; got != want {
				t.Errorf("scope: got %q, want %q", got, want)
			}
			if got, want := q.Get("code_challenge_method"), "S256"; got != want {
				t.Errorf("code_challenge_method: got %q, want %q", got, want)
			}
			for _, p := range []string{"code_challenge", "state", "nonce"} {
				if len(q.Get(p)) < 32 {
					t.Errorf("%s: got %q, want a random value of at least 32 characters", p, q.Get(p))
				}
			}
			if got, want := q.Get("client_id"), idp.ClientID(); got != want {
				t.Errorf("client_id: got %q, want %q", got, want)
			}
			if got, want := u.Scheme+"://"+u.Host+u.Path, idp.Issuer()+"/authorize"; got != want {
				t.Errorf("authorization endpoint: got %q, want %q", got, want)
			}
			// The provider accepts GitLab's scopes and signs the user in.
			if me := a.signIn(c); me.Username != tt.wantUser || me.Subject != devoidc.DefaultUser().Subject {
				t.Errorf("signed in as %q (subject %q), want %q (subject %q)", me.Username, me.Subject, tt.wantUser, devoidc.DefaultUser().Subject)
			}
		})
	}
}

func TestCallbackRejects(t *testing.T) {
	idp := startIDP(t, devoidc.Options{})
	tests := []struct {
		name       string
		run        func(t *testing.T, a *app, c *http.Client) response
		wantStatus int
		wantBody   string
		// stillSignedIn: an earlier step in the case signed the browser in.
		stillSignedIn bool
	}{
		{
			name: "tampered state",
			run: func(t *testing.T, a *app, c *http.Client) response {
				_, cb := a.flow(c, "/login")
				q := cb.Query()
				q.Set("state", q.Get("state")+"x")
				cb.RawQuery = q.Encode()
				return do(t, c, http.MethodGet, cb.String(), nil)
			},
			wantStatus: http.StatusBadRequest, wantBody: "does not belong",
		},
		{
			name: "missing state parameter",
			run: func(t *testing.T, a *app, c *http.Client) response {
				_, cb := a.flow(c, "/login")
				q := cb.Query()
				q.Del("state")
				cb.RawQuery = q.Encode()
				return do(t, c, http.MethodGet, cb.String(), nil)
			},
			wantStatus: http.StatusBadRequest, wantBody: "does not belong",
		},
		{
			name: "missing login cookie",
			run: func(t *testing.T, a *app, c *http.Client) response {
				_, cb := a.flow(a.browser(), "/login") // started in another browser
				return do(t, c, http.MethodGet, cb.String(), nil)
			},
			wantStatus: http.StatusBadRequest, wantBody: "no sign-in is in progress",
		},
		{
			name: "tampered login cookie",
			run: func(t *testing.T, a *app, c *http.Client) response {
				_, cb := a.flow(c, "/login")
				ck := a.cookies.last("gsr_login")
				c.Jar.SetCookies(a.base(), []*http.Cookie{{Name: "gsr_login", Value: flip(ck.Value), Path: "/"}})
				return do(t, c, http.MethodGet, cb.String(), nil)
			},
			wantStatus: http.StatusBadRequest, wantBody: "no sign-in is in progress",
		},
		{
			name: "login cookie older than 10 minutes",
			run: func(t *testing.T, a *app, c *http.Client) response {
				_, cb := a.flow(c, "/login")
				a.clock.Advance(auth.LoginTTL + time.Second)
				return do(t, c, http.MethodGet, cb.String(), nil)
			},
			wantStatus: http.StatusBadRequest, wantBody: "no sign-in is in progress",
		},
		{
			name: "replayed callback in the same browser",
			run: func(t *testing.T, a *app, c *http.Client) response {
				_, cb := a.flow(c, "/login")
				if res := do(t, c, http.MethodGet, cb.String(), nil); res.status != http.StatusOK {
					t.Fatalf("first callback: got %d %q, want 200", res.status, res.body)
				}
				return do(t, c, http.MethodGet, cb.String(), nil)
			},
			wantStatus: http.StatusBadRequest, wantBody: "no sign-in is in progress", stillSignedIn: true,
		},
		{
			name: "replayed callback with a captured login cookie",
			run: func(t *testing.T, a *app, c *http.Client) response {
				_, cb := a.flow(c, "/login")
				captured := a.cookies.last("gsr_login")
				if res := do(t, c, http.MethodGet, cb.String(), nil); res.status != http.StatusOK {
					t.Fatalf("first callback: got %d %q, want 200", res.status, res.body)
				}
				attacker := a.browser()
				attacker.Jar.SetCookies(a.base(), []*http.Cookie{{Name: "gsr_login", Value: captured.Value, Path: "/"}})
				return do(t, attacker, http.MethodGet, cb.String(), nil)
			},
			wantStatus: http.StatusBadRequest, wantBody: "already used", stillSignedIn: true,
		},
		{
			name: "ID token with another nonce",
			run: func(t *testing.T, a *app, c *http.Client) response {
				pu, _ := a.flow(a.browser(), "/login") // a provider URL with the wrong nonce for c
				s := stepper(c)
				res := do(t, s, http.MethodGet, a.srv.URL+"/login", nil)
				mine := mustParse(t, res.location)
				q := mine.Query()
				q.Set("nonce", pu.Query().Get("nonce"))
				mine.RawQuery = q.Encode()
				cb := a.authorize(c, mine)
				return do(t, c, http.MethodGet, cb.String(), nil)
			},
			wantStatus: http.StatusUnauthorized, wantBody: "ID token is not valid",
		},
		{
			name: "provider says access_denied",
			run: func(t *testing.T, a *app, c *http.Client) response {
				pu, _ := a.flow(c, "/login")
				return do(t, c, http.MethodGet, a.srv.URL+"/auth/callback?error=access_denied&error_description=no&state="+url.QueryEscape(pu.Query().Get("state")), nil)
			},
			wantStatus: http.StatusForbidden, wantBody: "refused the sign-in",
		},
		{
			name: "missing code",
			run: func(t *testing.T, a *app, c *http.Client) response {
				_, cb := a.flow(c, "/login")
				q := cb.Query()
				q.Del("code")
				cb.RawQuery = q.Encode()
				return do(t, c, http.MethodGet, cb.String(), nil)
			},
			wantStatus: http.StatusBadRequest, wantBody: "incomplete",
		},
		{
			name: "forged code",
			run: func(t *testing.T, a *app, c *http.Client) response {
				_, cb := a.flow(c, "/login")
				q := cb.Query()
				q.Set("code", "forged")
				cb.RawQuery = q.Encode()
				return do(t, c, http.MethodGet, cb.String(), nil)
			},
			wantStatus: http.StatusBadGateway, wantBody: "did not accept the sign-in code",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newApp(t, idp, appOptions{})
			c := a.browser()
			res := tt.run(t, a, c)
			if res.status != tt.wantStatus || !strings.Contains(res.body, tt.wantBody) {
				t.Errorf("callback: got %d %q, want %d containing %q", res.status, res.body, tt.wantStatus, tt.wantBody)
			}
			want := http.StatusUnauthorized
			if tt.stillSignedIn {
				want = http.StatusOK
			}
			if got := do(t, c, http.MethodGet, a.srv.URL+"/me", nil); got.status != want {
				t.Errorf("GET /me after a rejected callback: got %d, want %d", got.status, want)
			}
		})
	}
}

func TestUnreachableIssuer(t *testing.T) {
	addr := freeAddr(t)
	idp := startIDP(t, devoidc.Options{})
	a := newApp(t, idp, appOptions{login: func(c *auth.LoginConfig) {
		c.Issuer = "http://" + addr + "/oidc"
		c.DiscoveryAttempts = 2
	}})
	c := a.browser()

	res := do(t, c, http.MethodGet, a.srv.URL+"/login", nil)
	if res.status != http.StatusServiceUnavailable || !strings.Contains(res.body, "cannot be reached") {
		t.Fatalf("GET /login with the issuer down: got %d %q, want 503 saying it cannot be reached", res.status, res.body)
	}
	cb := do(t, c, http.MethodGet, a.srv.URL+"/auth/callback?state=x&code=y", nil)
	if cb.status != http.StatusBadRequest {
		t.Errorf("callback with the issuer down and no login: got %d %q, want 400", cb.status, cb.body)
	}

	// The issuer comes up: the next sign-in discovers it, no restart needed.
	late := startIDP(t, devoidc.Options{Addr: addr, ClientID: idp.ClientID(), ClientSecret: idp.ClientSecret()})
	if got, want := late.Issuer(), "http://"+addr+"/oidc"; got != want {
		t.Fatalf("late provider issuer: got %q, want %q", got, want)
	}
	if got := a.signIn(c); got.Username != devoidc.DefaultUser().Username {
		t.Errorf("signed in as %q after the issuer came up, want %q", got.Username, devoidc.DefaultUser().Username)
	}
}

func TestDiscoveryRetriesWithinOneRequest(t *testing.T) {
	idp := startIDP(t, devoidc.Options{})
	var calls atomic.Int32
	flaky := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if strings.HasSuffix(r.URL.Path, "/openid-configuration") && calls.Add(1) == 1 {
			return nil, errors.New("connection refused")
		}
		return http.DefaultTransport.RoundTrip(r)
	})}
	a := newApp(t, idp, appOptions{login: func(c *auth.LoginConfig) { c.HTTPClient = flaky }})
	res := do(t, stepper(a.browser()), http.MethodGet, a.srv.URL+"/login", nil)
	if res.status != http.StatusFound {
		t.Fatalf("GET /login with one failed discovery: got %d %q, want 302", res.status, res.body)
	}
	if got, want := calls.Load(), int32(2); got != want {
		t.Errorf("discovery requests: got %d, want %d", got, want)
	}
}

func TestCallbackErrorIsClearAndSecretFree(t *testing.T) {
	idp := startIDP(t, devoidc.Options{})
	a := newApp(t, idp, appOptions{insecure: true})
	c := a.browser()
	_, cb := a.flow(c, "/login")
	q := cb.Query()
	q.Set("state", "wrong")
	cb.RawQuery = q.Encode()
	req := httptestRequest(t, cb.String(), c)
	_, _, err := a.current().login.Callback(discard{}, req)
	if !errors.Is(err, auth.ErrStateMismatch) {
		t.Fatalf("Callback: got %v, want ErrStateMismatch", err)
	}
	for _, secret := range []string{q.Get("code"), a.cookies.last("gsr_login").Value} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error %q contains a secret", err)
		}
	}
}

func TestSafeReturnTo(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/runners/12", "/runners/12"},
		{"/runners?x=1", "/runners?x=1"},
		{"", "/"},
		{"https://evil.example", "/"},
		{"//evil.example/x", "/"},
		{"/\\evil.example", "/"},
		{"runners", "/"},
		{"/a\r\nSet-Cookie: x", "/"},
	}
	for _, tt := range tests {
		if got := auth.SafeReturnTo(tt.in); got != tt.want {
			t.Errorf("SafeReturnTo(%q): got %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestNewLoginValidatesConfig(t *testing.T) {
	ring, err := seal.ParseKeys(seal.GenerateKey())
	if err != nil {
		t.Fatal(err)
	}
	s, err := auth.NewSessions(auth.SessionConfig{Keys: ring})
	if err != nil {
		t.Fatal(err)
	}
	ok := auth.LoginConfig{ClientID: "id", ClientSecret: "secret", RedirectURL: "https://app.example/auth/callback"}
	tests := []struct {
		name     string
		change   func(*auth.LoginConfig)
		sessions *auth.Sessions
		wantErr  bool
	}{
		{name: "complete", change: func(*auth.LoginConfig) {}, sessions: s},
		{name: "no client id", change: func(c *auth.LoginConfig) { c.ClientID = "" }, sessions: s, wantErr: true},
		{name: "no client secret", change: func(c *auth.LoginConfig) { c.ClientSecret = "" }, sessions: s, wantErr: true},
		{name: "no redirect URL", change: func(c *auth.LoginConfig) { c.RedirectURL = "" }, sessions: s, wantErr: true},
		{name: "no sessions", change: func(*auth.LoginConfig) {}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.change(&cfg)
			l, err := auth.NewLogin(cfg, tt.sessions)
			if (err != nil) != tt.wantErr {
				t.Fatalf("NewLogin: got error %v, want error %t", err, tt.wantErr)
			}
			if err == nil && l.Issuer() != auth.DefaultIssuer {
				t.Errorf("issuer: got %q, want %q", l.Issuer(), auth.DefaultIssuer)
			}
		})
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

type discard struct{}

func (discard) Header() http.Header         { return http.Header{} }
func (discard) Write(b []byte) (int, error) { return len(b), nil }
func (discard) WriteHeader(int)             {}

// httptestRequest builds a request for target carrying the jar's cookies.
func httptestRequest(t *testing.T, target string, c *http.Client) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, ck := range c.Jar.Cookies(req.URL) {
		req.AddCookie(ck)
	}
	return req
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// flip changes one character in the middle of s.
func flip(s string) string {
	b := []byte(s)
	i := len(b) / 2
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}
