package auth

import (
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"gitlab-serverless-runner/pkg/seal"
)

// DefaultSessionMaxAge is how long a session lasts when SessionConfig.MaxAge
// is zero. The expiry is absolute: using the session does not extend it.
const DefaultSessionMaxAge = 12 * time.Hour

// DefaultSessionCookie is the session cookie's name when
// SessionConfig.CookieName is empty.
const DefaultSessionCookie = "gsr_session"

// MaxCookieBytes bounds a cookie's name and value together. Browsers keep
// about 4096 bytes per cookie; we stay below that rather than splitting a
// session over several cookies, because a GitLab identity and its OAuth token
// need well under half of it.
const MaxCookieBytes = 4000

var (
	// ErrNotSignedIn is returned by Sessions.Get when the request carries no
	// usable session: no cookie, a tampered cookie, a cookie sealed with an
	// unknown key, or an expired session.
	ErrNotSignedIn = errors.New("not signed in")
	// ErrCookieTooLarge is returned when a session would not fit in one
	// cookie. Nothing is written in that case.
	ErrCookieTooLarge = errors.New("session does not fit in a cookie")
)

// SessionConfig configures Sessions. The zero value of every field but Keys
// is a sensible default.
type SessionConfig struct {
	// Keys seal the session and login cookies (SESSION_KEY). Required.
	Keys *seal.Keyring
	// MaxAge is the session's absolute lifetime; zero means 12 hours.
	MaxAge time.Duration
	// InsecureCookies drops the Secure attribute from every cookie. Set it
	// only for local development over plain http://, where browsers would
	// otherwise refuse the cookies.
	InsecureCookies bool
	// CookieName names the session cookie; empty means "gsr_session".
	CookieName string
	// Now tells the time; nil means time.Now. Tests use it to age sessions.
	Now func() time.Time
}

// Session is what a signed-in request carries.
type Session struct {
	// Identity is who is signed in, with their OAuth token.
	Identity Identity `json:"id"`
	// CSRF is this session's anti-forgery token; see CSRFToken.
	CSRF string `json:"csrf"`
	// IssuedAt is when the person signed in.
	IssuedAt time.Time `json:"iat"`
	// ExpiresAt is when the session ends, whatever happens in between.
	ExpiresAt time.Time `json:"exp"`
}

// Sessions reads and writes encrypted session cookies. It keeps no state on
// the server, so any number of Lambda instances share sessions through the
// key alone. A Sessions is safe for concurrent use.
type Sessions struct {
	keys   *seal.Keyring
	maxAge time.Duration
	secure bool
	name   string
	now    func() time.Time
}

