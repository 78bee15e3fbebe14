// Package devoidc runs an OpenID Connect provider on the loopback interface
// for local development ("make local") and tests. It is DEVELOPMENT-ONLY: it
// signs in whoever asks, as whichever user it is told to, with no password.
// Never start it in a deployed function.
//
// It wraps mockoidc with what the sign-in in package auth needs: the
// profile claims GitLab sends (preferred_username, nickname, name, email,
// picture), GitLab's extra scopes (read_user, create_runner, api) accepted
// and ignored, token lifetimes reported in seconds, a choice of user, and a
// token revocation endpoint (RFC 7009, as GitLab's /oauth/revoke) that
// records each request and makes revoked tokens fail.
//
//	p, err := devoidc.Start(devoidc.Options{User: devoidc.User{Subject: "42", Username: "ada"}})
//	login, err := auth.NewLogin(p.LoginConfig("http://127.0.0.1:8080/auth/callback"), sessions)
package devoidc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/oauth2-proxy/mockoidc"

	"gitlab-serverless-runner/pkg/auth"
)

// User is who signs in.
type User struct {
	// Subject is the stable user id (the "sub" claim). Required.
	Subject string
	// Username is sent as preferred_username and nickname.
	Username string
	// Name is the display name.
	Name string
	// Email is the email address, sent verified.
	Email string
	// AvatarURL is sent as the picture claim.
	AvatarURL string
}

// DefaultUser is who signs in when Options.User is empty.
func DefaultUser() User {
	return User{Subject: "1", Username: "developer", Name: "Local Developer", Email: "developer@example.com"}
}

// Options configures Start. The zero value is ready to use.
type Options struct {
	// Addr is the loopback address to listen on; empty means 127.0.0.1:0
	// (a free port). Non-loopback addresses are refused.
	Addr string
	// User signs in whenever no user is queued; zero means DefaultUser().
	User User
	// ClientID and ClientSecret are the accepted OAuth client; empty means
	// random ones.
	ClientID     string
	ClientSecret string
}

// RevocationPath is the path of the provider's token revocation endpoint
// (RFC 7009), GitLab's. mockoidc serves only its own endpoints, so the
// revocation endpoint has a listener of its own on the same host;
// discovery names it (revocation_endpoint).
const RevocationPath = "/oauth/revoke"

// Provider is a running development OIDC provider.
type Provider struct {
	m      *mockoidc.MockOIDC
	revSrv *http.Server
	revURL string

	mu   sync.Mutex // serialises sign-ins so the queue and default agree
	user User

	rmu          sync.Mutex
	revocations  []Revocation
	revoked      map[string]bool
	revokeStatus int // answer revocations with this status instead; 0 revokes
}

// Revocation is one request to the revocation endpoint.
type Revocation struct {
	// Token is the token the client asked to revoke.
	Token string
	// TokenTypeHint is the client's token_type_hint.
	TokenTypeHint string
	// ClientID is the client that asked.
	ClientID string
	// Status is what the provider answered: 200 when it revoked the
	// token.
	Status int
}

