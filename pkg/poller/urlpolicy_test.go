package poller_test

import (
	"context"
	"errors"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/dispatch"
	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
	"gitlab-serverless-runner/pkg/poller"
	"gitlab-serverless-runner/pkg/runner"
	"gitlab-serverless-runner/pkg/urlpolicy"
)

// answers is a resolver with a fixed answer for every name.
type answers []netip.Addr

func (a answers) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	if len(a) == 0 {
		return nil, errors.New("no such host")
	}
	return a, nil
}

// TestPollRefusesARefusedGitLabAddress: a runner registered with a host
// name that now resolves to 127.0.0.1 (here "localhost", where the fake
// GitLab listens) is not polled: the URL is checked at every poll, and the
// address at every dial for a name that resolved elsewhere when checked.
// The runner's health says why; nothing reaches GitLab; no job is taken.
func TestPollRefusesARefusedGitLabAddress(t *testing.T) {
	e := newEnv(t)
	u, err := url.Parse(e.gl.URL())
	if err != nil {
		t.Fatal(err)
	}
	r, _ := e.addRunner(1, func(r *runner.Runner) { r.GitLabURL = "http://localhost:" + u.Port() })
	e.enqueue(gitlabtest.JobSpec{})

	pollWith := func(t *testing.T, policy urlpolicy.Policy) poller.Result {
		t.Helper()
		p, err := poller.New(poller.Deps{Runners: e.store, Jobs: e.store, Sealer: e.sealer, Invoker: e.inv, Cache: fakePresigner{}},
			poller.Config{
				ExecutorFunctions: map[string]string{"provided.al2023": "executor-provided"},
				URLPolicy:         &policy,
				GitLab:            gitlab.Options{Sleep: func(ctx context.Context, _ time.Duration) error { return ctx.Err() }},
			})
		if err != nil {
			t.Fatal(err)
		}
		res, err := p.Poll(context.Background(), dispatch.Poll{RunnerID: r.ID, Reason: dispatch.PollSchedule})
		if err != nil {
			t.Fatalf("Poll() error = %v", err)
		}
		return res
	}
	wantRefused := func(t *testing.T, res poller.Result, health string) {
		t.Helper()
		if res.Stop != poller.StopRefused || res.Jobs != 0 {
			t.Errorf("Poll() = %+v, want stop %q and no job", res, poller.StopRefused)
		}
		if got := e.runnerNow(r.ID).Health.LastError; got != health {
			t.Errorf("runner health = %q, want %q", got, health)
		}
		if reqs := e.gl.Requests(); len(reqs) != 0 {
			t.Errorf("GitLab received %d requests (first %s %s), want none", len(reqs), reqs[0].Method, reqs[0].Path)
		}
		if calls := executorCalls(t, e.inv); len(calls) != 0 {
			t.Errorf("%d executors invoked, want none", len(calls))
		}
	}

	t.Run("checked at the poll", func(t *testing.T) {
		res := pollWith(t, urlpolicy.Policy{AllowHTTP: true})
		wantRefused(t, res, "The runner's GitLab URL is refused: localhost is a loopback address; this app does not contact such addresses.")
	})
	t.Run("checked at the dial", func(t *testing.T) {
		// The check's resolver says a public address; the dial finds 127.0.0.1.
		res := pollWith(t, urlpolicy.Policy{AllowHTTP: true, Resolver: answers{netip.MustParseAddr("203.0.113.9")}})
		wantRefused(t, res, "GitLab's address is refused: 127.0.0.1 is a loopback address, which this installation does not contact")
	})
	t.Run("allowed by the operator", func(t *testing.T) {
		res := pollWith(t, urlpolicy.Policy{AllowHTTP: true, AllowPrivate: true})
		calls := executorCalls(t, e.inv)
		if res.Jobs != 1 || len(calls) != 1 {
			t.Fatalf("Poll() = %+v with private addresses allowed, want the job handed over", res)
		}
		if h := e.runnerNow(r.ID).Health; !h.Healthy() || !strings.Contains(calls[0].Event.GitLabURL, "localhost") {
			t.Errorf("health %+v, event URL %q: want a healthy runner and the job dispatched", h, calls[0].Event.GitLabURL)
		}
	})
}
