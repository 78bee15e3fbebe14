package auth

import (
	"log/slog"
	"time"
)

// Identity is a person signed in through OIDC.
type Identity struct {
	// Sub is the stable, unique user key: Issuer + "|" + Subject. Two GitLab
	// instances can hand out the same subject; Sub keeps them apart.
	Sub string `json:"sub"`
	// Issuer is the OIDC issuer URL that vouched for this person.
	Issuer string `json:"iss"`
	// Subject is the issuer's user id (GitLab's numeric user id as a string).
	Subject string `json:"subj"`
	// Username is the preferred_username claim, or nickname when absent.
	Username string `json:"user,omitempty"`
	// Name is the display name.
	Name string `json:"name,omitempty"`
	// Email is the user's email address, when the email scope granted it.
	Email string `json:"email,omitempty"`
	// AvatarURL is the picture claim.
	AvatarURL string `json:"avatar,omitempty"`
	// OAuthToken is the user's GitLab OAuth token. It lives only in the
	// session cookie.
	OAuthToken Token `json:"tok"`
}

// Token is a user's OAuth token from the provider. It prints and logs as
// "[redacted]" so it cannot leak through fmt or slog by accident; read the
// fields explicitly where the token is needed.
type Token struct {
	// AccessToken authenticates GitLab API calls as the user (Bearer).
	AccessToken string `json:"at"`
	// RefreshToken renews AccessToken; empty if the provider sent none.
	RefreshToken string `json:"rt,omitempty"`
	// Expiry is when AccessToken stops working; zero if unknown.
	Expiry time.Time `json:"exp,omitzero"`
}

const redacted = "[redacted]"

// String implements fmt.Stringer without revealing the token.
func (Token) String() string { return redacted }

// GoString implements fmt.GoStringer without revealing the token.
func (Token) GoString() string { return redacted }

// LogValue implements slog.LogValuer without revealing the token.
func (Token) LogValue() slog.Value { return slog.StringValue(redacted) }

// LogValue implements slog.LogValuer: the identity without its token.
func (id Identity) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("sub", id.Sub),
		slog.String("username", id.Username),
		slog.String("name", id.Name),
		slog.String("email", id.Email),
	)
}
