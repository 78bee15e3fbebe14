// Command local runs the whole product in one process for development,
// without AWS: DynamoDB Local, the web UI, the scheduler on a ticker, and
// the poller, executors and finisher as in-process functions. `make local`
// runs it; docs/local.md describes its configuration.
//
// With no OIDC settings it signs people in through a development OIDC
// provider that admits anyone without a password, and so serves only on a
// loopback address. Ctrl-C (SIGINT or SIGTERM) stops everything it started.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"gitlab-serverless-runner/pkg/logging"
	"gitlab-serverless-runner/pkg/releasecli"
)

var errUsage = errors.New("local: takes no arguments; configure it with environment variables (see docs/local.md)")

// releaseCLI is the program the in-process executors offer jobs as
// release-cli: this binary, which answers to that name (main sets it; in
// tests of Main it stays empty and jobs get none).
var releaseCLI string

func main() {
	if filepath.Base(os.Args[0]) == releasecli.Name {
		os.Exit(releasecli.Main(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr, releasecli.Options{Version: version}))
	}
	if self, err := os.Executable(); err == nil {
		releaseCLI = self
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := Main(ctx, os.Args[1:], os.LookupEnv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// Main reads the configuration through lookup, logs to stdout and runs the
// system until ctx is cancelled. It returns nil after a clean stop.
func Main(ctx context.Context, args []string, lookup func(string) (string, bool), stdout io.Writer) error {
	if len(args) > 0 {
		return errUsage
	}
	cfg, err := ConfigFromEnv(lookup)
	if err != nil {
		return err
	}
	cfg.Logger = logging.New(stdout, cfg.Logging)
	return Run(ctx, cfg)
}
