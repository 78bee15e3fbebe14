package executor

import (
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"gitlab-serverless-runner/pkg/dispatch"
	"gitlab-serverless-runner/pkg/envvar"
	"gitlab-serverless-runner/pkg/sandbox"
	"gitlab-serverless-runner/pkg/urlpolicy"
)

// Defaults of Config's zero values.
const (
	// DefaultBuildsDir is CI_BUILDS_DIR: Lambda's only writable disk is /tmp.
	DefaultBuildsDir = "/tmp/builds"
	// DefaultDeadlineMargin is kept free before Lambda's deadline to upload
	// the rest of the trace and send the final update.
	DefaultDeadlineMargin = dispatch.DefaultMargin
	// DefaultRuntime names the runtime when the environment does not.
	DefaultRuntime = "provided.al2023"
)

// Config is the executor's configuration, read once at cold start. The zero
// value of every field means the documented default.
type Config struct {
	// Version is the product version printed at the top of the trace.
	Version string
	// Revision is CI_RUNNER_REVISION, the commit the executor was built
	// from; default "unknown".
	Revision string
	// ReleaseCLI is the absolute path of an executable that acts as
	// release-cli when called by that name (pkg/releasecli; the executor
	// function's own binary does). It is offered to every job at the end
	// of its PATH, which is how a job's `release:` step creates its
	// release. Empty offers none: the release step then fails as on a
	// runner without release-cli.
	ReleaseCLI string
	// Runtime names the Lambda runtime the job runs on, for the trace;
	// default derived from AWS_EXECUTION_ENV, else DefaultRuntime.
	Runtime string
	// BuildsDir is CI_BUILDS_DIR; default DefaultBuildsDir. Project
	// directories are <BuildsDir>/<namespace>/<project>.
	BuildsDir string
	// HomeDir is the job's HOME; default "home" in os.TempDir().
	HomeDir string
	// ScratchDir holds the executor's own temporary files (the trace
	// buffer, downloads, cache archives); default os.TempDir(). It must not
	// be inside a directory that clean-up wipes while a job runs.
	ScratchDir string
	// DeadlineMargin is the time kept before the invocation's deadline for
	// the final trace upload and update; default DefaultDeadlineMargin.
	DeadlineMargin time.Duration
	// AfterScriptTimeout bounds after_script; zero means pkg/shell's
	// default (5 minutes).
	AfterScriptTimeout time.Duration
	// KillGrace is the time between SIGTERM and SIGKILL when steps are
	// stopped and leftovers killed; zero means the packages' defaults.
	KillGrace time.Duration
	// TraceInterval is the first trace PATCH interval (GitLab's
	// X-GitLab-Trace-Update-Interval replaces it); zero means 3 s.
	TraceInterval time.Duration
	// KeepAliveInterval is how long the trace may stay idle before the
	// trace loop sends a keep-alive update (PUT state=running); zero means
	// gitlab-runner's 30 s.
	KeepAliveInterval time.Duration
	// StatusInterval is how often the job's status is checked with a
	// keep-alive update while it runs, so a cancel in GitLab stops the job
	// within seconds even when it prints nothing and GitLab's trace
	// interval is long; zero means DefaultStatusInterval.
	StatusInterval time.Duration
	// MemoryMB is the memory of the function, reported with each result
	// for the job's cost (AWS_LAMBDA_FUNCTION_MEMORY_SIZE on Lambda); 0
	// means unknown.
	MemoryMB int
	// StorageMB is the size of the function's /tmp, reported with each
	// result for the job's cost; ConfigFromEnv measures it under Lambda.
	// 0 means unknown.
	StorageMB int
	// Cleanup says how far the clean-up before and after each job reaches
	// (pkg/sandbox); the zero value, CleanupLocal, leaves the machine
	// alone. A clean-up that fails ends the environment (see Err).
	Cleanup sandbox.Cleanup
	// CleanupRule says, for the log, what decided Cleanup (set by
	// ConfigFromEnv).
	CleanupRule string
	// WipeDirs are wiped before and after each job besides BuildsDir and
	// HomeDir, in the Descendants and System clean-up modes (typically
	// os.TempDir() on Lambda).
	WipeDirs []string
	// BaseEnv is the environment under the job's variables; nil means the
	// executor's own environment without credentials
	// (shell.SanitizedBaseEnv).
	BaseEnv []string
	// HTTPClient carries the GitLab API calls and the pre-signed URL
	// requests (cache, payload); nil uses the packages' defaults, with the
	// pre-signed URLs dialled through urlpolicy.Storage.
	HTTPClient *http.Client
	// URLPolicy, when set, is checked against the job's GitLab URL before
	// anything is sent, and every connection to that GitLab (API calls,
	// artifacts, git) is dialled through it unless HTTPClient is set.
	// Nil checks nothing.
	URLPolicy *urlpolicy.Policy
	// Images runs the jobs that name an `image:` inside it (local mode);
	// nil runs them like any other job, in this environment.
	Images ImageRunner
	// Logger receives the executor's structured logs; nil means
	// slog.Default().
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Version == "" {
		c.Version = "dev"
	}
	if c.Revision == "" {
		c.Revision = "unknown"
	}
	if c.Runtime == "" {
		c.Runtime = RuntimeFromEnv(os.Getenv)
	}
	if c.BuildsDir == "" {
		c.BuildsDir = DefaultBuildsDir
	}
	if c.HomeDir == "" {
		c.HomeDir = filepath.Join(os.TempDir(), "home")
	}
	if c.ScratchDir == "" {
		c.ScratchDir = os.TempDir()
	}
	if c.DeadlineMargin <= 0 {
		c.DeadlineMargin = DefaultDeadlineMargin
	}
	if c.StatusInterval <= 0 {
		c.StatusInterval = DefaultStatusInterval
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// ConfigFromEnv reads the executor's settings through lookup (os.LookupEnv
// when nil): EXECUTOR_BUILDS_DIR, EXECUTOR_HOME_DIR,
// EXECUTOR_MARGIN_SECONDS, EXECUTOR_KEEPALIVE_INTERVAL and
// EXECUTOR_STATUS_INTERVAL (Go durations), EXECUTOR_CLEANUP (without it the
// mode is decided by rule, sandbox.ChooseCleanup; CleanupRule says which),
// the URL policy's ALLOW_HTTP_GITLAB and ALLOW_PRIVATE_GITLAB
// (urlpolicy.Read), and what Lambda sets: AWS_EXECUTION_ENV (the
// runtime) and AWS_LAMBDA_FUNCTION_MEMORY_SIZE (reported with each result,
// for the job's cost).
func ConfigFromEnv(lookup envvar.Lookup) (Config, error) {
	r := envvar.New(lookup)
	getenv := r.String
	cfg := Config{
		Runtime:           RuntimeFromEnv(getenv),
		BuildsDir:         r.String("EXECUTOR_BUILDS_DIR"),
		HomeDir:           r.String("EXECUTOR_HOME_DIR"),
		DeadlineMargin:    r.Seconds("EXECUTOR_MARGIN_SECONDS"),
		KeepAliveInterval: r.Duration("EXECUTOR_KEEPALIVE_INTERVAL"),
		StatusInterval:    r.Duration("EXECUTOR_STATUS_INTERVAL"),
		MemoryMB:          r.Int("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", 0),
	}
	setting := r.String("EXECUTOR_CLEANUP")
	cleanup, rule, err := sandbox.ChooseCleanup(setting, getenv)
	if err != nil {
		r.Fail(fmt.Errorf("EXECUTOR_CLEANUP: %w", err))
	}
	if setting != "" {
		rule += " (EXECUTOR_CLEANUP)"
	}
	cfg.Cleanup, cfg.CleanupRule = cleanup, rule
	if cfg.Cleanup == sandbox.CleanupSystem {
		// In a Lambda environment of our own, everything a job wrote to
		// the only writable disk goes between jobs.
		cfg.WipeDirs = []string{os.TempDir()}
	}
	cfg.URLPolicy = urlpolicy.Read(r)
	if r.String("AWS_LAMBDA_RUNTIME_API") != "" {
		// Lambda's /tmp is the function's ephemeral storage.
		var st syscall.Statfs_t
		if err := syscall.Statfs(os.TempDir(), &st); err == nil {
			cfg.StorageMB = int(uint64(st.Bsize) * st.Blocks >> 20)
		}
	}
	return cfg, r.Err("executor")
}

// RuntimeFromEnv names the Lambda runtime from AWS_EXECUTION_ENV
// ("AWS_Lambda_python3.12" → "python3.12"), DefaultRuntime when unset.
func RuntimeFromEnv(getenv func(string) string) string {
	const prefix = "AWS_Lambda_"
	v := getenv("AWS_EXECUTION_ENV")
	if len(v) > len(prefix) && v[:len(prefix)] == prefix {
		return v[len(prefix):]
	}
	if v != "" {
		return v
	}
	return DefaultRuntime
}
