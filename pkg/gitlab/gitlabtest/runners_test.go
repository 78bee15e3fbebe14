package gitlabtest_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
)

func TestCreateUserRunner(t *testing.T) {
	srv := gitlabtest.New(t)
	proj := srv.CreateProject("group/demo", map[string]string{"README.md": "hi\n"})
	other := srv.CreateProject("other/thing", nil)
	owner := srv.AddUser("alice", proj)
	tooMany := make([]string, 51)
	for i := range tooMany {
		tooMany[i] = "t" + strings.Repeat("x", i)
	}
	tests := []struct {
		name   string
		header map[string]string
		body   map[string]any
		want   int
	}{
		{"PAT, project runner", map[string]string{"PRIVATE-TOKEN": owner.PAT},
			map[string]any{"runner_type": "project_type", "project_id": proj.ID, "tag_list": []string{"a", "b"}, "maximum_timeout": 900}, 201},
		{"OAuth bearer, group runner", map[string]string{"Authorization": "Bearer " + owner.OAuthToken},
			map[string]any{"runner_type": "group_type", "group_id": proj.NamespaceID}, 201},
		{"comma-separated tags", map[string]string{"PRIVATE-TOKEN": owner.PAT},
			map[string]any{"runner_type": "project_type", "project_id": proj.ID, "tag_list": "a,b"}, 201},
		{"no token", nil, map[string]any{"runner_type": "project_type", "project_id": proj.ID}, 401},
		{"unknown token", map[string]string{"PRIVATE-TOKEN": "glpat-nope"}, map[string]any{"runner_type": "project_type", "project_id": proj.ID}, 401},
		{"project of someone else", map[string]string{"PRIVATE-TOKEN": owner.PAT},
			map[string]any{"runner_type": "project_type", "project_id": other.ID}, 403},
		{"instance runner without admin", map[string]string{"PRIVATE-TOKEN": owner.PAT},
			map[string]any{"runner_type": "instance_type"}, 403},
		{"missing runner_type", map[string]string{"PRIVATE-TOKEN": owner.PAT}, map[string]any{}, 400},
		{"project_type without project_id", map[string]string{"PRIVATE-TOKEN": owner.PAT}, map[string]any{"runner_type": "project_type"}, 400},
		{"maximum_timeout below 600", map[string]string{"PRIVATE-TOKEN": owner.PAT},
			map[string]any{"runner_type": "project_type", "project_id": proj.ID, "maximum_timeout": 599}, 400},
		{"51 tags", map[string]string{"PRIVATE-TOKEN": owner.PAT},
			map[string]any{"runner_type": "project_type", "project_id": proj.ID, "tag_list": tooMany}, 400},
		{"bad access_level", map[string]string{"PRIVATE-TOKEN": owner.PAT},
			map[string]any{"runner_type": "project_type", "project_id": proj.ID, "access_level": "everything"}, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := call(t, srv, http.MethodPost, "/api/v4/user/runners", tt.header, tt.body)
			if res.status != tt.want {
				t.Fatalf("got status %d (%s), want %d", res.status, res.body, tt.want)
			}
			if tt.want != 201 {
				return
			}
			var creds gitlab.RunnerCredentials
			res.decode(t, &creds)
			if !strings.HasPrefix(creds.Token, "glrt-") || creds.ID == 0 || creds.TokenExpiresAt != nil {
				t.Fatalf("got %+v, want an id, a glrt- token and no expiry", creds)
			}
			r, ok := srv.Runner(creds.ID)
			if !ok || r.Token != creds.Token || r.CreatedBy != "alice" {
				t.Fatalf("got stored runner %+v, want token and creator alice", r)
			}
		})
	}
	t.Run("settings are stored", func(t *testing.T) {
		res := call(t, srv, http.MethodPost, "/api/v4/user/runners", map[string]string{"PRIVATE-TOKEN": owner.PAT}, map[string]any{
			"runner_type": "project_type", "project_id": proj.ID, "description": "lambda", "tag_list": "x, y",
			"run_untagged": false, "locked": true, "paused": true, "access_level": "ref_protected", "maximum_timeout": 900,
		})
		var creds gitlab.RunnerCredentials
		res.decode(t, &creds)
		got, _ := srv.Runner(creds.ID)
		if got.Description != "lambda" || strings.Join(got.Tags, ",") != "x,y" || got.RunUntagged || !got.Locked ||
			!got.Paused || got.AccessLevel != gitlab.AccessRefProtected || got.MaximumTimeout != 900 || got.ProjectID != proj.ID {
			t.Fatalf("got %+v, want the settings sent", got)
		}
	})
	srv.AssertNoViolations(t)
}

