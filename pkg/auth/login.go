package auth

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// DefaultIssuer is the OIDC issuer used when LoginConfig.Issuer is empty.
const DefaultIssuer = "https://gitlab.com"

// GitLab OAuth scopes that let the app create runners with the user's token
// (POST /user/runners). ScopeCreateRunner is the narrow one (GitLab 16.x and
// later); ScopeAPI grants full API access and is only for instances that lack
// create_runner.
const (
	ScopeCreateRunner = "create_runner"
	ScopeAPI          = "api"
)

// LoginTTL is how long a started sign-in stays valid.
const LoginTTL = 10 * time.Minute

// loginCookie names the short-lived cookie holding one sign-in's secrets.
const loginCookie = "gsr_login"

// DefaultScopes returns the scopes requested when LoginConfig.Scopes is
// empty: OpenID identity with profile and email, and read_user so the app
// can read the user's GitLab profile with their token.
func DefaultScopes() []string {
	return []string{oidc.ScopeOpenID, "profile", "email", "read_user"}
}

// LoginConfig configures the OIDC sign-in.
type LoginConfig struct {
	// Issuer is the OIDC issuer URL; empty means https://gitlab.com. For a
	// self-managed GitLab it is the instance URL.
	Issuer string
	// ClientID and ClientSecret identify the OAuth application registered
	// in GitLab (Admin or User settings > Applications).
	ClientID     string
	ClientSecret string
	// RedirectURL is the absolute URL of the route that runs Callback; it
	// must be registered with the OAuth application.
	RedirectURL string
	// Scopes replaces DefaultScopes when not empty; openid is added if
	// missing.
	Scopes []string
	// CreateRunnerScope, when not empty, is added to the scopes so the user's
	// token can create runners ("create it for me"): ScopeCreateRunner, or
	// ScopeAPI for GitLab instances older than 16.
	CreateRunnerScope string
	// HTTPClient talks to the provider; nil means a client with a 15 second
	// timeout.
	HTTPClient *http.Client
	// DiscoveryAttempts is how many times provider discovery is tried per
	// request before giving up; zero means 3.
	DiscoveryAttempts int
	// DiscoveryBackoff is the wait before the second attempt, doubled each
	// time; zero means 500ms.
	DiscoveryBackoff time.Duration
	// Logger receives sign-in events; nil means slog.Default().
	Logger *slog.Logger
}

// Login runs the OIDC authorization code flow with PKCE. Discovery happens
// lazily on first use and is retried, so a cold start does not fail while
// the provider is briefly unreachable; once it succeeds it is kept. A Login
// is safe for concurrent use.
type Login struct {
	issuer    string
	oauth     oauth2.Config
	client    *http.Client
	attempts  int
	backoff   time.Duration
	log       *slog.Logger
	sessions  *Sessions
	used      *usedStates
	mu        sync.Mutex
	provider  *oidc.Provider
	verifier  *oidc.IDTokenVerifier
	discovery sync.Mutex
}

// NewLogin validates cfg and returns a Login that seals its short-lived
// login cookie with the sessions' keys and cookie flags. It does not contact
// the issuer.
func NewLogin(cfg LoginConfig, sessions *Sessions) (*Login, error) {
	if sessions == nil {
		return nil, errors.New("auth: configure login: no sessions")
	}
	if cfg.ClientID == "" || cfg.ClientSecret == "" {
		return nil, errors.New("auth: configure login: client id and client secret are required")
	}
	if cfg.RedirectURL == "" {
		return nil, errors.New("auth: configure login: redirect URL is required")
	}
	issuer := strings.TrimSuffix(cfg.Issuer, "/")
	if issuer == "" {
		issuer = DefaultIssuer
	}
	scopes := cfg.Scopes
	if len(scopes) == 0 {
		scopes = DefaultScopes()
	}
	scopes = addScope(scopes, oidc.ScopeOpenID)
	if cfg.CreateRunnerScope != "" {
		scopes = addScope(scopes, cfg.CreateRunnerScope)
	}
	l := &Login{
		issuer: issuer,
		oauth: oauth2.Config{
			ClientID:     cfg.ClientID,
			ClientSecret: cfg.ClientSecret,
			RedirectURL:  cfg.RedirectURL,
			Scopes:       scopes,
		},
		client:   cfg.HTTPClient,
		attempts: cfg.DiscoveryAttempts,
		backoff:  cfg.DiscoveryBackoff,
		log:      cfg.Logger,
		sessions: sessions,
		used:     &usedStates{seen: map[string]time.Time{}},
	}
	if l.client == nil {
		l.client = &http.Client{Timeout: 15 * time.Second}
	}
	if l.attempts <= 0 {
		l.attempts = 3
	}
	if l.backoff <= 0 {
		l.backoff = 500 * time.Millisecond
	}
	if l.log == nil {
		l.log = slog.Default()
	}
	return l, nil
}

