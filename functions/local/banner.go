package main

import (
	"bufio"
	"bytes"
	"errors"
	"html"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
)

// bannerHTML is inserted at the top of every page while the development
// sign-in is on, so nobody mistakes this for a real GitLab login.
const bannerHTML = `<p class="notice" role="alert" id="dev-signin-banner" style="margin:0;border-radius:0;text-align:center">` +
	`<strong>Development sign-in.</strong> This local system signs in as %s through a built-in test identity provider, without a password. ` +
	`Set OIDC_ISSUER, OIDC_CLIENT_ID and OIDC_CLIENT_SECRET to sign in with GitLab.</p>`

// devBanner returns Echo middleware that adds the development sign-in
// banner right after the <body> tag of HTML pages.
func devBanner(username string) echo.MiddlewareFunc {
	banner := []byte(strings.Replace(bannerHTML, "%s", "<code>"+html.EscapeString(username)+"</code>", 1))
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			res := c.Response()
			bw := &bannerWriter{ResponseWriter: res.Writer, banner: banner}
			res.Writer = bw
			err := next(c)
			res.Writer = bw.ResponseWriter
			if ferr := bw.flush(); err == nil {
				err = ferr
			}
			return err
		}
	}
}

// bannerWriter holds back an HTML response until it is complete, then
// writes it with the banner. Other responses pass straight through.
type bannerWriter struct {
	http.ResponseWriter
	banner  []byte
	status  int
	html    bool
	decided bool
	buf     bytes.Buffer
}

func (w *bannerWriter) decide() {
	if w.decided {
		return
	}
	w.decided = true
	w.html = strings.HasPrefix(w.Header().Get(echo.HeaderContentType), echo.MIMETextHTML)
}

func (w *bannerWriter) WriteHeader(status int) {
	w.decide()
	if w.html {
		w.status = status
		return
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *bannerWriter) Write(p []byte) (int, error) {
	w.decide()
	if w.html {
		return w.buf.Write(p)
	}
	return w.ResponseWriter.Write(p)
}

// Flush is a no-op for held-back pages and passes through otherwise.
func (w *bannerWriter) Flush() {
	if w.html {
		return
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Hijack passes through, for completeness of http.ResponseWriter's options.
func (w *bannerWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if h, ok := w.ResponseWriter.(http.Hijacker); ok {
		return h.Hijack()
	}
	return nil, nil, errors.New("local: response cannot be hijacked")
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *bannerWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *bannerWriter) flush() error {
	if !w.html {
		return nil
	}
	body := w.buf.Bytes()
	if i := bytes.Index(body, []byte("<body")); i >= 0 {
		if j := bytes.IndexByte(body[i:], '>'); j >= 0 {
			at := i + j + 1
			body = append(append(append([]byte{}, body[:at]...), w.banner...), body[at:]...)
		}
	}
	w.ResponseWriter.Header().Set(echo.HeaderContentLength, strconv.Itoa(len(body)))
	if w.status != 0 {
		w.ResponseWriter.WriteHeader(w.status)
	}
	_, err := w.ResponseWriter.Write(body)
	return err
}
