package gitlabtest

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"gitlab-serverless-runner/pkg/logging"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Endpoints, named by their route pattern. Inject and RequestsTo take them.
const (
	EndpointCreateUserRunner = "POST /api/v4/user/runners"
	EndpointRegisterRunner   = "POST /api/v4/runners"
	EndpointVerifyRunner     = "POST /api/v4/runners/verify"
	EndpointDeleteRunner     = "DELETE /api/v4/runners"
	EndpointDeleteManager    = "DELETE /api/v4/runners/managers"
	EndpointResetToken       = "POST /api/v4/runners/reset_authentication_token"
	EndpointJobRequest       = "POST /api/v4/jobs/request"
	EndpointUpdateJob        = "PUT /api/v4/jobs/{id}"
	EndpointPatchTrace       = "PATCH /api/v4/jobs/{id}/trace"
	EndpointUploadArtifacts  = "POST /api/v4/jobs/{id}/artifacts"
	EndpointDownloadArtifact = "GET /api/v4/jobs/{id}/artifacts"
	EndpointObjectStorage    = "GET /objects/{key...}"
	EndpointCurrentUser      = "GET /api/v4/user"
	EndpointProjects         = "GET /api/v4/projects"
	EndpointCreateRelease    = "POST /api/v4/projects/{id}/releases"
	EndpointListReleases     = "GET /api/v4/projects/{id}/releases"
	EndpointLFSBatch         = "lfs batch"  // POST <project>.git/info/lfs/objects/batch
	EndpointLFSObject        = "lfs object" // GET <project>.git/gitlab-lfs/objects/<oid>
	EndpointGit              = "git"        // git smart HTTP, any project
	EndpointUnknown          = "unknown"    // any other path (answered 404)
)

// Config steers the fake. The zero value gives GitLab's defaults; tests
// change it with Option values passed to New.
type Config struct {
	// TLS serves HTTPS with httptest's self-signed certificate (see
	// Server.Certificate and Server.Client).
	TLS bool
	// LongPoll, when positive, holds job requests the way Workhorse does:
	// requests with a last_update equal to the runner's queue version wait
	// until the queue changes or LongPoll passes, then get 204 without
	// X-GitLab-Last-Update.
	LongPoll time.Duration
	// TokenExpiry, when positive, gives every runner token issued an expiry
	// that far in the future (token_expires_at).
	TokenExpiry time.Duration
	// RegistrationTokensDisabled makes POST /runners answer 410 Gone.
	RegistrationTokensDisabled bool
	// AckWindow is how long a job handed to a two-phase-commit runner waits
	// for PUT state=running (or a pending keep-alive) before it is
	// re-queued. Zero means GitLab's 2 minutes.
	AckWindow time.Duration
	// TraceUpdateInterval is the X-GitLab-Trace-Update-Interval answered
	// to PATCH trace (seconds). Zero means GitLab's 60.
	TraceUpdateInterval int
	// WatchedTraceUpdateInterval is the interval answered while the job is
	// watched (Server.WatchJob). Zero means GitLab's 3.
	WatchedTraceUpdateInterval int
	// PendingTraceChunks is how many times a final PUT with a checksum is
	// answered 202 ("live trace chunks not yet persisted") before 200.
	PendingTraceChunks int
	// FinalUpdateInterval is the X-GitLab-Trace-Update-Interval on those
	// 202 answers (seconds). Zero means GitLab's back-off table (1 s for the
	// first seconds, doubling up to 64 s).
	FinalUpdateInterval int
	// TraceSizeLimit, when positive, fails a job with trace_size_exceeded
	// (403) once its trace would exceed that many bytes.
	TraceSizeLimit int64
	// MaxArtifactSize, when positive, answers 413 to uploads larger than
	// that many bytes.
	MaxArtifactSize int64
	// Logger receives one line per request; nil discards.
	Logger *slog.Logger
}

// Option changes the Config of a new Server.
type Option func(*Config)

// WithTLS serves HTTPS instead of HTTP.
func WithTLS() Option { return func(c *Config) { c.TLS = true } }

// WithLongPoll holds job requests up to d, like Workhorse long polling.
func WithLongPoll(d time.Duration) Option { return func(c *Config) { c.LongPoll = d } }

// WithTokenExpiry makes runner tokens expire d after they are issued.
func WithTokenExpiry(d time.Duration) Option { return func(c *Config) { c.TokenExpiry = d } }

// WithRegistrationTokensDisabled makes legacy registration answer 410.
func WithRegistrationTokensDisabled() Option {
	return func(c *Config) { c.RegistrationTokensDisabled = true }
}

