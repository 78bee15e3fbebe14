package auth_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/auth"
	"gitlab-serverless-runner/pkg/auth/devoidc"
)

// userinfo reports the status the provider's userinfo endpoint answers
// with the access token.
func userinfo(t *testing.T, idp *devoidc.Provider, accessToken string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, idp.Issuer()+"/userinfo", nil)
	req.Header.Set("Authorization", "Bearer "+accessToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET userinfo: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestRevoke signs in, revokes the token and checks the provider took both
// tokens out of use: the access token no longer reads the profile, the
// refresh token no longer renews.
func TestRevoke(t *testing.T) {
	idp := startIDP(t, devoidc.Options{})
	a := newApp(t, idp, appOptions{})
	signedIn := a.signIn(a.browser())
	tok := auth.Token{AccessToken: signedIn.AccessToken, RefreshToken: signedIn.RefreshToken}
	login := a.current().login
	if got := userinfo(t, idp, tok.AccessToken); got != http.StatusOK {
		t.Fatalf("userinfo with the new token: %d, want 200", got)
	}

	if err := login.Revoke(context.Background(), tok); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	revs := idp.Revocations()
	if len(revs) != 2 {
		t.Fatalf("revocations = %+v, want the access and the refresh token", revs)
	}
	for i, want := range []devoidc.Revocation{
		{Token: tok.AccessToken, TokenTypeHint: "access_token", ClientID: idp.ClientID(), Status: http.StatusOK},
		{Token: tok.RefreshToken, TokenTypeHint: "refresh_token", ClientID: idp.ClientID(), Status: http.StatusOK},
	} {
		if revs[i] != want {
			t.Errorf("revocation %d = %+v, want %+v", i, revs[i], want)
		}
	}
	if got := userinfo(t, idp, tok.AccessToken); got != http.StatusUnauthorized {
		t.Errorf("userinfo with the revoked token: %d, want 401", got)
	}
	expired := tok
	expired.Expiry = time.Now().Add(-time.Hour)
	if _, err := login.FreshToken(context.Background(), expired); !errors.Is(err, auth.ErrTokenExpired) {
		t.Errorf("refresh with the revoked refresh token: %v, want ErrTokenExpired", err)
	}

	if err := login.Revoke(context.Background(), auth.Token{}); err != nil || len(idp.Revocations()) != 2 {
		t.Errorf("Revoke of no token: %v, %d requests; want nothing sent", err, len(idp.Revocations())-2)
	}
}

// TestRevokeFailureSaysSoWithoutTheToken checks that a provider refusing
// the revocation is an error naming the status, never the token.
func TestRevokeFailureSaysSoWithoutTheToken(t *testing.T) {
	idp := startIDP(t, devoidc.Options{})
	a := newApp(t, idp, appOptions{})
	signedIn := a.signIn(a.browser())
	tok := auth.Token{AccessToken: signedIn.AccessToken, RefreshToken: signedIn.RefreshToken}
	idp.FailRevocations(http.StatusServiceUnavailable)
	err := a.current().login.Revoke(context.Background(), tok)
	if err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("Revoke against a failing provider: %v, want an error with 503", err)
	}
	if strings.Contains(err.Error(), tok.AccessToken) || strings.Contains(err.Error(), tok.RefreshToken) {
		t.Errorf("the error holds a token: %v", err)
	}
	if got := userinfo(t, idp, tok.AccessToken); got != http.StatusOK {
		t.Errorf("userinfo after a failed revocation: %d, want 200 (nothing was revoked)", got)
	}
}
