package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gitlab-serverless-runner/pkg/executor"
	"gitlab-serverless-runner/pkg/finisher"
	"gitlab-serverless-runner/pkg/logging"
	"gitlab-serverless-runner/pkg/poller"
	"gitlab-serverless-runner/pkg/scheduler"
	"gitlab-serverless-runner/pkg/store"
	"gitlab-serverless-runner/pkg/web"
)

// Defaults of the local mode's own settings.
const (
	DefaultAddr          = "127.0.0.1:8080"
	DefaultPollInterval  = time.Minute
	DefaultMaxJobs       = 8
	DefaultGitLabURL     = "https://gitlab.com"
	DefaultFunctionLimit = 15 * time.Minute // Lambda's limit, kept locally too
)

// Config is the configuration of the one-process local system. The zero
// value of every field is its documented default; Web carries the web
// application's settings (web.ConfigFromEnv), of which local mode
// overrides the listen address, base URL and sign-in when they are unset.
type Config struct {
	// Addr is where the web UI listens (LOCAL_ADDR, 127.0.0.1:8080). A port
	// of 0 picks a free one.
	Addr string
	// DataDir keeps DynamoDB's tables, the generated session and sealing
	// keys, the development sign-in's address and the jobs' directories
	// (LOCAL_DATA_DIR). Empty means everything lives in memory and in a
	// temporary directory, and is gone after the process ends.
	DataDir string
	// PollInterval is how often the scheduler runs (LOCAL_POLL_INTERVAL, a
	// Go duration such as 10s; default one minute, as EventBridge).
	PollInterval time.Duration
	// MaxJobs bounds the function invocations running at once
	// (LOCAL_MAX_JOBS, 8).
	MaxJobs int
	// OIDCAddr is where the development OIDC provider listens
	// (LOCAL_OIDC_ADDR) when no OIDC_ISSUER is configured. Empty means the
	// address remembered in DataDir, else a free port.
	OIDCAddr string
	// Store names the tables (store.ConfigFromEnv); its Endpoint uses a
	// DynamoDB that is already running (DYNAMODB_ENDPOINT) instead of
	// starting DynamoDB Local.
	Store store.Config
	// Logging sets the log level (LOG_LEVEL); local mode logs slog's text
	// format, for a terminal.
	Logging logging.Config
	// The functions' own settings, read by their packages' ConfigFromEnv
	// as on Lambda. Local mode replaces what it owns: the executor
	// functions and the poller function's name, the executors' directories
	// (one per job under the data directory) and clean-up (only the job's
	// own processes), and the cache store (on the UI's listener, whatever
	// CACHE_BUCKET says).
	Poller    poller.Config
	Scheduler scheduler.Config
	Finisher  finisher.Config
	Executor  executor.Config
	// DynamoDBJar is DynamoDBLocal.jar (DYNAMODB_LOCAL_JAR); empty means the
	// one `make deps` installed in the repository.
	DynamoDBJar string
	// Web is the web application's configuration.
	Web web.Config
	// DevSignIn is true when Web has no OIDC issuer of its own and the
	// development provider signs people in. ConfigFromEnv sets it.
	DevSignIn bool
	// Logger receives the structured logs of every part; nil means a text
	// logger on standard error.
	Logger *slog.Logger
}

