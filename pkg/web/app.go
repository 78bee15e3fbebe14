package web

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"gitlab-serverless-runner/pkg/auth"
	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/invoke"
	"gitlab-serverless-runner/pkg/runner"
	"gitlab-serverless-runner/pkg/seal"
	"gitlab-serverless-runner/pkg/urlpolicy"
	"gitlab-serverless-runner/pkg/webhook"
	"gitlab-serverless-runner/templates"
)

// GitLab is what the app asks of a GitLab instance. *gitlab.Client is the
// implementation; tests use it against the fake GitLab.
type GitLab interface {
	VerifyRunner(ctx context.Context, req gitlab.VerifyRequest) (gitlab.RunnerCredentials, error)
	RegisterRunner(ctx context.Context, req gitlab.RegisterRequest) (gitlab.RunnerCredentials, error)
	CreateUserRunner(ctx context.Context, userToken string, req gitlab.CreateRunnerRequest) (gitlab.RunnerCredentials, error)
	UnregisterRunner(ctx context.Context, token string) error
	UnregisterRunnerManager(ctx context.Context, token, systemID string) error
	ListMaintainedProjects(ctx context.Context, userToken string) ([]gitlab.Project, error)
}

var _ GitLab = (*gitlab.Client)(nil)

// JobLister lists a runner's recent jobs; runner.JobStore is one.
type JobLister interface {
	ListJobs(ctx context.Context, runnerID string, limit int) ([]*runner.Job, error)
}

// Deps are the app's collaborators. Every field but GitLab, Resolver,
// Invoker and Logger is required.
type Deps struct {
	Users    runner.UserStore
	Runners  runner.RunnerStore
	Jobs     JobLister
	Sealer   *seal.Keyring
	Sessions *auth.Sessions
	Login    *auth.Login
	// GitLab returns a client for an instance URL that passed the URL
	// policy; nil means *gitlab.Client over the policy's guarded HTTP
	// client.
	GitLab func(instanceURL string) (GitLab, error)
	// Resolver resolves GitLab host names for the URL policy; nil means
	// the system resolver.
	Resolver urlpolicy.Resolver
	// Invoker starts the poller function (Config.PollerFunction) when
	// GitLab's job webhook announces a pending job. With both set, the app
	// serves POST /webhooks/gitlab/:runnerID and runner pages offer a
	// webhook secret; without, that route answers 503 and the pages say
	// webhooks are off.
	Invoker invoke.Invoker
	// Logger receives request and error logs; nil means slog.Default().
	Logger *slog.Logger
}

// App is the web application: login, runner pages and job history. It is
// an http.Handler, safe for concurrent use.
type App struct {
	cfg    Config
	deps   Deps
	e      *echo.Echo
	pages  map[string]*template.Template
	policy urlpolicy.Policy
	// registrar registers new runners (GitLab, sealing, store, undo).
	registrar *registrar
	// gitlabCA builds a client for a runner's GitLab that trusts the
	// runner's custom CA; nil when Deps.GitLab was given.
	gitlabCA func(instanceURL, caPEM string) (GitLab, error)
	hook     *webhook.Handler // nil when webhooks are off
	log      *slog.Logger
}

// NewAuth builds the sessions and the OIDC sign-in from cfg: the session
// keys, the issuer and client, and the redirect URL under BaseURL.
func NewAuth(cfg Config, logger *slog.Logger) (*auth.Sessions, *auth.Login, error) {
	cfg = cfg.withDefaults()
	if cfg.SessionKeys == "" {
		return nil, nil, errors.New("web: SESSION_KEY is not set")
	}
	keys, err := seal.ParseKeys(cfg.SessionKeys)
	if err != nil {
		return nil, nil, fmt.Errorf("web: parse SESSION_KEY: %w", err)
	}
	sessions, err := auth.NewSessions(auth.SessionConfig{Keys: keys, InsecureCookies: cfg.InsecureCookies()})
	if err != nil {
		return nil, nil, fmt.Errorf("web: configure sessions: %w", err)
	}
	scope := cfg.CreateRunnerScope
	if scope == "none" {
		scope = ""
	}
	login, err := auth.NewLogin(auth.LoginConfig{
		Issuer:            cfg.OIDCIssuer,
		ClientID:          cfg.OIDCClientID,
		ClientSecret:      cfg.OIDCClientSecret,
		RedirectURL:       cfg.RedirectURL(),
		CreateRunnerScope: scope,
		Logger:            logger,
	}, sessions)
	if err != nil {
		return nil, nil, fmt.Errorf("web: configure sign-in: %w", err)
	}
	return sessions, login, nil
}

