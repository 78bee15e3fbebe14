package gitlab_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/gitlab"
)

func TestNewNormalisesInstanceURL(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"https://gitlab.example.com", "https://gitlab.example.com"},
		{"https://gitlab.example.com/", "https://gitlab.example.com"},
		{"https://gitlab.example.com/ci", "https://gitlab.example.com"},
		{"https://gitlab.example.com/ci/", "https://gitlab.example.com"},
		{"http://10.0.0.1:8080/gitlab/", "http://10.0.0.1:8080/gitlab"},
		{" https://gitlab.example.com/gitlab/ci ", "https://gitlab.example.com/gitlab"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			c, err := gitlab.New(tt.in, gitlab.Options{})
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if got := c.URL(); got != tt.want {
				t.Errorf("URL() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestNewRejectsBadURLs(t *testing.T) {
	for _, in := range []string{"", "gitlab.example.com", "ftp://gitlab.example.com", "https://", "https://root:hunter2secret@gitlab.example.com", "https://gitlab.example.com/?a=b"} {
		t.Run(in, func(t *testing.T) {
			_, err := gitlab.New(in, gitlab.Options{})
			if err == nil {
				t.Fatalf("New(%q) = nil error, want one", in)
			}
			if strings.Contains(err.Error(), "hunter2secret") {
				t.Errorf("error %q shows the URL's password", err)
			}
		})
	}
}

func TestRequestsGoUnderAPIv4OfTheInstancePath(t *testing.T) {
	s := serve(t, reply{status: 200, body: `{"id":1,"token":"glrt-x"}`})
	c, _ := newClient(t, s.srv.URL+"/gitlab/ci/")
	if _, err := c.VerifyRunner(t.Context(), gitlab.VerifyRequest{Token: runnerToken}); err != nil {
		t.Fatalf("VerifyRunner: %v", err)
	}
	if got, want := s.requests()[0].Path, "/gitlab/api/v4/runners/verify"; got != want {
		t.Errorf("path = %q, want %q", got, want)
	}
}

// endpoint is one client method, called against a test server.
type endpoint struct {
	name       string
	method     string
	path       string
	okStatus   int
	okBody     string
	invoke     func(ctx context.Context, c *gitlab.Client) error
	token      string // value of tokenHeader
	tokenHdr   string
	contentTyp string // "" for no body
	acceptJSON bool
}

func endpoints() []endpoint {
	creds := `{"id":42,"token":"glrt-new","token_expires_at":null}`
	return []endpoint{
		{"RegisterRunner", "POST", "/api/v4/runners", 201, creds, func(ctx context.Context, c *gitlab.Client) error {
			_, err := c.RegisterRunner(ctx, gitlab.RegisterRequest{Token: runnerToken})
			return err
		}, runnerToken, "RUNNER-TOKEN", "application/json", true},
		{"VerifyRunner", "POST", "/api/v4/runners/verify", 200, creds, func(ctx context.Context, c *gitlab.Client) error {
			_, err := c.VerifyRunner(ctx, gitlab.VerifyRequest{Token: runnerToken, SystemID: "s_0123456789ab"})
			return err
		}, runnerToken, "RUNNER-TOKEN", "application/json", true},
		{"CreateUserRunner PAT", "POST", "/api/v4/user/runners", 201, creds, func(ctx context.Context, c *gitlab.Client) error {
			_, err := c.CreateUserRunner(ctx, userPAT, gitlab.CreateRunnerRequest{RunnerType: gitlab.RunnerTypeProject, ProjectID: 7})
			return err
		}, userPAT, "PRIVATE-TOKEN", "application/json", true},
		{"CreateUserRunner OAuth", "POST", "/api/v4/user/runners", 201, creds, func(ctx context.Context, c *gitlab.Client) error {
			_, err := c.CreateUserRunner(ctx, oauthToken, gitlab.CreateRunnerRequest{RunnerType: gitlab.RunnerTypeProject, ProjectID: 7})
			return err
		}, "Bearer " + oauthToken, "Authorization", "application/json", true},
		{"UnregisterRunner", "DELETE", "/api/v4/runners", 204, "", func(ctx context.Context, c *gitlab.Client) error {
			return c.UnregisterRunner(ctx, runnerToken)
		}, runnerToken, "RUNNER-TOKEN", "application/json", true},
		{"UnregisterRunnerManager", "DELETE", "/api/v4/runners/managers", 204, "", func(ctx context.Context, c *gitlab.Client) error {
			return c.UnregisterRunnerManager(ctx, runnerToken, "s_0123456789ab")
		}, runnerToken, "RUNNER-TOKEN", "application/json", true},
		{"ResetRunnerToken", "POST", "/api/v4/runners/reset_authentication_token", 201, `{"token":"glrt-new","token_expires_at":"2026-09-01T10:00:00.000Z"}`, func(ctx context.Context, c *gitlab.Client) error {
			_, err := c.ResetRunnerToken(ctx, runnerToken)
			return err
		}, runnerToken, "RUNNER-TOKEN", "application/json", true},
		{"RequestJob", "POST", "/api/v4/jobs/request", 204, "", func(ctx context.Context, c *gitlab.Client) error {
			_, err := c.RequestJob(ctx, gitlab.JobRequest{Token: runnerToken})
			return err
		}, runnerToken, "RUNNER-TOKEN", "application/json", true},
		{"UpdateJob", "PUT", "/api/v4/jobs/8123", 200, "", func(ctx context.Context, c *gitlab.Client) error {
			_, err := c.UpdateJob(ctx, 8123, gitlab.UpdateJobRequest{Token: jobToken, State: gitlab.StateRunning})
			return err
		}, jobToken, "JOB-TOKEN", "application/json", false},
		{"PatchTrace", "PATCH", "/api/v4/jobs/8123/trace", 202, "", func(ctx context.Context, c *gitlab.Client) error {
			_, err := c.PatchTrace(ctx, 8123, jobToken, 0, []byte("hello\n"), false)
			return err
		}, jobToken, "JOB-TOKEN", "text/plain", false},
		{"UploadArtifacts", "POST", "/api/v4/jobs/8123/artifacts", 201, "", func(ctx context.Context, c *gitlab.Client) error {
			return c.UploadArtifacts(ctx, 8123, jobToken, gitlab.ArtifactUpload{Name: "bin"}, strings.NewReader("zip"))
		}, jobToken, "JOB-TOKEN", "multipart/form-data", false},
		{"DownloadArtifacts", "GET", "/api/v4/jobs/8123/artifacts", 200, "zip", func(ctx context.Context, c *gitlab.Client) error {
			_, err := c.DownloadArtifacts(ctx, 8123, jobToken, &strings.Builder{})
			return err
		}, jobToken, "JOB-TOKEN", "", false},
	}
}

var requestIDPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestEveryEndpointSendsTheProtocolHeaders(t *testing.T) {
	wantUA := regexp.MustCompile(`^gitlab-serverless-runner \S+ \(` + runtime.GOOS + "/" + runtime.GOARCH + `\)$`)
	for _, ep := range endpoints() {
		t.Run(ep.name, func(t *testing.T) {
			s := serve(t, reply{status: ep.okStatus, body: ep.okBody})
			c, _ := newClient(t, s.srv.URL)
			if err := ep.invoke(t.Context(), c); err != nil {
				t.Fatalf("call: %v", err)
			}
			reqs := s.requests()
			if len(reqs) != 1 {
				t.Fatalf("got %d requests, want 1", len(reqs))
			}
			r := reqs[0]
			if r.Method != ep.method || r.Path != ep.path {
				t.Errorf("request = %s %s, want %s %s", r.Method, r.Path, ep.method, ep.path)
			}
			if got := r.Header.Get("User-Agent"); !wantUA.MatchString(got) {
				t.Errorf("User-Agent = %q, want %v", got, wantUA)
			}
			if got := r.Header.Get("X-Request-Id"); !requestIDPattern.MatchString(got) {
				t.Errorf("X-Request-Id = %q, want 32 hex characters", got)
			}
			if got := r.Header.Get(ep.tokenHdr); got != ep.token {
				t.Errorf("%s = %q, want %q", ep.tokenHdr, got, ep.token)
			}
			for _, h := range []string{"RUNNER-TOKEN", "JOB-TOKEN", "PRIVATE-TOKEN", "Authorization"} {
				if h != ep.tokenHdr && r.Header.Get(h) != "" {
					t.Errorf("%s = %q, want no such header", h, r.Header.Get(h))
				}
			}
			if got := r.Header.Get("Content-Type"); !strings.HasPrefix(got, ep.contentTyp) || (ep.contentTyp == "" && got != "") {
				t.Errorf("Content-Type = %q, want %q", got, ep.contentTyp)
			}
			if got, want := r.Header.Get("Accept") == "application/json", ep.acceptJSON; got != want {
				t.Errorf("Accept = %q, want application/json: %v", r.Header.Get("Accept"), want)
			}
		})
	}
}

func TestCustomUserAgent(t *testing.T) {
	s := serve(t, reply{status: 204})
	c, err := gitlab.New(s.srv.URL, gitlab.Options{UserAgent: "test-agent/1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.RequestJob(t.Context(), gitlab.JobRequest{Token: runnerToken}); err != nil {
		t.Fatal(err)
	}
	if got, want := s.requests()[0].Header.Get("User-Agent"), "test-agent/1"; got != want {
		t.Errorf("User-Agent = %q, want %q", got, want)
	}
}

func TestRequestIDsDifferPerCallAndStayAcrossRetries(t *testing.T) {
	s := serve(t, reply{status: 503}, reply{status: 204}, reply{status: 204})
	c, _ := newClient(t, s.srv.URL)
	for range 2 {
		if _, err := c.RequestJob(t.Context(), gitlab.JobRequest{Token: runnerToken}); err != nil {
			t.Fatal(err)
		}
	}
	reqs := s.requests()
	if len(reqs) != 3 {
		t.Fatalf("got %d requests, want 3", len(reqs))
	}
	id := func(i int) string { return reqs[i].Header.Get("X-Request-Id") }
	if id(0) != id(1) {
		t.Errorf("retry X-Request-Id = %q, want the first attempt's %q", id(1), id(0))
	}
	if id(1) == id(2) {
		t.Errorf("second call X-Request-Id = %q, want a new one", id(2))
	}
}

func TestTransportRetriesOnlyRetriableStatuses(t *testing.T) {
	tests := []struct {
		status  int
		retried bool
	}{
		{408, true}, {429, true}, {500, true}, {502, true}, {503, true}, {504, true}, {512, true}, {599, true},
		{400, false}, {401, false}, {403, false}, {404, false}, {410, false}, {413, false}, {422, false}, {501, false}, {505, false}, {511, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.status), func(t *testing.T) {
			s := serve(t, reply{status: tt.status}, reply{status: 204, header: map[string]string{"X-GitLab-Last-Update": "v2"}})
			c, _ := newClient(t, s.srv.URL)
			res, err := c.RequestJob(t.Context(), gitlab.JobRequest{Token: runnerToken})
			gotRequests := len(s.requests())
			if tt.retried {
				if err != nil || res.LastUpdate != "v2" || gotRequests != 2 {
					t.Errorf("got (%+v, %v) after %d requests, want success after 2", res, err, gotRequests)
				}
				return
			}
			var ge *gitlab.Error
			if !errors.As(err, &ge) || ge.StatusCode != tt.status || gotRequests != 1 {
				t.Errorf("got %v after %d requests, want a %d error after 1", err, gotRequests, tt.status)
			}
		})
	}
}

func TestTransportRetriesExhausted(t *testing.T) {
	for _, status := range []int{429, 500, 503} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			s := serve(t, reply{status: status, body: `{"message":"try later"}`})
			sl := &sleeps{}
			c, err := gitlab.New(s.srv.URL, gitlab.Options{MaxAttempts: 3, Sleep: sl.sleep})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.RequestJob(t.Context(), gitlab.JobRequest{Token: runnerToken})
			checkErr(t, err, gitlab.ErrUnavailable)
			var ge *gitlab.Error
			if errors.As(err, &ge) && (ge.StatusCode != status || ge.Attempts != 3 || ge.Message != "try later") {
				t.Errorf("error = %+v, want status %d, 3 attempts, message %q", ge, status, "try later")
			}
			if got := len(s.requests()); got != 3 {
				t.Errorf("requests = %d, want 3", got)
			}
			if got := len(sl.all()); got != 2 {
				t.Errorf("waits = %d, want 2", got)
			}
		})
	}
}