// ConfigFromEnv reads the configuration through lookup (the environment).
// Values it cannot parse are errors that name the variable; secrets are
// never echoed.
func ConfigFromEnv(lookup func(string) (string, bool)) (Config, error) {
	get := func(k string) string { v, _ := lookup(k); return strings.TrimSpace(v) }
	var errs []error
	cfg := Config{
		Addr:        get("LOCAL_ADDR"),
		DataDir:     get("LOCAL_DATA_DIR"),
		OIDCAddr:    get("LOCAL_OIDC_ADDR"),
		DynamoDBJar: get("DYNAMODB_LOCAL_JAR"),
	}
	if s := get("LOCAL_POLL_INTERVAL"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			errs = append(errs, fmt.Errorf("LOCAL_POLL_INTERVAL=%q: want a positive duration such as 10s or 1m", s))
		}
		cfg.PollInterval = d
	}
	if s := get("LOCAL_MAX_JOBS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			errs = append(errs, fmt.Errorf("LOCAL_MAX_JOBS=%q: want a whole number above 0", s))
		}
		cfg.MaxJobs = n
	}
	if len(errs) > 0 {
		return Config{}, fmt.Errorf("local: read configuration: %w", errors.Join(errs...))
	}

	// A laptop talks to gitlab.com and to GitLabs on its own network, often
	// over plain http: allow both unless the operator said otherwise.
	// The poller, the finisher, the sweeper and the executors follow the
	// same URL policy as the web app.
	gitlabLookup := func(k string) (string, bool) {
		if v, ok := lookup(k); ok {
			return v, ok
		}
		switch k {
		case "ALLOW_HTTP_GITLAB", "ALLOW_PRIVATE_GITLAB":
			return "true", true
		}
		return "", false
	}
	webLookup := func(k string) (string, bool) {
		if v, ok := gitlabLookup(k); ok {
			return v, ok
		}
		switch k {
		case "OIDC_CREATE_RUNNER_SCOPE":
			if get("OIDC_ISSUER") == "" {
				return "none", true // the development provider has no GitLab API
			}
		case "GITLAB_URL":
			if get("OIDC_ISSUER") == "" {
				return DefaultGitLabURL, true
			}
		}
		return "", false
	}
	w, err := web.ConfigFromEnv(webLookup)
	if err != nil {
		return Config{}, fmt.Errorf("local: %w", err)
	}
	if cfg.Store, err = store.ConfigFromEnv(lookup); err != nil {
		return Config{}, fmt.Errorf("local: %w", err)
	}
	cfg.Store.MaxRunnersPerUser = w.MaxRunnersPerUser
	if cfg.Logging, err = logging.ConfigFromEnv(lookup); err != nil {
		return Config{}, fmt.Errorf("local: %w", err)
	}
	cfg.Logging.Text = true
	if cfg.Poller, err = poller.ConfigFromEnv(gitlabLookup); err != nil {
		return Config{}, fmt.Errorf("local: %w", err)
	}
	if _, set := lookup("VERSION"); !set {
		cfg.Poller.Version = version
	}
	if cfg.Scheduler, err = scheduler.ConfigFromEnv(lookup); err != nil {
		return Config{}, fmt.Errorf("local: %w", err)
	}
	if cfg.Finisher, err = finisher.ConfigFromEnv(gitlabLookup); err != nil {
		return Config{}, fmt.Errorf("local: %w", err)
	}
	if cfg.Executor, err = executor.ConfigFromEnv(gitlabLookup); err != nil {
		return Config{}, fmt.Errorf("local: %w", err)
	}
	cfg.Web = w
	cfg.DevSignIn = get("OIDC_ISSUER") == ""
	if !cfg.DevSignIn && (w.OIDCClientID == "" || w.OIDCClientSecret == "") {
		return Config{}, errors.New("local: OIDC_ISSUER is set but OIDC_CLIENT_ID or OIDC_CLIENT_SECRET is not: set all three, or none for the development sign-in")
	}
	if get("BASE_URL") == "" {
		cfg.Web.BaseURL = "" // derived from the address actually listened on
	}
	return cfg, nil
}

func (c Config) withDefaults() Config {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.PollInterval <= 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.MaxJobs <= 0 {
		c.MaxJobs = DefaultMaxJobs
	}
	if c.Logger == nil {
		c.Logger = logging.New(os.Stderr, logging.Config{Level: c.Logging.Level, Text: true})
	}
	return c
}

// absolute resolves every configured path against the working directory,
// so that nothing below depends on it: a job's builds directory must be
// absolute, and `make local` passes LOCAL_DATA_DIR=.local.
func (c Config) absolute() (Config, error) {
	for _, p := range []*string{&c.DataDir, &c.DynamoDBJar} {
		if *p == "" {
			continue
		}
		abs, err := filepath.Abs(*p)
		if err != nil {
			return c, fmt.Errorf("local: resolve %s: %w", *p, err)
		}
		*p = abs
	}
	return c, nil
}

// checkLoopback refuses to serve the development sign-in beyond this
// machine: it signs anyone in without a password.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("local: parse address %q: %w", addr, err)
	}
	ip := net.ParseIP(host)
	if host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("local: LOCAL_ADDR %q is not a loopback address; the development sign-in admits anyone, so set OIDC_ISSUER to serve beyond this machine", addr)
	}
	return nil
}
