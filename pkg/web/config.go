package web

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"gitlab-serverless-runner/pkg/dispatch"
	"gitlab-serverless-runner/pkg/envvar"
	"gitlab-serverless-runner/pkg/urlpolicy"
)

// Defaults of the zero Config, also the documented defaults of the
// environment variables.
const (
	DefaultBaseURL          = "http://127.0.0.1:8080"
	DefaultIssuer           = "https://gitlab.com"
	DefaultMaxRunners       = 5
	DefaultMaxConcurrency   = 4
	DefaultMaxLongPoll      = 60
	DefaultExecutorMargin   = int(dispatch.DefaultMargin / time.Second)
	DefaultPricePerGBSecond = 0.0000133334 // arm64, us-east-1
	// DefaultX86PricePerGBSecond is x86_64's price in us-east-1.
	DefaultX86PricePerGBSecond = 0.0000166667
	// DefaultStoragePricePerGBSecond is the price of ephemeral storage
	// above the 512 MB every function has, in us-east-1.
	DefaultStoragePricePerGBSecond = 0.0000000309
	DefaultCreateScope             = "create_runner"
	DefaultListenAddr              = "127.0.0.1:8080"

	// LambdaMaxSeconds is Lambda's hard limit on one invocation.
	LambdaMaxSeconds = int(dispatch.FunctionLimit / time.Second)
	// GitLabMinTimeout is the smallest maximum timeout GitLab accepts.
	GitLabMinTimeout = 600
)

// DefaultRuntimes are the executor runtimes offered when RUNTIMES is unset.
var DefaultRuntimes = []string{"provided.al2023", "python3.14", "nodejs24.x"}

// Config is the web application's configuration, read from the
// environment by ConfigFromEnv. Zero fields take the defaults above, so a
// test builds one with only what it cares about.
type Config struct {
	// BaseURL is the public URL of the app (BASE_URL); the OIDC redirect
	// URL is BaseURL + "/auth/callback". Cookies drop Secure only when it
	// is plain http.
	BaseURL string
	// OIDCIssuer is the GitLab users sign in with (OIDC_ISSUER).
	OIDCIssuer string
	// OIDCClientID and OIDCClientSecret identify the GitLab OAuth
	// application (OIDC_CLIENT_ID, OIDC_CLIENT_SECRET).
	OIDCClientID     string
	OIDCClientSecret string
	// CreateRunnerScope is the extra OAuth scope that lets "create it for
	// me" call POST /user/runners (OIDC_CREATE_RUNNER_SCOPE): create_runner,
	// api for GitLab before 16, or "none" to not ask for it.
	CreateRunnerScope string
	// GitLabURL is the instance of the sign-in, the default runner URL and
	// the only one "create it for me" works with (GITLAB_URL; default
	// OIDCIssuer).
	GitLabURL string
	// SessionKeys seal the session cookie (SESSION_KEY: base64 keys,
	// comma-separated, newest first).
	SessionKeys string
	// TokenSealingKeys seal runner tokens at rest (TOKEN_SEALING_KEY, see
	// package seal for the format).
	TokenSealingKeys string
	// MaxRunnersPerUser is MAX_REGISTABLE_RUNNER_COUNT; the store enforces
	// it, the app says so before calling GitLab.
	MaxRunnersPerUser int
	// MaxConcurrency bounds a runner's concurrency (MAX_CONCURRENCY).
	MaxConcurrency int
	// MaxLongPollSeconds bounds a runner's long-poll window
	// (MAX_LONG_POLL_SECONDS).
	MaxLongPollSeconds int
	// Runtimes are the executor runtimes offered (RUNTIMES, comma-separated).
	Runtimes []string
	// ExecutorMarginSeconds is the time the executor keeps before Lambda's
	// 15 minutes to report a job's end (EXECUTOR_MARGIN_SECONDS); the
	// largest maximum timeout offered is 900 minus it.
	ExecutorMarginSeconds int
	// PricePerGBSecond is the Lambda price used for cost estimates
	// (LAMBDA_PRICE_PER_GB_SECOND).
	PricePerGBSecond float64
	// X86PricePerGBSecond prices jobs that ran on x86_64 functions
	// (LAMBDA_X86_PRICE_PER_GB_SECOND).
	X86PricePerGBSecond float64
	// StoragePricePerGBSecond prices a function's /tmp above 512 MB
	// (LAMBDA_STORAGE_PRICE_PER_GB_SECOND).
	StoragePricePerGBSecond float64
	// AllowHTTPGitLab accepts http:// GitLab URLs (ALLOW_HTTP_GITLAB).
	AllowHTTPGitLab bool
	// AllowPrivateGitLab accepts GitLab URLs on loopback and private
	// addresses (ALLOW_PRIVATE_GITLAB): development, or a GitLab in the
	// same VPC. Link-local and cloud metadata addresses stay refused.
	AllowPrivateGitLab bool
	// ListenAddr is where the plain HTTP server listens outside Lambda
	// (LISTEN_ADDR).
	ListenAddr string
	// PollerFunction is the function a GitLab job webhook invokes to poll
	// the runner at once (POLLER_FUNCTION). Empty turns webhooks off; the
	// app also needs Deps.Invoker for them.
	PollerFunction string
}

