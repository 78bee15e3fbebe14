package gitlab_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/gitlab"
)

// Tokens used by the tests; none may ever appear in an error text.
const (
	runnerToken = "glrt-t1_SecretRunnerToken123"
	jobToken    = "glcbt-64_SecretJobToken456"
	userPAT     = "glpat-SecretPersonalToken789"
	oauthToken  = "oauth-SecretAccessToken000"
)

// reply is one scripted answer of a test server.
type reply struct {
	status int
	header map[string]string
	body   string
}

// recorded is one request as the test server saw it.
type recorded struct {
	Method string
	Path   string
	Query  url.Values
	Header http.Header
	Body   []byte
}

// script is a test server answering with replies in order, repeating the
// last one, and recording every request.
type script struct {
	mu      sync.Mutex
	replies []reply
	reqs    []recorded
	srv     *httptest.Server
}

func serve(t *testing.T, replies ...reply) *script {
	t.Helper()
	s := &script{replies: replies}
	s.srv = httptest.NewServer(http.HandlerFunc(s.handle))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *script) handle(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.reqs = append(s.reqs, recorded{Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), Header: r.Header.Clone(), Body: body})
	rep := s.replies[min(len(s.reqs), len(s.replies))-1]
	s.mu.Unlock()
	for k, v := range rep.header {
		w.Header().Set(k, v)
	}
	if rep.body != "" && w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "application/json")
	}
	w.WriteHeader(rep.status)
	_, _ = io.WriteString(w, rep.body)
}

func (s *script) requests() []recorded {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]recorded(nil), s.reqs...)
}

// sleeps records the waits a client asked for instead of waiting.
type sleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleeps) all() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.d...)
}

// newClient returns a client for url whose retry waits are recorded, not
// slept.
func newClient(t *testing.T, url string) (*gitlab.Client, *sleeps) {
	t.Helper()
	sl := &sleeps{}
	c, err := gitlab.New(url, gitlab.Options{Sleep: sl.sleep})
	if err != nil {
		t.Fatalf("New(%q): %v", url, err)
	}
	return c, sl
}

// closedURL returns the URL of a server that is no longer listening.
func closedURL(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.NotFoundHandler())
	u := srv.URL
	srv.Close()
	return u
}

// checkErr asserts err matches want: nil for success, errAny for an error
// of no particular kind, else a gitlab.Err* kind. Every error must be an
// *gitlab.Error and contain no token.
func checkErr(t *testing.T, err, want error) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Fatalf("err = %v, want nil", err)
	case want == nil:
		return
	case err == nil:
		t.Fatalf("err = nil, want %v", want)
	}
	var ge *gitlab.Error
	if !errors.As(err, &ge) {
		t.Errorf("err = %T %v, want a *gitlab.Error in the chain", err, err)
	}
	if want != errAny && !errors.Is(err, want) {
		t.Errorf("err = %v, want errors.Is(err, %v)", err, want)
	}
	if want == errAny {
		for _, kind := range kinds {
			if errors.Is(err, kind) {
				t.Errorf("err = %v is %v, want no kind", err, kind)
			}
		}
	}
	noSecrets(t, err)
}

var errAny = errors.New("any error without a kind")

var kinds = []error{gitlab.ErrForbidden, gitlab.ErrNotFound, gitlab.ErrGone, gitlab.ErrTooLarge, gitlab.ErrUnavailable, gitlab.ErrBadRequest}

func noSecrets(t *testing.T, err error) {
	t.Helper()
	for _, tok := range []string{runnerToken, jobToken, userPAT, oauthToken} {
		if strings.Contains(err.Error(), tok) {
			t.Errorf("error %q contains a token", err)
		}
	}
}
