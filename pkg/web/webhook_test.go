package web_test

import (
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"gitlab-serverless-runner/pkg/dispatch"
	"gitlab-serverless-runner/pkg/runner"
	"gitlab-serverless-runner/pkg/web"
	"gitlab-serverless-runner/pkg/webhook"
)

// invocation is one accepted invocation, decoded as a poll.
type invocation struct {
	function string
	event    dispatch.Poll
}

// pollCalls decodes the invocations the app made.
func (e *env) pollCalls() []invocation {
	e.t.Helper()
	var out []invocation
	for _, c := range e.invoker.Accepted() {
		p, err := c.Poll()
		if err != nil {
			e.t.Fatalf("invocation payload: %v", err)
		}
		out = append(out, invocation{function: c.Function, event: p})
	}
	return out
}

const pollerFunction = "gsr-poller"

func withWebhooks(c *web.Config) { c.PollerFunction = pollerFunction }

// deliver posts a GitLab job event to the app the way GitLab does: no
// cookies, JSON, the secret in X-Gitlab-Token.
func (e *env) deliver(path, token, event, body string) response {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("X-Gitlab-Token", token)
	}
	if event != "" {
		req.Header.Set("X-Gitlab-Event", event)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	e.mu.Lock()
	e.bodies = append(e.bodies, string(b))
	e.mu.Unlock()
	return response{status: resp.StatusCode, body: string(b), header: resp.Header}
}

// bodiesWith counts the responses so far that contain s.
func (e *env) bodiesWith(s string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, b := range e.bodies {
		if strings.Contains(b, s) {
			n++
		}
	}
	return n
}

var secretRE = regexp.MustCompile(`whsec_[A-Za-z0-9_-]+`)

// newSecret generates a webhook secret through the runner page's form and
// returns it from the page the form leads to.
func (c *client) newSecret(runnerID string) string {
	t := c.e.t
	t.Helper()
	got := c.submit(http.MethodPost, "/runners/"+runnerID+"/webhook-secret", nil)
	if got.status != http.StatusSeeOther || got.header.Get("Location") != "/runners/"+runnerID {
		t.Fatalf("generate secret: status %d to %q, want 303 to /runners/%s", got.status, got.header.Get("Location"), runnerID)
	}
	page := c.get("/runners/" + runnerID)
	secret := secretRE.FindString(page.body)
	if page.status != http.StatusOK || secret == "" {
		t.Fatalf("page after generating: status %d, secret %q; want 200 with the secret", page.status, secret)
	}
	if !strings.Contains(page.body, "shown only this once") {
		t.Errorf("the page with the secret does not say it is shown once")
	}
	if strings.Contains(got.header.Get("Location"), secret) {
		t.Errorf("the secret is in the redirect URL")
	}
	return secret
}

func TestWebhookSecretAndDelivery(t *testing.T) {
	e := newEnv(t, withWebhooks)
	ada := e.signIn("sub-ada", "ada", "")
	r := e.createDirect("sub-ada", "ada's runner")
	other := e.createDirect("sub-ada", "another runner")
	hookPath := "/webhooks/gitlab/" + r.ID

	before := ada.get("/runners/" + r.ID)
	for _, want := range []string{"Settings › Webhooks", "Job events", e.srv.URL + hookPath, "none yet", `action="/runners/` + r.ID + `/webhook-secret"`} {
		if !strings.Contains(before.body, want) {
			t.Errorf("runner page before a secret lacks %q", want)
		}
	}

	secret := ada.newSecret(r.ID)
	stored, err := e.store.GetRunner(context.Background(), r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := stored.WebhookSecretHash, webhook.HashSecret(secret); got != want {
		t.Errorf("stored hash = %q, want %q", got, want)
	}
	again := ada.get("/runners/" + r.ID)
	if strings.Contains(again.body, secret) || !strings.Contains(again.body, "cannot be shown again") {
		t.Errorf("the page shows the secret a second time, or does not say it is set")
	}

	pending := `{"object_kind":"build","build_id":1234,"build_status":"pending"}`
	tests := []struct {
		name, path, token, event, body string
		wantStatus                     int
		wantPoll                       bool
	}{
		{"wrong secret", hookPath, "whsec_wrong", "Job Hook", pending, http.StatusUnauthorized, false},
		{"no secret", hookPath, "", "Job Hook", pending, http.StatusUnauthorized, false},
		{"secret of another runner", "/webhooks/gitlab/" + other.ID, secret, "Job Hook", pending, http.StatusUnauthorized, false},
		{"unknown runner", "/webhooks/gitlab/" + runner.NewID(), secret, "Job Hook", pending, http.StatusUnauthorized, false},
		{"running job", hookPath, secret, "Job Hook", `{"object_kind":"build","build_id":1234,"build_status":"running"}`, http.StatusNoContent, false},
		{"pipeline event", hookPath, secret, "Pipeline Hook", `{"object_kind":"pipeline"}`, http.StatusNoContent, false},
		{"pending job", hookPath, secret, "Job Hook", pending, http.StatusAccepted, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := len(e.pollCalls())
			got := e.deliver(tt.path, tt.token, tt.event, tt.body)
			if got.status != tt.wantStatus {
				t.Errorf("status = %d, want %d", got.status, tt.wantStatus)
			}
			calls := e.pollCalls()[n:]
			switch {
			case !tt.wantPoll && len(calls) != 0:
				t.Errorf("invocations = %+v, want none", calls)
			case tt.wantPoll && len(calls) != 1:
				t.Errorf("got %d invocations, want 1", len(calls))
			case tt.wantPoll:
				want := invocation{function: pollerFunction, event: dispatch.Poll{RunnerID: r.ID, Reason: dispatch.PollWebhook}}
				if calls[0] != want {
					t.Errorf("invocation = %+v, want %+v", calls[0], want)
				}
			}
		})
	}

	t.Run("a new secret replaces the old one", func(t *testing.T) {
		fresh := ada.newSecret(r.ID)
		if fresh == secret {
			t.Fatal("the new secret is the old one")
		}
		n := len(e.pollCalls())
		if got := e.deliver(hookPath, secret, "Job Hook", pending); got.status != http.StatusUnauthorized {
			t.Errorf("old secret: status = %d, want 401", got.status)
		}
		if got := e.deliver(hookPath, fresh, "Job Hook", pending); got.status != http.StatusAccepted {
			t.Errorf("new secret: status = %d, want 202", got.status)
		}
		if got := len(e.pollCalls()) - n; got != 1 {
			t.Errorf("invocations = %d, want 1 (the new secret's)", got)
		}
		for _, s := range []string{secret, fresh} {
			if got := e.bodiesWith(s); got != 1 {
				t.Errorf("the secret is in %d responses, want exactly 1 (the page after generating it)", got)
			}
			if strings.Contains(e.logs.String(), s) {
				t.Errorf("the logs contain a webhook secret")
			}
		}
		if strings.Contains(ada.get("/runners/"+r.ID).body, fresh) {
			t.Errorf("a later page shows the secret")
		}
	})
}