// ConfigFromEnv reads the configuration from environment variables through
// lookup (os.LookupEnv when nil) and applies the defaults. It fails on a
// value that does not parse; it never echoes a secret. The store's own
// settings (tables, endpoint) are read by store.ConfigFromEnv.
func ConfigFromEnv(lookup envvar.Lookup) (Config, error) {
	r := envvar.New(lookup)
	get, num := r.String, func(k string) int { return r.Int(k, 0) }
	policy := urlpolicy.Read(r)
	cfg := Config{
		BaseURL:               get("BASE_URL"),
		OIDCIssuer:            get("OIDC_ISSUER"),
		OIDCClientID:          get("OIDC_CLIENT_ID"),
		OIDCClientSecret:      get("OIDC_CLIENT_SECRET"),
		CreateRunnerScope:     get("OIDC_CREATE_RUNNER_SCOPE"),
		GitLabURL:             get("GITLAB_URL"),
		SessionKeys:           get("SESSION_KEY"),
		TokenSealingKeys:      get("TOKEN_SEALING_KEY"),
		MaxRunnersPerUser:     num("MAX_REGISTABLE_RUNNER_COUNT"),
		MaxConcurrency:        num("MAX_CONCURRENCY"),
		MaxLongPollSeconds:    num("MAX_LONG_POLL_SECONDS"),
		ExecutorMarginSeconds: num("EXECUTOR_MARGIN_SECONDS"),
		AllowHTTPGitLab:       policy.AllowHTTP,
		AllowPrivateGitLab:    policy.AllowPrivate,
		ListenAddr:            get("LISTEN_ADDR"),
		PollerFunction:        get("POLLER_FUNCTION"),
	}
	if !r.Set("MAX_REGISTABLE_RUNNER_COUNT") {
		cfg.MaxRunnersPerUser = DefaultMaxRunners
	}
	cfg.Runtimes = r.List("RUNTIMES")
	cfg.PricePerGBSecond = r.Float("LAMBDA_PRICE_PER_GB_SECOND")
	cfg.X86PricePerGBSecond = r.Float("LAMBDA_X86_PRICE_PER_GB_SECOND")
	cfg.StoragePricePerGBSecond = r.Float("LAMBDA_STORAGE_PRICE_PER_GB_SECOND")
	if err := r.Err("web"); err != nil {
		return Config{}, err
	}
	cfg = cfg.withDefaults()
	return cfg, cfg.validate()
}

// withDefaults fills zero fields. MaxRunnersPerUser stays 0 (no limit) if
// the caller set nothing: only ConfigFromEnv applies its default.
func (c Config) withDefaults() Config {
	if c.BaseURL == "" {
		c.BaseURL = DefaultBaseURL
	}
	c.BaseURL = strings.TrimRight(c.BaseURL, "/")
	if c.OIDCIssuer == "" {
		c.OIDCIssuer = DefaultIssuer
	}
	if c.GitLabURL == "" {
		c.GitLabURL = c.OIDCIssuer
	}
	c.GitLabURL = strings.TrimRight(c.GitLabURL, "/")
	if c.CreateRunnerScope == "" {
		c.CreateRunnerScope = DefaultCreateScope
	}
	if c.MaxConcurrency <= 0 {
		c.MaxConcurrency = DefaultMaxConcurrency
	}
	if c.MaxLongPollSeconds <= 0 {
		c.MaxLongPollSeconds = DefaultMaxLongPoll
	}
	if len(c.Runtimes) == 0 {
		c.Runtimes = DefaultRuntimes
	}
	if c.ExecutorMarginSeconds <= 0 {
		c.ExecutorMarginSeconds = DefaultExecutorMargin
	}
	if c.PricePerGBSecond == 0 {
		c.PricePerGBSecond = DefaultPricePerGBSecond
	}
	if c.X86PricePerGBSecond == 0 {
		c.X86PricePerGBSecond = DefaultX86PricePerGBSecond
	}
	if c.StoragePricePerGBSecond == 0 {
		c.StoragePricePerGBSecond = DefaultStoragePricePerGBSecond
	}
	if c.ListenAddr == "" {
		c.ListenAddr = DefaultListenAddr
	}
	return c
}

func (c Config) validate() error {
	u, err := url.Parse(c.BaseURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("web: BASE_URL %q: want an http or https URL", c.BaseURL)
	}
	if max := c.MaxTimeout(); max < GitLabMinTimeout {
		return fmt.Errorf("web: EXECUTOR_MARGIN_SECONDS=%d leaves a maximum timeout of %d s, below GitLab's minimum of %d s",
			c.ExecutorMarginSeconds, max, GitLabMinTimeout)
	}
	return nil
}

// MaxTimeout is the largest maximum job timeout a runner may have: Lambda's
// 900 seconds minus the executor's margin.
func (c Config) MaxTimeout() int { return LambdaMaxSeconds - c.ExecutorMarginSeconds }

// InsecureCookies reports whether cookies must drop Secure: only when the
// app is served over plain http (local development).
func (c Config) InsecureCookies() bool { return strings.HasPrefix(c.BaseURL, "http://") }

// RedirectURL is the OIDC redirect URL: BaseURL + "/auth/callback".
func (c Config) RedirectURL() string { return c.BaseURL + "/auth/callback" }
