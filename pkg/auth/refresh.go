package auth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// RefreshMargin is how close to its expiry FreshToken renews a token, so a
// GitLab call started now does not fail half-way.
const RefreshMargin = time.Minute

// FreshToken returns tok unchanged while it is valid for more than
// RefreshMargin (or has no known expiry), and otherwise a renewed token from
// the provider's refresh grant. GitLab access tokens live two hours, far less
// than a session, so call it before using the token; if the result differs
// from tok, store it with Sessions.Save. Errors wrap ErrTokenExpired when the
// user must sign in again.
func (l *Login) FreshToken(ctx context.Context, tok Token) (Token, error) {
	if tok.Expiry.IsZero() || l.sessions.now().Add(RefreshMargin).Before(tok.Expiry) {
		return tok, nil
	}
	if tok.RefreshToken == "" {
		return Token{}, fmt.Errorf("auth: refresh token: none was issued: %w", ErrTokenExpired)
	}
	if _, _, err := l.discover(ctx); err != nil {
		return Token{}, err
	}
	ctx = oidc.ClientContext(ctx, l.client)
	// An expiry in the past makes the token source refresh at once.
	src := l.oauthConfig().TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken, Expiry: time.Unix(1, 0)})
	fresh, err := src.Token()
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			// The body may echo the refresh token: keep only the error code.
			return Token{}, fmt.Errorf("auth: refresh token: provider answered %q: %w", sanitizeErrorCode(re.ErrorCode), ErrTokenExpired)
		}
		return Token{}, fmt.Errorf("auth: refresh token: %w", err)
	}
	out := Token{AccessToken: fresh.AccessToken, RefreshToken: fresh.RefreshToken, Expiry: fresh.Expiry}
	if out.RefreshToken == "" {
		out.RefreshToken = tok.RefreshToken
	}
	return out, nil
}
