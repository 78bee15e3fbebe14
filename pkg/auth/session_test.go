package auth_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/auth"
	"gitlab-serverless-runner/pkg/auth/devoidc"
	"gitlab-serverless-runner/pkg/seal"
)

func TestSessionExpiry(t *testing.T) {
	idp := startIDP(t, devoidc.Options{})
	tests := []struct {
		name       string
		maxAge     time.Duration
		after      time.Duration
		wantStatus int
	}{
		{name: "default lifetime, just before the end", after: 12*time.Hour - time.Second, wantStatus: http.StatusOK},
		{name: "default lifetime, at the end", after: 12 * time.Hour, wantStatus: http.StatusUnauthorized},
		{name: "configured lifetime, within", maxAge: time.Hour, after: 59 * time.Minute, wantStatus: http.StatusOK},
		{name: "configured lifetime, past", maxAge: time.Hour, after: 61 * time.Minute, wantStatus: http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newApp(t, idp, appOptions{session: func(c *auth.SessionConfig) { c.MaxAge = tt.maxAge }})
			c := a.browser()
			a.signIn(c)
			a.clock.Advance(tt.after)
			// The browser still sends the cookie (its clock did not move): the
			// server must refuse it on its own.
			if got := do(t, c, http.MethodGet, a.srv.URL+"/me", nil); got.status != tt.wantStatus {
				t.Errorf("GET /me %s after sign-in: got %d %q, want %d", tt.after, got.status, got.body, tt.wantStatus)
			}
		})
	}
}

func TestSessionCookieIntegrity(t *testing.T) {
	idp := startIDP(t, devoidc.Options{})
	foreign, err := seal.ParseKeys(seal.GenerateKey())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		forge func(t *testing.T, a *app, value string) string
	}{
		{name: "one character changed", forge: func(_ *testing.T, _ *app, v string) string { return flip(v) }},
		{name: "truncated", forge: func(_ *testing.T, _ *app, v string) string { return v[:len(v)-4] }},
		{name: "not base64", forge: func(_ *testing.T, _ *app, v string) string { return "%%%" + v }},
		{name: "empty", forge: func(_ *testing.T, _ *app, v string) string { return "" }},
		{name: "sealed with a foreign key", forge: func(t *testing.T, a *app, _ string) string {
			s, err := auth.NewSessions(auth.SessionConfig{Keys: foreign})
			if err != nil {
				t.Fatal(err)
			}
			rec := httptest.NewRecorder()
			if _, err := s.Create(rec, auth.Identity{Sub: "x|1", Issuer: "x", Subject: "1"}); err != nil {
				t.Fatal(err)
			}
			return rec.Result().Cookies()[0].Value
		}},
		{name: "login cookie presented as session", forge: func(t *testing.T, a *app, _ string) string {
			a.flow(a.browser(), "/login")
			return a.cookies.last("gsr_login").Value
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newApp(t, idp, appOptions{})
			c := a.browser()
			a.signIn(c)
			value := a.cookies.last(auth.DefaultSessionCookie).Value
			forged := tt.forge(t, a, value)
			c.Jar.SetCookies(a.base(), []*http.Cookie{{Name: auth.DefaultSessionCookie, Value: forged, Path: "/", Secure: true}})
			if got := do(t, c, http.MethodGet, a.srv.URL+"/me", nil); got.status != http.StatusUnauthorized {
				t.Errorf("GET /me with a forged cookie: got %d %q, want 401", got.status, got.body)
			}
		})
	}
}

func TestKeyRotation(t *testing.T) {
	idp := startIDP(t, devoidc.Options{})
	oldKey, newKey := seal.GenerateKey(), seal.GenerateKey()
	tests := []struct {
		name       string
		signInWith []string
		readWith   []string
		wantStatus int
	}{
		{name: "old session after the new key is put first", signInWith: []string{oldKey}, readWith: []string{newKey, oldKey}, wantStatus: http.StatusOK},
		{name: "new session read by the old key list", signInWith: []string{newKey, oldKey}, readWith: []string{oldKey}, wantStatus: http.StatusUnauthorized},
		{name: "new session after the old key is retired", signInWith: []string{newKey, oldKey}, readWith: []string{newKey}, wantStatus: http.StatusOK},
		{name: "old session after the old key is retired", signInWith: []string{oldKey}, readWith: []string{newKey}, wantStatus: http.StatusUnauthorized},
		{name: "keys in one comma-separated value", signInWith: []string{oldKey}, readWith: []string{newKey + "," + oldKey}, wantStatus: http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newApp(t, idp, appOptions{keys: tt.signInWith})
			c := a.browser()
			a.signIn(c)
			a.configure(tt.readWith, appOptions{})
			if got := do(t, c, http.MethodGet, a.srv.URL+"/me", nil); got.status != tt.wantStatus {
				t.Errorf("GET /me: got %d %q, want %d", got.status, got.body, tt.wantStatus)
			}
		})
	}
}