// NewSessions validates cfg and returns Sessions.
func NewSessions(cfg SessionConfig) (*Sessions, error) {
	if cfg.Keys == nil {
		return nil, errors.New("auth: configure sessions: no keys")
	}
	if cfg.MaxAge < 0 {
		return nil, fmt.Errorf("auth: configure sessions: negative max age %s", cfg.MaxAge)
	}
	s := &Sessions{
		keys:   cfg.Keys,
		maxAge: cfg.MaxAge,
		secure: !cfg.InsecureCookies,
		name:   cfg.CookieName,
		now:    cfg.Now,
	}
	if s.maxAge == 0 {
		s.maxAge = DefaultSessionMaxAge
	}
	if s.name == "" {
		s.name = DefaultSessionCookie
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s, nil
}

// CookieName returns the name of the session cookie.
func (s *Sessions) CookieName() string { return s.name }

// Create starts a session for id, writes its cookie and returns it. It fails
// with ErrCookieTooLarge, writing nothing, if the session would not fit.
func (s *Sessions) Create(w http.ResponseWriter, id Identity) (*Session, error) {
	now := s.now()
	sess := &Session{
		Identity:  id,
		CSRF:      randomToken(),
		IssuedAt:  now,
		ExpiresAt: now.Add(s.maxAge),
	}
	if err := s.Save(w, sess); err != nil {
		return nil, err
	}
	return sess, nil
}

// Save writes sess back to its cookie, for example after refreshing the OAuth
// token. The expiry stays where Create put it.
func (s *Sessions) Save(w http.ResponseWriter, sess *Session) error {
	plain, err := json.Marshal(sess)
	if err != nil {
		return fmt.Errorf("auth: encode session: %w", err)
	}
	value, err := s.seal(s.name, plain)
	if err != nil {
		return err
	}
	if len(s.name)+1+len(value) > MaxCookieBytes {
		return fmt.Errorf("auth: save session of %d bytes: %w", len(plain), ErrCookieTooLarge)
	}
	maxAge := int(sess.ExpiresAt.Sub(s.now()) / time.Second)
	if maxAge <= 0 {
		return fmt.Errorf("auth: save session: %w", ErrNotSignedIn)
	}
	http.SetCookie(w, s.cookie(s.name, value, maxAge))
	return nil
}

// Get returns the request's session, or ErrNotSignedIn (wrapped) if there is
// none that is intact, sealed with a configured key and unexpired.
func (s *Sessions) Get(r *http.Request) (*Session, error) {
	c, err := r.Cookie(s.name)
	if err != nil {
		return nil, fmt.Errorf("auth: read session: %w", ErrNotSignedIn)
	}
	plain, err := s.open(s.name, c.Value)
	if err != nil {
		return nil, fmt.Errorf("auth: open session cookie: %w: %w", ErrNotSignedIn, err)
	}
	var sess Session
	if err := json.Unmarshal(plain, &sess); err != nil {
		return nil, fmt.Errorf("auth: decode session: %w: %w", ErrNotSignedIn, err)
	}
	if !s.now().Before(sess.ExpiresAt) {
		return nil, fmt.Errorf("auth: read session: expired at %s: %w", sess.ExpiresAt.UTC().Format(time.RFC3339), ErrNotSignedIn)
	}
	if sess.Identity.Sub == "" || sess.CSRF == "" {
		return nil, fmt.Errorf("auth: read session: incomplete: %w", ErrNotSignedIn)
	}
	return &sess, nil
}

// Logout clears the session cookie. The web app should only log out on a
// POST that carries a valid CSRF token.
func (s *Sessions) Logout(w http.ResponseWriter) {
	http.SetCookie(w, s.cookie(s.name, "", -1))
}

// cookie builds a cookie with the flags every cookie of ours carries.
func (s *Sessions) cookie(name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     "/",
		MaxAge:   maxAge,
		HttpOnly: true,
		Secure:   s.secure,
		SameSite: http.SameSiteLaxMode,
	}
}

// CSRFToken returns the session's anti-forgery token, for a hidden field in
// every form and a header on every state-changing script request. It is
// empty for a nil session.
func CSRFToken(sess *Session) string {
	if sess == nil {
		return ""
	}
	return sess.CSRF
}

// ValidCSRF reports whether token is sess's anti-forgery token, comparing in
// constant time. A nil session or an empty token is never valid.
func ValidCSRF(sess *Session, token string) bool {
	if sess == nil || sess.CSRF == "" || token == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(sess.CSRF), []byte(token)) == 1
}

// LogValue implements slog.LogValuer: the session without its token or
// CSRF token.
func (s Session) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Any("identity", s.Identity),
		slog.Time("expires_at", s.ExpiresAt),
	)
}

// seal seals a cookie's value for the cookie name, so that one cookie's
// value never opens as another's, and encodes it for a cookie.
func (s *Sessions) seal(name string, plain []byte) (string, error) {
	sealed, err := s.keys.Seal(seal.Cookie(name), string(plain))
	if err != nil {
		return "", fmt.Errorf("auth: seal cookie %s: %w", name, err)
	}
	return base64.RawURLEncoding.EncodeToString(sealed), nil
}

// open reverses seal.
func (s *Sessions) open(name, value string) ([]byte, error) {
	sealed, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil {
		return nil, fmt.Errorf("auth: open cookie %s: not base64", name)
	}
	plain, err := s.keys.Open(seal.Cookie(name), sealed)
	if err != nil {
		return nil, fmt.Errorf("auth: open cookie %s: %w", name, err)
	}
	return []byte(plain), nil
}