// New builds the app: it parses every template once and mounts the routes.
func New(cfg Config, deps Deps) (*App, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if deps.Users == nil || deps.Runners == nil || deps.Jobs == nil || deps.Sealer == nil || deps.Sessions == nil || deps.Login == nil {
		return nil, errors.New("web: build app: stores, sealer, sessions and login are required")
	}
	a := &App{
		cfg:    cfg,
		deps:   deps,
		policy: urlpolicy.Policy{AllowHTTP: cfg.AllowHTTPGitLab, AllowPrivate: cfg.AllowPrivateGitLab, Resolver: deps.Resolver},
		log:    deps.Logger,
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	if a.deps.GitLab == nil {
		hc := a.policy.HTTPClient()
		a.deps.GitLab = func(instanceURL string) (GitLab, error) {
			return gitlab.New(instanceURL, gitlab.Options{HTTPClient: hc, MaxAttempts: 2})
		}
		a.gitlabCA = func(instanceURL, caPEM string) (GitLab, error) {
			pool, err := gitlab.CertPool(caPEM)
			if err != nil {
				return nil, fmt.Errorf("web: trust the runner's CA: %w", err)
			}
			return gitlab.New(instanceURL, gitlab.Options{HTTPClient: hc, RootCAs: pool, MaxAttempts: 2})
		}
	}
	a.registrar = &registrar{gitlab: a.gitlabFor, sealer: deps.Sealer, runners: deps.Runners, log: a.log}
	if deps.Invoker != nil && cfg.PollerFunction == "" {
		return nil, errors.New("web: build app: an invoker is given but no poller function (POLLER_FUNCTION) to invoke")
	}
	if a.webhooksEnabled() {
		a.hook = webhook.New(deps.Runners, deps.Invoker, cfg.PollerFunction, a.log.With("part", "webhook"))
	}
	pages, err := templates.Parse(a.funcs())
	if err != nil {
		return nil, fmt.Errorf("web: %w", err)
	}
	a.pages = pages
	a.e = a.routes()
	return a, nil
}

// Echo returns the Echo instance, for mounting in another server.
func (a *App) Echo() *echo.Echo { return a.e }

// ServeHTTP implements http.Handler.
func (a *App) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.e.ServeHTTP(w, r) }

func (a *App) routes() *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = a.handleError
	// The body limit comes before anything reads the body: the method
	// override below parses the form. A body over the limit is answered
	// 413 by refuseLargeBody, once the request has its id, log line and
	// headers.
	e.Pre(limitBody)
	// HTML forms can only GET and POST: PUT and DELETE come as a POST with
	// a _method field, rewritten before routing. GitLab's webhooks are not
	// forms.
	e.Pre(middleware.MethodOverrideWithConfig(middleware.MethodOverrideConfig{
		Getter:  middleware.MethodFromForm("_method"),
		Skipper: func(c echo.Context) bool { return isWebhook(c.Request()) },
	}))
	e.Use(middleware.RequestID())
	e.Use(a.logRequests)
	e.Use(middleware.Recover())
	e.Use(a.securityHeaders)
	e.Use(refuseLargeBody)

	e.GET("/healthz", func(c echo.Context) error { return c.String(http.StatusOK, "ok\n") })
	e.GET("/static/style.css", a.stylesheet)
	e.GET("/", a.home)
	e.POST("/", a.beginLogin)
	e.GET("/auth/callback", a.callback)
	// GitLab authenticates webhooks with the runner's secret: no session,
	// no CSRF token.
	e.POST(webhookPath, a.receiveWebhook)

	signedIn := []echo.MiddlewareFunc{a.requireSession, a.checkCSRF}
	e.POST("/logout", a.logout, signedIn...)
	e.GET("/runners", a.listRunners, signedIn...)
	e.GET("/runners/new", a.newRunner, signedIn...)
	e.POST("/runners", a.createRunner, signedIn...)
	e.GET("/runners/:id", a.showRunner, signedIn...)
	e.GET("/runners/:id/edit", a.editRunner, signedIn...)
	e.PUT("/runners/:id", a.updateRunner, signedIn...)
	e.DELETE("/runners/:id", a.deleteRunner, signedIn...)
	e.POST("/runners/:id/webhook-secret", a.newWebhookSecret, signedIn...)
	return e
}

// Request body limits. Forms are small; a webhook's job event can be
// larger, up to what the webhook handler reads.
const (
	maxFormBody    = 64 << 10
	maxWebhookBody = webhook.MaxBody
)

