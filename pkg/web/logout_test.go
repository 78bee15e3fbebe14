package web_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"gitlab-serverless-runner/pkg/auth"
	"gitlab-serverless-runner/pkg/auth/devoidc"
)

// signInWithToken makes a browser signed in with the given GitLab OAuth
// access and refresh tokens.
func (e *env) signInWithToken(sub, username string, tok auth.Token) *client {
	e.t.Helper()
	e.secret(tok.AccessToken)
	e.secret(tok.RefreshToken)
	if _, err := e.store.UpsertUser(context.Background(), sub, username); err != nil {
		e.t.Fatalf("UpsertUser: %v", err)
	}
	rec := httptest.NewRecorder()
	sess, err := e.sessions.Create(rec, auth.Identity{Sub: sub, Issuer: e.idp.Issuer(), Subject: sub, Username: username, OAuthToken: tok})
	if err != nil {
		e.t.Fatalf("create session: %v", err)
	}
	c := e.newClient()
	c.http.Jar.SetCookies(mustURL(e.t, e.srv.URL), rec.Result().Cookies())
	c.csrf = sess.CSRF
	return c
}

// signedOut checks the browser has no session any more.
func (c *client) signedOut(t *testing.T) {
	t.Helper()
	if got := c.get("/runners"); got.status != http.StatusSeeOther || got.header.Get("Location") != "/" {
		t.Errorf("after sign-out GET /runners: status %d to %q, want 303 to /", got.status, got.header.Get("Location"))
	}
}

func TestSignOutRevokesTheOAuthToken(t *testing.T) {
	e := newEnv(t, nil)
	tok := auth.Token{AccessToken: "oauth-access-token-of-ada", RefreshToken: "oauth-refresh-token-of-ada"}
	ada := e.signInWithToken("sub-ada", "ada", tok)

	out := ada.submit(http.MethodPost, "/logout", nil)
	if out.status != http.StatusSeeOther || out.header.Get("Location") != "/" {
		t.Fatalf("logout: status %d to %q, want 303 to /", out.status, out.header.Get("Location"))
	}
	ada.signedOut(t)
	revs := e.idp.Revocations()
	want := []devoidc.Revocation{
		{Token: tok.AccessToken, TokenTypeHint: "access_token", ClientID: e.idp.ClientID(), Status: http.StatusOK},
		{Token: tok.RefreshToken, TokenTypeHint: "refresh_token", ClientID: e.idp.ClientID(), Status: http.StatusOK},
	}
	if len(revs) != len(want) || revs[0] != want[0] || revs[1] != want[1] {
		t.Errorf("revocations at the provider = %+v, want %+v", revs, want)
	}
	if logs := e.logs.String(); !strings.Contains(logs, "GitLab OAuth token revoked") {
		t.Errorf("no log line says the token was revoked:\n%s", logs)
	}
}

func TestSignOutWhenRevocationFails(t *testing.T) {
	for _, tt := range []struct {
		name  string
		fault func(e *env)
		want  string // in the warning
	}{
		{"provider refuses", func(e *env) { e.idp.FailRevocations(http.StatusServiceUnavailable) }, "503"},
		{"provider down", func(e *env) { e.idp.Close() }, "revoke"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			ada := e.signInWithToken("sub-ada", "ada", auth.Token{AccessToken: "oauth-access-" + tt.want, RefreshToken: "oauth-refresh-" + tt.want})
			tt.fault(e)
			out := ada.submit(http.MethodPost, "/logout", url.Values{})
			if out.status != http.StatusSeeOther || out.header.Get("Location") != "/" {
				t.Fatalf("logout: status %d to %q, want 303 to / all the same", out.status, out.header.Get("Location"))
			}
			if got := ada.get("/"); !strings.Contains(got.body, "You are signed out.") {
				t.Errorf("no sign-out message")
			}
			ada.signedOut(t)
			logs := e.logs.String()
			if !strings.Contains(logs, "could not be revoked") || !strings.Contains(logs, tt.want) {
				t.Errorf("the logs do not say the revocation failed (%s):\n%s", tt.want, logs)
			}
		})
	}
}