// Start starts a provider on a loopback address. Close stops it.
func Start(opts Options) (*Provider, error) {
	addr := opts.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("devoidc: parse address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("devoidc: listen on %q: only loopback addresses are allowed", addr)
	}
	user := opts.User
	if user == (User{}) {
		user = DefaultUser()
	}
	if user.Subject == "" {
		return nil, errors.New("devoidc: start: the user needs a subject")
	}
	m, err := mockoidc.NewServer(nil)
	if err != nil {
		return nil, fmt.Errorf("devoidc: create provider: %w", err)
	}
	if opts.ClientID != "" {
		m.ClientID = opts.ClientID
	}
	if opts.ClientSecret != "" {
		m.ClientSecret = opts.ClientSecret
	}
	p := &Provider{m: m, user: user, revoked: map[string]bool{}}
	if err := m.AddMiddleware(p.middleware); err != nil {
		return nil, fmt.Errorf("devoidc: configure provider: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("devoidc: listen on %s: %w", addr, err)
	}
	revLn, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("devoidc: listen for revocations on %s: %w", host, err)
	}
	if err := m.Start(ln, nil); err != nil {
		ln.Close()
		revLn.Close()
		return nil, fmt.Errorf("devoidc: start provider: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc(RevocationPath, p.revoke)
	p.revSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	p.revURL = "http://" + revLn.Addr().String() + RevocationPath
	go func() { _ = p.revSrv.Serve(revLn) }()
	return p, nil
}

// RevocationEndpoint returns the URL of the token revocation endpoint.
func (p *Provider) RevocationEndpoint() string { return p.revURL }

// Issuer returns the issuer URL to configure the sign-in with.
func (p *Provider) Issuer() string { return p.m.Issuer() }

// ClientID returns the OAuth client id the provider accepts.
func (p *Provider) ClientID() string { return p.m.ClientID }

// ClientSecret returns the OAuth client secret the provider accepts.
func (p *Provider) ClientSecret() string { return p.m.ClientSecret }

// LoginConfig returns a sign-in configuration for this provider with the
// given redirect URL.
func (p *Provider) LoginConfig(redirectURL string) auth.LoginConfig {
	return auth.LoginConfig{
		Issuer:       p.Issuer(),
		ClientID:     p.ClientID(),
		ClientSecret: p.ClientSecret(),
		RedirectURL:  redirectURL,
	}
}

// SignInAs makes u the user of every later sign-in that has no queued user.
func (p *Provider) SignInAs(u User) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.user = u
}

// QueueUser makes u the user of the next sign-in only; several queued users
// sign in in order.
func (p *Provider) QueueUser(u User) {
	p.m.QueueUser(gitlabUser(u))
}

// Close stops the provider.
func (p *Provider) Close() error {
	_ = p.revSrv.Close()
	if err := p.m.Shutdown(); err != nil {
		return fmt.Errorf("devoidc: stop provider: %w", err)
	}
	return nil
}

// Revocations returns the requests made to the revocation endpoint, in
// order.
func (p *Provider) Revocations() []Revocation {
	p.rmu.Lock()
	defer p.rmu.Unlock()
	return slices.Clone(p.revocations)
}

// FailRevocations makes the revocation endpoint answer status (with an
// OAuth error body) and revoke nothing, as a provider that is down would;
// 0 makes it revoke again.
func (p *Provider) FailRevocations(status int) {
	p.rmu.Lock()
	defer p.rmu.Unlock()
	p.revokeStatus = status
}

func (p *Provider) isRevoked(token string) bool {
	p.rmu.Lock()
	defer p.rmu.Unlock()
	return token != "" && p.revoked[token]
}

// middleware adapts mockoidc to a GitLab-like provider.
func (p *Provider) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case mockoidc.AuthorizationEndpoint:
			p.authorize(next, w, r)
		case mockoidc.TokenEndpoint:
			if r.ParseForm() == nil && r.PostForm.Get("grant_type") == "refresh_token" && p.isRevoked(r.PostForm.Get("refresh_token")) {
				oauthError(w, http.StatusBadRequest, "invalid_grant")
				return
			}
			tokenInSeconds(next, w, r)
		case mockoidc.UserinfoEndpoint:
			if bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && p.isRevoked(bearer) {
				oauthError(w, http.StatusUnauthorized, "invalid_token")
				return
			}
			next.ServeHTTP(w, r)
		case mockoidc.DiscoveryEndpoint:
			p.discovery(next, w, r)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// discovery adds the revocation endpoint to mockoidc's discovery document.
func (p *Provider) discovery(next http.Handler, w http.ResponseWriter, r *http.Request) {
	rewriteJSON(next, w, r, func(fields map[string]json.RawMessage) bool {
		fields["revocation_endpoint"], _ = json.Marshal(p.revURL)
		return true
	})
}

// revoke serves the revocation endpoint as GitLab's POST /oauth/revoke:
// the client authenticates with client_id and client_secret in the form
// (or HTTP Basic), and an unknown token is answered 200 like a known one
// (RFC 7009 2.2). A revoked token no longer works at userinfo (access
// tokens) or for a refresh (refresh tokens).
func (p *Provider) revoke(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.ParseForm() != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request")
		return
	}
	id, secret, basic := r.BasicAuth()
	if !basic {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	rev := Revocation{Token: r.PostForm.Get("token"), TokenTypeHint: r.PostForm.Get("token_type_hint"), ClientID: id}
	p.rmu.Lock()
	defer p.rmu.Unlock()
	switch {
	case id != p.m.ClientID || secret != p.m.ClientSecret:
		rev.Status = http.StatusUnauthorized
		oauthError(w, rev.Status, "invalid_client")
	case rev.Token == "":
		rev.Status = http.StatusBadRequest
		oauthError(w, rev.Status, "invalid_request")
	case p.revokeStatus != 0:
		rev.Status = p.revokeStatus
		oauthError(w, rev.Status, "server_error")
	default:
		rev.Status = http.StatusOK
		p.revoked[rev.Token] = true
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("{}"))
	}
	p.revocations = append(p.revocations, rev)
}

