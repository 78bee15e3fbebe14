// Package gitlab owns the conversation with a GitLab instance's runner API:
// the wire types of the job payload and of every runner endpoint, and a
// Client that speaks the protocol the way the official gitlab-runner does
// (headers, transport retries, server hints), returning typed results.
package gitlab

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	randv2 "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"gitlab-serverless-runner/pkg/logging"
	"gitlab-serverless-runner/pkg/retry"
)

// Transport settings of the protocol (section 0.5 of the protocol notes).
const (
	dialTimeout           = 30 * time.Second
	tlsHandshakeTimeout   = 10 * time.Second
	responseHeaderTimeout = 10 * time.Minute // job requests may be long-polled
	idleConnTimeout       = 90 * time.Second
	requestTimeout        = 60 * time.Minute // whole request, body included

	defaultMaxAttempts = 5
	minBackoff         = 100 * time.Millisecond
	maxBackoff         = 60 * time.Second
	// maxServerWait bounds a wait the server asks for (Retry-After,
	// RateLimit-ResetTime), so a wrong header cannot park a caller forever.
	maxServerWait = 10 * time.Minute
	maxRedirects  = 10
)

// Header names of the protocol.
const (
	headerRunnerToken    = "RUNNER-TOKEN"
	headerJobToken       = "JOB-TOKEN"
	headerPrivateToken   = "PRIVATE-TOKEN"
	headerRequestID      = "X-Request-Id"
	headerLastUpdate     = "X-GitLab-Last-Update"
	headerUpdateInterval = "X-GitLab-Trace-Update-Interval"
	headerJobStatus      = "Job-Status"
	headerRetryAfter     = "Retry-After"
	headerRateLimitReset = "RateLimit-ResetTime"
)

// tokenHeaders are the request headers that carry a secret; they are never
// sent to another host than the instance's.
var tokenHeaders = []string{headerRunnerToken, headerJobToken, headerPrivateToken, "Authorization"}

