package gitlab_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/gitlab"
)

// statusCase is one scripted answer sequence and the error kind wanted.
type statusCase struct {
	name    string
	replies []reply
	wantErr error // nil: success; errAny: an error of no kind
}

func errorStatuses(extra ...statusCase) []statusCase {
	return append([]statusCase{
		{"400", []reply{{status: 400, body: `{"error":"token is missing"}`}}, gitlab.ErrBadRequest},
		{"403", []reply{{status: 403, body: `{"message":"403 Forbidden"}`}}, gitlab.ErrForbidden},
		{"5xx exhausted", []reply{{status: 502}}, gitlab.ErrUnavailable},
	}, extra...)
}

func TestRunnerLifecycleStatuses(t *testing.T) {
	creds := `{"id":42,"token":"glrt-new","token_expires_at":null}`
	tests := []struct {
		name   string
		ok     reply
		cases  []statusCase
		invoke func(t *testing.T, c *gitlab.Client) error
	}{
		{"RegisterRunner", reply{status: 201, body: creds}, errorStatuses(
			statusCase{"410 registration disabled", []reply{{status: 410, body: `{"message":"410 Gone - runner registration disallowed"}`}}, gitlab.ErrGone},
			statusCase{"malformed 201", []reply{{status: 201, body: `{"id":`}}, errAny},
			statusCase{"201 without token", []reply{{status: 201, body: `{"id":3}`}}, errAny},
		), func(t *testing.T, c *gitlab.Client) error {
			_, err := c.RegisterRunner(t.Context(), gitlab.RegisterRequest{Token: runnerToken})
			return err
		}},
		{"VerifyRunner", reply{status: 200, body: creds}, errorStatuses(
			statusCase{"422 orphaned", []reply{{status: 422, body: `{"message":"Runner is orphaned"}`}}, gitlab.ErrBadRequest},
			statusCase{"malformed 200", []reply{{status: 200, body: `[1,2`}}, errAny},
		), func(t *testing.T, c *gitlab.Client) error {
			_, err := c.VerifyRunner(t.Context(), gitlab.VerifyRequest{Token: runnerToken})
			return err
		}},
		{"CreateUserRunner", reply{status: 201, body: creds}, errorStatuses(
			statusCase{"401", []reply{{status: 401}}, gitlab.ErrForbidden},
			statusCase{"malformed 201", []reply{{status: 201, body: `nope`}}, errAny},
		), func(t *testing.T, c *gitlab.Client) error {
			_, err := c.CreateUserRunner(t.Context(), userPAT, gitlab.CreateRunnerRequest{RunnerType: gitlab.RunnerTypeInstance})
			return err
		}},
		{"UnregisterRunner", reply{status: 204}, errorStatuses(), func(t *testing.T, c *gitlab.Client) error {
			return c.UnregisterRunner(t.Context(), runnerToken)
		}},
		{"UnregisterRunnerManager", reply{status: 204}, errorStatuses(
			statusCase{"404 unknown system id", []reply{{status: 404, body: `{"message":"404 Not Found"}`}}, gitlab.ErrNotFound},
		), func(t *testing.T, c *gitlab.Client) error {
			return c.UnregisterRunnerManager(t.Context(), runnerToken, "s_0123456789ab")
		}},
		{"ResetRunnerToken", reply{status: 201, body: `{"token":"glrt-new","token_expires_at":"2026-09-01T10:00:00.000Z"}`}, errorStatuses(
			statusCase{"422", []reply{{status: 422}}, gitlab.ErrBadRequest},
			statusCase{"malformed 201", []reply{{status: 201, body: `{"token":1}`}}, errAny},
		), func(t *testing.T, c *gitlab.Client) error {
			_, err := c.ResetRunnerToken(t.Context(), runnerToken)
			return err
		}},
	}
	for _, tt := range tests {
		cases := append([]statusCase{
			{"success", []reply{tt.ok}, nil},
			{"429 with Retry-After then success", []reply{{status: 429, header: map[string]string{"Retry-After": "60"}}, tt.ok}, nil},
			{"5xx then success", []reply{{status: 500}, {status: 503}, tt.ok}, nil},
		}, tt.cases...)
		for _, sc := range cases {
			t.Run(tt.name+"/"+sc.name, func(t *testing.T) {
				s := serve(t, sc.replies...)
				c, _ := newClient(t, s.srv.URL)
				checkErr(t, tt.invoke(t, c), sc.wantErr)
			})
		}
		t.Run(tt.name+"/unreachable", func(t *testing.T) {
			c, _ := newClient(t, closedURL(t))
			checkErr(t, tt.invoke(t, c), gitlab.ErrUnavailable)
		})
	}
}

