package web_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"gitlab-serverless-runner/pkg/auth"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
)

// The body limits: forms, and GitLab's job events (as much as the webhook
// handler reads).
const (
	formLimit    = 64 << 10
	webhookLimit = 1 << 20
)

// formBody is a form body of a given size that is never in memory: its
// fields first, then one field padded with "a" to the size. It counts the
// bytes read of it.
type formBody struct {
	head []byte
	size int64
	read atomic.Int64
}

func (b *formBody) Read(p []byte) (int, error) {
	off := b.read.Load()
	if off >= b.size {
		return 0, io.EOF
	}
	n := int64(len(p))
	if n > b.size-off {
		n = b.size - off
	}
	for i := range n {
		if pos := off + i; pos < int64(len(b.head)) {
			p[i] = b.head[pos]
		} else {
			p[i] = 'a'
		}
	}
	b.read.Add(n)
	return int(n), nil
}

// largeForm returns the head of a form that, whole, would be a valid
// request for any of the routes: the fields of the form, the CSRF token,
// _method for PUT and DELETE. The padding follows, as url-encoded or
// multipart content.
func largeForm(form url.Values, method, contentType string) (head, mediaType string) {
	var fields [][2]string
	for k, vs := range form {
		fields = append(fields, [2]string{k, vs[0]})
	}
	if method != http.MethodPost {
		fields = append(fields, [2]string{"_method", method})
	}
	if contentType == "multipart" {
		var b strings.Builder
		for _, f := range fields {
			fmt.Fprintf(&b, "--B\r\nContent-Disposition: form-data; name=%q\r\n\r\n%s\r\n", f[0], f[1])
		}
		b.WriteString("--B\r\nContent-Disposition: form-data; name=\"pad\"; filename=\"pad.txt\"\r\n\r\n")
		return b.String(), "multipart/form-data; boundary=B"
	}
	v := url.Values{}
	for _, f := range fields {
		v.Set(f[0], f[1])
	}
	return v.Encode() + "&pad=", "application/x-www-form-urlencoded"
}

// TestLargeBodiesAreRefusedUnread sends a body well above the limit to
// every route that takes one, PUT and DELETE through the method override,
// url-encoded and multipart, with and without a Content-Length: each is
// answered 413 after reading no more than the limit, and nothing the
// handlers would do happens.
func TestLargeBodiesAreRefusedUnread(t *testing.T) {
	e := newEnv(t, withWebhooks)
	ada := e.signIn("sub-ada", "ada", "")
	glr := e.gl.CreateRunner(gitlabtest.RunnerOptions{})
	e.secret(glr.Token)
	id := created(t, ada.submit(http.MethodPost, "/runners", e.tokenForm(glr.Token)))
	before := e.storedRunners("sub-ada")[0]
	// Only the session: any cookie in an answer is then a handler's doing
	// (sign-in, sign-out, a new webhook secret).
	var session *http.Cookie
	for _, c := range ada.http.Jar.Cookies(mustURL(t, e.srv.URL)) {
		if c.Name == auth.DefaultSessionCookie {
			session = c
		}
	}
	// Whole, this form would create a runner, or change the runner's
	// concurrency.
	another := e.gl.CreateRunner(gitlabtest.RunnerOptions{})
	e.secret(another.Token)
	form := e.tokenForm(another.Token)
	form.Set("csrf", ada.csrf)
	form.Set("concurrency", "3")
	form.Set("version", strconv.FormatInt(before.Version, 10))

	routes := 0
	for _, rt := range e.app.Echo().Routes() {
		switch rt.Method {
		case http.MethodPost, http.MethodPut, http.MethodDelete:
		default:
			continue
		}
		routes++
		path := strings.NewReplacer(":id", id, ":runnerID", id).Replace(rt.Path)
		limit := int64(formLimit)
		if strings.HasPrefix(path, "/webhooks/") {
			limit = webhookLimit
		}
		for _, size := range []int64{8 << 20, 256 << 20} {
			for _, contentType := range []string{"urlencoded", "multipart"} {
				for _, announced := range []bool{true, false} {
					name := fmt.Sprintf("%s %s %d MiB %s announced=%v", rt.Method, rt.Path, size>>20, contentType, announced)
					head, mediaType := largeForm(form, rt.Method, contentType)
					body := &formBody{head: []byte(head), size: size}
					req := httptest.NewRequest(http.MethodPost, path, body)
					req.ContentLength = -1
					if announced {
						req.ContentLength = size
					}
					req.Header.Set("Content-Type", mediaType)
					req.AddCookie(session)
					rec := httptest.NewRecorder()
					e.app.ServeHTTP(rec, req)
					if rec.Code != http.StatusRequestEntityTooLarge {
						t.Errorf("%s: status %d, want 413", name, rec.Code)
					}
					if read := body.read.Load(); read > limit+1 {
						t.Errorf("%s: %d bytes read, want at most %d (the limit and one)", name, read, limit+1)
					}
					if sc := rec.Header().Values("Set-Cookie"); len(sc) > 0 {
						t.Errorf("%s: the answer sets cookies %q: a handler ran", name, sc)
					}
				}
			}
		}
	}
	if routes < 7 {
		t.Errorf("%d routes take a body, want the 7 there are at least", routes)
	}
	after := e.storedRunners("sub-ada")
	if len(after) != 1 || after[0].Concurrency != before.Concurrency || after[0].Version != before.Version || after[0].WebhookSecretHash != before.WebhookSecretHash {
		t.Errorf("runners after the large bodies: %+v, want the runner unchanged", after)
	}
	if calls := e.invoker.Calls(); len(calls) != 0 {
		t.Errorf("the webhook started %d polls", len(calls))
	}
	if page := ada.get("/runners"); page.status != http.StatusOK {
		t.Errorf("the session ended: GET /runners = %d", page.status)
	}

	// A form just under the limit still works, read whole.
	small := url.Values{"version": {strconv.FormatInt(before.Version, 10)}, "runtime": {"provided.al2023"}, "concurrency": {"3"},
		"long_poll": {"0"}, "pad": {strings.Repeat("a", formLimit-1024)}}
	if r := ada.submit(http.MethodPut, "/runners/"+id, small); r.status != http.StatusSeeOther {
		t.Fatalf("update with a form under the limit: status %d; body:\n%s", r.status, r.body)
	}
	if got := e.storedRunners("sub-ada")[0].Concurrency; got != 3 {
		t.Errorf("concurrency = %d after an update under the limit, want 3", got)
	}
}