func TestCSRF(t *testing.T) {
	idp := startIDP(t, devoidc.Options{})
	a := newApp(t, idp, appOptions{})
	c := a.browser()
	mine := a.signIn(c).CSRF
	other := a.browser()
	theirs := a.signIn(other).CSRF
	if mine == theirs {
		t.Fatalf("two sessions got the same CSRF token")
	}
	tests := []struct {
		name       string
		token      string
		wantStatus int
	}{
		{name: "own token", token: mine, wantStatus: http.StatusNoContent},
		{name: "no token", token: "", wantStatus: http.StatusForbidden},
		{name: "another session's token", token: theirs, wantStatus: http.StatusForbidden},
		{name: "altered token", token: flip(mine), wantStatus: http.StatusForbidden},
		{name: "prefix of the token", token: mine[:len(mine)-1], wantStatus: http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := do(t, c, http.MethodPost, a.srv.URL+"/form", url.Values{"csrf": {tt.token}})
			if got.status != tt.wantStatus {
				t.Errorf("POST /form: got %d %q, want %d", got.status, got.body, tt.wantStatus)
			}
		})
	}
	if auth.ValidCSRF(nil, mine) {
		t.Errorf("ValidCSRF(nil session): got true, want false")
	}
	if got := auth.CSRFToken(nil); got != "" {
		t.Errorf("CSRFToken(nil): got %q, want empty", got)
	}
}

func TestLogout(t *testing.T) {
	idp := startIDP(t, devoidc.Options{})
	a := newApp(t, idp, appOptions{})
	c := a.browser()
	csrf := a.signIn(c).CSRF

	if got := do(t, c, http.MethodPost, a.srv.URL+"/logout", url.Values{"csrf": {csrf}}); got.status != http.StatusNoContent {
		t.Fatalf("POST /logout: got %d %q, want 204", got.status, got.body)
	}
	ck := a.cookies.last(auth.DefaultSessionCookie)
	if ck.MaxAge >= 0 || ck.Value != "" || !ck.HttpOnly || !ck.Secure || ck.Path != "/" {
		t.Errorf("logout cookie: got %+v, want an expired empty HttpOnly Secure cookie at /", ck)
	}
	if got := do(t, c, http.MethodGet, a.srv.URL+"/me", nil); got.status != http.StatusUnauthorized {
		t.Errorf("GET /me after logout: got %d, want 401", got.status)
	}
}

func TestSessionTooLarge(t *testing.T) {
	ring, err := seal.ParseKeys(seal.GenerateKey())
	if err != nil {
		t.Fatal(err)
	}
	s, err := auth.NewSessions(auth.SessionConfig{Keys: ring})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		nameLen int
		wantErr error
	}{
		{name: "typical GitLab identity", nameLen: 100},
		{name: "far too large", nameLen: 4000, wantErr: auth.ErrCookieTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := auth.Identity{Sub: "https://gitlab.com|1", Issuer: "https://gitlab.com", Subject: "1", Username: "u",
				Name: strings.Repeat("n", tt.nameLen), Email: "u@example.com",
				OAuthToken: auth.Token{AccessToken: strings.Repeat("a", 64), RefreshToken: strings.Repeat("r", 64), Expiry: time.Now().Add(2 * time.Hour)}}
			rec := httptest.NewRecorder()
			_, err := s.Create(rec, id)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Create: got %v, want %v", err, tt.wantErr)
			}
			cookies := rec.Result().Cookies()
			if tt.wantErr != nil && len(cookies) != 0 {
				t.Errorf("Create failed but set %d cookies, want none", len(cookies))
			}
			if tt.wantErr == nil && (len(cookies) != 1 || len(cookies[0].Value) > auth.MaxCookieBytes) {
				t.Errorf("Create: got %d cookies, want 1 under %d bytes", len(cookies), auth.MaxCookieBytes)
			}
		})
	}
}

func TestTokenNeverPrinted(t *testing.T) {
	const secret = "glpat-supersecretvalue"
	id := auth.Identity{Sub: "i|1", Username: "ada", OAuthToken: auth.Token{AccessToken: secret, RefreshToken: secret + "r"}}
	var logs bytes.Buffer
	sess := auth.Session{Identity: id, CSRF: "csrf-secret"}
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("signed in", "identity", id, "token", id.OAuthToken, "session", sess)
	for _, out := range []string{fmt.Sprint(id), fmt.Sprintf("%+v", id), fmt.Sprintf("%#v", id), fmt.Sprint(id.OAuthToken), fmt.Sprintf("%+v", sess), logs.String()} {
		if strings.Contains(out, secret) {
			t.Errorf("printed %q, which contains the token", out)
		}
	}
	if strings.Contains(logs.String(), "csrf-secret") {
		t.Errorf("logged %q, which contains the CSRF token", logs.String())
	}
	if !strings.Contains(fmt.Sprintf("%+v", id), "ada") {
		t.Errorf("printed identity lost its non-secret fields")
	}
}
