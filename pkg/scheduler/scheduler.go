// Package scheduler owns the periodic fan-out: every minute, scan every
// enabled runner and start one poller for each, asynchronously and with
// bounded parallelism, so that one slow or failing runner never holds up
// the others.
package scheduler

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"gitlab-serverless-runner/pkg/dispatch"
	"gitlab-serverless-runner/pkg/envvar"
	"gitlab-serverless-runner/pkg/invoke"
	"gitlab-serverless-runner/pkg/logging"
	"gitlab-serverless-runner/pkg/runner"
)

// DefaultParallelism is how many poller invocations are in flight at once.
const DefaultParallelism = 32

// Runners is the part of the runner store the scheduler reads.
type Runners interface {
	ScanEnabledRunners(ctx context.Context, fn func(*runner.Runner) error) error
}

var _ Runners = runner.RunnerStore(nil)

// Config configures a Scheduler. Only PollerFunction is required.
type Config struct {
	// PollerFunction is the name of the poller function to invoke.
	PollerFunction string
	// Parallelism bounds the invocations in flight (DefaultParallelism).
	Parallelism int
	// Logger receives the summary of each run and one line per failed
	// runner; nil discards. The summary is at Info when a run's outcome
	// differs from the previous run's (the first run, runners added,
	// removed, paused or resumed), at Warn when an invocation failed, and
	// at Debug when a run only repeats the previous outcome, so a short
	// schedule (local mode) does not fill the log with identical lines.
	Logger *slog.Logger
}

// Scheduler starts one poll per enabled runner. It is safe for concurrent
// use.
type Scheduler struct {
	runners Runners
	inv     invoke.Invoker
	cfg     Config
	log     *slog.Logger

	mu   sync.Mutex
	last *Summary // outcome of the previous successful scan, nil before
}

// ConfigFromEnv reads POLLER_FUNCTION and SCHEDULER_PARALLELISM through
// lookup (os.LookupEnv when nil).
func ConfigFromEnv(lookup envvar.Lookup) (Config, error) {
	r := envvar.New(lookup)
	cfg := Config{PollerFunction: r.String("POLLER_FUNCTION"), Parallelism: r.Int("SCHEDULER_PARALLELISM", 1)}
	return cfg, r.Err("scheduler")
}

// New returns a Scheduler.
func New(runners Runners, inv invoke.Invoker, cfg Config) (*Scheduler, error) {
	if cfg.PollerFunction == "" {
		return nil, fmt.Errorf("scheduler: new: the poller function name is required")
	}
	if cfg.Parallelism <= 0 {
		cfg.Parallelism = DefaultParallelism
	}
	log := logging.OrDiscard(cfg.Logger)
	return &Scheduler{runners: runners, inv: inv, cfg: cfg, log: log}, nil
}

// Summary is the outcome of one Run.
type Summary struct {
	Runners  int           `json:"runners"` // enabled runners seen
	Invoked  int           `json:"invoked"` // pollers started
	Failed   int           `json:"failed"`  // invocations refused
	Duration time.Duration `json:"duration_ns"`
}

// Run scans the enabled runners and invokes a poller for each. A failed
// invocation is counted and logged, never stops the others; the error is
// non-nil only when the scan itself failed (the summary then covers the
// runners seen before).
func (s *Scheduler) Run(ctx context.Context) (Summary, error) {
	start := time.Now()
	var (
		mu  sync.Mutex
		sum Summary
		wg  sync.WaitGroup
		sem = make(chan struct{}, s.cfg.Parallelism)
	)
	scanErr := s.runners.ScanEnabledRunners(ctx, func(r *runner.Runner) error {
		mu.Lock()
		sum.Runners++
		mu.Unlock()
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		wg.Add(1)
		go func(id string) {
			defer wg.Done()
			defer func() { <-sem }()
			ev := dispatch.Poll{RunnerID: id, Reason: dispatch.PollSchedule}
			err := s.inv.Invoke(ctx, s.cfg.PollerFunction, ev.Marshal(), invoke.Options{})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				sum.Failed++
				s.log.WarnContext(ctx, "poller not started", "runner_id", id, "error", err)
				return
			}
			sum.Invoked++
		}(r.ID)
		return nil
	})
	wg.Wait()
	sum.Duration = time.Since(start)
	if scanErr != nil {
		// A run stopped from outside (shutdown, the invocation's end) is
		// not a failure of the scan.
		level := slog.LevelError
		if ctx.Err() != nil {
			level = slog.LevelInfo
		}
		s.log.Log(ctx, level, "scan of runners failed", "runners", sum.Runners, "invoked", sum.Invoked, "failed", sum.Failed, "error", scanErr)
		return sum, fmt.Errorf("scheduler: scan runners: %w", scanErr)
	}
	s.log.Log(ctx, s.summaryLevel(sum), "pollers started", "runners", sum.Runners, "invoked", sum.Invoked, "failed", sum.Failed, "duration_ms", sum.Duration.Milliseconds())
	return sum, nil
}

// summaryLevel is the level of a successful scan's summary: Warn when an
// invocation failed, Info when the counts differ from the previous run's,
// Debug for a run that repeats the previous one. It remembers sum.
func (s *Scheduler) summaryLevel(sum Summary) slog.Level {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.last
	s.last = &sum
	switch {
	case sum.Failed > 0:
		return slog.LevelWarn
	case prev == nil || prev.Runners != sum.Runners || prev.Invoked != sum.Invoked || prev.Failed != sum.Failed:
		return slog.LevelInfo
	}
	return slog.LevelDebug
}