func TestRegisterRunner(t *testing.T) {
	s := serve(t, reply{status: 201, body: `{"id":123,"token":"glrtr-abc","token_expires_at":"2026-09-01T10:00:00.000Z","extra":true}`})
	c, _ := newClient(t, s.srv.URL)
	req := gitlab.RegisterRequest{
		Token: runnerToken,
		RunnerSettings: gitlab.RunnerSettings{
			Description: "lambda", Tags: []string{"lambda", "small"}, Locked: true, MaximumTimeout: 900,
		},
		Info: gitlab.NewInfo("1.2.3", gitlab.Features{Variables: true}),
	}
	got, err := c.RegisterRunner(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2026, 9, 1, 10, 0, 0, 0, time.UTC)
	if got.ID != 123 || got.Token != "glrtr-abc" || got.TokenExpiresAt == nil || !got.TokenExpiresAt.Equal(want) {
		t.Errorf("credentials = %+v, want id 123, token glrtr-abc, expiry %v", got, want)
	}
	var body map[string]any
	if err := json.Unmarshal(s.requests()[0].Body, &body); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{
		"token": runnerToken, "description": "lambda", "tag_list": "lambda,small",
		"run_untagged": false, "locked": true, "paused": false, "maximum_timeout": 900.0,
	} {
		if body[k] != want {
			t.Errorf("body[%q] = %#v, want %#v", k, body[k], want)
		}
	}
	info, _ := body["info"].(map[string]any)
	if info["name"] != "gitlab-serverless-runner" || info["executor"] != "lambda" || info["version"] != "1.2.3" {
		t.Errorf("body info = %v, want the product's info", info)
	}
}

func TestVerifyRunner(t *testing.T) {
	tests := []struct {
		name string
		rep  reply
		want gitlab.RunnerCredentials
	}{
		{"JSON", reply{status: 200, body: `{"id":42,"token":"` + runnerToken + `","token_expires_at":null}`}, gitlab.RunnerCredentials{ID: 42, Token: runnerToken}},
		{"JSON without token", reply{status: 200, body: `{"id":42}`}, gitlab.RunnerCredentials{ID: 42, Token: runnerToken}},
		{"old GitLab plain 200", reply{status: 200, header: map[string]string{"Content-Type": "text/plain"}, body: "200"}, gitlab.RunnerCredentials{Token: runnerToken}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := serve(t, tt.rep)
			c, _ := newClient(t, s.srv.URL)
			got, err := c.VerifyRunner(t.Context(), gitlab.VerifyRequest{Token: runnerToken, SystemID: "s_0123456789ab"})
			if err != nil {
				t.Fatal(err)
			}
			if got.ID != tt.want.ID || got.Token != tt.want.Token || got.TokenExpiresAt != nil {
				t.Errorf("credentials = %+v, want %+v", got, tt.want)
			}
			var body gitlab.VerifyRequest
			if err := json.Unmarshal(s.requests()[0].Body, &body); err != nil || body.Token != runnerToken || body.SystemID != "s_0123456789ab" {
				t.Errorf("body = %+v (%v), want token and system id", body, err)
			}
		})
	}
}

