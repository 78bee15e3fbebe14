package web

import (
	"context"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"gitlab-serverless-runner/pkg/auth"
)

// sessionKey is where requireSession keeps the session in the context.
const sessionKey = "session"

// flashCookie carries one message code to the next page.
const flashCookie = "gsr_flash"

// Flash codes. The cookie holds only a code, so a forged cookie can show
// nothing but one of these texts.
var flashes = map[string]struct{ text, kind string }{
	"created":    {"Runner created. Its token was checked with GitLab and is stored encrypted; it will not be shown again.", "ok"},
	"updated":    {"Runner settings saved.", "ok"},
	"deleted":    {"Runner deleted.", "ok"},
	"signed_out": {"You are signed out.", "ok"},
}

func (a *App) cookie(name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name: name, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: !a.cfg.InsecureCookies(), SameSite: http.SameSiteLaxMode,
	}
}

func (a *App) setFlash(c echo.Context, code string) {
	c.SetCookie(a.cookie(flashCookie, code, 60))
}

// takeFlash returns the pending flash message and clears it.
func (a *App) takeFlash(c echo.Context) (text, kind string) {
	ck, err := c.Cookie(flashCookie)
	if err != nil {
		return "", ""
	}
	c.SetCookie(a.cookie(flashCookie, "", -1))
	f, ok := flashes[ck.Value]
	if !ok {
		return "", ""
	}
	return f.text, f.kind
}

func session(c echo.Context) *auth.Session {
	s, _ := c.Get(sessionKey).(*auth.Session)
	return s
}

// requireSession lets signed-in requests through. Others are sent to the
// start page (reads) or refused (writes: they cannot carry a CSRF token).
func (a *App) requireSession(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		sess, err := a.deps.Sessions.Get(c.Request())
		if err != nil {
			if c.Request().Method == http.MethodGet || c.Request().Method == http.MethodHead {
				return c.Redirect(http.StatusSeeOther, "/")
			}
			return &pageError{Status: http.StatusForbidden, Heading: "Signed out",
				Message: "Your session has ended. Sign in again and repeat what you were doing."}
		}
		c.Set(sessionKey, sess)
		return next(c)
	}
}

// checkCSRF refuses state-changing requests without the session's token.
func (a *App) checkCSRF(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		switch c.Request().Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
			return next(c)
		}
		if !auth.ValidCSRF(session(c), c.FormValue("csrf")) {
			return &pageError{Status: http.StatusForbidden, Heading: "Form expired",
				Message: "This form is missing its security token or it belongs to an older session. Go back, reload the page and try again."}
		}
		return next(c)
	}
}

func (a *App) home(c echo.Context) error {
	if _, err := a.deps.Sessions.Get(c.Request()); err == nil {
		return c.Redirect(http.StatusSeeOther, "/runners")
	}
	return a.render(c, http.StatusOK, "login", "Sign in", nil)
}

func (a *App) beginLogin(c echo.Context) error {
	a.deps.Login.Begin(c.Response(), c.Request())
	return nil
}

// callback finishes the sign-in, records the user and starts the session.
func (a *App) callback(c echo.Context) error {
	ctx := c.Request().Context()
	id, returnTo, err := a.deps.Login.Callback(c.Response(), c.Request())
	if err == nil {
		_, err = a.deps.Users.UpsertUser(ctx, id.Sub, id.Username)
	}
	if err == nil {
		_, err = a.deps.Sessions.Create(c.Response(), id)
	}
	if err != nil {
		a.log.WarnContext(ctx, "sign-in failed", "request_id", requestID(c), "error", err)
		return &pageError{Status: auth.StatusCode(err), Heading: "Sign-in failed", Message: auth.UserMessage(err)}
	}
	a.log.InfoContext(ctx, "signed in", "sub", id.Sub, "username", id.Username, "request_id", requestID(c))
	return c.Redirect(http.StatusSeeOther, auth.SafeReturnTo(returnTo))
}

// revokeTimeout bounds the wait for GitLab at sign-out.
const revokeTimeout = 5 * time.Second

// logout revokes the user's GitLab OAuth token, so a copy of it (from the
// cookie, a proxy's log) is of no use afterwards, and ends the session. A
// revocation that fails is logged and the user signed out all the same.
func (a *App) logout(c echo.Context) error {
	ctx := c.Request().Context()
	sess := session(c)
	if tok := sess.Identity.OAuthToken; tok.AccessToken != "" || tok.RefreshToken != "" {
		rctx, cancel := context.WithTimeout(ctx, revokeTimeout)
		err := a.deps.Login.Revoke(rctx, tok)
		cancel()
		if err != nil {
			a.log.WarnContext(ctx, "sign-out: the GitLab OAuth token could not be revoked; signed out all the same",
				"sub", sess.Identity.Sub, "request_id", requestID(c), "error", err)
		} else {
			a.log.InfoContext(ctx, "sign-out: GitLab OAuth token revoked", "sub", sess.Identity.Sub, "request_id", requestID(c))
		}
	}
	a.deps.Sessions.Logout(c.Response())
	a.setFlash(c, "signed_out")
	return c.Redirect(http.StatusSeeOther, "/")
}
