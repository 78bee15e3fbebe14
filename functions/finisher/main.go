// Command finisher is the on-success and on-failure destination of every
// executor function: it records each job's outcome, frees its concurrency
// slot and fails in GitLab the jobs whose executor died.
//
// Configuration (environment): TABLE_PREFIX ("gsr-") or JOBS_TABLE and
// SLOTS_TABLE; EXECUTOR_MEMORY_MB (the executors' memory, for the cost of a
// job whose executor died before reporting its own; default 2048);
// ALLOW_HTTP_GITLAB and ALLOW_PRIVATE_GITLAB (pkg/urlpolicy, checked at
// every dial of a GitLab); DYNAMODB_ENDPOINT (optional local endpoint).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"

	"github.com/aws/aws-lambda-go/lambda"

	"gitlab-serverless-runner/pkg/awsclients"
	"gitlab-serverless-runner/pkg/finisher"
	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/store"
	"gitlab-serverless-runner/pkg/urlpolicy"
)

func main() {
	logger := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	slog.SetDefault(logger)
	f, err := setup(context.Background(), logger)
	if err != nil {
		logger.Error("finisher function cannot start", "error", err)
		os.Exit(1)
	}
	lambda.Start(func(ctx context.Context, raw json.RawMessage) (finisher.Outcome, error) {
		return f.Handle(ctx, raw)
	})
}

// setup wires configuration and dependencies once, at cold start.
func setup(ctx context.Context, logger *slog.Logger) (*finisher.Finisher, error) {
	tables := store.Prefixed(envOr("TABLE_PREFIX", "gsr-"))
	tables.Jobs = envOr("JOBS_TABLE", tables.Jobs)
	tables.Slots = envOr("SLOTS_TABLE", tables.Slots)
	def := 0
	if s := os.Getenv("EXECUTOR_MEMORY_MB"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("EXECUTOR_MEMORY_MB %q is not a positive number", s)
		}
		def = n
	}
	awsCfg, err := awsclients.Config(ctx)
	if err != nil {
		return nil, err
	}
	st, err := store.New(awsclients.DynamoDB(awsCfg, os.Getenv("DYNAMODB_ENDPOINT")), store.Config{Tables: tables})
	if err != nil {
		return nil, err
	}
	cfg, err := configFromEnv(os.Getenv)
	if err != nil {
		return nil, err
	}
	cfg.DefaultMemoryMB, cfg.Logger = def, logger
	return finisher.New(st, cfg), nil
}

// configFromEnv reads the URL policy (ALLOW_HTTP_GITLAB,
// ALLOW_PRIVATE_GITLAB): the GitLab clients dial only what it allows, and
// events passed by reference come from the operator's storage
// (urlpolicy.Storage).
func configFromEnv(getenv func(string) string) (finisher.Config, error) {
	policy, err := urlpolicy.Parse(getenv("ALLOW_HTTP_GITLAB"), getenv("ALLOW_PRIVATE_GITLAB"))
	if err != nil {
		return finisher.Config{}, err
	}
	return finisher.Config{
		GitLab:     gitlab.Options{DialContext: policy.DialContext},
		HTTPClient: &http.Client{Transport: urlpolicy.Storage.Transport()},
	}, nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
