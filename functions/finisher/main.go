// Command finisher is the on-success and on-failure destination of every
// executor function: it records each job's outcome, frees its concurrency
// slot, polls the runner again when jobs wait for that slot, and fails in
// GitLab the jobs whose executor died.
//
// Configuration (environment), read by the packages' ConfigFromEnv:
// finisher.ConfigFromEnv (EXECUTOR_MEMORY_MB: the executors' memory, for
// the cost of a job whose executor died before reporting its own;
// POLLER_FUNCTION: the poller a freed slot invokes; ALLOW_HTTP_GITLAB and
// ALLOW_PRIVATE_GITLAB: the finisher dials a user's GitLab only where they
// allow), store.ConfigFromEnv (tables, DYNAMODB_ENDPOINT), logging
// (LOG_LEVEL), and the endpoint override LAMBDA_ENDPOINT.
package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"gitlab-serverless-runner/pkg/awsclients"
	"gitlab-serverless-runner/pkg/finisher"
	"gitlab-serverless-runner/pkg/invoke"
	"gitlab-serverless-runner/pkg/logging"
	"gitlab-serverless-runner/pkg/store"
)

func main() {
	logger := logging.FromEnv(os.Stdout, nil)
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
	cfg, err := finisher.ConfigFromEnv(nil)
	if err != nil {
		return nil, err
	}
	stCfg, err := store.ConfigFromEnv(nil)
	if err != nil {
		return nil, err
	}
	// One AWS configuration for every client.
	awsCfg, err := awsclients.Config(ctx)
	if err != nil {
		return nil, err
	}
	st, err := store.New(awsclients.DynamoDB(awsCfg, stCfg.Endpoint), stCfg)
	if err != nil {
		return nil, err
	}
	cfg.Logger = logger
	if cfg.PollerFunction == "" {
		logger.Warn("no POLLER_FUNCTION: a freed slot waits for the next scheduled poll")
	} else {
		cfg.Invoker = invoke.NewLambda(awsclients.Lambda(awsCfg, invoke.EndpointFromEnv(nil)), invoke.LambdaConfig{Logger: logger})
	}
	return finisher.New(st, cfg), nil
}
