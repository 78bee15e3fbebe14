// Command executor is the executor Lambda function: it runs one GitLab CI
// job per invocation (see pkg/executor and docs/executor-event.md).
//
// Configuration (environment):
//
//	EXECUTOR_BUILDS_DIR         CI_BUILDS_DIR (default /tmp/builds)
//	EXECUTOR_HOME_DIR           the job's HOME (default /tmp/home)
//	EXECUTOR_MARGIN_SECONDS     time kept before Lambda's deadline to report
//	                            the job, in seconds (default 60)
//	EXECUTOR_KEEPALIVE_INTERVAL idle time before a keep-alive update (default 30s)
//	EXECUTOR_STATUS_INTERVAL    how often the job's status is checked, so a
//	                            cancel is noticed within seconds (default 5s)
//	EXECUTOR_CLEANUP            local, descendants or system (the deployed
//	                            functions set it); without it the executor
//	                            decides by what it can check and logs the rule
//	                            (sandbox.ChooseCleanup)
//	ALLOW_HTTP_GITLAB           true to contact a GitLab over plain http
//	ALLOW_PRIVATE_GITLAB        true to contact a GitLab on a loopback or
//	                            private address (pkg/urlpolicy; checked for
//	                            the job's GitLab URL and at every dial)
//	LOG_LEVEL                   debug, info, warn or error (default info)
//	AWS_LAMBDA_FUNCTION_MEMORY_SIZE, set by Lambda: reported with each result
//	                            for the job's cost
//
// Under Lambda (AWS_LAMBDA_RUNTIME_API set) the process hardens itself
// before anything else (executor.HardenProcess): jobs run as the same Unix
// user, and must not read its environment or memory.
//
// A clean-up that fails (executor.Err) ends the environment: the process
// exits with status 1 right after the job's result is posted, so Lambda
// discards the environment and starts the next job in a fresh one.
//
// Called as release-cli (the name the executor gives it on every job's
// PATH), the binary is the release-cli command of pkg/releasecli instead:
// that is how a job's release: step, which GitLab sends as a release-cli
// command line, creates its release.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"

	"gitlab-serverless-runner/pkg/executor"
	"gitlab-serverless-runner/pkg/logging"
	"gitlab-serverless-runner/pkg/releasecli"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

func main() {
	if filepath.Base(os.Args[0]) == releasecli.Name {
		os.Exit(releasecli.Main(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr, releasecli.Options{Version: productVersion()}))
	}
	log := logging.FromEnv(os.Stderr, nil)
	slog.SetDefault(log)
	if os.Getenv("AWS_LAMBDA_RUNTIME_API") != "" {
		// Fail closed: an executor that jobs could read must not run them.
		if err := executor.HardenProcess(); err != nil {
			log.Error("executor: harden the process", "error", err)
			os.Exit(1)
		}
	}
	cfg, err := executor.ConfigFromEnv(nil)
	if err != nil {
		log.Error("executor: invalid configuration", "error", err)
		os.Exit(2)
	}
	cfg.Version, cfg.Revision, cfg.Logger = productVersion(), revision(), log
	if self, err := os.Executable(); err == nil {
		cfg.ReleaseCLI = self
	} else {
		log.Warn("executor: cannot find its own executable; jobs get no release-cli", "error", err)
	}
	x, err := executor.New(cfg)
	if err != nil {
		log.Error("executor: start", "error", err)
		os.Exit(1)
	}
	log.Info("executor: ready", "version", cfg.Version, "runtime", cfg.Runtime, "cleanup", cfg.Cleanup.String(),
		"cleanup_rule", cfg.CleanupRule, "builds_dir", cfg.BuildsDir)
	served := false
	lambda.Start(func(ctx context.Context, raw json.RawMessage) (io.Reader, error) {
		// One environment serves one job: a job may have left anything
		// behind in it, and can reach its Runtime API.
		if served {
			log.Error("executor: a second invocation reached an execution environment that already ran a job; ending the environment without running it")
			os.Exit(1)
		}
		served = true
		res, err := x.Handle(ctx, raw)
		if err != nil {
			return nil, err
		}
		b, err := json.Marshal(res)
		if err != nil {
			return nil, fmt.Errorf("executor: encode the result: %w", err)
		}
		tenant := ""
		if lc, ok := lambdacontext.FromContext(ctx); ok {
			tenant = lc.TenantID
		}
		return &response{body: bytes.NewReader(b), end: x.Err(), exit: tenant == "", log: log}, nil
	})
}

// response is an invocation's response. The Lambda runtime client closes
// a response that is an io.Closer after it has posted it and before it
// asks for the next invocation, so Close can end the process with the job
// reported and before another invocation can reach the environment:
//
//   - when the clean-up after the job failed (end), with status 1;
//   - when the invocation came without a tenant id (exit): nothing routes
//     the next invocation elsewhere (the emulator, sam local), so the
//     environment ends, and the next invocation starts a new one.
//
// An invocation with a tenant id of its own, as the poller sends each
// dispatch, needs no exit: Lambda routes no other invocation to an
// environment of that tenant, and exiting would only make Lambda record
// the invocation as failed (Runtime.ExitError) and drop its result. A
// second invocation that reaches the environment all the same is refused
// by the handler above.
type response struct {
	body *bytes.Reader
	end  error
	exit bool
	log  *slog.Logger
}

func (r *response) Read(p []byte) (int, error) { return r.body.Read(p) }

// ContentType says the response is JSON.
func (r *response) ContentType() string { return "application/json" }

// Close ends the process when the environment must end.
func (r *response) Close() error {
	switch {
	case r.end != nil:
		r.log.Error("executor: ending the execution environment after reporting the job; its clean-up failed", "error", r.end)
		os.Exit(1)
	case r.exit:
		r.log.Info("executor: ending the execution environment after reporting the job (no tenant id routes other invocations away)")
		os.Exit(0)
	}
	return nil
}

func productVersion() string {
	if version != "" {
		return version
	}
	if rev := vcsRevision(); len(rev) >= 12 {
		return "dev-" + rev[:12]
	}
	return "dev"
}

// buildRevision is set at build time with -ldflags "-X main.buildRevision=..."
// (the Makefile sets it to the commit's first 8 characters when it can).
var buildRevision = ""

// revision is CI_RUNNER_REVISION: the commit the binary was built from,
// 8 characters as gitlab-runner's revision: the -X value, else the commit
// Go recorded in the binary, else "unknown".
func revision() string {
	if buildRevision != "" {
		return buildRevision
	}
	if rev := vcsRevision(); len(rev) >= 8 {
		return rev[:8]
	}
	return "unknown"
}

// vcsRevision is the commit Go recorded in the binary, "" when none.
func vcsRevision() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return ""
}
