package web_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
	"gitlab-serverless-runner/pkg/seal"
)

func TestCreateWithRunnerToken(t *testing.T) {
	e := newEnv(t, nil)
	ada := e.signIn("sub-ada", "ada", "")
	glr := e.gl.CreateRunner(gitlabtest.RunnerOptions{Tags: []string{"lambda"}})
	e.secret(glr.Token)

	id := created(t, ada.submit(http.MethodPost, "/runners", e.tokenForm(glr.Token)))

	page := ada.get("/runners/" + id)
	if page.status != http.StatusOK {
		t.Fatalf("GET runner: status = %d, want 200", page.status)
	}
	for _, want := range []string{"Runner created", "lambda runner", "provided.al2023", e.gl.URL()} {
		if !strings.Contains(page.body, want) {
			t.Errorf("runner page lacks %q", want)
		}
	}
	list := ada.get("/runners")
	if !strings.Contains(list.body, "/runners/"+id) {
		t.Errorf("runner list does not link to the new runner")
	}

	rs := e.storedRunners("sub-ada")
	if len(rs) != 1 {
		t.Fatalf("stored runners = %d, want 1", len(rs))
	}
	r := rs[0]
	if got, want := r.GitLabRunnerID, glr.ID; got != want {
		t.Errorf("GitLabRunnerID = %d, want %d", got, want)
	}
	if string(r.SealedToken) == glr.Token || strings.Contains(string(r.SealedToken), glr.Token) {
		t.Errorf("the token is stored in clear")
	}
	opened, err := e.sealer.Open(seal.RunnerToken(r.ID), r.SealedToken)
	if err != nil || opened != glr.Token {
		t.Errorf("sealed token opens to the pasted token: %v", err)
	}
	snap, _ := e.gl.Runner(glr.ID)
	if len(snap.Managers) != 1 || snap.Managers[0].SystemID != r.SystemID {
		t.Errorf("GitLab managers = %+v, want one with system id %s", snap.Managers, r.SystemID)
	}
}

func TestCreateFailuresSaveNothing(t *testing.T) {
	tests := []struct {
		name       string
		prepare    func(e *env) (gitlabURL, token string)
		wantStatus int
		wantText   string
	}{
		{
			name:       "rejected token",
			prepare:    func(e *env) (string, string) { return e.gl.URL(), "glrt-" + strings.Repeat("x", 20) },
			wantStatus: http.StatusUnprocessableEntity,
			wantText:   "GitLab rejected this token",
		},
		{
			name: "expired token",
			prepare: func(e *env) (string, string) {
				r := e.gl.CreateRunner(gitlabtest.RunnerOptions{})
				e.gl.ExpireRunnerToken(r.ID)
				return e.gl.URL(), r.Token
			},
			wantStatus: http.StatusUnprocessableEntity,
			wantText:   "GitLab rejected this token",
		},
		{
			name: "unreachable GitLab",
			prepare: func(e *env) (string, string) {
				return closedURL(e.t), e.gl.CreateRunner(gitlabtest.RunnerOptions{}).Token
			},
			wantStatus: http.StatusBadGateway,
			wantText:   "could not be reached",
		},
		{
			name: "GitLab error",
			prepare: func(e *env) (string, string) {
				e.gl.Inject(gitlabtest.EndpointVerifyRunner, gitlabtest.Fault{Status: http.StatusInternalServerError, Times: 5})
				return e.gl.URL(), e.gl.CreateRunner(gitlabtest.RunnerOptions{}).Token
			},
			wantStatus: http.StatusBadGateway,
			wantText:   "GitLab answered with an error (500",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			ada := e.signIn("sub-ada", "ada", "")
			url, token := tt.prepare(e)
			e.secret(token)
			form := e.tokenForm(token)
			form.Set("gitlab_url", url)
			got := ada.submit(http.MethodPost, "/runners", form)
			if got.status != tt.wantStatus {
				t.Errorf("status = %d, want %d", got.status, tt.wantStatus)
			}
			if !strings.Contains(got.body, tt.wantText) {
				t.Errorf("body lacks %q:\n%s", tt.wantText, got.body)
			}
			if !strings.Contains(got.body, `value="lambda runner"`) {
				t.Errorf("the form lost the description typed")
			}
			if n := len(e.storedRunners("sub-ada")); n != 0 {
				t.Errorf("stored runners = %d, want 0", n)
			}
		})
	}
}