func TestRetryWaitFollowsServerHints(t *testing.T) {
	t.Run("Retry-After", func(t *testing.T) {
		s := serve(t, reply{status: 429, header: map[string]string{"Retry-After": "7"}}, reply{status: 204})
		c, sl := newClient(t, s.srv.URL)
		if _, err := c.RequestJob(t.Context(), gitlab.JobRequest{Token: runnerToken}); err != nil {
			t.Fatal(err)
		}
		if got, want := sl.all(), []time.Duration{7 * time.Second}; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("waits = %v, want %v", got, want)
		}
	})
	t.Run("RateLimit-ResetTime before Retry-After", func(t *testing.T) {
		reset := time.Now().Add(40 * time.Second).UTC().Format(http.TimeFormat)
		s := serve(t, reply{status: 429, header: map[string]string{"RateLimit-ResetTime": reset, "Retry-After": "7"}}, reply{status: 204})
		c, sl := newClient(t, s.srv.URL)
		if _, err := c.RequestJob(t.Context(), gitlab.JobRequest{Token: runnerToken}); err != nil {
			t.Fatal(err)
		}
		waits := sl.all()
		if len(waits) != 1 || waits[0] <= 20*time.Second || waits[0] > 40*time.Second {
			t.Errorf("waits = %v, want one wait until the reset time, about 40s", waits)
		}
	})
	t.Run("exponential back-off with jitter", func(t *testing.T) {
		s := serve(t, reply{status: 502})
		sl := &sleeps{}
		c, err := gitlab.New(s.srv.URL, gitlab.Options{MaxAttempts: 14, Sleep: sl.sleep})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.RequestJob(t.Context(), gitlab.JobRequest{Token: runnerToken})
		checkErr(t, err, gitlab.ErrUnavailable)
		waits := sl.all()
		if len(waits) != 13 {
			t.Fatalf("waits = %v, want 13", waits)
		}
		for i, got := range waits {
			hi := min(100*time.Millisecond<<i, time.Minute)
			lo := max(hi/2, 100*time.Millisecond)
			if got < lo || got > hi {
				t.Errorf("wait %d = %v, want within [%v, %v]", i+1, got, lo, hi)
			}
		}
	})
}