func TestRegisterRunner(t *testing.T) {
	srv := gitlabtest.New(t)
	tests := []struct {
		name string
		body map[string]any
		want int
	}{
		{"valid", map[string]any{"token": srv.RegistrationToken(), "tag_list": "lambda,small", "run_untagged": false, "locked": true, "paused": false, "maximum_timeout": 900}, 201},
		{"bad token", map[string]any{"token": "GR1348941nope"}, 403},
		{"no token", map[string]any{}, 400},
		{"timeout too small", map[string]any{"token": srv.RegistrationToken(), "maximum_timeout": 60}, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := call(t, srv, http.MethodPost, "/api/v4/runners", nil, tt.body)
			if res.status != tt.want {
				t.Fatalf("got status %d (%s), want %d", res.status, res.body, tt.want)
			}
			if tt.want == 201 {
				var creds gitlab.RunnerCredentials
				res.decode(t, &creds)
				if !strings.HasPrefix(creds.Token, "glrtr-") {
					t.Fatalf("got token %q, want glrtr- prefix", creds.Token)
				}
				r, _ := srv.Runner(creds.ID)
				if !r.Legacy || strings.Join(r.Tags, ",") != "lambda,small" || r.RunUntagged {
					t.Fatalf("got runner %+v, want legacy with tags lambda,small", r)
				}
			}
		})
	}
	t.Run("disabled registration tokens", func(t *testing.T) {
		srv := gitlabtest.New(t, gitlabtest.WithRegistrationTokensDisabled())
		res := call(t, srv, http.MethodPost, "/api/v4/runners", nil, map[string]any{"token": srv.RegistrationToken()})
		if res.status != http.StatusGone {
			t.Fatalf("got status %d, want 410", res.status)
		}
	})
}

func TestRunnerLifecycle(t *testing.T) {
	srv := gitlabtest.New(t, gitlabtest.WithTokenExpiry(time.Hour))
	r := srv.CreateRunner(gitlabtest.RunnerOptions{})
	if r.TokenExpiresAt == nil {
		t.Fatal("got no token expiry, want one with WithTokenExpiry")
	}

	res := call(t, srv, http.MethodPost, "/api/v4/runners/verify", nil, gitlab.VerifyRequest{
		Token: r.Token, SystemID: "s_aaaaaaaaaaaa", Info: &gitlab.Info{Features: gitlab.Features{CancelGracefully: true}},
	})
	if res.status != http.StatusOK {
		t.Fatalf("verify: got status %d, want 200", res.status)
	}
	var creds gitlab.RunnerCredentials
	res.decode(t, &creds)
	if creds.ID != r.ID || creds.Token != r.Token || creds.TokenExpiresAt == nil {
		t.Fatalf("verify: got %+v, want id %d, same token, an expiry", creds, r.ID)
	}
	got, _ := srv.Runner(r.ID)
	if len(got.Managers) != 1 || got.Managers[0].SystemID != "s_aaaaaaaaaaaa" || !got.Managers[0].Info.Features.CancelGracefully {
		t.Fatalf("got managers %+v, want s_aaaaaaaaaaaa with its info", got.Managers)
	}

	statuses := []struct {
		name   string
		method string
		path   string
		body   any
		want   int
	}{
		{"verify unknown token", "POST", "/api/v4/runners/verify", gitlab.VerifyRequest{Token: "glrt-unknown"}, 403},
		{"delete manager without system_id", "DELETE", "/api/v4/runners/managers", gitlab.ManagerRequest{Token: r.Token}, 400},
		{"delete manager bad token", "DELETE", "/api/v4/runners/managers", gitlab.ManagerRequest{Token: "glrt-x", SystemID: "s_aaaaaaaaaaaa"}, 403},
		{"delete unknown manager", "DELETE", "/api/v4/runners/managers", gitlab.ManagerRequest{Token: r.Token, SystemID: "s_bbbbbbbbbbbb"}, 404},
		{"delete manager", "DELETE", "/api/v4/runners/managers", gitlab.ManagerRequest{Token: r.Token, SystemID: "s_aaaaaaaaaaaa"}, 204},
		{"delete manager again", "DELETE", "/api/v4/runners/managers", gitlab.ManagerRequest{Token: r.Token, SystemID: "s_aaaaaaaaaaaa"}, 404},
		{"reset bad token", "POST", "/api/v4/runners/reset_authentication_token", gitlab.TokenRequest{Token: "glrt-x"}, 403},
	}
	for _, tt := range statuses {
		t.Run(tt.name, func(t *testing.T) {
			if res := call(t, srv, tt.method, tt.path, nil, tt.body); res.status != tt.want {
				t.Fatalf("got status %d (%s), want %d", res.status, res.body, tt.want)
			}
		})
	}

	t.Run("reset invalidates the old token", func(t *testing.T) {
		res := call(t, srv, http.MethodPost, "/api/v4/runners/reset_authentication_token", nil, gitlab.TokenRequest{Token: r.Token})
		if res.status != http.StatusCreated {
			t.Fatalf("got status %d, want 201", res.status)
		}
		var reset gitlab.RunnerCredentials
		res.decode(t, &reset)
		if reset.Token == r.Token || !strings.HasPrefix(reset.Token, "glrt-") || reset.TokenExpiresAt == nil {
			t.Fatalf("got %+v, want a new glrt- token with expiry", reset)
		}
		if res := requestJob(t, srv, r.Token, "", gitlab.Features{}); res.status != http.StatusForbidden {
			t.Fatalf("old token: got status %d, want 403", res.status)
		}
		if res := requestJob(t, srv, reset.Token, "", gitlab.Features{}); res.status != http.StatusNoContent {
			t.Fatalf("new token: got status %d, want 204", res.status)
		}
		r.Token = reset.Token
	})

	t.Run("expired token is refused everywhere", func(t *testing.T) {
		srv.ExpireRunnerToken(r.ID)
		for _, path := range []string{"/api/v4/runners/verify", "/api/v4/jobs/request", "/api/v4/runners/reset_authentication_token"} {
			if res := call(t, srv, http.MethodPost, path, nil, gitlab.TokenRequest{Token: r.Token}); res.status != http.StatusForbidden {
				t.Errorf("POST %s: got status %d, want 403", path, res.status)
			}
		}
	})

	t.Run("delete runner", func(t *testing.T) {
		r2 := srv.CreateRunner(gitlabtest.RunnerOptions{})
		if res := call(t, srv, http.MethodDelete, "/api/v4/runners", nil, gitlab.TokenRequest{Token: r2.Token}); res.status != http.StatusNoContent {
			t.Fatalf("got status %d, want 204", res.status)
		}
		if res := call(t, srv, http.MethodDelete, "/api/v4/runners", nil, gitlab.TokenRequest{Token: r2.Token}); res.status != http.StatusForbidden {
			t.Fatalf("second delete: got status %d, want 403", res.status)
		}
		if got, _ := srv.Runner(r2.ID); !got.Deleted {
			t.Fatal("got runner not deleted")
		}
	})
	srv.AssertNoViolations(t)
}