func TestCreateWithRegistrationToken(t *testing.T) {
	tests := []struct {
		name       string
		opts       []gitlabtest.Option
		token      func(e *env) string
		wantStatus int
		wantText   string
	}{
		{"registered", nil, func(e *env) string { return e.gl.RegistrationToken() }, http.StatusSeeOther, ""},
		{"rejected", nil, func(e *env) string { return "GR1348941" + strings.Repeat("z", 20) }, http.StatusUnprocessableEntity, "GitLab rejected this token"},
		{"disabled", []gitlabtest.Option{gitlabtest.WithRegistrationTokensDisabled()}, func(e *env) string { return e.gl.RegistrationToken() },
			http.StatusUnprocessableEntity, "Registration tokens are disabled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			if tt.opts != nil {
				e.gl = gitlabtest.New(t, tt.opts...)
			}
			ada := e.signIn("sub-ada", "ada", "")
			form := e.tokenForm(e.secret(tt.token(e)))
			form.Set("gitlab_url", e.gl.URL())
			form.Set("mode", "registration")
			form.Set("tags", "lambda, arm64")
			form.Del("run_untagged")
			form.Set("protected", "1")
			form.Set("locked", "1")
			form.Set("maximum_timeout", "700")
			got := ada.submit(http.MethodPost, "/runners", form)
			if got.status != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body:\n%s", got.status, tt.wantStatus, got.body)
			}
			if tt.wantStatus != http.StatusSeeOther {
				if !strings.Contains(got.body, tt.wantText) {
					t.Errorf("body lacks %q", tt.wantText)
				}
				if n := len(e.storedRunners("sub-ada")); n != 0 {
					t.Errorf("stored runners = %d, want 0", n)
				}
				return
			}
			created(t, got)
			rs := e.storedRunners("sub-ada")
			if len(rs) != 1 {
				t.Fatalf("stored runners = %d, want 1", len(rs))
			}
			snap, ok := e.gl.Runner(rs[0].GitLabRunnerID)
			if !ok {
				t.Fatalf("GitLab has no runner %d", rs[0].GitLabRunnerID)
			}
			e.secret(snap.Token)
			if !snap.Legacy || snap.Description != "lambda runner" || strings.Join(snap.Tags, ",") != "lambda,arm64" ||
				snap.RunUntagged || !snap.Locked || snap.AccessLevel != "ref_protected" || snap.MaximumTimeout != 700 {
				t.Errorf("GitLab runner = %+v, want the form's settings", snap)
			}
			r := rs[0]
			if strings.Join(r.Tags, ",") != "lambda,arm64" || r.RunUntagged || !r.Locked || r.AccessLevel != "ref_protected" || r.MaximumTimeout != 700 {
				t.Errorf("stored runner settings = %+v, want the form's", r)
			}
		})
	}
}

func TestCreateForMe(t *testing.T) {
	e := newEnv(t, nil)
	mine := e.gl.CreateProject("ada/engine", map[string]string{"README.md": "hi\n"})
	theirs := e.gl.CreateProject("bob/loom", map[string]string{"README.md": "hi\n"})
	user := e.gl.AddUser("ada", mine)
	e.secret(user.OAuthToken)
	ada := e.signIn("sub-ada", "ada", user.OAuthToken)

	page := ada.get("/runners/new")
	if !strings.Contains(page.body, "ada/engine") || strings.Contains(page.body, "bob/loom") {
		t.Errorf("the new-runner form lists the wrong projects")
	}

	form := e.tokenForm("")
	form.Set("mode", "created")
	form.Set("tags", "lambda")

	t.Run("another GitLab", func(t *testing.T) {
		f := cloneForm(form)
		f.Set("project_id", itoa(mine.ID))
		f.Set("gitlab_url", "http://127.0.0.2:1")
		got := ada.submit(http.MethodPost, "/runners", f)
		if got.status != http.StatusUnprocessableEntity || !strings.Contains(got.body, "works only with") {
			t.Errorf("status = %d, want 422 with a message about the sign-in GitLab", got.status)
		}
	})
	t.Run("project not maintained", func(t *testing.T) {
		f := cloneForm(form)
		f.Set("project_id", itoa(theirs.ID))
		got := ada.submit(http.MethodPost, "/runners", f)
		if got.status != http.StatusUnprocessableEntity || !strings.Contains(got.body, "Maintainer role") {
			t.Errorf("status = %d, want 422 with a message about the Maintainer role", got.status)
		}
	})
	t.Run("created", func(t *testing.T) {
		f := cloneForm(form)
		f.Set("project_id", itoa(mine.ID))
		id := created(t, ada.submit(http.MethodPost, "/runners", f))
		r, err := e.store.GetRunner(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		snap, _ := e.gl.Runner(r.GitLabRunnerID)
		e.secret(snap.Token)
		if snap.Type != "project_type" || snap.ProjectID != mine.ID || snap.CreatedBy != "ada" {
			t.Errorf("GitLab runner = type %s project %d by %s, want project_type %d by ada", snap.Type, snap.ProjectID, snap.CreatedBy, mine.ID)
		}
		if tok, err := e.sealer.Open(seal.RunnerToken(r.ID), r.SealedToken); err != nil || tok != snap.Token {
			t.Errorf("stored token does not open to GitLab's token: %v", err)
		}
	})
	if n := len(e.storedRunners("sub-ada")); n != 1 {
		t.Errorf("stored runners = %d, want 1", n)
	}
}
