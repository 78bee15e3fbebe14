// Command poller is the function the scheduler and the webhook invoke for
// one runner: it takes the runner's pending jobs from GitLab and invokes an
// executor for each.
//
// Configuration (environment): TABLE_PREFIX ("gsr-") or RUNNERS_TABLE,
// JOBS_TABLE, SLOTS_TABLE; TOKEN_SEALING_KEY; EXECUTOR_FUNCTIONS
// ("runtime=function,..."); CACHE_BUCKET (no cache without it);
// PAYLOAD_BUCKET (CACHE_BUCKET; executor events above 256 KiB go through it,
// under payloads/);
// POLL_WINDOW_SECONDS (5); MAX_LONG_POLL_SECONDS (60); VERSION;
// DYNAMODB_ENDPOINT, LAMBDA_ENDPOINT, S3_ENDPOINT (optional local endpoints).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/aws/aws-lambda-go/lambda"

	"gitlab-serverless-runner/pkg/awsclients"
	"gitlab-serverless-runner/pkg/dispatch"
	"gitlab-serverless-runner/pkg/invoke"
	"gitlab-serverless-runner/pkg/poller"
	"gitlab-serverless-runner/pkg/seal"
	"gitlab-serverless-runner/pkg/secrets"
	"gitlab-serverless-runner/pkg/store"
)

func main() {
	logger := slog.New(slog.NewJSONHandler(os.Stdout, nil))
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
	tables := store.Prefixed(envOr("TABLE_PREFIX", "gsr-"))
	tables.Runners = envOr("RUNNERS_TABLE", tables.Runners)
	tables.Jobs = envOr("JOBS_TABLE", tables.Jobs)
	tables.Slots = envOr("SLOTS_TABLE", tables.Slots)
	if os.Getenv("TOKEN_SEALING_KEY") == "" {
		return nil, errors.New("TOKEN_SEALING_KEY is not set")
	}
	keys, err := secrets.Resolve(ctx, os.Getenv("TOKEN_SEALING_KEY"))
	if err != nil {
		return nil, err
	}
	sealer, err := seal.ParseKeys(keys)
	if err != nil {
		return nil, err
	}
	functions, err := poller.ParseFunctions(os.Getenv("EXECUTOR_FUNCTIONS"))
	if err != nil {
		return nil, err
	}
	window, err := seconds("POLL_WINDOW_SECONDS")
	if err != nil {
		return nil, err
	}
	maxLong, err := seconds("MAX_LONG_POLL_SECONDS")
	if err != nil {
		return nil, err
	}
	awsCfg, err := awsclients.Config(ctx)
	if err != nil {
		return nil, err
	}
	st, err := store.New(awsclients.DynamoDB(awsCfg, os.Getenv("DYNAMODB_ENDPOINT")), store.Config{Tables: tables})
	if err != nil {
		return nil, err
	}
	s3c := awsclients.S3(awsCfg, os.Getenv("S3_ENDPOINT"))
	lc := awsclients.Lambda(awsCfg, os.Getenv("LAMBDA_ENDPOINT"))
	lcfg := invoke.LambdaConfig{Logger: logger, KeyPrefix: "payloads/"}
	if b := envOr("PAYLOAD_BUCKET", os.Getenv("CACHE_BUCKET")); b != "" {
		lcfg.Payloads = invoke.NewS3Payloads(s3c, b, 0)
	}
	deps := poller.Deps{Runners: st, Jobs: st, Sealer: sealer, Invoker: invoke.NewLambda(lc, lcfg), Logger: logger}
	if b := os.Getenv("CACHE_BUCKET"); b != "" {
		deps.Cache = poller.NewS3Presigner(s3c, b)
	}
	return poller.New(deps, poller.Config{
		ExecutorFunctions: functions,
		Version:           envOr("VERSION", "dev"),
		Window:            window,
		MaxLongPoll:       maxLong,
	})
}

func seconds(key string) (time.Duration, error) {
	s := os.Getenv(key)
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%s %q is not a positive number of seconds", key, s)
	}
	return time.Duration(n) * time.Second, nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