func addScope(scopes []string, scope string) []string {
	for _, s := range scopes {
		if s == scope {
			return scopes
		}
	}
	return append(append([]string(nil), scopes...), scope)
}

// Scopes returns the OAuth scopes the sign-in requests.
func (l *Login) Scopes() []string { return append([]string(nil), l.oauth.Scopes...) }

// Issuer returns the configured issuer URL.
func (l *Login) Issuer() string { return l.issuer }

// loginState is what the login cookie holds between Begin and Callback.
type loginState struct {
	State    string    `json:"s"`
	Nonce    string    `json:"n"`
	Verifier string    `json:"v"`
	ReturnTo string    `json:"r"`
	Expires  time.Time `json:"e"`
}

// Begin starts a sign-in: it stores a fresh state, nonce and PKCE verifier in
// a sealed cookie valid for 10 minutes and redirects the browser to the
// provider. The optional query parameter return_to (a path on this site)
// is where CallbackHandler sends the user afterwards. If the provider cannot
// be discovered, Begin answers 503 with a plain explanation.
func (l *Login) Begin(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	authURL, err := l.start(w, r)
	if err != nil {
		l.log.ErrorContext(r.Context(), "begin sign-in", "issuer", l.issuer, "error", err)
		http.Error(w, UserMessage(err), StatusCode(err))
		return
	}
	http.Redirect(w, r, authURL, http.StatusFound)
}

func (l *Login) start(w http.ResponseWriter, r *http.Request) (string, error) {
	if _, _, err := l.discover(r.Context()); err != nil {
		return "", err
	}
	st := loginState{
		State:    randomToken(),
		Nonce:    randomToken(),
		Verifier: oauth2.GenerateVerifier(),
		ReturnTo: SafeReturnTo(r.URL.Query().Get("return_to")),
		Expires:  l.sessions.now().Add(LoginTTL),
	}
	plain, err := json.Marshal(st)
	if err != nil {
		return "", fmt.Errorf("auth: encode login state: %w", err)
	}
	value, err := l.sessions.seal(loginCookie, plain)
	if err != nil {
		return "", err
	}
	http.SetCookie(w, l.sessions.cookie(loginCookie, value, int(LoginTTL/time.Second)))
	return l.oauthConfig().AuthCodeURL(st.State, oidc.Nonce(st.Nonce), oauth2.S256ChallengeOption(st.Verifier)), nil
}

// SafeReturnTo returns target if it is a path on this site, and "/"
// otherwise, so a crafted return_to cannot send users elsewhere.
func SafeReturnTo(target string) string {
	if !strings.HasPrefix(target, "/") || strings.HasPrefix(target, "//") || strings.HasPrefix(target, "/\\") ||
		strings.ContainsAny(target, "\r\n\t\\") {
		return "/"
	}
	return target
}

