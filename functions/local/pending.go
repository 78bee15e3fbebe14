package main

import "gitlab-serverless-runner/pkg/seal"

// registerPollerAndFinisher will register the poller and the finisher once
// their packages exist; until then the scheduler's invocations fail and are
// logged, and runners are never polled.
func (s *System) registerPollerAndFinisher(_ *seal.Sealer, executors map[string]string) error {
	s.log.Warn("the poller and finisher are not wired yet: runners are not polled", "executors", len(executors))
	return nil
}
