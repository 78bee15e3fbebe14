package webhook_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/dispatch"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
	"gitlab-serverless-runner/pkg/invoke/invoketest"
	"gitlab-serverless-runner/pkg/runner"
	"gitlab-serverless-runner/pkg/webhook"
)

// runnersFunc is a function-field runner store.
type runnersFunc func(ctx context.Context, id string) (*runner.Runner, error)

func (f runnersFunc) GetRunner(ctx context.Context, id string) (*runner.Runner, error) {
	return f(ctx, id)
}

// pollsOf decodes the polls rec accepted; each must be of the poller.
func pollsOf(t *testing.T, rec *invoketest.Recorder) []dispatch.Poll {
	t.Helper()
	var out []dispatch.Poll
	for _, c := range rec.Accepted() {
		p, err := c.Poll()
		if err != nil || c.Function != "poller" {
			t.Fatalf("invocation of %s with %s: %v; want a poll of the poller", c.Function, c.Payload, err)
		}
		out = append(out, p)
	}
	return out
}

func store(secretHash string, paused bool) runnersFunc {
	return func(_ context.Context, id string) (*runner.Runner, error) {
		switch id {
		case "r1":
			return &runner.Runner{ID: "r1", WebhookSecretHash: secretHash, Paused: paused}, nil
		case "broken":
			return nil, errors.New("dynamodb: connection reset")
		}
		return nil, runner.Errorf(runner.ENOTFOUND, "Runner not found.")
	}
}

func TestHandler(t *testing.T) {
	secret, hash := webhook.NewSecret()
	pending := `{"object_kind":"build","build_id":7,"build_status":"pending"}`
	tests := []struct {
		name       string
		path       string
		token      string
		event      string
		body       string
		paused     bool
		invokeErr  error
		wantStatus int
		wantPolls  int
	}{
		{"pending job starts a poll", "/webhooks/gitlab/r1", secret, "Job Hook", pending, false, nil, http.StatusAccepted, 1},
		{"wrong secret", "/webhooks/gitlab/r1", secret + "x", "Job Hook", pending, false, nil, http.StatusUnauthorized, 0},
		{"missing secret", "/webhooks/gitlab/r1", "", "Job Hook", pending, false, nil, http.StatusUnauthorized, 0},
		{"the hash itself is not the secret", "/webhooks/gitlab/r1", hash, "Job Hook", pending, false, nil, http.StatusUnauthorized, 0},
		{"unknown runner looks like a wrong secret", "/webhooks/gitlab/r2", secret, "Job Hook", pending, false, nil, http.StatusUnauthorized, 0},
		{"store failure", "/webhooks/gitlab/broken", secret, "Job Hook", pending, false, nil, http.StatusServiceUnavailable, 0},
		{"other event ignored", "/webhooks/gitlab/r1", secret, "Push Hook", `{"object_kind":"push"}`, false, nil, http.StatusNoContent, 0},
		{"running job ignored", "/webhooks/gitlab/r1", secret, "Job Hook", `{"object_kind":"build","build_id":7,"build_status":"running"}`, false, nil, http.StatusNoContent, 0},
		{"paused runner ignored", "/webhooks/gitlab/r1", secret, "Job Hook", pending, true, nil, http.StatusNoContent, 0},
		{"bad JSON", "/webhooks/gitlab/r1", secret, "Job Hook", `{`, false, nil, http.StatusBadRequest, 0},
		{"poller not started", "/webhooks/gitlab/r1", secret, "Job Hook", pending, false, errors.New("throttled"), http.StatusServiceUnavailable, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &invoketest.Recorder{Fail: func(invoketest.Invocation) error { return tt.invokeErr }}
			mux := http.NewServeMux()
			mux.Handle(webhook.Route, webhook.New(store(hash, tt.paused), rec, "poller", nil))
			srv := httptest.NewServer(mux)
			defer srv.Close()
			req, _ := http.NewRequest(http.MethodPost, srv.URL+tt.path, strings.NewReader(tt.body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-Gitlab-Event", tt.event)
			if tt.token != "" {
				req.Header.Set("X-Gitlab-Token", tt.token)
			}
			res, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != tt.wantStatus {
				t.Errorf("status = %d, want %d", res.StatusCode, tt.wantStatus)
			}
			events := pollsOf(t, rec)
			if len(events) != tt.wantPolls {
				t.Fatalf("polls started = %d, want %d", len(events), tt.wantPolls)
			}
			for _, ev := range events {
				if ev != (dispatch.Poll{RunnerID: "r1", Reason: dispatch.PollWebhook}) {
					t.Errorf("poll event = %+v, want runner r1 by webhook", ev)
				}
			}
		})
	}
}

// TestHandlerWithGitLab lets the fake GitLab deliver real job events.
func TestHandlerWithGitLab(t *testing.T) {
	for _, tt := range []struct {
		name      string
		secret    func(good string) string
		wantCode  int
		wantPolls int
	}{
		{"right secret", func(good string) string { return good }, http.StatusAccepted, 1},
		{"wrong secret", func(string) string { return "whsec_guess" }, http.StatusUnauthorized, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			secret, hash := webhook.NewSecret()
			rec := &invoketest.Recorder{}
			srv := httptest.NewServer(webhook.New(store(hash, false), rec, "poller", nil))
			defer srv.Close()
			gl := gitlabtest.New(t)
			gl.AddJobHook(srv.URL+"/webhooks/gitlab/r1", tt.secret(secret))
			gl.EnqueueJob(gl.CreateProject("group/demo", map[string]string{"a": "b"}), gitlabtest.JobSpec{Script: []string{"true"}})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for len(gl.HookDeliveries()) == 0 {
				select {
				case <-ctx.Done():
					t.Fatal("no webhook delivered")
				case <-time.After(5 * time.Millisecond):
				}
			}
			d := gl.HookDeliveries()[0]
			if d.Status != "pending" || d.Code != tt.wantCode {
				t.Errorf("delivery = %s answered %d, want pending answered %d", d.Status, d.Code, tt.wantCode)
			}
			if got := len(pollsOf(t, rec)); got != tt.wantPolls {
				t.Errorf("polls started = %d, want %d", got, tt.wantPolls)
			}
		})
	}
}

func TestSecrets(t *testing.T) {
	a, ha := webhook.NewSecret()
	b, hb := webhook.NewSecret()
	if a == b || ha == hb {
		t.Error("NewSecret returned the same secret twice")
	}
	if strings.Contains(ha, a) || webhook.HashSecret(a) != ha {
		t.Errorf("HashSecret(secret) = %q, want the stored hash %q without the secret in it", webhook.HashSecret(a), ha)
	}
}