// Callback finishes a sign-in at the redirect URL: it checks the state
// against the login cookie (which it clears), exchanges the code with the
// PKCE verifier, verifies the ID token (signature, issuer, audience, expiry)
// and its nonce, and returns who signed in and the return_to path given to
// Begin. Errors wrap one of the Err* sign-in failures; see StatusCode.
func (l *Login) Callback(w http.ResponseWriter, r *http.Request) (Identity, string, error) {
	w.Header().Set("Cache-Control", "no-store")
	http.SetCookie(w, l.sessions.cookie(loginCookie, "", -1))
	q := r.URL.Query()
	if code := q.Get("error"); code != "" {
		return Identity{}, "", fmt.Errorf("auth: finish sign-in: provider returned %q: %w", sanitizeErrorCode(code), ErrProviderDenied)
	}
	st, err := l.readState(r)
	if err != nil {
		return Identity{}, "", err
	}
	got := q.Get("state")
	if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(st.State)) != 1 {
		return Identity{}, "", fmt.Errorf("auth: finish sign-in: check state: %w", ErrStateMismatch)
	}
	if !l.used.claim(st.State, st.Expires, l.sessions.now()) {
		return Identity{}, "", fmt.Errorf("auth: finish sign-in: login state already used: %w", ErrNoLoginState)
	}
	code := q.Get("code")
	if code == "" {
		return Identity{}, "", fmt.Errorf("auth: finish sign-in: no code: %w", ErrInvalidCallback)
	}
	provider, verifier, err := l.discover(r.Context())
	if err != nil {
		return Identity{}, "", err
	}
	ctx := oidc.ClientContext(r.Context(), l.client)
	tok, err := l.oauthConfig().Exchange(ctx, code, oauth2.VerifierOption(st.Verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			// The provider's error body may echo the code: keep only its error code.
			status := 0
			if re.Response != nil {
				status = re.Response.StatusCode
			}
			return Identity{}, "", fmt.Errorf("auth: exchange code: provider answered %d %q: %w", status, sanitizeErrorCode(re.ErrorCode), ErrTokenExchange)
		}
		return Identity{}, "", fmt.Errorf("auth: exchange code: %w: %w", ErrTokenExchange, err)
	}
	rawID, _ := tok.Extra("id_token").(string)
	if rawID == "" {
		return Identity{}, "", fmt.Errorf("auth: verify ID token: token response has none: %w", ErrInvalidIDToken)
	}
	idt, err := verifier.Verify(ctx, rawID)
	if err != nil {
		return Identity{}, "", fmt.Errorf("auth: verify ID token: %w: %w", ErrInvalidIDToken, err)
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(st.Nonce)) != 1 {
		return Identity{}, "", fmt.Errorf("auth: verify ID token: nonce does not match this sign-in: %w", ErrInvalidIDToken)
	}
	var c profileClaims
	if err := idt.Claims(&c); err != nil {
		return Identity{}, "", fmt.Errorf("auth: decode ID token claims: %w: %w", ErrInvalidIDToken, err)
	}
	if c.username() == "" && provider.UserInfoEndpoint() != "" {
		// Some providers put the profile only in userinfo.
		info, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
		if err != nil {
			l.log.WarnContext(r.Context(), "read userinfo", "issuer", idt.Issuer, "error", err)
		} else if info.Subject == idt.Subject {
			var more profileClaims
			if err := info.Claims(&more); err == nil {
				c.fill(more)
			}
		}
	}
	id := Identity{
		Sub:       idt.Issuer + "|" + idt.Subject,
		Issuer:    idt.Issuer,
		Subject:   idt.Subject,
		Username:  c.username(),
		Name:      c.Name,
		Email:     c.Email,
		AvatarURL: c.Picture,
		OAuthToken: Token{
			AccessToken:  tok.AccessToken,
			RefreshToken: tok.RefreshToken,
			Expiry:       tok.Expiry,
		},
	}
	return id, st.ReturnTo, nil
}

func (l *Login) readState(r *http.Request) (loginState, error) {
	c, err := r.Cookie(loginCookie)
	if err != nil {
		return loginState{}, fmt.Errorf("auth: finish sign-in: no login cookie: %w", ErrNoLoginState)
	}
	plain, err := l.sessions.open(loginCookie, c.Value)
	if err != nil {
		return loginState{}, fmt.Errorf("auth: finish sign-in: open login cookie: %w: %w", ErrNoLoginState, err)
	}
	var st loginState
	if err := json.Unmarshal(plain, &st); err != nil {
		return loginState{}, fmt.Errorf("auth: finish sign-in: decode login cookie: %w: %w", ErrNoLoginState, err)
	}
	if !l.sessions.now().Before(st.Expires) {
		return loginState{}, fmt.Errorf("auth: finish sign-in: login cookie expired: %w", ErrNoLoginState)
	}
	return st, nil
}

// CallbackHandler returns the handler to mount at the redirect URL. On
// success it calls onLogin (if not nil; for example to record the user),
// creates the session and redirects (303) to the return_to path given to
// Begin. On failure it answers StatusCode(err) with UserMessage(err) as
// plain text and logs the full error.
func (l *Login) CallbackHandler(onLogin func(ctx context.Context, id Identity) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, returnTo, err := l.Callback(w, r)
		if err == nil && onLogin != nil {
			if err = onLogin(r.Context(), id); err != nil {
				err = fmt.Errorf("auth: record sign-in of %s: %w", id.Sub, err)
			}
		}
		if err == nil {
			_, err = l.sessions.Create(w, id)
		}
		if err != nil {
			l.log.WarnContext(r.Context(), "sign-in failed", "issuer", l.issuer, "error", err)
			http.Error(w, UserMessage(err), StatusCode(err))
			return
		}
		l.log.InfoContext(r.Context(), "signed in", "sub", id.Sub, "username", id.Username)
		http.Redirect(w, r, returnTo, http.StatusSeeOther)
	})
}

