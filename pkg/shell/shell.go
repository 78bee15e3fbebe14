// Package shell owns running a job's scripts the way gitlab-runner's shell
// executor does: it builds the job's environment from GitLab's variables and
// the runner's own, writes file variables to files, generates one bash (or
// sh) script per step that echoes every command before running it under
// `set -eo pipefail`, runs it with the project directory as working
// directory, streams stdout and stderr into the trace, and stops everything
// the step started on cancellation or timeout.
//
// Variables reach the job through the process environment, never by quoting
// them into the script, so any value (quotes, `$`, newlines, backslashes,
// unicode) arrives byte for byte. Before that, like the runner, each value
// that is not `raw` is expanded once: `$KEY`, `${KEY}` and `$$` (a literal
// `$`) are resolved against the job's variables, then the base environment
// (PATH, ...); an unknown name becomes empty. A reference to a file variable
// yields the path of its file, as `$KEY` would in the shell.
//
// How a step's shell is started is a Launcher's business. The default,
// Direct, runs it on this machine in its own process group, stopped with
// sandbox.StopGroup (SIGTERM, a grace period, SIGKILL) when the step's
// context ends, and also when the step's shell exits, so background
// processes never outlive their step; processes that leave the group
// (setsid) are the sandbox's clean-up to catch. Local mode runs the steps of
// a job with an `image:` inside the image's root file system through a
// Launcher of its own (package localimage).
package shell

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"gitlab-serverless-runner/pkg/gitlab"
)

// Defaults for Config's zero values.
const (
	// DefaultKillGrace is the time between SIGTERM and SIGKILL.
	DefaultKillGrace = 2 * time.Second
	// DefaultAfterScriptTimeout bounds after_script (runner default).
	DefaultAfterScriptTimeout = 5 * time.Minute
	// DefaultPath is the PATH when the base environment has none.
	DefaultPath = "/usr/local/bin:/usr/bin:/bin"
)

// Shells that Config.Shell may force.
const (
	Bash = "bash"
	Sh   = "sh"
)

// gitlabEnvFile is the name, in the temporary directory, of the dotenv file
// GITLAB_ENV points at.
const gitlabEnvFile = "gitlab_env"

// Config says where and how a job's scripts run. BuildsDir and ProjectDir
// are required; every other zero value means the documented default.
type Config struct {
	// BuildsDir is CI_BUILDS_DIR.
	BuildsDir string
	// ProjectDir is CI_PROJECT_DIR and the scripts' working directory.
	ProjectDir string
	// TempDir holds file variables, GITLAB_ENV and the generated scripts
	// (RUNNER_TEMP_PROJECT_DIR); default ProjectDir + ".tmp".
	TempDir string
	// HomeDir is the job's HOME; default "home" in os.TempDir().
	HomeDir string
	// BaseEnv is the environment under the job's variables; nil means
	// SanitizedBaseEnv(os.Environ()). HOME is always replaced by HomeDir.
	BaseEnv []string
	// Shell forces Bash or Sh; "" uses bash when the base PATH has it and
	// sh otherwise.
	Shell string
	// KillGrace is the time between SIGTERM and SIGKILL of a stopped step's
	// process group; default DefaultKillGrace.
	KillGrace time.Duration
	// AfterScriptTimeout bounds after_script; default
	// DefaultAfterScriptTimeout. The job deadline, carried by the context
	// given to RunAfterScript, bounds it too.
	AfterScriptTimeout time.Duration
	// JobTimeout is CI_JOB_TIMEOUT (whole seconds); zero leaves it unset.
	JobTimeout time.Duration
	// ConcurrentID and ConcurrentProjectID are CI_CONCURRENT_ID and
	// CI_CONCURRENT_PROJECT_ID.
	ConcurrentID, ConcurrentProjectID int
	// RunnerVersion and RunnerRevision are CI_RUNNER_VERSION and
	// CI_RUNNER_REVISION.
	RunnerVersion, RunnerRevision string
	// ServerCA, when set, is the PEM of the GitLab server's CA, given to the
	// job as the file variable CI_SERVER_TLS_CA_FILE.
	ServerCA []byte
	// Disposable sets CI_DISPOSABLE_ENVIRONMENT=true (the environment is
	// wiped after the job, as the executor does on Lambda); otherwise
	// CI_SHARED_ENVIRONMENT=true, as the runner's shell executor says.
	Disposable bool
	// RunnerVariables are the runner's configured variables (the runner's
	// `environment` setting); job variables override them.
	RunnerVariables gitlab.Variables
	// Entrypoint, when set, runs every step as gitlab-runner runs a job's
	// scripts in an image with an entrypoint: the entrypoint starts, with
	// the step's shell command as its arguments (`exec "$@"` runs it), and
	// with that command also on its standard input (an entrypoint that is
	// a shell reading its input, such as ["/bin/sh", "-c"] given a shell
	// as command, runs it from there, as it would under the runner, which
	// sends scripts on standard input). Entrypoint[0] without a slash is
	// looked up in the job's PATH.
	Entrypoint []string
	// DebugTrace turns on shell tracing (`set -o xtrace`) in every step,
	// as gitlab-runner does for CI_DEBUG_TRACE; the trace's masking still
	// applies to what it prints.
	DebugTrace bool
	// Tools are programs the runner offers the job under a command name
	// (name → absolute path of the executable, e.g. "release-cli"): Open
	// links each into a directory at the end of every step's PATH, so a
	// program of the same name that the job's own PATH has comes first.
	Tools map[string]string
	// Launcher starts each step's shell; nil means Direct with KillGrace.
	// Any other Launcher must let the steps see BuildsDir and HomeDir at
	// their paths on this machine.
	Launcher Launcher
}

