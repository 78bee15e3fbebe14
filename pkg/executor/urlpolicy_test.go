package executor_test

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

// rebound returns ev as if its GitLab's host name ("localhost", where the
// fake GitLab listens) had resolved elsewhere when the runner was
// registered, and resolved to 127.0.0.1 now.
func rebound(t *testing.T, e *env, ev dispatch.Event) dispatch.Event {
	t.Helper()
	u, err := url.Parse(e.srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	ev.GitLabURL = "http://localhost:" + u.Port()
	return ev
}

// wantNothingSent runs ev and checks that its result says why in plain
// words and that GitLab received nothing from the executor.
func wantNothingSent(t *testing.T, e *env, ev dispatch.Event, why string) {
	t.Helper()
	before, state := len(e.srv.Requests()), e.srv.Job(ev.Job.ID).State
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res := e.exec(ctx, ev)
	if res.Reported || !strings.Contains(res.Error, why) {
		t.Errorf("result %+v, want it unreported with an error saying %q", res, why)
	}
	if reqs := e.srv.Requests(); len(reqs) != before {
		t.Errorf("GitLab received %d requests from the executor (first %s %s), want none", len(reqs)-before, reqs[before].Method, reqs[before].Path)
	}
	if got := e.srv.Job(ev.Job.ID); got.State != state || len(got.Trace) != 0 {
		t.Errorf("job in GitLab = %s with %d trace bytes, want it untouched (%s)", got.State, len(got.Trace), state)
	}
}

// TestExecutorRefusesARefusedGitLabAddress: the job's GitLab URL is
// checked before anything is sent, and every address dialled.
func TestExecutorRefusesARefusedGitLabAddress(t *testing.T) {
	t.Run("checked before anything is sent", func(t *testing.T) {
		e := newEnv(t)
		e.cfg.URLPolicy = &urlpolicy.Policy{AllowHTTP: true}
		ev := rebound(t, e, e.take(project(e, nil), gitlabtest.JobSpec{Script: []string{"echo ran"}}))
		wantNothingSent(t, e, ev, "executor: the job's GitLab URL is refused: localhost is a loopback address; this app does not contact such addresses.")
	})
	t.Run("checked at every dial", func(t *testing.T) {
		e := newEnv(t)
		// The check's resolver says a public address; the dial finds 127.0.0.1.
		e.cfg.URLPolicy = &urlpolicy.Policy{AllowHTTP: true, Resolver: answers{netip.MustParseAddr("203.0.113.9")}}
		ev := rebound(t, e, e.take(project(e, nil), gitlabtest.JobSpec{Script: []string{"echo ran"}}))
		ev.TwoPhase = true
		wantNothingSent(t, e, ev, "127.0.0.1 is a loopback address, which this installation does not contact")
	})
	t.Run("git", func(t *testing.T) {
		e := newEnv(t)
		e.cfg.URLPolicy = &urlpolicy.Policy{AllowHTTP: true, AllowPrivate: true}
		ev := e.take(project(e, nil), gitlabtest.JobSpec{Script: []string{"echo ran"}})
		ev.Job.GitInfo.RepoURL = "http://gitlab-ci-token:" + ev.Job.Token + "@169.254.169.254/group/demo.git"
		_, got := e.run(ev)
		if got.State != "failed" {
			t.Errorf("job = %s, want failed", got.State)
		}
		wantContains(t, got.Trace, "169.254.169.254 is a cloud metadata address, which this installation does not contact")
		wantNotContains(t, got.Trace, "ran\n")
	})
}

// TestCacheURLsAreDialledThroughTheStoragePolicy: pre-signed cache URLs
// may be private (the operator's own storage) but never a metadata
// address; a refused one only warns, as any cache failure does.
func TestCacheURLsAreDialledThroughTheStoragePolicy(t *testing.T) {
	e := newEnv(t)
	ev := e.take(project(e, nil), gitlabtest.JobSpec{
		Script: []string{"mkdir -p .cache && echo data > .cache/data"},
		Cache:  []gitlab.Cache{{Key: "deps", Paths: []string{".cache/"}, Policy: "pull-push", When: "on_success"}},
	})
	meta := "http://169.254.169.254/latest/meta-data/cache.zip?X-Amz-Signature=deadbeef"
	ev.Cache = map[string]dispatch.CacheURLs{}
	for _, c := range ev.Job.Cache {
		ev.Cache[c.Key] = dispatch.CacheURLs{GetURL: meta, PutURL: meta}
	}
	_, got := e.run(ev)
	if got.State != "success" {
		t.Fatalf("job = %s, want success (cache failures only warn); trace:\n%s", got.State, got.Trace)
	}
	wantContains(t, got.Trace, "169.254.169.254 is a cloud metadata address, which this installation does not contact", "Failed to create cache")
	wantNotContains(t, got.Trace, "deadbeef")
}

// TestURLPolicyUnderTheEmulator: the real bootstrap reads the operator's
// settings; without ALLOW_PRIVATE_GITLAB it refuses a GitLab on loopback.
func TestURLPolicyUnderTheEmulator(t *testing.T) {
	t.Parallel()
	em := startEmulator(t, map[string]string{"ALLOW_PRIVATE_GITLAB": "false"})
	e := em.env(t)
	ev := rebound(t, e, e.take(project(e, nil), gitlabtest.JobSpec{Script: []string{"echo ran"}}))
	wantNothingSent(t, e, ev, "localhost is a loopback address")
}