func TestWebhookSecretOfOtherUsersRunnerIsNotFound(t *testing.T) {
	e := newEnv(t, withWebhooks)
	e.signIn("sub-ada", "ada", "")
	r := e.createDirect("sub-ada", "ada's runner")
	bob := e.signIn("sub-bob", "bob", "")
	got := bob.submit(http.MethodPost, "/runners/"+r.ID+"/webhook-secret", nil)
	if got.status != http.StatusNotFound {
		t.Errorf("status = %d, want 404", got.status)
	}
	if secretRE.MatchString(got.body) || secretRE.MatchString(bob.get("/runners").body) {
		t.Errorf("bob was shown a webhook secret")
	}
	stored, err := e.store.GetRunner(context.Background(), r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if stored.WebhookSecretHash != "" || stored.Version != r.Version {
		t.Errorf("ada's runner changed: hash %q, version %d (was %d)", stored.WebhookSecretHash, stored.Version, r.Version)
	}
}

func TestForgedSecretCookieShowsNothing(t *testing.T) {
	e := newEnv(t, withWebhooks)
	ada := e.signIn("sub-ada", "ada", "")
	r := e.createDirect("sub-ada", "ada's runner")
	sealedToken, err := e.store.GetRunner(context.Background(), r.ID)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(e.srv.URL + "/runners/" + r.ID)
	for name, value := range map[string]string{
		"garbage": "not-a-sealed-value",
		// The runner's own sealed token must not open as a webhook secret.
		"sealed token": encodeCookie(sealedToken.SealedToken),
	} {
		t.Run(name, func(t *testing.T) {
			ada.http.Jar.SetCookies(u, []*http.Cookie{{Name: "gsr_webhook_secret", Value: value, Path: "/runners/" + r.ID}})
			got := ada.get("/runners/" + r.ID)
			if got.status != http.StatusOK {
				t.Fatalf("status = %d, want 200", got.status)
			}
			if strings.Contains(got.body, "glrt-") || strings.Contains(got.body, "shown only this once") {
				t.Errorf("the page shows a secret from a forged cookie")
			}
		})
	}
}

func encodeCookie(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func TestWebhooksOff(t *testing.T) {
	e := newEnv(t, nil)
	ada := e.signIn("sub-ada", "ada", "")
	r := e.createDirect("sub-ada", "ada's runner")
	if got := e.deliver("/webhooks/gitlab/"+r.ID, "whsec_any", "Job Hook", `{"build_status":"pending"}`); got.status != http.StatusServiceUnavailable || !strings.Contains(got.body, "not enabled") {
		t.Errorf("webhook: status %d body %q, want 503 saying webhooks are not enabled", got.status, got.body)
	}
	page := ada.get("/runners/" + r.ID)
	if !strings.Contains(page.body, "not enabled on this deployment") || strings.Contains(page.body, "/webhook-secret") {
		t.Errorf("the runner page offers a webhook secret while webhooks are off")
	}
	if got := ada.submit(http.MethodPost, "/runners/"+r.ID+"/webhook-secret", nil); got.status != http.StatusNotFound {
		t.Errorf("generate secret: status = %d, want 404", got.status)
	}
	if n := len(e.pollCalls()); n != 0 {
		t.Errorf("invocations = %d, want 0", n)
	}
}