// oauthConfig returns the OAuth configuration with the discovered endpoint.
func (l *Login) oauthConfig() *oauth2.Config {
	l.mu.Lock()
	defer l.mu.Unlock()
	cfg := l.oauth
	return &cfg
}

// discover returns the provider, discovering it first if needed. Discovery
// runs one at a time; a failure is not remembered, so the next request tries
// again.
func (l *Login) discover(ctx context.Context) (*oidc.Provider, *oidc.IDTokenVerifier, error) {
	l.mu.Lock()
	p, v := l.provider, l.verifier
	l.mu.Unlock()
	if p != nil {
		return p, v, nil
	}
	l.discovery.Lock()
	defer l.discovery.Unlock()
	l.mu.Lock()
	p, v = l.provider, l.verifier
	l.mu.Unlock()
	if p != nil {
		return p, v, nil
	}
	var lastErr error
	wait := l.backoff
	for attempt := 1; attempt <= l.attempts; attempt++ {
		p, lastErr = oidc.NewProvider(oidc.ClientContext(ctx, l.client), l.issuer)
		if lastErr == nil {
			v = p.Verifier(&oidc.Config{ClientID: l.oauth.ClientID})
			l.mu.Lock()
			l.provider, l.verifier = p, v
			l.oauth.Endpoint = p.Endpoint()
			l.mu.Unlock()
			l.log.InfoContext(ctx, "discovered OIDC provider", "issuer", l.issuer, "attempt", attempt)
			return p, v, nil
		}
		l.log.WarnContext(ctx, "discover OIDC provider", "issuer", l.issuer, "attempt", attempt, "error", lastErr)
		if attempt == l.attempts {
			break
		}
		select {
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("auth: discover OIDC issuer %s: %w: %w", l.issuer, ErrIssuerUnreachable, ctx.Err())
		case <-time.After(wait):
		}
		wait *= 2
	}
	return nil, nil, fmt.Errorf("auth: discover OIDC issuer %s (%d attempts): %w: %w", l.issuer, l.attempts, ErrIssuerUnreachable, lastErr)
}

// profileClaims are the ID token (or userinfo) claims GitLab sends.
type profileClaims struct {
	PreferredUsername string `json:"preferred_username"`
	Nickname          string `json:"nickname"`
	Name              string `json:"name"`
	Email             string `json:"email"`
	Picture           string `json:"picture"`
}

func (c profileClaims) username() string {
	if c.PreferredUsername != "" {
		return c.PreferredUsername
	}
	return c.Nickname
}

func (c *profileClaims) fill(more profileClaims) {
	for _, f := range []struct {
		dst *string
		src string
	}{
		{&c.PreferredUsername, more.PreferredUsername}, {&c.Nickname, more.Nickname},
		{&c.Name, more.Name}, {&c.Email, more.Email}, {&c.Picture, more.Picture},
	} {
		if *f.dst == "" {
			*f.dst = f.src
		}
	}
}

// sanitizeErrorCode keeps an OAuth error code printable and short: it comes
// from the query string, which anyone can craft.
func sanitizeErrorCode(code string) string {
	var b strings.Builder
	for _, r := range code {
		if b.Len() >= 64 {
			break
		}
		if r == '_' || r == '-' || r == '.' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// usedStates remembers, in this process, the login states already used, so a
// replayed callback is refused before the code is exchanged. Other processes
// do not see it; there the provider's single-use codes stop the replay.
type usedStates struct {
	mu   sync.Mutex
	seen map[string]time.Time
}

// maxUsedStates bounds the memory the replay guard may take.
const maxUsedStates = 50000

// claim records state as used until expires and reports whether it was new.
func (u *usedStates) claim(state string, expires, now time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	for s, exp := range u.seen {
		if !now.Before(exp) {
			delete(u.seen, s)
		}
	}
	if _, ok := u.seen[state]; ok {
		return false
	}
	if len(u.seen) < maxUsedStates {
		u.seen[state] = expires
	}
	return true
}