func TestInject(t *testing.T) {
	srv := gitlabtest.New(t)
	r := srv.CreateRunner(gitlabtest.RunnerOptions{})
	reset := time.Now().Add(time.Minute)
	srv.Inject(gitlabtest.EndpointJobRequest, gitlabtest.Fault{Status: 429, Header: gitlabtest.RetryAfter(2 * time.Second), Times: 2})
	srv.Inject(gitlabtest.EndpointJobRequest, gitlabtest.Fault{Status: 503, Header: gitlabtest.RateLimitReset(reset)})
	srv.Inject(gitlabtest.EndpointJobRequest, gitlabtest.Fault{Status: 409})
	want := []struct {
		status int
		header string
		value  string
	}{
		{429, "Retry-After", "2"},
		{429, "Retry-After", "2"},
		{503, "RateLimit-ResetTime", reset.UTC().Format(http.TimeFormat)},
		{409, "", ""},
		{204, "", ""},
	}
	for i, w := range want {
		res := requestJob(t, srv, r.Token, "", gitlab.Features{})
		if res.status != w.status || (w.header != "" && res.header.Get(w.header) != w.value) {
			t.Fatalf("request %d: got %d %s=%q, want %d %q", i, res.status, w.header, res.header.Get(w.header), w.status, w.value)
		}
	}
	reqs := srv.RequestsTo(gitlabtest.EndpointJobRequest)
	if len(reqs) != 5 || !reqs[0].Injected || reqs[4].Injected {
		t.Fatalf("got %d recorded requests (first injected %v), want 5 with the first 4 injected", len(reqs), len(reqs) > 0 && reqs[0].Injected)
	}
	for _, rec := range reqs {
		if strings.Contains(rec.Header.Get("Job-Token")+rec.Header.Get("Runner-Token"), "glrt-") {
			t.Fatal("got a token in the recorded headers, want it redacted")
		}
	}
}
