package web_test

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func TestSignInFlow(t *testing.T) {
	e := newEnv(t, nil)
	b := e.newClient()

	start := b.get("/")
	if start.status != http.StatusOK || !strings.Contains(start.body, "Sign in with GitLab") {
		t.Fatalf("GET /: status = %d, want the sign-in page", start.status)
	}
	begin := b.do(http.MethodPost, "/", url.Values{})
	if begin.status != http.StatusFound || !strings.HasPrefix(begin.header.Get("Location"), e.idp.Issuer()) {
		t.Fatalf("POST /: status = %d to %q, want 302 to the provider", begin.status, begin.header.Get("Location"))
	}
	// The provider signs the default user in and redirects back.
	resp, err := b.http.Get(begin.header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	callback := resp.Header.Get("Location")
	if !strings.HasPrefix(callback, e.srv.URL+"/auth/callback?") {
		t.Fatalf("provider redirected to %q, want the callback", callback)
	}
	done := b.get(strings.TrimPrefix(callback, e.srv.URL))
	if done.status != http.StatusSeeOther || done.header.Get("Location") != "/" {
		t.Fatalf("callback: status = %d to %q, want 303 to /", done.status, done.header.Get("Location"))
	}
	if got := b.get("/"); got.status != http.StatusSeeOther || got.header.Get("Location") != "/runners" {
		t.Errorf("signed-in GET /: status = %d to %q, want 303 to /runners", got.status, got.header.Get("Location"))
	}
	list := b.get("/runners")
	if list.status != http.StatusOK || !strings.Contains(list.body, "ada") {
		t.Fatalf("GET /runners: status = %d, want 200 naming ada", list.status)
	}
	u, err := e.store.GetUser(context.Background(), e.idp.Issuer()+"|42")
	if err != nil || u.Username != "ada" {
		t.Errorf("user recorded = %+v, %v; want ada", u, err)
	}

	// The callback cannot be replayed.
	if replay := b.get(strings.TrimPrefix(callback, e.srv.URL)); replay.status != http.StatusBadRequest || !strings.Contains(replay.body, "Sign-in failed") {
		t.Errorf("replayed callback: status = %d, want 400 with a clear message", replay.status)
	}

	m := csrfRE.FindStringSubmatch(list.body)
	if m == nil {
		t.Fatal("no CSRF token in the sign-out form")
	}
	out := b.do(http.MethodPost, "/logout", url.Values{"csrf": {m[1]}})
	if out.status != http.StatusSeeOther || out.header.Get("Location") != "/" {
		t.Fatalf("logout: status = %d, want 303 to /", out.status)
	}
	if got := b.get("/"); !strings.Contains(got.body, "You are signed out.") {
		t.Errorf("no sign-out message")
	}
	if got := b.get("/runners"); got.status != http.StatusSeeOther {
		t.Errorf("after sign-out GET /runners: status = %d, want 303", got.status)
	}
}

func TestHeadersAndCookies(t *testing.T) {
	e := newEnv(t, nil)
	ada := e.signIn("sub-ada", "ada", "")
	for _, path := range []string{"/", "/runners", "/runners/new", "/runners/nope", "/healthz"} {
		got := ada.get(path)
		for name, want := range map[string]string{
			"X-Frame-Options":        "DENY",
			"X-Content-Type-Options": "nosniff",
			"Referrer-Policy":        "same-origin",
		} {
			if v := got.header.Get(name); v != want {
				t.Errorf("%s: %s = %q, want %q", path, name, v, want)
			}
		}
		if csp := got.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
			t.Errorf("%s: CSP = %q, want default-src 'self'", path, csp)
		}
		if got.header.Get("X-Request-Id") == "" {
			t.Errorf("%s: no request id", path)
		}
	}
	if got := ada.get("/healthz"); got.status != http.StatusOK {
		t.Errorf("/healthz status = %d, want 200", got.status)
	}
	notFound := ada.get("/runners/nope")
	if notFound.status != http.StatusNotFound || !strings.Contains(notFound.body, notFound.header.Get("X-Request-Id")) {
		t.Errorf("404 page: status = %d, want 404 showing the request id", notFound.status)
	}
	css := ada.get("/static/style.css")
	if css.status != http.StatusOK || !strings.HasPrefix(css.header.Get("Content-Type"), "text/css") {
		t.Errorf("stylesheet: status = %d type %q", css.status, css.header.Get("Content-Type"))
	}

	// Cookies the app sets carry HttpOnly and SameSite=Lax; Secure
	// whenever the app is served over https.
	begin := e.newClient().do(http.MethodPost, "/", url.Values{})
	for _, sc := range begin.header.Values("Set-Cookie") {
		if !strings.Contains(sc, "HttpOnly") || !strings.Contains(sc, "SameSite=Lax") {
			t.Errorf("cookie %q lacks HttpOnly or SameSite=Lax", strings.SplitN(sc, "=", 2)[0])
		}
	}
}
