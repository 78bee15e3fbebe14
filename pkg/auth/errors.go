package auth

import (
	"errors"
	"net/http"
)

// Sign-in failures. Callback and Begin wrap exactly one of these, so
// errors.Is tells them apart, StatusCode maps them to an HTTP status and
// UserMessage gives text that is safe to show. None of them ever carries a
// token, code, state or nonce.
var (
	// ErrNoLoginState: the callback came without a usable login cookie: it
	// expired (10 minutes), was tampered with, was already used, or the
	// browser blocks cookies.
	ErrNoLoginState = errors.New("no sign-in is in progress in this browser (it expired or was already used)")
	// ErrStateMismatch: the callback's state parameter is missing or is not
	// the one this browser's login cookie holds (a forged or crossed login).
	ErrStateMismatch = errors.New("the sign-in response does not belong to this browser's sign-in")
	// ErrInvalidCallback: the callback has no authorization code.
	ErrInvalidCallback = errors.New("the sign-in response is incomplete")
	// ErrProviderDenied: the provider answered with an error, for example
	// access_denied when the user declined.
	ErrProviderDenied = errors.New("the identity provider refused the sign-in")
	// ErrIssuerUnreachable: provider discovery failed after every attempt.
	ErrIssuerUnreachable = errors.New("the identity provider cannot be reached")
	// ErrTokenExchange: the provider would not exchange the code for tokens.
	ErrTokenExchange = errors.New("the identity provider did not accept the sign-in code")
	// ErrInvalidIDToken: the ID token is missing, badly signed, for another
	// client or issuer, expired, or carries the wrong nonce.
	ErrInvalidIDToken = errors.New("the identity provider's ID token is not valid")
	// ErrTokenExpired: the user's OAuth token expired and could not be
	// renewed (see Login.FreshToken); they must sign in again.
	ErrTokenExpired = errors.New("your GitLab authorization has expired")
)

// StatusCode maps a sign-in error to the HTTP status to answer with. This is
// the one place that mapping lives.
func StatusCode(err error) int {
	switch {
	case err == nil:
		return http.StatusOK
	case errors.Is(err, ErrNoLoginState), errors.Is(err, ErrStateMismatch), errors.Is(err, ErrInvalidCallback):
		return http.StatusBadRequest
	case errors.Is(err, ErrProviderDenied):
		return http.StatusForbidden
	case errors.Is(err, ErrInvalidIDToken):
		return http.StatusUnauthorized
	case errors.Is(err, ErrIssuerUnreachable):
		return http.StatusServiceUnavailable
	case errors.Is(err, ErrTokenExchange):
		return http.StatusBadGateway
	case errors.Is(err, ErrNotSignedIn), errors.Is(err, ErrTokenExpired):
		return http.StatusUnauthorized
	default:
		return http.StatusInternalServerError
	}
}

// UserMessage returns a message about err that is safe to show to the person
// signing in; the full chain belongs in the logs.
func UserMessage(err error) string {
	for _, known := range []error{ErrNoLoginState, ErrStateMismatch, ErrInvalidCallback, ErrProviderDenied,
		ErrIssuerUnreachable, ErrTokenExchange, ErrInvalidIDToken, ErrNotSignedIn, ErrTokenExpired} {
		if errors.Is(err, known) {
			return "Sign-in failed: " + known.Error() + ". Please sign in again."
		}
	}
	return "Sign-in failed because of an internal error. Please sign in again."
}
