// Command web is the web application's Lambda function behind API Gateway's
// HTTP API (payload format 2.0). Outside Lambda (no AWS_LAMBDA_RUNTIME_API)
// it serves plain HTTP on LISTEN_ADDR for development.
//
// GitLab's job webhooks start the poller function named by POLLER_FUNCTION
// through Lambda (LAMBDA_ENDPOINT overrides the endpoint, for sam local
// start-lambda); without POLLER_FUNCTION the webhook route answers 503.
package main

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	echoadapter "github.com/awslabs/aws-lambda-go-api-proxy/echo"

	"gitlab-serverless-runner/pkg/awsclients"
	"gitlab-serverless-runner/pkg/invoke"
	"gitlab-serverless-runner/pkg/logging"
	"gitlab-serverless-runner/pkg/seal"
	"gitlab-serverless-runner/pkg/secrets"
	"gitlab-serverless-runner/pkg/store"
	"gitlab-serverless-runner/pkg/web"
)

func main() {
	logger := logging.FromEnv(os.Stdout, nil)
	slog.SetDefault(logger)
	if err := run(context.Background(), logger); err != nil {
		logger.Error("web function stopped", "error", err)
		os.Exit(1)
	}
}

// run wires configuration and dependencies once, at cold start, and serves.
func run(ctx context.Context, logger *slog.Logger) error {
	// On AWS the secret variables hold Secrets Manager ARNs, resolved once
	// here so the plain values never appear in the function's configuration.
	lookup, err := secrets.LookupEnv(ctx, nil, "SESSION_KEY", "TOKEN_SEALING_KEY", "OIDC_CLIENT_SECRET")
	if err != nil {
		return err
	}
	cfg, err := web.ConfigFromEnv(lookup)
	if err != nil {
		return err
	}
	stCfg, err := store.ConfigFromEnv(lookup)
	if err != nil {
		return err
	}
	stCfg.MaxRunnersPerUser = cfg.MaxRunnersPerUser
	// One AWS configuration for DynamoDB and Lambda, loaded once.
	awsCfg, err := awsclients.Config(ctx)
	if err != nil {
		return err
	}
	st, err := store.New(awsclients.DynamoDB(awsCfg, stCfg.Endpoint), stCfg)
	if err != nil {
		return err
	}
	sealer, err := seal.FromEnv(lookup)
	if err != nil {
		return err
	}
	sessions, login, err := web.NewAuth(cfg, logger)
	if err != nil {
		return err
	}
	deps := web.Deps{
		Users: st, Runners: st, Jobs: st, Sealer: sealer,
		Sessions: sessions, Login: login, Logger: logger,
	}
	if cfg.PollerFunction != "" {
		lc := awsclients.Lambda(awsCfg, invoke.EndpointFromEnv(lookup))
		deps.Invoker = invoke.NewLambda(lc, invoke.LambdaConfig{Logger: logger})
	} else {
		logger.Warn("POLLER_FUNCTION is not set: GitLab job webhooks are off")
	}
	app, err := web.New(cfg, deps)
	if err != nil {
		return err
	}
	if os.Getenv("AWS_LAMBDA_RUNTIME_API") != "" {
		lambda.Start(echoadapter.NewV2(app.Echo()).ProxyWithContext)
		return nil
	}
	logger.Info("serving plain HTTP for development", "addr", cfg.ListenAddr, "base_url", cfg.BaseURL)
	srv := &http.Server{Addr: cfg.ListenAddr, Handler: app, ReadHeaderTimeout: 10 * time.Second}
	return srv.ListenAndServe()
}