// Session is one job's prepared environment: Open writes its files, Run and
// RunAfterScript run steps in it, Close removes the temporary directory.
// Steps run one at a time; a Session is not safe for concurrent use.
type Session struct {
	cfg       Config
	env       []string // complete environment, CI_JOB_STATUS excluded
	shellPath string
	shellKind string
	tempDir   string
	runs      int
}

// Open prepares a job's environment from its variables: it creates the
// project, temporary and home directories, writes file variables (mode 0600)
// and an empty GITLAB_ENV file, and computes the environment every step gets.
func Open(cfg Config, vars gitlab.Variables) (*Session, error) {
	if !filepath.IsAbs(cfg.BuildsDir) || !filepath.IsAbs(cfg.ProjectDir) {
		return nil, errors.New("shell: open session: builds and project directories must be absolute")
	}
	if cfg.TempDir == "" {
		cfg.TempDir = filepath.Clean(cfg.ProjectDir) + ".tmp"
	}
	if cfg.HomeDir == "" {
		cfg.HomeDir = filepath.Join(os.TempDir(), "home")
	}
	if cfg.BaseEnv == nil {
		cfg.BaseEnv = SanitizedBaseEnv(os.Environ())
	}
	if cfg.KillGrace <= 0 {
		cfg.KillGrace = DefaultKillGrace
	}
	if cfg.AfterScriptTimeout <= 0 {
		cfg.AfterScriptTimeout = DefaultAfterScriptTimeout
	}
	if cfg.Launcher == nil {
		cfg.Launcher = Direct{KillGrace: cfg.KillGrace}
	}
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{{cfg.ProjectDir, 0o755}, {cfg.TempDir, 0o700}, {cfg.HomeDir, 0o700}} {
		if err := os.MkdirAll(d.path, d.mode); err != nil {
			return nil, fmt.Errorf("shell: create %s: %w", d.path, err)
		}
	}

	s := &Session{cfg: cfg, tempDir: cfg.TempDir}
	base := baseEnv(cfg)
	list := s.variableList(vars)
	resolved, err := resolve(list, base, cfg.TempDir)
	if err != nil {
		return nil, err
	}
	for _, f := range resolved.files {
		if err := os.WriteFile(f.path, []byte(f.content), 0o600); err != nil {
			return nil, fmt.Errorf("shell: write file variable %s: %w", f.key, err)
		}
		// WriteFile keeps the mode of a file that already exists.
		if err := os.Chmod(f.path, 0o600); err != nil {
			return nil, fmt.Errorf("shell: write file variable %s: %w", f.key, err)
		}
	}
	toolsDir := ""
	if len(cfg.Tools) > 0 {
		toolsDir = filepath.Join(cfg.TempDir, "bin")
		if err := os.MkdirAll(toolsDir, 0o700); err != nil {
			return nil, fmt.Errorf("shell: create tools directory: %w", err)
		}
		for name, target := range cfg.Tools {
			if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') || !filepath.IsAbs(target) {
				return nil, fmt.Errorf("shell: offer tool %q: want a command name and an absolute path", name)
			}
			link := filepath.Join(toolsDir, name)
			_ = os.Remove(link)
			if err := os.Symlink(target, link); err != nil {
				return nil, fmt.Errorf("shell: offer tool %s: %w", name, err)
			}
		}
	}
	envPath := filepath.Join(cfg.TempDir, gitlabEnvFile)
	if err := os.WriteFile(envPath, nil, 0o600); err != nil {
		return nil, fmt.Errorf("shell: create GITLAB_ENV file: %w", err)
	}
	s.env = mergeEnv(base, resolved.env)
	if toolsDir != "" {
		s.env = appendPath(s.env, toolsDir)
	}

	s.shellKind, s.shellPath, err = pickShell(cfg.Shell, lookupEnv(base, "PATH"), cfg.Launcher.LookPath)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// variableList puts the runner's and the job's variables in precedence order
