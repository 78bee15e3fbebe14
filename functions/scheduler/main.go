// Command scheduler is the function EventBridge runs every minute: it scans
// the enabled runners and invokes one poller for each.
//
// Configuration (environment): RUNNERS_TABLE (or TABLE_PREFIX + "runners"),
// POLLER_FUNCTION, SCHEDULER_PARALLELISM (32), DYNAMODB_ENDPOINT and
// LAMBDA_ENDPOINT (optional, for local endpoints).
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"

	"github.com/aws/aws-lambda-go/lambda"

	"gitlab-serverless-runner/pkg/awsclients"
	"gitlab-serverless-runner/pkg/invoke"
	"gitlab-serverless-runner/pkg/scheduler"
	"gitlab-serverless-runner/pkg/store"
)

func main() {
	logger := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	slog.SetDefault(logger)
	handler, err := setup(context.Background(), logger)
	if err != nil {
		logger.Error("scheduler function cannot start", "error", err)
		os.Exit(1)
	}
	lambda.Start(handler)
}

// setup wires configuration and dependencies once, at cold start.
func setup(ctx context.Context, logger *slog.Logger) (func(context.Context) (scheduler.Summary, error), error) {
	prefix := envOr("TABLE_PREFIX", "gsr-")
	tables := store.Prefixed(prefix)
	tables.Runners = envOr("RUNNERS_TABLE", tables.Runners)
	parallelism := 0
	if s := os.Getenv("SCHEDULER_PARALLELISM"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("SCHEDULER_PARALLELISM %q is not a positive number", s)
		}
		parallelism = n
	}
	awsCfg, err := awsclients.Config(ctx)
	if err != nil {
		return nil, err
	}
	st, err := store.New(awsclients.DynamoDB(awsCfg, os.Getenv("DYNAMODB_ENDPOINT")), store.Config{Tables: tables})
	if err != nil {
		return nil, err
	}
	lc := awsclients.Lambda(awsCfg, os.Getenv("LAMBDA_ENDPOINT"))
	sch, err := scheduler.New(st, invoke.NewLambda(lc, invoke.LambdaConfig{Logger: logger}), scheduler.Config{
		PollerFunction: os.Getenv("POLLER_FUNCTION"),
		Parallelism:    parallelism,
		Logger:         logger,
	})
	if err != nil {
		return nil, err
	}
	return sch.Run, nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