// Options configure a Client. The zero value is valid and gives the
// protocol's defaults.
type Options struct {
	// HTTPClient sends the requests. Nil builds one with the protocol's
	// timeouts (dial 30 s, TLS handshake 10 s, response headers 10 min,
	// idle connections 90 s), TLS 1.2 or newer and the proxy from
	// HTTP_PROXY/HTTPS_PROXY/NO_PROXY. Its redirect policy is wrapped so
	// that tokens never follow a redirect to another host.
	HTTPClient *http.Client
	// RootCAs are the certificate authorities trusted for the instance
	// (a self-managed GitLab with a private CA). Nil uses the system pool,
	// or HTTPClient's. With HTTPClient, they replace the roots of a copy
	// of its transport (WithRootCAs).
	RootCAs *x509.CertPool
	// CAFile is a PEM file of extra certificate authorities, added to
	// RootCAs (or to the system pool).
	CAFile string
	// DialContext makes the connections of the client built when
	// HTTPClient is nil (with HTTPClient, it is an error), redirects
	// included; nil dials directly. Callers that dial a user's GitLab pass
	// pkg/urlpolicy's, which refuses a forbidden address at every dial.
	DialContext func(ctx context.Context, network, address string) (net.Conn, error)
	// UserAgent defaults to "gitlab-serverless-runner <version> (<goos>/<goarch>)".
	UserAgent string
	// MaxAttempts bounds the transport retries on 408, 429, 500, 502, 503,
	// 504 and statuses from 512, first try included. Zero means 5.
	MaxAttempts int
	// Logger receives one debug line per attempt and a warning per retry.
	// Nil discards.
	Logger *slog.Logger
	// Sleep waits between retries and in FinalUpdate. Nil waits on a timer
	// and returns ctx.Err() as soon as ctx is done. Tests set it to avoid
	// real waits.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Client calls one GitLab instance's runner API. It is safe for concurrent
// use and remembers nothing between calls: state such as the last
// X-GitLab-Last-Update value or trace offsets belongs to the caller.
type Client struct {
	instance    string
	api         *url.URL
	http        *http.Client
	userAgent   string
	maxAttempts int
	log         *slog.Logger
	sleep       func(context.Context, time.Duration) error
	now         func() time.Time
}

// New builds a client for an instance URL such as
// "https://gitlab.example.com". A trailing "/" and a legacy trailing "/ci"
// are stripped and "/api/v4/" is appended. Only http and https URLs without
// credentials are accepted.
func New(instanceURL string, opts Options) (*Client, error) {
	instance, api, err := parseInstance(instanceURL)
	if err != nil {
		return nil, err
	}
	hc, err := httpClient(opts)
	if err != nil {
		return nil, err
	}
	c := &Client{
		instance:    instance,
		api:         api,
		http:        hc,
		userAgent:   opts.UserAgent,
		maxAttempts: opts.MaxAttempts,
		log:         opts.Logger,
		sleep:       opts.Sleep,
		now:         time.Now,
	}
	if c.userAgent == "" {
		c.userAgent = defaultUserAgent()
	}
	if c.maxAttempts <= 0 {
		c.maxAttempts = defaultMaxAttempts
	}
	c.log = logging.OrDiscard(c.log)
	if c.sleep == nil {
		c.sleep = retry.Sleep
	}
	return c, nil
}

// URL returns the normalised instance URL, without "/api/v4".
func (c *Client) URL() string { return c.instance }

func parseInstance(raw string) (string, *url.URL, error) {
	s := strings.TrimRight(strings.TrimSpace(raw), "/")
	s = strings.TrimRight(strings.TrimSuffix(s, "/ci"), "/")
	u, err := url.Parse(s)
	if err != nil {
		return "", nil, fmt.Errorf("gitlab: parse instance URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", nil, fmt.Errorf("gitlab: instance URL %q: scheme must be http or https", s)
	}
	if u.Host == "" {
		return "", nil, fmt.Errorf("gitlab: instance URL %q: no host", s)
	}
	if u.User != nil {
		// Never echo the URL here: its user info may be a credential.
		return "", nil, errors.New("gitlab: instance URL must not contain credentials")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", nil, fmt.Errorf("gitlab: instance URL %q: no query or fragment allowed", s)
	}
	api := *u
	api.Path = strings.TrimRight(u.Path, "/") + "/api/v4/"
	api.RawPath = ""
	return u.String(), &api, nil
}

func httpClient(opts Options) (*http.Client, error) {
	var hc http.Client
	if opts.HTTPClient != nil {
		if opts.DialContext != nil {
			return nil, errors.New("gitlab: DialContext applies only when HTTPClient is nil")
		}
		hc = *opts.HTTPClient
		if opts.RootCAs != nil || opts.CAFile != "" {
			pool, err := rootCAs(opts.RootCAs, opts.CAFile)
			if err != nil {
				return nil, err
			}
			trusting, err := WithRootCAs(&hc, pool)
			if err != nil {
				return nil, err
			}
			hc = *trusting
		}
	} else {
		pool, err := rootCAs(opts.RootCAs, opts.CAFile)
		if err != nil {
			return nil, err
		}
		dial := opts.DialContext
		if dial == nil {
			dial = (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext
		}
		hc = http.Client{
			Timeout: requestTimeout,
			Transport: &http.Transport{
				Proxy:                 http.ProxyFromEnvironment,
				DialContext:           dial,
				TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool},
				TLSHandshakeTimeout:   tlsHandshakeTimeout,
				ResponseHeaderTimeout: responseHeaderTimeout,
				IdleConnTimeout:       idleConnTimeout,
				ExpectContinueTimeout: time.Second,
				MaxIdleConns:          100,
				MaxIdleConnsPerHost:   10,
				ForceAttemptHTTP2:     true,
			},
		}
	}
	hc.CheckRedirect = redirectPolicy(hc.CheckRedirect)
	return &hc, nil
}

// rootCAs returns the pool to trust: nil (the system pool) unless a custom
// pool or a CA file is given.
func rootCAs(pool *x509.CertPool, caFile string) (*x509.CertPool, error) {
	if caFile == "" {
		return pool, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("gitlab: read CA file: %w", err)
	}
	if pool != nil {
		pool = pool.Clone()
	} else if pool, err = x509.SystemCertPool(); err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("gitlab: read CA file %s: no PEM certificate found", caFile)
	}
	return pool, nil
}

// redirectPolicy follows redirects of GET requests only (artifact downloads
// to object storage) and strips every token header when the redirect leaves
// the instance's scheme and host. Other methods get the 3xx response back.
func redirectPolicy(next func(*http.Request, []*http.Request) error) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		first := via[0]
		if first.Method != http.MethodGet {
			return http.ErrUseLastResponse
		}
		if len(via) >= maxRedirects {
			return fmt.Errorf("stopped after %d redirects", maxRedirects)
		}
		if req.URL.Scheme != first.URL.Scheme || req.URL.Host != first.URL.Host {
			for _, h := range tokenHeaders {
				req.Header.Del(h)
			}
		}
		if next != nil {
			return next(req, via)
		}
		return nil
	}
}

