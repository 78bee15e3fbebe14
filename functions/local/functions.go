package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"gitlab-serverless-runner/pkg/dispatch"
	"gitlab-serverless-runner/pkg/executor"
	"gitlab-serverless-runner/pkg/invoke"
	"gitlab-serverless-runner/pkg/sandbox"
	"gitlab-serverless-runner/pkg/seal"
	"gitlab-serverless-runner/pkg/shell"
)

// version is what the runner reports to GitLab and prints in traces.
const version = "local"

// secretEnv are the variables of this process a job must not see: the
// product's own keys and client secret. Jobs run as the user who started
// local mode, like gitlab-runner's shell executor, so this keeps the
// product's secrets out of job logs rather than making a sandbox.
var secretEnv = []string{"SESSION_KEY", "TOKEN_SEALING_KEY", "OIDC_CLIENT_SECRET", "OIDC_CLIENT_ID"}

// executorFunction names the in-process executor offering runtime. Every
// runtime runs on this machine with the tools it has: the name only keeps
// the poller's dispatch the same as in a deployment.
func executorFunction(runtime string) string { return "executor-" + runtime }

// registerFunctions makes the poller, the executors and the finisher
// invocable in process, with the executors' destinations pointing at the
// finisher as the template's EventInvokeConfig does.
func (s *System) registerFunctions(sealer *seal.Keyring) error {
	functions := map[string]string{}
	for _, rt := range s.cfg.Web.Runtimes {
		name := executorFunction(rt)
		functions[rt] = name
		s.inv.Register(name, s.executorFunc(name, rt), invoke.FunctionConfig{
			Destinations: invoke.Destinations{OnSuccess: finisherFunction, OnFailure: finisherFunction},
			Timeout:      DefaultFunctionLimit,
		})
	}
	return s.registerPollerAndFinisher(sealer, functions)
}

// executorFunc runs one job like the executor Lambda does, but in a
// directory of its own under the jobs directory, removed afterwards, and
// with the local clean-up: only the job's own process groups are stopped;
// nothing else on the machine is touched.
func (s *System) executorFunc(name, runtime string) invoke.Func {
	log := s.log.With("part", name)
	return func(ctx context.Context, payload []byte) ([]byte, error) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stop := context.AfterFunc(s.stopping, cancel) // Ctrl-C cancels running jobs
		defer stop()

		// The executor reports a bad event itself; the id only names the
		// job's directory.
		id, _ := dispatch.Identify(payload)
		dir, err := os.MkdirTemp(s.jobsDir, "job-"+strconv.FormatInt(id.Job.ID, 10)+"-")
		if err != nil {
			return nil, fmt.Errorf("local: create job directory: %w", err)
		}
		defer os.RemoveAll(dir)
		cfg := s.cfg.Executor
		cfg.Version, cfg.Runtime, cfg.ReleaseCLI = version, runtime, releaseCLI
		cfg.BuildsDir, cfg.HomeDir, cfg.ScratchDir = filepath.Join(dir, "builds"), filepath.Join(dir, "home"), filepath.Join(dir, "tmp")
		cfg.Cleanup, cfg.WipeDirs = sandbox.CleanupLocal, nil
		cfg.BaseEnv = shell.SanitizedBaseEnv(os.Environ(), secretEnv...)
		cfg.Logger = log // the executor names the job on every line
		for _, d := range []string{cfg.BuildsDir, cfg.HomeDir, cfg.ScratchDir} {
			if err := os.MkdirAll(d, 0o700); err != nil {
				return nil, fmt.Errorf("local: create job directory: %w", err)
			}
		}
		ex, err := executor.New(cfg)
		if err != nil {
			return nil, fmt.Errorf("local: build executor: %w", err)
		}
		res, err := ex.Handle(ctx, payload)
		if err != nil {
			return nil, err
		}
		out, err := json.Marshal(res)
		if err != nil {
			return nil, fmt.Errorf("local: encode executor result: %w", err)
		}
		return out, nil
	}
}
