package auth_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"

	"github.com/labstack/echo/v4"

	"gitlab-serverless-runner/pkg/auth"
	"gitlab-serverless-runner/pkg/auth/devoidc"
	"gitlab-serverless-runner/pkg/seal"
)

// Example mounts the sign-in in an Echo app, against the development
// provider as `make local` does, and signs a browser in.
func Example() {
	idp, err := devoidc.Start(devoidc.Options{User: devoidc.User{Subject: "42", Username: "ada", Name: "Ada"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer idp.Close()

	e := echo.New()
	srv := httptest.NewServer(e)
	defer srv.Close()

	keys, err := seal.ParseKeys(seal.GenerateKey()) // in production: from configuration
	if err != nil {
		fmt.Println(err)
		return
	}
	// Plain HTTP on the loopback: local development only.
	sessions, err := auth.NewSessions(auth.SessionConfig{Keys: keys, InsecureCookies: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	login, err := auth.NewLogin(idp.LoginConfig(srv.URL+"/auth/callback"), sessions)
	if err != nil {
		fmt.Println(err)
		return
	}
	recordUser := func(ctx context.Context, id auth.Identity) error { return nil } // e.g. upsert into the users table
	e.GET("/login", echo.WrapHandler(http.HandlerFunc(login.Begin)))
	e.GET("/auth/callback", echo.WrapHandler(login.CallbackHandler(recordUser)))
	e.GET("/", func(c echo.Context) error {
		sess, err := sessions.Get(c.Request())
		if err != nil {
			return c.Redirect(http.StatusSeeOther, "/login?return_to=/")
		}
		return c.String(http.StatusOK, "hello "+sess.Identity.Username+" ("+sess.Identity.Subject+")")
	})

	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	resp, err := browser.Get(srv.URL + "/")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(string(body))
	// Output: hello ada (42)
}
