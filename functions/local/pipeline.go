package main

import (
	"context"
	"encoding/json"
	"fmt"

	"gitlab-serverless-runner/pkg/dispatch"
	"gitlab-serverless-runner/pkg/finisher"
	"gitlab-serverless-runner/pkg/invoke"
	"gitlab-serverless-runner/pkg/poller"
	"gitlab-serverless-runner/pkg/seal"
)

// registerPollerAndFinisher registers the poller, which hands jobs to the
// executors named in executors (runtime → function), and the finisher,
// which every executor's destinations deliver to.
func (s *System) registerPollerAndFinisher(sealer *seal.Keyring, executors map[string]string) error {
	pcfg := s.cfg.Poller
	pcfg.ExecutorFunctions = executors
	// Jobs with an image run in it in the executors (package localimage):
	// there is no preparation function to hand them to.
	pcfg.PreparerFunction = ""
	if pcfg.Version == "" {
		pcfg.Version = version
	}
	p, err := poller.New(poller.Deps{
		Runners: s.store, Jobs: s.store, Sealer: sealer, Invoker: s.inv,
		Cache:  s.cache,
		Logger: s.log.With("part", pollerFunction),
	}, pcfg)
	if err != nil {
		return fmt.Errorf("local: build poller: %w", err)
	}
	s.inv.Register(pollerFunction, func(ctx context.Context, payload []byte) ([]byte, error) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		defer context.AfterFunc(s.stopping, cancel)()
		ev, err := dispatch.DecodePoll(payload)
		if err != nil {
			return nil, err
		}
		res, err := p.Poll(ctx, ev)
		if err != nil {
			return nil, err
		}
		return json.Marshal(res)
	}, invoke.FunctionConfig{Timeout: DefaultFunctionLimit})

	// The finisher is not cancelled at shutdown: it records the outcome of
	// the jobs that shutdown cancelled. A slot it frees polls the runner
	// again when a poll found every slot held.
	fcfg := s.cfg.Finisher
	fcfg.Logger = s.log.With("part", finisherFunction)
	fcfg.PollerFunction, fcfg.Invoker = pollerFunction, s.inv
	f := finisher.New(s.store, fcfg)
	s.inv.Register(finisherFunction, func(ctx context.Context, payload []byte) ([]byte, error) {
		out, err := f.Handle(ctx, payload)
		if err != nil {
			return nil, err
		}
		return json.Marshal(out)
	}, invoke.FunctionConfig{Timeout: DefaultFunctionLimit})
	return nil
}
