package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Revoke revokes the user's OAuth token at the provider (RFC 7009), as
// GitLab's POST /oauth/revoke does: the access token and then the refresh
// token, each with the client's credentials. The endpoint is the
// provider's revocation_endpoint, or <issuer>/oauth/revoke (GitLab's) when
// discovery names none. Call it at sign-out, after which the token is of
// no use to anyone who copied it. An error never carries a token; the
// caller signs the user out whatever it says.
func (l *Login) Revoke(ctx context.Context, tok Token) error {
	if tok.AccessToken == "" && tok.RefreshToken == "" {
		return nil
	}
	endpoint, err := l.revocationEndpoint(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, t := range []struct{ value, hint string }{{tok.AccessToken, "access_token"}, {tok.RefreshToken, "refresh_token"}} {
		if t.value != "" {
			if err := l.revoke(ctx, endpoint, t.value, t.hint); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// revocationEndpoint returns where tokens are revoked.
func (l *Login) revocationEndpoint(ctx context.Context) (string, error) {
	p, _, err := l.discover(ctx)
	if err != nil {
		return "", fmt.Errorf("auth: revoke token: %w", err)
	}
	var claims struct {
		RevocationEndpoint string `json:"revocation_endpoint"`
	}
	if err := p.Claims(&claims); err == nil && claims.RevocationEndpoint != "" {
		return claims.RevocationEndpoint, nil
	}
	return l.issuer + "/oauth/revoke", nil
}

// revoke sends one revocation request. The provider answers 200 for a
// token it revoked and for one it does not know (RFC 7009 2.2).
func (l *Login) revoke(ctx context.Context, endpoint, token, hint string) error {
	cfg := l.oauthConfig()
	form := url.Values{
		"token":           {token},
		"token_type_hint": {hint},
		"client_id":       {cfg.ClientID},
		"client_secret":   {cfg.ClientSecret},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return fmt.Errorf("auth: revoke %s: build request for %s: %w", hint, endpoint, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := l.client.Do(req)
	if err != nil {
		return fmt.Errorf("auth: revoke %s at %s: %w", hint, endpoint, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	// The body may echo the request: keep only the error code.
	var e struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	return fmt.Errorf("auth: revoke %s at %s: provider answered %d %q", hint, endpoint, resp.StatusCode, sanitizeErrorCode(e.Error))
}