// isWebhook reports whether r is for GitLab's job webhook route
// (webhookPath), which has no form.
func isWebhook(r *http.Request) bool {
	return strings.HasPrefix(r.URL.Path, runner.WebhookPathPrefix)
}

// tooLargeKey marks, in the context, a request whose body was over its
// limit.
const tooLargeKey = "body_too_large"

// limitBody enforces the body limit of the request's route before anything
// parses the body. A body over the limit (by its Content-Length at once,
// or, when the length is not announced, after reading at most one byte
// past the limit) is dropped unread and the request marked, for
// refuseLargeBody to answer 413 before any handler runs. A body within the
// limit is kept in memory, so the form parsing that follows (the method
// override, the CSRF check, the handler) never reads more than the limit.
// It runs before routing, so the limit is chosen by path.
func limitBody(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		if req.Body == nil || req.Body == http.NoBody {
			return next(c)
		}
		limit := int64(maxFormBody)
		if isWebhook(req) {
			limit = maxWebhookBody
		}
		var body []byte
		tooLarge := req.ContentLength > limit
		if !tooLarge {
			var err error
			body, err = io.ReadAll(io.LimitReader(req.Body, limit+1))
			if err != nil {
				return echo.NewHTTPError(http.StatusBadRequest, "read request body").SetInternal(err)
			}
			tooLarge = int64(len(body)) > limit
		}
		if tooLarge {
			c.Set(tooLargeKey, true)
			body = nil
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.ContentLength = int64(len(body))
		return next(c)
	}
}

// refuseLargeBody answers 413 to a request limitBody marked.
func refuseLargeBody(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if c.Get(tooLargeKey) == true {
			return echo.ErrStatusRequestEntityTooLarge
		}
		return next(c)
	}
}

// securityHeaders sets the headers every answer carries.
func (a *App) securityHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	hsts := strings.HasPrefix(a.cfg.BaseURL, "https://")
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("Content-Security-Policy", "default-src 'self'; base-uri 'none'; object-src 'none'; frame-ancestors 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		if hsts {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		if c.Path() != "/static/style.css" {
			h.Set("Cache-Control", "no-store")
		}
		return next(c)
	}
}

// logRequests logs one line per request: never the query string, which
// holds the sign-in code and state on the callback.
func (a *App) logRequests(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err)
		}
		a.log.InfoContext(c.Request().Context(), "request",
			"method", c.Request().Method,
			"path", c.Request().URL.Path,
			"status", c.Response().Status,
			"duration_ms", time.Since(start).Milliseconds(),
			"request_id", requestID(c))
		return nil
	}
}

func requestID(c echo.Context) string { return c.Response().Header().Get(echo.HeaderXRequestID) }

func (a *App) stylesheet(c echo.Context) error {
	c.Response().Header().Set("Cache-Control", "public, max-age=3600")
	return c.Blob(http.StatusOK, "text/css; charset=utf-8", templates.CSS)
}

// pageError is an error whose message is written for the user.
type pageError struct {
	Status  int
	Heading string
	Message string
}

func (e *pageError) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Heading, e.Message) }

// statusOf maps an application error code to an HTTP status. This is the
// one place that mapping lives.
func statusOf(code string) int {
	switch code {
	case runner.EINVALID:
		return http.StatusBadRequest
	case runner.EUNAUTHORIZED:
		return http.StatusUnauthorized
	case runner.ENOTFOUND:
		return http.StatusNotFound
	case runner.ECONFLICT, runner.ELIMIT:
		return http.StatusConflict
	default:
		return http.StatusInternalServerError
	}
}

// handleError renders every error as a page. Internal failures are logged
// with the request id and shown as a generic message with that id.
func (a *App) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	p := &pageError{Status: http.StatusInternalServerError, Heading: "Something went wrong",
		Message: "The request failed because of an internal error. Please try again."}
	var pe *pageError
	var he *echo.HTTPError
	switch {
	case errors.As(err, &pe):
		p = pe
	case errors.As(err, &he):
		p.Status = he.Code
		switch he.Code {
		case http.StatusNotFound:
			p.Heading, p.Message = "Not found", "There is no such page, or it is not yours."
		case http.StatusMethodNotAllowed:
			p.Heading, p.Message = "Not allowed", "This page does not accept that kind of request."
		case http.StatusRequestEntityTooLarge:
			p.Heading, p.Message = "Too large", "The form you sent is too large."
		default:
			if he.Code < 500 {
				p.Heading, p.Message = http.StatusText(he.Code), "The request could not be handled."
			}
		}
	default:
		code := runner.ErrorCode(err)
		p.Status = statusOf(code)
		if code == runner.ENOTFOUND {
			p.Heading, p.Message = "Not found", "There is no such runner, or it is not yours."
		} else if code != runner.EINTERNAL {
			p.Heading, p.Message = "Request refused", runner.ErrorMessage(err)
		}
	}
	if p.Status >= 500 {
		a.log.ErrorContext(c.Request().Context(), "request failed", "path", c.Request().URL.Path,
			"request_id", requestID(c), "error", err)
	}
	if c.Request().Method == http.MethodHead {
		_ = c.NoContent(p.Status)
		return
	}
	if rerr := a.render(c, p.Status, templates.Error, p.Heading, p); rerr != nil {
		a.log.ErrorContext(c.Request().Context(), "render error page", "request_id", requestID(c), "error", rerr)
	}
}

