// Command scheduler is the function EventBridge runs every minute: it scans
// the enabled runners and invokes one poller for each.
//
// Configuration (environment), read by the packages' ConfigFromEnv:
// scheduler.ConfigFromEnv (POLLER_FUNCTION, SCHEDULER_PARALLELISM),
// store.ConfigFromEnv (tables, DYNAMODB_ENDPOINT), logging (LOG_LEVEL), and
// the endpoint override LAMBDA_ENDPOINT.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"gitlab-serverless-runner/pkg/awsclients"
	"gitlab-serverless-runner/pkg/invoke"
	"gitlab-serverless-runner/pkg/logging"
	"gitlab-serverless-runner/pkg/scheduler"
	"gitlab-serverless-runner/pkg/store"
)

func main() {
	logger := logging.FromEnv(os.Stdout, nil)
	slog.SetDefault(logger)
	sch, err := setup(context.Background(), logger)
	if err != nil {
		logger.Error("scheduler function cannot start", "error", err)
		os.Exit(1)
	}
	lambda.Start(sch.Run)
}

// setup wires configuration and dependencies once, at cold start.
func setup(ctx context.Context, logger *slog.Logger) (*scheduler.Scheduler, error) {
	cfg, err := scheduler.ConfigFromEnv(nil)
	if err != nil {
		return nil, err
	}
	stCfg, err := store.ConfigFromEnv(nil)
	if err != nil {
		return nil, err
	}
	st, err := store.Open(ctx, stCfg)
	if err != nil {
		return nil, err
	}
	awsCfg, err := awsclients.Config(ctx)
	if err != nil {
		return nil, err
	}
	cfg.Logger = logger
	inv := invoke.NewLambda(awsclients.Lambda(awsCfg, os.Getenv("LAMBDA_ENDPOINT")), invoke.LambdaConfig{Logger: logger})
	return scheduler.New(st, inv, cfg)
}