// (later wins), as the runner does.
func (s *Session) variableList(job gitlab.Variables) gitlab.Variables {
	cfg := s.cfg
	pub := func(k, v string) gitlab.Variable { return gitlab.Variable{Key: k, Value: v, Public: true} }
	list := append(gitlab.Variables{}, cfg.RunnerVariables...)
	list = append(list,
		pub("CI_BUILDS_DIR", cfg.BuildsDir),
		pub("CI_PROJECT_DIR", cfg.ProjectDir),
		pub("CI_CONCURRENT_ID", strconv.Itoa(cfg.ConcurrentID)),
		pub("CI_CONCURRENT_PROJECT_ID", strconv.Itoa(cfg.ConcurrentProjectID)),
		pub("CI_SERVER", "yes"),
	)
	if cfg.JobTimeout > 0 {
		list = append(list, pub("CI_JOB_TIMEOUT", strconv.FormatInt(int64(cfg.JobTimeout/time.Second), 10)))
	}
	if len(cfg.ServerCA) > 0 {
		list = append(list, gitlab.Variable{Key: "CI_SERVER_TLS_CA_FILE", Value: string(cfg.ServerCA), Public: true, File: true, Raw: true})
	}
	list = append(list, job...)
	if cfg.Disposable {
		list = append(list, pub("CI_DISPOSABLE_ENVIRONMENT", "true"))
	} else {
		list = append(list, pub("CI_SHARED_ENVIRONMENT", "true"))
	}
	list = append(list,
		pub("CI_RUNNER_VERSION", cfg.RunnerVersion),
		pub("CI_RUNNER_REVISION", cfg.RunnerRevision),
		pub("CI_RUNNER_EXECUTABLE_ARCH", runtime.GOOS+"/"+runtime.GOARCH),
		pub("RUNNER_TEMP_PROJECT_DIR", cfg.TempDir),
		gitlab.Variable{Key: "GITLAB_ENV", Value: filepath.Join(cfg.TempDir, gitlabEnvFile), Public: true, Raw: true},
	)
	return list
}

// Env returns the environment every step gets, CI_JOB_STATUS excepted (it
// is added per step).
func (s *Session) Env() []string { return append([]string(nil), s.env...) }

// Variables returns the environment every step gets as variables, each
// value as the job sees it (expanded once; a file variable's value is its
// file's path): what gitlab-runner expands `$NAME` against in artifact and
// cache settings.
func (s *Session) Variables() gitlab.Variables {
	vs := make(gitlab.Variables, 0, len(s.env))
	for _, kv := range s.env {
		k, v, _ := strings.Cut(kv, "=")
		vs = append(vs, gitlab.Variable{Key: k, Value: v})
	}
	return vs
}

// appendPath adds dir at the end of env's PATH.
func appendPath(env []string, dir string) []string {
	for i, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			env[i] = "PATH=" + joinList(v, dir)
			return env
		}
	}
	return append(env, "PATH="+dir)
}

// Shell returns the shell the steps run in: Bash or Sh.
func (s *Session) Shell() string { return s.shellKind }

// ShellPath returns the path of the shell the steps run in. It may not
// exist: with no bash or sh on PATH it is /bin/sh, whatever the image has.
func (s *Session) ShellPath() string { return s.shellPath }

// Close removes the temporary directory: file variables, GITLAB_ENV and the
// generated scripts (the runner's cleanup_file_variables).
func (s *Session) Close() error {
	if err := os.RemoveAll(s.tempDir); err != nil {
		return fmt.Errorf("shell: remove temporary directory: %w", err)
	}
	return nil
}

// baseEnv is cfg.BaseEnv with HOME replaced and PATH defaulted.
func baseEnv(cfg Config) []string {
	env := make([]string, 0, len(cfg.BaseEnv)+2)
	hasPath := false
	for _, kv := range cfg.BaseEnv {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "HOME", "CI_JOB_STATUS":
			continue
		case "PATH":
			hasPath = true
		}
		env = append(env, kv)
	}
	if !hasPath {
		env = append(env, "PATH="+DefaultPath)
	}
	return append(env, "HOME="+cfg.HomeDir)
}

// lookupEnv returns the last value of key in env.
func lookupEnv(env []string, key string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, _ := strings.Cut(env[i], "="); k == key {
			return v
		}
	}
	return ""
}

// mergeEnv returns base overridden by vars (in order, later wins), one
// entry per name.
func mergeEnv(base []string, vars [][2]string) []string {
	index := map[string]int{}
	var out []string
	set := func(k, kv string) {
		if i, ok := index[k]; ok {
			out[i] = kv
			return
		}
		index[k] = len(out)
		out = append(out, kv)
	}
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		set(k, kv)
	}
	for _, kv := range vars {
		set(kv[0], kv[0]+"="+kv[1])
	}
	return out
}

// pickShell finds the shell to run steps in, with lookPath.
func pickShell(force, path string, lookPath func(name, path string) string) (kind, file string, err error) {
	switch force {
	case Bash, Sh:
		if p := lookPath(force, path); p != "" {
			return force, p, nil
		}
		if force == Sh {
			return Sh, "/bin/sh", nil
		}
		return "", "", errors.New("shell: find bash: not on PATH")
	case "":
		if p := lookPath(Bash, path); p != "" {
			return Bash, p, nil
		}
		if p := lookPath(Sh, path); p != "" {
			return Sh, p, nil
		}
		return Sh, "/bin/sh", nil
	default:
		return "", "", fmt.Errorf("shell: pick shell %q: want %q or %q", force, Bash, Sh)
	}
}
