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
package main

import (
	"log/slog"
	"os"
	"runtime/debug"

	"github.com/aws/aws-lambda-go/lambda"

	"gitlab-serverless-runner/pkg/executor"
	"gitlab-serverless-runner/pkg/logging"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

func main() {
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
	cfg.Version, cfg.Logger = productVersion(), log
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