func TestCreateUserRunnerSendsTagListAsArray(t *testing.T) {
	s := serve(t, reply{status: 201, body: `{"id":9,"token":"glrt-t2_new","token_expires_at":null}`})
	c, _ := newClient(t, s.srv.URL)
	got, err := c.CreateUserRunner(t.Context(), oauthToken, gitlab.CreateRunnerRequest{
		RunnerType: gitlab.RunnerTypeProject, ProjectID: 77,
		RunnerSettings: gitlab.RunnerSettings{Tags: []string{"a", "b"}, RunUntagged: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != 9 || got.Token != "glrt-t2_new" {
		t.Errorf("credentials = %+v, want id 9 and the new token", got)
	}
	var body map[string]any
	if err := json.Unmarshal(s.requests()[0].Body, &body); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(body["tag_list"]) != "[a b]" || body["runner_type"] != "project_type" || body["project_id"] != 77.0 || body["token"] != nil {
		t.Errorf("body = %v, want tag_list [a b], project_type, project_id 77 and no token", body)
	}
}

func TestUnregisterBodies(t *testing.T) {
	s := serve(t, reply{status: 204})
	c, _ := newClient(t, s.srv.URL)
	if err := c.UnregisterRunner(t.Context(), runnerToken); err != nil {
		t.Fatal(err)
	}
	if err := c.UnregisterRunnerManager(t.Context(), runnerToken, "s_1"); err != nil {
		t.Fatal(err)
	}
	reqs := s.requests()
	if got, want := string(reqs[0].Body), `{"token":"`+runnerToken+`"}`; got != want {
		t.Errorf("DELETE /runners body = %s, want %s", got, want)
	}
	if got, want := string(reqs[1].Body), `{"token":"`+runnerToken+`","system_id":"s_1"}`; got != want {
		t.Errorf("DELETE /runners/managers body = %s, want %s", got, want)
	}
}

func TestResetRunnerToken(t *testing.T) {
	s := serve(t, reply{status: 201, body: `{"token":"glrt-rotated","token_expires_at":"2026-09-01T10:00:00.000Z"}`})
	c, _ := newClient(t, s.srv.URL)
	got, err := c.ResetRunnerToken(t.Context(), runnerToken)
	if err != nil {
		t.Fatal(err)
	}
	if got.Token != "glrt-rotated" || got.TokenExpiresAt == nil {
		t.Errorf("credentials = %+v, want the rotated token with expiry", got)
	}
	if got, want := string(s.requests()[0].Body), `{"token":"`+runnerToken+`"}`; got != want {
		t.Errorf("body = %s, want %s", got, want)
	}
}

func TestTokenExpiringSoon(t *testing.T) {
	obtained := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	expires := obtained.Add(100 * time.Hour)
	before := obtained.Add(-time.Hour)
	tests := []struct {
		name    string
		expires *time.Time
		now     time.Time
		want    bool
	}{
		{"never expires", nil, obtained.Add(1000 * time.Hour), false},
		{"just obtained", &expires, obtained, false},
		{"before three quarters", &expires, obtained.Add(75*time.Hour - time.Second), false},
		{"at three quarters", &expires, obtained.Add(75 * time.Hour), true},
		{"expired", &expires, expires.Add(time.Hour), true},
		{"expiry not after obtained", &before, obtained, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := gitlab.TokenExpiringSoon(obtained, tt.expires, tt.now); got != tt.want {
				t.Errorf("TokenExpiringSoon = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestNewInfo(t *testing.T) {
	got := gitlab.NewInfo("1.0.0", gitlab.Features{Cancelable: true})
	want := gitlab.Info{
		Name: "gitlab-serverless-runner", Version: "1.0.0", Platform: runtime.GOOS, Architecture: runtime.GOARCH,
		Executor: "lambda", Shell: "bash", Features: gitlab.Features{Cancelable: true},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("NewInfo = %+v, want %+v", got, want)
	}
}

func TestErrorKindsAreDistinct(t *testing.T) {
	for i, a := range kinds {
		for j, b := range kinds {
			if i != j && errors.Is(a, b) {
				t.Errorf("%v is %v, want distinct kinds", a, b)
			}
		}
	}
}
