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
//	EXECUTOR_CLEANUP            local, descendants or system; default: system
//	                            when the runtime's init is our parent (Lambda),
//	                            descendants under another parent (the emulator),
//	                            local outside Lambda
//	LOG_LEVEL                   debug, info, warn or error (default info)
//	AWS_LAMBDA_FUNCTION_MEMORY_SIZE, set by Lambda: reported with each result
//	                            for the job's cost
//
// Under Lambda (AWS_LAMBDA_RUNTIME_API set) the process hardens itself
// before anything else (executor.HardenProcess): jobs run as the same Unix
// user, and must not read its environment or memory.
//
// Called as release-cli (the name the executor gives it on every job's
// PATH), the binary is the release-cli command of pkg/releasecli instead:
// that is how a job's release: step, which GitLab sends as a release-cli
// command line, creates its release.
package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"

	"github.com/aws/aws-lambda-go/lambda"

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
	cfg, err := executor.ConfigFromEnv(nil, os.Getppid())
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
	log.Info("executor: ready", "version", cfg.Version, "runtime", cfg.Runtime, "cleanup", cfg.Cleanup.String(), "builds_dir", cfg.BuildsDir)
	lambda.Start(x.Handle)
}

func productVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return "dev-" + s.Value[:12]
			}
		}
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
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 8 {
				return s.Value[:8]
			}
		}
	}
	return "unknown"
}
