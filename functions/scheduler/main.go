// Command scheduler is the function EventBridge runs every minute: it
// closes the jobs whose lease ran out without a record (pkg/sweeper), then
// scans the enabled runners and invokes one poller for each.
//
// Configuration (environment), read by the packages' ConfigFromEnv:
// scheduler.ConfigFromEnv (POLLER_FUNCTION, SCHEDULER_PARALLELISM),
// store.ConfigFromEnv (tables, DYNAMODB_ENDPOINT), seal.FromEnv
// (TOKEN_SEALING_KEY, which opens the sealed job tokens of lost jobs; a
// Secrets Manager reference on AWS), urlpolicy.ConfigFromEnv
// (ALLOW_HTTP_GITLAB, ALLOW_PRIVATE_GITLAB: the sweeper dials a user's
// GitLab only where they allow), logging (LOG_LEVEL), and the endpoint
// override LAMBDA_ENDPOINT.
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
	"gitlab-serverless-runner/pkg/seal"
	"gitlab-serverless-runner/pkg/secrets"
	"gitlab-serverless-runner/pkg/store"
	"gitlab-serverless-runner/pkg/sweeper"
	"gitlab-serverless-runner/pkg/urlpolicy"
)

func main() {
	logger := logging.FromEnv(os.Stdout, nil)
	slog.SetDefault(logger)
	t, err := setup(context.Background(), logger)
	if err != nil {
		logger.Error("scheduler function cannot start", "error", err)
		os.Exit(1)
	}
	lambda.Start(t.run)
}

// tick is one scheduled run: the sweep, then the fan-out.
type tick struct {
	sweep *sweeper.Sweeper
	sched *scheduler.Scheduler
	log   *slog.Logger
}

// Outcome is what one tick did.
type Outcome struct {
	Sweep sweeper.Result    `json:"sweep"`
	Polls scheduler.Summary `json:"polls"`
}

func (t tick) run(ctx context.Context) (Outcome, error) {
	var out Outcome
	var err error
	if out.Sweep, err = t.sweep.Sweep(ctx); err != nil {
		// The polls go on: a runner whose slots are all held by lost jobs
		// waits for the next tick.
		t.log.ErrorContext(ctx, "sweep failed", "error", err)
	}
	out.Polls, err = t.sched.Run(ctx)
	return out, err
}

// setup wires configuration and dependencies once, at cold start.
func setup(ctx context.Context, logger *slog.Logger) (tick, error) {
	lookup, err := secrets.LookupEnv(ctx, nil, "TOKEN_SEALING_KEY")
	if err != nil {
		return tick{}, err
	}
	cfg, err := scheduler.ConfigFromEnv(lookup)
	if err != nil {
		return tick{}, err
	}
	stCfg, err := store.ConfigFromEnv(lookup)
	if err != nil {
		return tick{}, err
	}
	sealer, err := seal.FromEnv(lookup)
	if err != nil {
		return tick{}, err
	}
	policy, err := urlpolicy.ConfigFromEnv(lookup)
	if err != nil {
		return tick{}, err
	}
	// One AWS configuration for every client.
	awsCfg, err := awsclients.Config(ctx)
	if err != nil {
		return tick{}, err
	}
	st, err := store.New(awsclients.DynamoDB(awsCfg, stCfg.Endpoint), stCfg)
	if err != nil {
		return tick{}, err
	}
	cfg.Logger = logger
	inv := invoke.NewLambda(awsclients.Lambda(awsCfg, invoke.EndpointFromEnv(lookup)), invoke.LambdaConfig{Logger: logger})
	sch, err := scheduler.New(st, inv, cfg)
	if err != nil {
		return tick{}, err
	}
	sw := sweeper.New(st, st, sealer, sweeper.Config{URLPolicy: &policy, Logger: logger.With("part", "sweeper")})
	return tick{sweep: sw, sched: sch, log: logger}, nil
}
