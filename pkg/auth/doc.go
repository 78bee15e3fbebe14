// Package auth owns signing people in and keeping them signed in: the OpenID
// Connect authorization code flow against GitLab (PKCE S256, state and nonce),
// the encrypted session cookie that carries the signed-in identity and the
// user's GitLab OAuth token, and the per-session CSRF token.
//
// Everything here is plain net/http, so any router can mount it. With Echo:
//
//	keys, _ := seal.ParseKeys(os.Getenv("SESSION_KEY"))
//	sessions, _ := auth.NewSessions(auth.SessionConfig{Keys: keys})
//	login, _ := auth.NewLogin(auth.LoginConfig{ClientID: id, ClientSecret: secret,
//		RedirectURL: "https://app.example.com/auth/callback"}, sessions)
//	e.GET("/login", echo.WrapHandler(http.HandlerFunc(login.Begin)))
//	e.GET("/auth/callback", echo.WrapHandler(login.CallbackHandler(upsertUser)))
//	// in handlers: sess, err := sessions.Get(c.Request())
//	// forms: auth.CSRFToken(sess) in a hidden field, auth.ValidCSRF(sess, c.FormValue("csrf"))
//	// logout (a POST with a valid CSRF token): sessions.Logout(c.Response())
//	// before calling GitLab as the user: tok, err := login.FreshToken(ctx, sess.Identity.OAuthToken);
//	// if it changed, store it: sess.Identity.OAuthToken = tok; sessions.Save(c.Response(), sess)
//
// Sign-in errors wrap one of the Err* values; StatusCode maps them to an HTTP
// status in one place and UserMessage gives text safe to show.
//
// The GitLab OAuth access token lives only in the session cookie, sealed with
// AES-256-GCM; it is never stored elsewhere, logged or printed (Token redacts
// itself in fmt and slog output).
package auth