// WithAckWindow sets the two-phase commit acknowledgement window.
func WithAckWindow(d time.Duration) Option { return func(c *Config) { c.AckWindow = d } }

// WithTraceUpdateInterval sets the PATCH trace interval hints in seconds,
// normal and while watched.
func WithTraceUpdateInterval(normal, watched int) Option {
	return func(c *Config) { c.TraceUpdateInterval, c.WatchedTraceUpdateInterval = normal, watched }
}

// WithPendingTraceChunks answers n final updates with 202 before 200, each
// with an X-GitLab-Trace-Update-Interval of interval seconds (0: GitLab's
// back-off table).
func WithPendingTraceChunks(n, interval int) Option {
	return func(c *Config) { c.PendingTraceChunks, c.FinalUpdateInterval = n, interval }
}

// WithTraceSizeLimit fails jobs whose trace grows beyond n bytes.
func WithTraceSizeLimit(n int64) Option { return func(c *Config) { c.TraceSizeLimit = n } }

// WithMaxArtifactSize answers 413 to artifact uploads beyond n bytes.
func WithMaxArtifactSize(n int64) Option { return func(c *Config) { c.MaxArtifactSize = n } }

// WithLogger logs one line per request to l.
func WithLogger(l *slog.Logger) Option { return func(c *Config) { c.Logger = l } }

// Server is the fake GitLab. Create it with New.
type Server struct {
	t    testing.TB
	cfg  Config
	hs   *httptest.Server
	dir  string
	log  *slog.Logger
	git  http.Handler
	sign string // key for "presigned" object storage URLs

	mu                sync.Mutex
	changed           chan struct{} // closed and replaced on every state change
	nextID            int64
	registrationToken string
	users             map[string]*user // by token
	runners           map[int64]*runnerState
	projects          map[int64]*Project
	jobs              map[int64]*jobState
	queue             []int64 // pending job ids in enqueue order
	faults            map[string][]Fault
	reqMu             sync.Mutex // guards requests; handlers send responses while holding mu
	requests          []Request
	violations        []string
	objects           map[string]int64 // object storage key -> job id
	held              int              // job requests held by long polling
	hooks             []jobHook
	hookCh            chan hookEvent
	hookDone          chan struct{}
	deliveries        []HookDelivery
	releases          []Release
	lfsObjects        map[int64]map[string][]byte // project id -> oid -> content
	closed            bool
}

// New starts a fake GitLab on 127.0.0.1 and closes it when the test ends.
func New(t testing.TB, opts ...Option) *Server {
	t.Helper()
	var cfg Config
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.AckWindow <= 0 {
		cfg.AckWindow = 2 * time.Minute
	}
	if cfg.TraceUpdateInterval <= 0 {
		cfg.TraceUpdateInterval = 60
	}
	if cfg.WatchedTraceUpdateInterval <= 0 {
		cfg.WatchedTraceUpdateInterval = 3
	}
	s := &Server{
		t:                 t,
		cfg:               cfg,
		dir:               t.TempDir(),
		log:               cfg.Logger,
		sign:              randomHex(16),
		changed:           make(chan struct{}),
		nextID:            100,
		registrationToken: "GR1348941" + randomAlnum(20),
		users:             map[string]*user{},
		runners:           map[int64]*runnerState{},
		projects:          map[int64]*Project{},
		jobs:              map[int64]*jobState{},
		faults:            map[string][]Fault{},
		objects:           map[string]int64{},
	}
	s.log = logging.OrDiscard(s.log)
	s.git = s.gitHandler()
	mux := http.NewServeMux()
	s.route(mux, EndpointCreateUserRunner, s.handleCreateUserRunner)
	s.route(mux, EndpointRegisterRunner, s.handleRegisterRunner)
	s.route(mux, EndpointVerifyRunner, s.handleVerifyRunner)
	s.route(mux, EndpointDeleteRunner, s.handleDeleteRunner)
	s.route(mux, EndpointDeleteManager, s.handleDeleteManager)
	s.route(mux, EndpointResetToken, s.handleResetToken)
	s.route(mux, EndpointJobRequest, s.handleJobRequest)
	s.route(mux, EndpointUpdateJob, s.handleUpdateJob)
	s.route(mux, EndpointPatchTrace, s.handlePatchTrace)
	s.route(mux, EndpointUploadArtifacts, s.handleUploadArtifacts)
	s.route(mux, EndpointDownloadArtifact, s.handleDownloadArtifacts)
	s.route(mux, EndpointObjectStorage, s.handleObjectStorage)
	s.route(mux, EndpointCurrentUser, s.handleCurrentUser)
	s.route(mux, EndpointProjects, s.handleProjects)
	s.route(mux, EndpointCreateRelease, s.handleCreateRelease)
	s.route(mux, EndpointListReleases, s.handleListReleases)
	s.route(mux, "/", s.handleFallback)

	s.hs = httptest.NewUnstartedServer(mux)
	if cfg.TLS {
		s.hs.StartTLS()
	} else {
		s.hs.Start()
	}
	t.Cleanup(s.close)
	return s
}