func TestNetworkErrorsAreNotRetried(t *testing.T) {
	t.Run("connection refused", func(t *testing.T) {
		c, sl := newClient(t, closedURL(t))
		_, err := c.RequestJob(t.Context(), gitlab.JobRequest{Token: runnerToken})
		checkErr(t, err, gitlab.ErrUnavailable)
		var ge *gitlab.Error
		if errors.As(err, &ge) && (ge.StatusCode != 0 || ge.Attempts != 1) {
			t.Errorf("error = %+v, want status 0 after 1 attempt", ge)
		}
		if got := len(sl.all()); got != 0 {
			t.Errorf("waits = %d, want 0", got)
		}
	})
	t.Run("connection dropped", func(t *testing.T) {
		var calls atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			calls.Add(1)
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				_ = conn.Close()
			}
		}))
		t.Cleanup(srv.Close)
		c, _ := newClient(t, srv.URL)
		_, err := c.UpdateJob(t.Context(), 1, gitlab.UpdateJobRequest{Token: jobToken, State: gitlab.StateRunning})
		checkErr(t, err, gitlab.ErrUnavailable)
		if got := calls.Load(); got != 1 {
			t.Errorf("calls = %d, want 1", got)
		}
	})
}

func TestDefaultSleepStopsWhenTheContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cancel()
		w.Header().Set("Retry-After", "3600")
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	c, err := gitlab.New(srv.URL, gitlab.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.RequestJob(ctx, gitlab.JobRequest{Token: runnerToken})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if errors.Is(err, gitlab.ErrUnavailable) {
		t.Errorf("err = %v, want no ErrUnavailable for a cancelled call", err)
	}
}