func defaultUserAgent() string {
	version := "dev"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		version = bi.Main.Version
	}
	return fmt.Sprintf("gitlab-serverless-runner %s (%s/%s)", version, runtime.GOOS, runtime.GOARCH)
}

// newRequestID returns a random UUIDv4 without dashes: 32 hex characters.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return hex.EncodeToString(b[:])
}

// call describes one API call; do sends it with the transport retries.
type call struct {
	method string
	path   string // relative to /api/v4/, e.g. "jobs/42/trace"
	query  url.Values
	header http.Header // tokens, content type, accept
	// body returns a fresh body for each attempt and, optionally, a
	// function to run once the attempt's response (or error) is in.
	body func() (io.Reader, func(), error)
	// replayable reports whether another attempt may be sent; nil means
	// always (bodies regenerated from memory).
	replayable func() bool
	// base replaces the instance's scheme and host (upload after a 307).
	base *url.URL
	// secrets are scrubbed from every message built for this call.
	secrets []string
}

func (cl call) endpoint() string { return cl.method + " /" + cl.path }

// jsonCall builds a call with a JSON body marshalled once and replayed on
// every attempt.
func jsonCall(method, path string, v any, secrets ...string) (call, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return call{}, fmt.Errorf("gitlab: %s /%s: encode body: %w", method, path, err)
	}
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("Accept", "application/json")
	return call{
		method:  method,
		path:    path,
		header:  h,
		body:    func() (io.Reader, func(), error) { return bytes.NewReader(b), nil, nil },
		secrets: secrets,
	}, nil
}

// runnerCall sends a JSON call authenticated with a runner token, in the
// body and as RUNNER-TOKEN, and returns it with its final response for the
// endpoint's own switch on the status. The caller closes the body.
func (c *Client) runnerCall(ctx context.Context, method, path string, v any, token string) (call, *response, error) {
	cl, err := jsonCall(method, path, v, token)
	if err != nil {
		return call{}, nil, err
	}
	cl.header.Set(headerRunnerToken, token)
	resp, err := c.do(ctx, cl)
	if err != nil {
		return call{}, nil, err
	}
	return cl, resp, nil
}

// response is the final response of a call and how many attempts it took.
type response struct {
	*http.Response
	attempts  int
	requestID string
}

