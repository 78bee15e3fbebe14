package auth_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/auth"
	"gitlab-serverless-runner/pkg/auth/devoidc"
)

func TestFreshToken(t *testing.T) {
	idp := startIDP(t, devoidc.Options{})
	a := newApp(t, idp, appOptions{})
	signedIn := a.signIn(a.browser())
	now := a.clock.Now()
	issued := auth.Token{AccessToken: signedIn.AccessToken, RefreshToken: signedIn.RefreshToken}
	tests := []struct {
		name        string
		tok         func() auth.Token
		wantSame    bool
		wantErr     error
		wantRenewed bool
	}{
		{name: "valid for an hour", tok: func() auth.Token { t := issued; t.Expiry = now.Add(time.Hour); return t }, wantSame: true},
		{name: "no known expiry", tok: func() auth.Token { return issued }, wantSame: true},
		{name: "expiring within the margin", tok: func() auth.Token { t := issued; t.Expiry = now.Add(30 * time.Second); return t }, wantRenewed: true},
		{name: "expired", tok: func() auth.Token { t := issued; t.Expiry = now.Add(-time.Hour); return t }, wantRenewed: true},
		{name: "expired without refresh token", tok: func() auth.Token {
			t := issued
			t.Expiry, t.RefreshToken = now.Add(-time.Hour), ""
			return t
		}, wantErr: auth.ErrTokenExpired},
		{name: "refresh token refused", tok: func() auth.Token {
			t := issued
			t.Expiry, t.RefreshToken = now.Add(-time.Hour), "forged"
			return t
		}, wantErr: auth.ErrTokenExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.tok()
			got, err := a.current().login.FreshToken(context.Background(), in)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("FreshToken: got error %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				if got := auth.StatusCode(err); got != 401 {
					t.Errorf("StatusCode: got %d, want 401", got)
				}
				return
			}
			if tt.wantSame && got != in {
				t.Errorf("FreshToken changed a valid token")
			}
			if tt.wantRenewed && (got.AccessToken == "" || got.RefreshToken == "" || !got.Expiry.After(time.Now().Add(time.Minute))) {
				t.Errorf("FreshToken: got access %t refresh %t expiry %s, want a renewed token valid for more than a minute",
					got.AccessToken != "", got.RefreshToken != "", got.Expiry)
			}
		})
	}
}
