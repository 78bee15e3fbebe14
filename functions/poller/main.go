// Command poller is the function the scheduler and the webhook invoke for
// one runner: it takes the runner's pending jobs from GitLab and invokes an
// executor for each.
//
// Configuration (environment), read by the packages' ConfigFromEnv:
// poller.ConfigFromEnv (EXECUTOR_FUNCTIONS, PREPARER_FUNCTION,
// POLL_WINDOW_SECONDS, MAX_LONG_POLL_SECONDS, VERSION, CACHE_BUCKET,
// PAYLOAD_BUCKET: executor events above 256 KiB go through it, under
// payloads/; S3_ENDPOINT; ALLOW_HTTP_GITLAB and ALLOW_PRIVATE_GITLAB),
// store.ConfigFromEnv (tables, DYNAMODB_ENDPOINT), seal.FromEnv
// (TOKEN_SEALING_KEY, a Secrets Manager reference on AWS), logging
// (LOG_LEVEL), and the endpoint override LAMBDA_ENDPOINT.
package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"gitlab-serverless-runner/pkg/awsclients"
	"gitlab-serverless-runner/pkg/dispatch"
	"gitlab-serverless-runner/pkg/invoke"
	"gitlab-serverless-runner/pkg/logging"
	"gitlab-serverless-runner/pkg/poller"
	"gitlab-serverless-runner/pkg/seal"
	"gitlab-serverless-runner/pkg/secrets"
	"gitlab-serverless-runner/pkg/store"
)

func main() {
	logger := logging.FromEnv(os.Stdout, nil)
	slog.SetDefault(logger)
	p, err := setup(context.Background(), logger)
	if err != nil {
		logger.Error("poller function cannot start", "error", err)
		os.Exit(1)
	}
	lambda.Start(func(ctx context.Context, raw json.RawMessage) (poller.Result, error) {
		ev, err := dispatch.DecodePoll(raw)
		if err != nil {
			logger.ErrorContext(ctx, "invalid poller event; dropped", "error", err)
			return poller.Result{}, nil // a retry would not fix it
		}
		return p.Poll(ctx, ev)
	})
}

// setup wires configuration and dependencies once, at cold start.
func setup(ctx context.Context, logger *slog.Logger) (*poller.Poller, error) {
	lookup, err := secrets.LookupEnv(ctx, nil, "TOKEN_SEALING_KEY")
	if err != nil {
		return nil, err
	}
	cfg, err := poller.ConfigFromEnv(lookup)
	if err != nil {
		return nil, err
	}
	stCfg, err := store.ConfigFromEnv(lookup)
	if err != nil {
		return nil, err
	}
	sealer, err := seal.FromEnv(lookup)
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
	s3c := awsclients.S3(awsCfg, cfg.S3Endpoint)
	lcfg := invoke.LambdaConfig{Logger: logger, KeyPrefix: "payloads/"}
	if cfg.PayloadBucket != "" {
		lcfg.Payloads = invoke.NewS3Payloads(s3c, cfg.PayloadBucket, 0)
	}
	inv := invoke.NewLambda(awsclients.Lambda(awsCfg, invoke.EndpointFromEnv(lookup)), lcfg)
	deps := poller.Deps{Runners: st, Jobs: st, Sealer: sealer, Invoker: inv, Logger: logger}
	if cfg.CacheBucket != "" {
		deps.Cache = poller.NewS3Presigner(s3c, cfg.CacheBucket)
	}
	return poller.New(deps, cfg)
}