// do sends the call, retrying retriable statuses per section 0.5. Network
// errors are not retried: they come back as an *Error wrapping
// ErrUnavailable (or the context's error). The caller closes the body.
func (c *Client) do(ctx context.Context, cl call) (*response, error) {
	reqID := newRequestID()
	for attempt := 1; ; attempt++ {
		resp, err := c.attempt(ctx, cl, reqID)
		if err != nil {
			return nil, c.transportError(ctx, cl, reqID, attempt, err)
		}
		c.log.DebugContext(ctx, "gitlab call",
			"endpoint", cl.endpoint(), "status", resp.StatusCode, "attempt", attempt, "request_id", reqID)
		if !retriable(resp.StatusCode) || attempt >= c.maxAttempts || (cl.replayable != nil && !cl.replayable()) {
			return &response{Response: resp, attempts: attempt, requestID: reqID}, nil
		}
		wait := c.retryWait(resp.Header, attempt)
		discard(resp)
		c.log.WarnContext(ctx, "gitlab call retried",
			"endpoint", cl.endpoint(), "status", resp.StatusCode, "attempt", attempt, "wait", wait, "request_id", reqID)
		if err := c.sleep(ctx, wait); err != nil {
			return nil, c.transportError(ctx, cl, reqID, attempt, err)
		}
	}
}

func (c *Client) attempt(ctx context.Context, cl call, reqID string) (*http.Response, error) {
	u := c.api.ResolveReference(&url.URL{Path: cl.path, RawQuery: cl.query.Encode()})
	if cl.base != nil {
		u.Scheme, u.Host = cl.base.Scheme, cl.base.Host
	}
	var body io.Reader
	var done func()
	if cl.body != nil {
		var err error
		if body, done, err = cl.body(); err != nil {
			return nil, err
		}
	}
	req, err := http.NewRequestWithContext(ctx, cl.method, u.String(), body)
	if err != nil {
		if done != nil {
			done()
		}
		return nil, err
	}
	for k, vs := range cl.header {
		req.Header[k] = append([]string(nil), vs...)
	}
	req.Header.Set("User-Agent", c.userAgent)
	req.Header.Set(headerRequestID, reqID)
	resp, err := c.http.Do(req)
	if done != nil {
		done()
	}
	return resp, err
}

// retriable reports whether the transport retries a status (section 0.5).
func retriable(status int) bool {
	switch status {
	case http.StatusRequestTimeout, http.StatusTooManyRequests,
		http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return status >= 512
}

// retryWait is the wait before the next attempt: until RateLimit-ResetTime,
// else Retry-After seconds, else exponential back-off with jitter.
func (c *Client) retryWait(h http.Header, attempt int) time.Duration {
	if v := h.Get(headerRateLimitReset); v != "" {
		if t, err := http.ParseTime(v); err == nil {
			if d := t.Sub(c.now()); d > 0 {
				return min(d, maxServerWait)
			}
		}
	}
	if v := strings.TrimSpace(h.Get(headerRetryAfter)); v != "" {
		if s, err := strconv.Atoi(v); err == nil && s >= 0 {
			return min(time.Duration(s)*time.Second, maxServerWait)
		}
	}
	return backoff(attempt)
}

// backoff returns a jittered exponential delay for the given attempt
// (1-based): 100 ms doubling, at most 60 s, drawn from [d/2, d].
func backoff(attempt int) time.Duration {
	d := maxBackoff
	if attempt < 20 {
		d = min(minBackoff<<(attempt-1), maxBackoff)
	}
	half := d / 2
	return max(half+randv2.N(half+1), minBackoff)
}

// discard drains a little of the body so the connection can be reused,
// then closes it.
func discard(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
}

// decodeJSON decodes at most limit bytes of the body into v.
func decodeJSON(resp *http.Response, limit int64, v any) error {
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	if int64(len(b)) > limit {
		return fmt.Errorf("body larger than %d bytes", limit)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode body: %w", err)
	}
	return nil
}

// seconds parses a header holding whole seconds; 0 when absent or invalid.
func seconds(h http.Header, name string) time.Duration {
	s, err := strconv.Atoi(strings.TrimSpace(h.Get(name)))
	if err != nil || s <= 0 {
		return 0
	}
	return time.Duration(s) * time.Second
}
