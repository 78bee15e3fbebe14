// Command finisher is the on-success and on-failure destination of every
// executor function: it records each job's outcome, frees its concurrency
// slot and fails in GitLab the jobs whose executor died.
//
// Configuration (environment): TABLE_PREFIX ("gsr-") or JOBS_TABLE and
// SLOTS_TABLE; EXECUTOR_MEMORY_MB (the executors' memory, for the cost of a
// job whose executor died before reporting its own; default 2048);
// DYNAMODB_ENDPOINT (optional local endpoint).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strconv"

	"github.com/aws/aws-lambda-go/lambda"

	"gitlab-serverless-runner/pkg/awsclients"
	"gitlab-serverless-runner/pkg/finisher"
	"gitlab-serverless-runner/pkg/store"
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
	return finisher.New(st, finisher.Config{DefaultMemoryMB: def, Logger: logger}), nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