// tlsServer starts a TLS server answering verify and writes its CA
// certificate to a PEM file.
func tlsServer(t *testing.T, cfg *tls.Config) (*httptest.Server, string) {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"id":1,"token":"glrt-x"}`)
	}))
	srv.TLS = cfg
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // failed handshakes are expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(caFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return srv, caFile
}

func TestCustomCertificateAuthority(t *testing.T) {
	srv, caFile := tlsServer(t, nil)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	old, oldFile := tlsServer(t, &tls.Config{MaxVersion: tls.VersionTLS11})

	tests := []struct {
		name    string
		url     string
		opts    gitlab.Options
		wantErr error
		wantMsg string
	}{
		{"trusted through CAFile", srv.URL, gitlab.Options{CAFile: caFile}, nil, ""},
		{"trusted through RootCAs", srv.URL, gitlab.Options{RootCAs: pool}, nil, ""},
		{"trusted through RootCAs on the caller's HTTPClient", srv.URL, gitlab.Options{HTTPClient: &http.Client{}, RootCAs: pool}, nil, ""},
		{"the caller's HTTPClient alone", srv.URL, gitlab.Options{HTTPClient: &http.Client{}}, gitlab.ErrUnavailable, "certificate"},
		{"not trusted", srv.URL, gitlab.Options{}, gitlab.ErrUnavailable, "CAFile"},
		{"TLS older than 1.2", old.URL, gitlab.Options{CAFile: oldFile}, gitlab.ErrUnavailable, "send request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := gitlab.New(tt.url, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.VerifyRunner(t.Context(), gitlab.VerifyRequest{Token: runnerToken})
			checkErr(t, err, tt.wantErr)
			if err != nil && !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("err = %q, want it to contain %q", err, tt.wantMsg)
			}
		})
	}
}

func TestTrustCA(t *testing.T) {
	srv, caFile := tlsServer(t, nil)
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	verify := func(opts gitlab.Options) error {
		c, err := gitlab.New(srv.URL, opts)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.VerifyRunner(t.Context(), gitlab.VerifyRequest{Token: runnerToken})
		return err
	}

	opts, err := gitlab.Options{}.TrustCA(string(caPEM))
	if err != nil {
		t.Fatal(err)
	}
	if err := verify(opts); err != nil {
		t.Errorf("with the runner's CA: %v", err)
	}
	opts, err = gitlab.Options{}.TrustCA("")
	if err != nil || opts.RootCAs != nil {
		t.Fatalf("no CA: RootCAs %v, err %v; want the options unchanged", opts.RootCAs, err)
	}
	checkErr(t, verify(opts), gitlab.ErrUnavailable)
	if _, err := (gitlab.Options{}).TrustCA("not a certificate"); err == nil {
		t.Error("a CA without a certificate: nil error, want one")
	}
}

func TestCertificateOptionsAreValidated(t *testing.T) {
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		opts gitlab.Options
	}{
		{"CAFile without certificate", gitlab.Options{CAFile: garbage}},
		{"missing CAFile", gitlab.Options{CAFile: filepath.Join(t.TempDir(), "missing.pem")}},
		{"CAFile with own HTTPClient", gitlab.Options{CAFile: garbage, HTTPClient: &http.Client{}}},
		{"DialContext with own HTTPClient", gitlab.Options{HTTPClient: &http.Client{}, DialContext: (&net.Dialer{}).DialContext}},
		{"RootCAs with a transport not *http.Transport", gitlab.Options{HTTPClient: &http.Client{Transport: roundTripFunc(nil)}, RootCAs: x509.NewCertPool()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := gitlab.New("https://gitlab.example.com", tt.opts); err == nil {
				t.Errorf("New = nil error, want one")
			}
		})
	}
}

func TestErrorsNeverContainTokens(t *testing.T) {
	// A server (or a proxy) that echoes every token it gets.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var echo []string
		for _, h := range []string{"RUNNER-TOKEN", "JOB-TOKEN", "PRIVATE-TOKEN", "Authorization"} {
			echo = append(echo, r.Header.Get(h))
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprintf(w, `{"message":"403 Forbidden - bad token %s"}`, strings.Join(echo, " "))
	}))
	t.Cleanup(srv.Close)
	for _, base := range []string{srv.URL, closedURL(t)} {
		for _, ep := range endpoints() {
			t.Run(ep.name, func(t *testing.T) {
				c, _ := newClient(t, base)
				err := ep.invoke(t.Context(), c)
				if err == nil {
					t.Fatal("err = nil, want an error")
				}
				noSecrets(t, err)
				if !strings.Contains(err.Error(), ep.path[len("/api/v4"):]) || !strings.Contains(err.Error(), base) {
					t.Errorf("err = %q, want it to name the endpoint %s and the instance %s", err, ep.path, base)
				}
			})
		}
	}
}

// roundTripFunc is an http.RoundTripper that is not an *http.Transport.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