// view is what every page template receives.
type view struct {
	Title     string
	Username  string
	CSRF      string
	Flash     string
	FlashKind string
	RequestID string
	Page      any
}

// render executes a page into a buffer first, so a template failure
// becomes a clean error page instead of half a page.
func (a *App) render(c echo.Context, status int, page, title string, data any) error {
	v := view{Title: title, RequestID: requestID(c), Page: data}
	sess, _ := c.Get(sessionKey).(*auth.Session)
	if sess == nil {
		sess, _ = a.deps.Sessions.Get(c.Request())
	}
	if sess != nil {
		v.Username = sess.Identity.Username
		if v.Username == "" {
			v.Username = sess.Identity.Name
		}
		v.CSRF = auth.CSRFToken(sess)
	}
	v.Flash, v.FlashKind = a.takeFlash(c)
	var buf bytes.Buffer
	if err := a.pages[page].ExecuteTemplate(&buf, "layout", v); err != nil {
		return fmt.Errorf("web: render %s: %w", page, err)
	}
	return c.HTMLBlob(status, buf.Bytes())
}

func (a *App) funcs() template.FuncMap {
	return template.FuncMap{
		"when": func(t any) string {
			switch v := t.(type) {
			case time.Time:
				return v.UTC().Format("2006-01-02 15:04 UTC")
			case *time.Time:
				if v == nil {
					return "—"
				}
				return v.UTC().Format("2006-01-02 15:04 UTC")
			}
			return ""
		},
		"duration": func(d time.Duration) string {
			if d <= 0 {
				return "—"
			}
			return d.Round(time.Second).String()
		},
		"cost": func(j *runner.Job) string {
			if j.BilledDuration <= 0 || j.MemoryMB <= 0 {
				return "—"
			}
			return fmt.Sprintf("$%.6f", a.cfg.Prices().JobCost(j))
		},
		"modeName": func(mode string) string {
			switch mode {
			case runner.CreationToken:
				return "a runner authentication token created in GitLab"
			case runner.CreationRegistration:
				return "a registration token"
			case runner.CreationCreated:
				return "created by this app in your project"
			}
			return mode
		},
	}
}

// Prices are Lambda's prices per GB-second the cost estimates use.
type Prices struct {
	// ARM64 and X86 price memory by the function's instruction set; a
	// job recorded without one is priced as arm64, the template's default.
	ARM64, X86 float64
	// Storage prices the function's /tmp above the 512 MB included.
	Storage float64
}

// Prices returns the configured prices.
func (c Config) Prices() Prices {
	return Prices{ARM64: c.PricePerGBSecond, X86: c.X86PricePerGBSecond, Storage: c.StoragePricePerGBSecond}
}

// includedStorageMB is the ephemeral storage every function has at no
// charge.
const includedStorageMB = 512

// JobCost estimates a job's Lambda cost in USD: billed duration × (memory
// in GB × the price of the job's instruction set + storage above 512 MB
// in GB × the storage price).
func (p Prices) JobCost(j *runner.Job) float64 {
	price := p.ARM64
	if j.Arch == "x86_64" {
		price = p.X86
	}
	gbSeconds := j.BilledDuration.Seconds() / 1024
	cost := gbSeconds * float64(j.MemoryMB) * price
	if extra := j.StorageMB - includedStorageMB; extra > 0 {
		cost += gbSeconds * float64(extra) * p.Storage
	}
	return cost
}

// gitlabFor returns a client for a runner's GitLab, trusting its custom
// CA (caPEM) besides the system's when it has one.
func (a *App) gitlabFor(instanceURL, caPEM string) (GitLab, error) {
	if caPEM == "" || a.gitlabCA == nil {
		return a.deps.GitLab(instanceURL)
	}
	return a.gitlabCA(instanceURL, caPEM)
}
