package poller_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/dispatch"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
	"gitlab-serverless-runner/pkg/logtest"
	"gitlab-serverless-runner/pkg/poller"
	"gitlab-serverless-runner/pkg/runner"
	"gitlab-serverless-runner/pkg/seal"
	"gitlab-serverless-runner/pkg/store"
)

// resealingStore is the real store, except that just before the poller
// saves its first new token another writer seals the stored token again
// (as a sealing key rotation would): same token, different sealed bytes.
type resealingStore struct {
	*store.Store
	e    *env
	once sync.Once
}

func (s *resealingStore) RotateToken(ctx context.Context, id string, oldSealed, sealed []byte, obtainedAt, expiresAt *time.Time) error {
	if bytes.Equal(oldSealed, sealed) { // the check before the reset, not a new token
		return s.Store.RotateToken(ctx, id, oldSealed, sealed, obtainedAt, expiresAt)
	}
	s.once.Do(func() {
		r, err := s.Store.GetRunner(ctx, id)
		if err != nil {
			s.e.t.Errorf("GetRunner: %v", err)
			return
		}
		token, err := s.e.sealer.Open(seal.RunnerToken(id), r.SealedToken)
		if err != nil {
			s.e.t.Errorf("Open: %v", err)
			return
		}
		again, err := s.e.sealer.Seal(seal.RunnerToken(id), token)
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
	saved, err := e.sealer.Open(seal.RunnerToken(r.ID), after.SealedToken)
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

// failingSaves is the real store, except that RotateToken fails, before
// reaching DynamoDB, for the first failNew saves of a new token and, while
// failChecks is set, for the poller's check before a reset (a write of the
// token it already has).
type failingSaves struct {
	*store.Store
	mu         sync.Mutex
	failNew    int
	failChecks bool
	newSaves   int // attempts to save a new token
	checks     int // checks before a reset
}

func (s *failingSaves) RotateToken(ctx context.Context, id string, oldSealed, sealed []byte, obtainedAt, expiresAt *time.Time) error {
	s.mu.Lock()
	check := bytes.Equal(oldSealed, sealed)
	fail := false
	if check {
		s.checks++
		fail = s.failChecks
	} else {
		s.newSaves++
		fail = s.newSaves <= s.failNew
	}
	s.mu.Unlock()
	if fail {
		return errors.New("store: rotate token: ProvisionedThroughputExceededException: throttled")
	}
	return s.Store.RotateToken(ctx, id, oldSealed, sealed, obtainedAt, expiresAt)
}

// rotationEnv is a runner whose token is due for rotation and a poller
// whose runner store is st.
func rotationEnv(t *testing.T, st func(*store.Store) *failingSaves) (*env, *runner.Runner, gitlabtest.Runner, *failingSaves, *poller.Poller, *logtest.Buffer) {
	t.Helper()
	e := newEnv(t, gitlabtest.WithTokenExpiry(time.Hour))
	r, gr := e.addRunner(1, func(r *runner.Runner) {
		obtained := time.Now().Add(-4 * time.Hour) // past three quarters of its life
		r.TokenObtainedAt = &obtained
	})
	fs := st(e.store)
	logs := &logtest.Buffer{}
	p, err := poller.New(poller.Deps{Runners: fs, Jobs: e.store, Sealer: e.sealer, Invoker: e.inv, Cache: fakePresigner{},
		Logger: slog.New(slog.NewJSONHandler(logs, nil))},
		poller.Config{ExecutorFunctions: map[string]string{"provided.al2023": "executor-provided"}, Version: "test", GitLab: e.glOpts})
	if err != nil {
		t.Fatalf("poller.New: %v", err)
	}
	t.Cleanup(func() {
		current, _ := e.gl.Runner(gr.ID)
		for _, tok := range []string{gr.Token, current.Token} {
			if strings.Contains(logs.String(), tok) {
				t.Errorf("the poller's logs hold a runner token")
			}
		}
	})
	return e, r, gr, fs, p, logs
}

// savedToken opens the runner's stored token.
func (e *env) savedToken(id string) string {
	e.t.Helper()
	tok, err := e.sealer.Open(seal.RunnerToken(id), e.runnerNow(id).SealedToken)
	if err != nil {
		e.t.Fatalf("open the saved token: %v", err)
	}
	return tok
}

func TestRotatedTokenSaveIsRetried(t *testing.T) {
	e, r, gr, fs, p, logs := rotationEnv(t, func(st *store.Store) *failingSaves { return &failingSaves{Store: st, failNew: 3} })
	res, err := p.Poll(context.Background(), dispatch.Poll{RunnerID: r.ID})
	if err != nil || res.Stop != poller.StopNoJob {
		t.Fatalf("Poll() = %+v, %v; want a poll that found no job", res, err)
	}
	current, _ := e.gl.Runner(gr.ID)
	if current.Token == gr.Token {
		t.Fatal("the token was not rotated")
	}
	if saved := e.savedToken(r.ID); saved != current.Token {
		t.Errorf("saved token is not GitLab's current token (the old one: %v)", saved == gr.Token)
	}
	if fs.newSaves != 4 {
		t.Errorf("%d attempts to save the new token, want 4 (three failures, then the save)", fs.newSaves)
	}
	if h := e.runnerNow(r.ID).Health; !h.Healthy() {
		t.Errorf("health = %+v, want healthy", h)
	}
	if n := strings.Count(logs.String(), "new runner token not saved; trying again"); n != 3 {
		t.Errorf("%d log lines about a failed save, want 3", n)
	}
}

func TestTokenRotationWaitsForAWritableStore(t *testing.T) {
	e, r, gr, fs, p, logs := rotationEnv(t, func(st *store.Store) *failingSaves { return &failingSaves{Store: st, failChecks: true} })
	res, err := p.Poll(context.Background(), dispatch.Poll{RunnerID: r.ID})
	if err != nil || res.Stop != poller.StopNoJob {
		t.Fatalf("Poll() = %+v, %v; want a poll with the old token that found no job", res, err)
	}
	if current, _ := e.gl.Runner(gr.ID); current.Token != gr.Token {
		t.Fatal("the token was reset at GitLab while the store refused writes: the new one could not have been saved")
	}
	if fs.newSaves != 0 || e.savedToken(r.ID) != gr.Token {
		t.Errorf("%d saves of a new token, saved token changed: %v; want nothing", fs.newSaves, e.savedToken(r.ID) != gr.Token)
	}
	if !strings.Contains(logs.String(), "token rotation postponed") {
		t.Errorf("no log line says the rotation was postponed:\n%s", logs)
	}

	// Once the store takes writes again, the next poll rotates.
	fs.mu.Lock()
	fs.failChecks = false
	fs.mu.Unlock()
	if _, err := p.Poll(context.Background(), dispatch.Poll{RunnerID: r.ID}); err != nil {
		t.Fatal(err)
	}
	current, _ := e.gl.Runner(gr.ID)
	if current.Token == gr.Token || e.savedToken(r.ID) != current.Token {
		t.Errorf("after the store recovered: rotated %v, saved is GitLab's %v; want both", current.Token != gr.Token, e.savedToken(r.ID) == current.Token)
	}
}

// TestRotatedTokenSaveFailingThroughout shows the one case left: the store
// accepted the check, then refused every save of the new token for longer
// than the retries. The poll still polls with the new token (the old one
// is refused by GitLab), and the log says the token is lost.
func TestRotatedTokenSaveFailingThroughout(t *testing.T) {
	e, r, gr, fs, p, logs := rotationEnv(t, func(st *store.Store) *failingSaves { return &failingSaves{Store: st, failNew: 1000} })
	res, err := p.Poll(context.Background(), dispatch.Poll{RunnerID: r.ID})
	if err != nil || res.Stop != poller.StopNoJob {
		t.Fatalf("Poll() = %+v, %v; want a poll with the new token that found no job", res, err)
	}
	if fs.newSaves != 8 {
		t.Errorf("%d attempts to save the new token, want 8", fs.newSaves)
	}
	current, _ := e.gl.Runner(gr.ID)
	if current.Token == gr.Token {
		t.Fatal("the token was not rotated")
	}
	if !strings.Contains(logs.String(), `"msg":"new runner token not saved"`) {
		t.Errorf("no error line says the new token was not saved:\n%s", logs)
	}
}

// TestTokenSealedWithAnOlderKeyIsResealed: after a sealing-key rotation
// (TOKEN_SEALING_KEY "new,old"), a runner whose token GitLab never rotates
// has it resealed with the new key at its next poll, so the old key can be
// dropped. A store that refuses the write leaves the poll working and the
// next poll reseals.
func TestTokenSealedWithAnOlderKeyIsResealed(t *testing.T) {
	oldKey, newKey := seal.GenerateKey(), seal.GenerateKey()
	before, err := seal.ParseKeys(oldKey)
	if err != nil {
		t.Fatal(err)
	}
	during, err := seal.ParseKeys(newKey + "," + oldKey)
	if err != nil {
		t.Fatal(err)
	}
	after, err := seal.ParseKeys(newKey)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	r, gr := e.addRunner(1, func(r *runner.Runner) { r.TokenExpiresAt = nil }) // a token GitLab never rotates
	sealed, err := before.Seal(seal.RunnerToken(r.ID), gr.Token)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.store.RotateToken(context.Background(), r.ID, r.SealedToken, sealed, nil, nil); err != nil {
		t.Fatal(err)
	}
	fs := &failingSaves{Store: e.store, failNew: 1}
	logs := &logtest.Buffer{}
	p, err := poller.New(poller.Deps{Runners: fs, Jobs: e.store, Sealer: during, Invoker: e.inv, Cache: fakePresigner{},
		Logger: slog.New(slog.NewJSONHandler(logs, nil))},
		poller.Config{ExecutorFunctions: map[string]string{"provided.al2023": "executor-provided"}, Version: "test", GitLab: e.glOpts})
	if err != nil {
		t.Fatalf("poller.New: %v", err)
	}
	poll := func() {
		t.Helper()
		res, err := p.Poll(context.Background(), dispatch.Poll{RunnerID: r.ID})
		if err != nil || res.Stop != poller.StopNoJob {
			t.Fatalf("Poll() = %+v, %v; want a poll that found no job", res, err)
		}
	}

	poll() // the store refuses the reseal
	if _, err := after.Open(seal.RunnerToken(r.ID), e.runnerNow(r.ID).SealedToken); err == nil {
		t.Fatal("the token opens with the new key alone after a refused reseal")
	}
	if !strings.Contains(logs.String(), "older key until a later poll") {
		t.Errorf("the refused reseal is not logged:\n%s", logs)
	}

	poll()
	stored := e.runnerNow(r.ID)
	token, err := after.Open(seal.RunnerToken(r.ID), stored.SealedToken)
	if err != nil {
		t.Fatalf("after the next poll the stored token still needs the old key: %v", err)
	}
	if token != gr.Token {
		t.Error("the resealed token is not the runner's token")
	}
	if current, _ := e.gl.Runner(gr.ID); current.Token != gr.Token {
		t.Error("GitLab's token was reset; a reseal must not rotate it")
	}
	if stored.TokenExpiresAt != nil || !stored.Health.Healthy() {
		t.Errorf("runner after the reseal: expires %v, health %+v; want no expiry, healthy", stored.TokenExpiresAt, stored.Health)
	}
	if strings.Contains(logs.String(), gr.Token) {
		t.Error("the poller's logs hold the runner token")
	}
}