func (s *Server) close() {
	// Wake long polls and waiters so Close does not wait for them.
	s.mu.Lock()
	s.notifyLocked()
	s.closed = true
	hookCh, hookDone := s.hookCh, s.hookDone
	s.mu.Unlock()
	if hookCh != nil {
		close(hookCh)
		<-hookDone
	}
	s.hs.CloseClientConnections()
	s.hs.Close()
}

// URL is the instance URL, e.g. "http://127.0.0.1:41234" (no trailing slash).
func (s *Server) URL() string { return s.hs.URL }

// Client returns an HTTP client that trusts the server's certificate.
func (s *Server) Client() *http.Client { return s.hs.Client() }

// Certificate is the server's TLS certificate, nil without TLS.
func (s *Server) Certificate() *x509.Certificate { return s.hs.Certificate() }

// CertPool is a pool holding the server's TLS certificate, nil without TLS.
func (s *Server) CertPool() *x509.CertPool {
	c := s.hs.Certificate()
	if c == nil {
		return nil
	}
	p := x509.NewCertPool()
	p.AddCert(c)
	return p
}

// violate records a protocol violation.
func (s *Server) violate(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.violateLocked(format, args...)
}

func (s *Server) violateLocked(format string, args ...any) {
	v := fmt.Sprintf(format, args...)
	s.violations = append(s.violations, v)
	s.log.Warn("gitlabtest: protocol violation", "violation", v)
}

// Violations returns every protocol violation seen so far, in order.
func (s *Server) Violations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.violations...)
}

// AssertNoViolations fails t with every protocol violation seen so far.
func (s *Server) AssertNoViolations(t testing.TB) {
	t.Helper()
	for _, v := range s.Violations() {
		t.Errorf("gitlabtest: protocol violation: %s", v)
	}
}

// Request is one recorded request. Secrets (tokens in headers and in the
// query) are replaced by "[REDACTED]".
type Request struct {
	Time     time.Time
	Endpoint string // route pattern, EndpointGit for git traffic
	Method   string
	Path     string
	Query    url.Values
	Header   http.Header
	Status   int
	Injected bool // the response came from Inject
}

// Requests returns every request received so far, in the order their
// responses started.
func (s *Server) Requests() []Request {
	s.reqMu.Lock()
	defer s.reqMu.Unlock()
	return append([]Request(nil), s.requests...)
}

// RequestsTo returns the recorded requests to one endpoint.
func (s *Server) RequestsTo(endpoint string) []Request {
	var out []Request
	for _, r := range s.Requests() {
		if r.Endpoint == endpoint {
			out = append(out, r)
		}
	}
	return out
}

var secretHeaders = []string{"Job-Token", "Private-Token", "Runner-Token", "Authorization"}

func redact(r *http.Request) (http.Header, url.Values) {
	h := r.Header.Clone()
	for _, k := range secretHeaders {
		if h.Get(k) != "" {
			h.Set(k, "[REDACTED]")
		}
	}
	q := r.URL.Query()
	for _, k := range []string{"token", "private_token", "job_token", "X-Amz-Signature"} {
		if q.Has(k) {
			q.Set(k, "[REDACTED]")
		}
	}
	return h, q
}

// Fault replaces responses of an endpoint (see Inject).
type Fault struct {
	// Status is the status code to answer, e.g. 429, 500, 503, 409, 413.
	Status int
	// Header is added to the response, e.g. Retry-After: 1 or
	// RateLimit-ResetTime: <RFC 1123 date>.
	Header http.Header
	// Body is the response body; empty means {"message":"<status> <text>"}.
	Body string
	// Times is how many consecutive responses are replaced; 0 means 1.
	Times int
}

