package poller_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/dispatch"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
	"gitlab-serverless-runner/pkg/poller"
	"gitlab-serverless-runner/pkg/runner"
	"gitlab-serverless-runner/pkg/store"
)

// resealingStore is the real store, except that just before the poller's
// first token save another writer seals the stored token again (as a
// sealing key rotation would): same token, different sealed bytes.
type resealingStore struct {
	*store.Store
	e    *env
	once sync.Once
}

func (s *resealingStore) RotateToken(ctx context.Context, id string, oldSealed, sealed []byte, obtainedAt, expiresAt *time.Time) error {
	s.once.Do(func() {
		r, err := s.Store.GetRunner(ctx, id)
		if err != nil {
			s.e.t.Errorf("GetRunner: %v", err)
			return
		}
		token, err := s.e.sealer.Open(id, r.SealedToken)
		if err != nil {
			s.e.t.Errorf("Open: %v", err)
			return
		}
		again, err := s.e.sealer.Seal(id, token)
		if err != nil {
			s.e.t.Errorf("Seal: %v", err)
			return
		}
		if err := s.Store.RotateToken(ctx, id, r.SealedToken, again, r.TokenObtainedAt, r.TokenExpiresAt); err != nil {
			s.e.t.Errorf("reseal: %v", err)
		}
	})
	return s.Store.RotateToken(ctx, id, oldSealed, sealed, obtainedAt, expiresAt)
}

func TestTokenRotationOverAResealedToken(t *testing.T) {
	e := newEnv(t, gitlabtest.WithTokenExpiry(time.Hour))
	r, gr := e.addRunner(1, func(r *runner.Runner) {
		obtained := time.Now().Add(-4 * time.Hour) // past three quarters of its life
		r.TokenObtainedAt = &obtained
	})
	p, err := poller.New(poller.Deps{Runners: &resealingStore{Store: e.store, e: e}, Jobs: e.store, Sealer: e.sealer, Invoker: e.inv, Cache: fakePresigner{}},
		poller.Config{ExecutorFunctions: map[string]string{"provided.al2023": "executor-provided"}, Version: "test", GitLab: e.glOpts})
	if err != nil {
		t.Fatalf("poller.New: %v", err)
	}
	res, err := p.Poll(context.Background(), dispatch.Poll{RunnerID: r.ID})
	if err != nil || res.Stop != poller.StopNoJob {
		t.Errorf("Poll() = %+v, %v; want a poll that found no job", res, err)
	}
	after := e.runnerNow(r.ID)
	saved, err := e.sealer.Open(r.ID, after.SealedToken)
	if err != nil {
		t.Fatalf("open the saved token: %v", err)
	}
	current, _ := e.gl.Runner(gr.ID)
	if saved == gr.Token || saved != current.Token {
		t.Errorf("saved token is not GitLab's current token (still the old one: %v)", saved == gr.Token)
	}
	if !after.Health.Healthy() {
		t.Errorf("health = %+v, want healthy", after.Health)
	}
}