func oauthError(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code})
}

// authorize drops the scopes mockoidc does not know (GitLab's API scopes)
// and makes sure the chosen user signs in.
func (p *Provider) authorize(next http.Handler, w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if scope := q.Get("scope"); scope != "" {
		var kept []string
		for _, s := range strings.Fields(scope) {
			if slices.Contains(mockoidc.ScopesSupported, s) {
				kept = append(kept, s)
			}
		}
		q.Set("scope", strings.Join(kept, " "))
		r.URL.RawQuery = q.Encode()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.m.UserQueue.Lock()
	empty := len(p.m.UserQueue.Queue) == 0
	p.m.UserQueue.Unlock()
	if empty {
		p.m.QueueUser(gitlabUser(p.user))
	}
	next.ServeHTTP(w, r)
}

// tokenInSeconds rewrites expires_in, which mockoidc reports in
// nanoseconds, to seconds as OAuth 2.0 defines it.
func tokenInSeconds(next http.Handler, w http.ResponseWriter, r *http.Request) {
	rewriteJSON(next, w, r, func(fields map[string]json.RawMessage) bool {
		raw, ok := fields["expires_in"]
		if !ok {
			return false
		}
		ns, err := strconv.ParseInt(string(raw), 10, 64)
		if err != nil || ns < 1e9 {
			return false
		}
		fields["expires_in"] = json.RawMessage(strconv.FormatInt(ns/1e9, 10))
		return true
	})
}

// rewriteJSON serves r with next and passes the fields of a 200 answer's
// JSON object to fix; when fix reports a change, the fixed object is
// written instead of next's body. Any other answer is passed on as it is.
func rewriteJSON(next http.Handler, w http.ResponseWriter, r *http.Request, fix func(map[string]json.RawMessage) bool) {
	rec := &bufferedResponse{header: http.Header{}, status: http.StatusOK}
	next.ServeHTTP(rec, r)
	body := rec.body.Bytes()
	var fields map[string]json.RawMessage
	if rec.status == http.StatusOK && json.Unmarshal(body, &fields) == nil && fix(fields) {
		if fixed, err := json.Marshal(fields); err == nil {
			body = fixed
		}
	}
	for k, v := range rec.header {
		w.Header()[k] = v
	}
	w.Header().Del("Content-Length")
	w.WriteHeader(rec.status)
	_, _ = w.Write(body)
}

type bufferedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header         { return b.header }
func (b *bufferedResponse) WriteHeader(status int)      { b.status = status }
func (b *bufferedResponse) Write(p []byte) (int, error) { return b.body.Write(p) }

// gitlabUser is a User as mockoidc sees it.
type gitlabUser User

var _ mockoidc.User = gitlabUser{}

// ID implements mockoidc.User.
func (u gitlabUser) ID() string { return u.Subject }

// profile returns the claims GitLab would grant for scopes.
func (u gitlabUser) profile(scopes []string) profileClaims {
	c := profileClaims{}
	if slices.Contains(scopes, "profile") {
		c.PreferredUsername, c.Nickname, c.Name, c.Picture = u.Username, u.Username, u.Name, u.AvatarURL
	}
	if slices.Contains(scopes, "email") && u.Email != "" {
		c.Email, c.EmailVerified = u.Email, true
	}
	return c
}

// Userinfo implements mockoidc.User.
func (u gitlabUser) Userinfo(scopes []string) ([]byte, error) {
	return json.Marshal(struct {
		Subject string `json:"sub"`
		profileClaims
	}{u.Subject, u.profile(scopes)})
}

// Claims implements mockoidc.User.
func (u gitlabUser) Claims(scopes []string, base *mockoidc.IDTokenClaims) (jwt.Claims, error) {
	return &idTokenClaims{IDTokenClaims: base, profileClaims: u.profile(scopes)}, nil
}

type profileClaims struct {
	PreferredUsername string `json:"preferred_username,omitempty"`
	Nickname          string `json:"nickname,omitempty"`
	Name              string `json:"name,omitempty"`
	Picture           string `json:"picture,omitempty"`
	Email             string `json:"email,omitempty"`
	EmailVerified     bool   `json:"email_verified,omitempty"`
}

type idTokenClaims struct {
	*mockoidc.IDTokenClaims
	profileClaims
}