// Inject makes the next f.Times responses of endpoint (an Endpoint*
// constant) be f instead of the real answer. The request is not processed.
// Faults queue up: a second Inject applies after the first is used up.
func (s *Server) Inject(endpoint string, f Fault) {
	if f.Times <= 0 {
		f.Times = 1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[endpoint] = append(s.faults[endpoint], f)
}

// RetryAfter is a Header for Fault with Retry-After in whole seconds.
func RetryAfter(d time.Duration) http.Header {
	return http.Header{"Retry-After": {fmt.Sprint(int(d / time.Second))}}
}

// RateLimitReset is a Header for Fault with RateLimit-ResetTime at t.
func RateLimitReset(t time.Time) http.Header {
	return http.Header{"Ratelimit-Resettime": {t.UTC().Format(http.TimeFormat)}}
}

func (s *Server) takeFault(endpoint string) (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fs := s.faults[endpoint]
	if len(fs) == 0 {
		return Fault{}, false
	}
	f := fs[0]
	fs[0].Times--
	if fs[0].Times <= 0 {
		s.faults[endpoint] = fs[1:]
	}
	return f, true
}

// statusWriter notes a response's status as it is sent. onStatus runs
// before the status line leaves, so a client can never see a response whose
// request is not yet in the record.
type statusWriter struct {
	http.ResponseWriter
	status   int
	onStatus func(int)
}

func (w *statusWriter) setStatus(code int) {
	if w.status == 0 {
		w.status = code
		if w.onStatus != nil {
			w.onStatus(code)
		}
	}
}

func (w *statusWriter) WriteHeader(code int) {
	w.setStatus(code)
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.setStatus(http.StatusOK)
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *Server) route(mux *http.ServeMux, pattern string, h http.HandlerFunc) {
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		endpoint := pattern
		if pattern == "/" {
			endpoint = EndpointUnknown
			switch {
			case strings.Contains(r.URL.Path, ".git/info/lfs/"):
				endpoint = EndpointLFSBatch
			case strings.Contains(r.URL.Path, ".git/gitlab-lfs/objects/"):
				endpoint = EndpointLFSObject
			case strings.Contains(r.URL.Path, ".git/"):
				endpoint = EndpointGit
			}
		}
		injected := false
		hdr, q := redact(r)
		// The request is recorded when its status is sent, before the
		// client can read the response (a test may count requests as soon
		// as its call returns).
		record := func(status int) {
			s.reqMu.Lock()
			s.requests = append(s.requests, Request{
				Time: time.Now(), Endpoint: endpoint, Method: r.Method, Path: r.URL.Path,
				Query: q, Header: hdr, Status: status, Injected: injected,
			})
			s.reqMu.Unlock()
		}
		sw := &statusWriter{ResponseWriter: w, onStatus: record}
		sw.Header().Set("X-Request-Id", randomHex(16))
		if f, ok := s.takeFault(endpoint); ok {
			injected = true
			_, _ = io.Copy(io.Discard, r.Body)
			for k, vs := range f.Header {
				for _, v := range vs {
					sw.Header().Add(k, v)
				}
			}
			body := f.Body
			if body == "" {
				body = messageBody(fmt.Sprintf("%d %s", f.Status, http.StatusText(f.Status)))
				sw.Header().Set("Content-Type", "application/json")
			}
			sw.WriteHeader(f.Status)
			_, _ = io.WriteString(sw, body)
		} else {
			h(sw, r)
		}
		sw.setStatus(http.StatusOK) // a handler that wrote nothing answered 200
		s.log.Info("gitlabtest: request", "endpoint", endpoint, "method", r.Method,
			"path", r.URL.Path, "status", sw.status, "injected", injected)
	})
}

func (s *Server) handleFallback(w http.ResponseWriter, r *http.Request) {
	if strings.Contains(r.URL.Path, ".git/") {
		s.serveGit(w, r)
		return
	}
	if strings.HasPrefix(r.URL.Path, "/api/v4/") {
		s.violate("%s %s: no such endpoint", r.Method, r.URL.Path)
	}
	writeMessage(w, http.StatusNotFound, "404 Not Found")
}

// notifyLocked wakes everything waiting for a state change and announces
// job status changes to webhooks.
func (s *Server) notifyLocked() {
	if len(s.hooks) > 0 && !s.closed {
		ids := make([]int64, 0, len(s.jobs))
		for id := range s.jobs {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		for _, id := range ids {
			s.jobEventLocked(s.jobs[id])
		}
	}
	close(s.changed)
	s.changed = make(chan struct{})
}

func messageBody(msg string) string {
	b, _ := json.Marshal(map[string]string{"message": msg})
	return string(b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeMessage(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, messageBody(msg))
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

const alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

func randomAlnum(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alnum[int(b[i])%len(alnum)]
	}
	return string(b)
}

func (s *Server) newIDLocked() int64 {
	s.nextID++
	return s.nextID
}
