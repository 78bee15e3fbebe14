package executor

import (
	"context"
	"errors"
	"sync"
	"time"

	"gitlab-serverless-runner/pkg/trace"
)

// DefaultStatusInterval is how often the executor asks GitLab for the job's
// status while the job runs. GitLab answers a trace PATCH only at the
// interval it chooses (60 s unless someone watches the log) and the
// keep-alive follows the trace loop, so without this check a cancel of a
// job that prints nothing would be noticed a minute or more late. Twelve
// PUTs a minute stay far below GitLab's 200 requests a minute per job token.
const DefaultStatusInterval = 5 * time.Second

// watchStatus starts the status check: every StatusInterval a keep-alive
// update (PUT state=running with the trace's current checksum and size, as
// gitlab-runner sends it) whose Job-Status answer says whether the job was
// canceled. The uploader sends it (trace.Uploader.CheckStatus), one
// request at a time with its own: once GitLab answers that the job is
// over, neither sends anything more. It returns a function that stops the
// check and waits for it, so that no running update can follow the final
// one.
func (j *jobRun) watchStatus(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(j.e.cfg.StatusInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-j.up.Aborted():
				return
			case <-t.C:
			}
			err := j.up.CheckStatus(ctx)
			switch {
			case errors.Is(err, trace.ErrAborted):
				j.log.Info("executor: the job is over in GitLab; aborting")
				return
			case errors.Is(err, trace.ErrFinished):
				return
			case err != nil:
				if ctx.Err() == nil {
					j.log.Warn("executor: check the job's status", "error", err)
				}
			}
		}
	}()
	return func() {
		cancel()
		wg.Wait()
	}
}
