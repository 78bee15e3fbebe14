package web

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
)

// Defaults of the zero Config, also the documented defaults of the
// environment variables.
const (
	DefaultBaseURL          = "http://127.0.0.1:8080"
	DefaultIssuer           = "https://gitlab.com"
	DefaultMaxRunners       = 5
	DefaultMaxConcurrency   = 4
	DefaultMaxLongPoll      = 60
	DefaultExecutorMargin   = 60
	DefaultPricePerGBSecond = 0.0000133334 // arm64, us-east-1
	DefaultCreateScope      = "create_runner"
	DefaultListenAddr       = "127.0.0.1:8080"
	DefaultTablePrefix      = "gsr-"

	// LambdaMaxSeconds is Lambda's hard limit on one invocation.
	LambdaMaxSeconds = 900
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
	// AllowHTTPGitLab accepts http:// GitLab URLs (ALLOW_HTTP_GITLAB).
	AllowHTTPGitLab bool
	// AllowPrivateGitLab accepts GitLab URLs on loopback and private
	// addresses (ALLOW_PRIVATE_GITLAB): development, or a GitLab in the
	// same VPC. Link-local and cloud metadata addresses stay refused.
	AllowPrivateGitLab bool
	// Table names (USERS_TABLE, RUNNERS_TABLE, JOBS_TABLE, SLOTS_TABLE;
	// default TABLE_PREFIX + users/runners/jobs/slots), for the main that
	// builds the store.
	TablePrefix                                     string
	UsersTable, RunnersTable, JobsTable, SlotsTable string
	// DynamoDBEndpoint overrides the DynamoDB endpoint (DYNAMODB_ENDPOINT),
	// for DynamoDB Local.
	DynamoDBEndpoint string
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
// value that does not parse; it never echoes a secret.
func ConfigFromEnv(lookup func(string) (string, bool)) (Config, error) {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	get := func(k string) string { v, _ := lookup(k); return strings.TrimSpace(v) }
	var errs []error
	num := func(k string) int {
		s := get(k)
		if s == "" {
			return 0
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			errs = append(errs, fmt.Errorf("%s=%q: want a whole number, 0 or more", k, s))
		}
		return n
	}
	flag := func(k string) bool {
		s := get(k)
		if s == "" {
			return false
		}
		b, err := strconv.ParseBool(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: want true or false", k, s))
		}
		return b
	}
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
		AllowHTTPGitLab:       flag("ALLOW_HTTP_GITLAB"),
		AllowPrivateGitLab:    flag("ALLOW_PRIVATE_GITLAB"),
		TablePrefix:           get("TABLE_PREFIX"),
		UsersTable:            get("USERS_TABLE"),
		RunnersTable:          get("RUNNERS_TABLE"),
		JobsTable:             get("JOBS_TABLE"),
		SlotsTable:            get("SLOTS_TABLE"),
		DynamoDBEndpoint:      get("DYNAMODB_ENDPOINT"),
		ListenAddr:            get("LISTEN_ADDR"),
		PollerFunction:        get("POLLER_FUNCTION"),
	}
	if _, set := lookup("MAX_REGISTABLE_RUNNER_COUNT"); !set {
		cfg.MaxRunnersPerUser = DefaultMaxRunners
	}
	if s := get("RUNTIMES"); s != "" {
		for _, r := range strings.Split(s, ",") {
			if r = strings.TrimSpace(r); r != "" {
				cfg.Runtimes = append(cfg.Runtimes, r)
			}
		}
	}
	if s := get("LAMBDA_PRICE_PER_GB_SECOND"); s != "" {
		p, err := strconv.ParseFloat(s, 64)
		if err != nil || p < 0 {
			errs = append(errs, fmt.Errorf("LAMBDA_PRICE_PER_GB_SECOND=%q: want a number, 0 or more", s))
		}
		cfg.PricePerGBSecond = p
	}
	if len(errs) > 0 {
		return Config{}, fmt.Errorf("web: read configuration: %w", errors.Join(errs...))
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
	if c.TablePrefix == "" {
		c.TablePrefix = DefaultTablePrefix
	}
	for _, t := range []struct {
		name   *string
		suffix string
	}{{&c.UsersTable, "users"}, {&c.RunnersTable, "runners"}, {&c.JobsTable, "jobs"}, {&c.SlotsTable, "slots"}} {
		if *t.name == "" {
			*t.name = c.TablePrefix + t.suffix
		}
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
