// Command preparer is the image preparation function: the poller hands it
// every job with `image:`; it prepares the image's executor function and
// invokes it with the job (see pkg/preparer). On its daily schedule
// ({"sweep": true}) it deletes the image functions no job used for
// IMAGE_FUNCTION_UNUSED_DAYS.
//
// Configuration (environment), read by the packages' ConfigFromEnv:
// preparer.SettingsFromEnv (IMAGE_REPOSITORY, IMAGE_PULL_THROUGH,
// IMAGE_FUNCTIONS_TABLE, IMAGE_FUNCTION_PREFIX, EXECUTOR_ROLE_ARN,
// FINISHER_ARN, EXECUTOR_LOG_GROUP, IMAGE_FUNCTION_TIMEOUT,
// IMAGE_FUNCTION_UNUSED_DAYS, the bounds IMAGE_MEMORY_*, IMAGE_STORAGE_*,
// IMAGE_ARCHITECTURES and IMAGE_ARCHITECTURE_DEFAULT, PAYLOAD_BUCKET, and the executor settings it passes on to image
// functions), store.ConfigFromEnv (tables, DYNAMODB_ENDPOINT), logging
// (LOG_LEVEL), and the endpoint overrides LAMBDA_ENDPOINT, ECR_ENDPOINT and
// S3_ENDPOINT.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/google/go-containerregistry/pkg/name"

	"gitlab-serverless-runner/pkg/awsclients"
	"gitlab-serverless-runner/pkg/imagefn"
	"gitlab-serverless-runner/pkg/invoke"
	"gitlab-serverless-runner/pkg/jobimage"
	"gitlab-serverless-runner/pkg/logging"
	"gitlab-serverless-runner/pkg/preparer"
	"gitlab-serverless-runner/pkg/store"
)

func main() {
	logger := logging.FromEnv(os.Stdout, nil)
	slog.SetDefault(logger)
	p, fns, days, err := setup(context.Background(), logger)
	if err != nil {
		logger.Error("preparer function cannot start", "error", err)
		os.Exit(1)
	}
	lambda.Start(func(ctx context.Context, raw json.RawMessage) (any, error) {
		var sweep struct {
			Sweep bool `json:"sweep"`
		}
		if json.Unmarshal(raw, &sweep) == nil && sweep.Sweep {
			deleted, err := fns.SweepUnused(ctx, time.Duration(days)*24*time.Hour)
			logger.InfoContext(ctx, "unused image functions deleted", "functions", deleted, "error", err)
			return map[string]any{"deleted": deleted}, err
		}
		return p.Handle(ctx, raw)
	})
}

// setup wires configuration and dependencies once, at cold start.
func setup(ctx context.Context, logger *slog.Logger) (*preparer.Preparer, *imagefn.Functions, int, error) {
	s, err := preparer.SettingsFromEnv(nil)
	if err != nil {
		return nil, nil, 0, err
	}
	stCfg, err := store.ConfigFromEnv(nil)
	if err != nil {
		return nil, nil, 0, err
	}
	// One AWS configuration and one DynamoDB client for every client.
	awsCfg, err := awsclients.Config(ctx)
	if err != nil {
		return nil, nil, 0, err
	}
	db := awsclients.DynamoDB(awsCfg, stCfg.Endpoint)
	st, err := store.New(db, stCfg)
	if err != nil {
		return nil, nil, 0, err
	}
	target, err := name.NewRepository(s.Repository)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("IMAGE_REPOSITORY: %w", err)
	}
	auth := &preparer.ECRAuth{ECR: awsclients.ECR(awsCfg, s.ECREndpoint)}
	pull := map[string]string{}
	for host, prefix := range s.PullThrough {
		pull[host] = target.RegistryStr() + "/" + prefix
	}
	lc := awsclients.Lambda(awsCfg, invoke.EndpointFromEnv(nil))
	fns, err := imagefn.New(lc, db, imagefn.Config{
		FunctionPrefix: s.FunctionPrefix, RoleARN: s.RoleARN, FinisherARN: s.FinisherARN,
		Timeout: s.Timeout, Environment: s.Environment, Table: s.Table, LogGroup: s.LogGroup,
	})
	if err != nil {
		return nil, nil, 0, err
	}
	lcfg := invoke.LambdaConfig{Logger: logger, KeyPrefix: "payloads/"}
	if s.PayloadBucket != "" {
		lcfg.Payloads = invoke.NewS3Payloads(awsclients.S3(awsCfg, s.S3Endpoint), s.PayloadBucket, 0)
	}
	p, err := preparer.New(preparer.Deps{
		Resolver: &jobimage.Resolver{PullThrough: pull, CacheAuth: auth},
		// A base in a pull-through cache gets its derived image in its
		// own repository (ECR mounts no layer out of one); a base on
		// another registry has its layers copied.
		Deriver:   &jobimage.Deriver{Target: target, TargetAuth: auth, AllowCopy: true, IntoBaseRepository: true},
		Functions: fns, Executors: &preparer.ExecutorDir{Dir: s.ExecutorDir},
		Invoker: invoke.NewLambda(lc, lcfg), Jobs: st, Logger: logger,
	}, s.Config)
	return p, fns, s.UnusedDays, err
}
