package web_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
	"gitlab-serverless-runner/pkg/runner"
	"gitlab-serverless-runner/pkg/seal"
	"gitlab-serverless-runner/pkg/web"
)

// createDirect stores a runner for owner without going through GitLab.
func (e *env) createDirect(owner, description string) *runner.Runner {
	e.t.Helper()
	r := &runner.Runner{
		ID: runner.NewID(), Owner: owner, GitLabURL: e.gl.URL(), GitLabRunnerID: 7,
		SystemID: runner.NewSystemID(), Description: description, Runtime: "provided.al2023",
		Concurrency: 1, CreationMode: runner.CreationToken,
	}
	sealed, err := e.sealer.Seal(seal.RunnerToken(r.ID), "glrt-"+strings.Repeat("q", 20))
	if err != nil {
		e.t.Fatal(err)
	}
	r.SealedToken = sealed
	if err := e.store.CreateRunner(context.Background(), r); err != nil {
		e.t.Fatalf("CreateRunner: %v", err)
	}
	return r
}

func TestOtherUsersRunnerIsNotFound(t *testing.T) {
	e := newEnv(t, nil)
	e.signIn("sub-ada", "ada", "")
	r := e.createDirect("sub-ada", "ada's runner")
	bob := e.signIn("sub-bob", "bob", "")
	edit := url.Values{"runtime": {"python3.14"}, "concurrency": {"3"}, "version": {"1"}}

	tests := []struct {
		method, path string
		form         url.Values
	}{
		{http.MethodGet, "/runners/" + r.ID, nil},
		{http.MethodGet, "/runners/" + r.ID + "/edit", nil},
		{http.MethodPut, "/runners/" + r.ID, edit},
		{http.MethodDelete, "/runners/" + r.ID, nil},
		{http.MethodGet, "/runners/" + runner.NewID(), nil},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			var got response
			if tt.method == http.MethodGet {
				got = bob.get(tt.path)
			} else {
				got = bob.submit(tt.method, tt.path, cloneForm(tt.form))
			}
			if got.status != http.StatusNotFound {
				t.Errorf("status = %d, want 404", got.status)
			}
			if strings.Contains(got.body, "ada's runner") {
				t.Errorf("the 404 page shows the other user's runner")
			}
		})
	}
	if list := bob.get("/runners"); strings.Contains(list.body, r.ID) {
		t.Errorf("bob's list shows ada's runner")
	}
	stored, err := e.store.GetRunner(context.Background(), r.ID)
	if err != nil {
		t.Fatalf("ada's runner is gone: %v", err)
	}
	if stored.Runtime != "provided.al2023" || stored.Concurrency != 1 {
		t.Errorf("ada's runner was changed: %s × %d", stored.Runtime, stored.Concurrency)
	}
}

func TestStateChangesNeedCSRFToken(t *testing.T) {
	e := newEnv(t, nil)
	ada := e.signIn("sub-ada", "ada", "")
	r := e.createDirect("sub-ada", "kept")
	glr := e.gl.CreateRunner(gitlabtest.RunnerOptions{})
	e.secret(glr.Token)
	tests := []struct {
		name, method, path string
		form               url.Values
	}{
		{"create", http.MethodPost, "/runners", e.tokenForm(glr.Token)},
		{"update", http.MethodPut, "/runners/" + r.ID, url.Values{"runtime": {"python3.14"}, "concurrency": {"3"}, "version": {"1"}}},
		{"delete", http.MethodDelete, "/runners/" + r.ID, nil},
		{"webhook secret", http.MethodPost, "/runners/" + r.ID + "/webhook-secret", nil},
		{"logout", http.MethodPost, "/logout", nil},
	}
	for _, tt := range tests {
		for _, token := range []string{"", "forged-token"} {
			t.Run(tt.name+" token="+token, func(t *testing.T) {
				f := cloneForm(tt.form)
				f.Set("csrf", token)
				if token == "" {
					f.Set("csrf", "")
				}
				if tt.method != http.MethodPost {
					f.Set("_method", tt.method)
				}
				got := ada.do(http.MethodPost, tt.path, f)
				if got.status != http.StatusForbidden {
					t.Errorf("status = %d, want 403", got.status)
				}
			})
		}
	}
	rs := e.storedRunners("sub-ada")
	if len(rs) != 1 || rs[0].Runtime != "provided.al2023" {
		t.Errorf("runners changed without a CSRF token: %d runners", len(rs))
	}
	if got := ada.get("/runners"); got.status != http.StatusOK {
		t.Errorf("still signed in: GET /runners status = %d, want 200", got.status)
	}
	anon := e.newClient()
	if got := anon.do(http.MethodPost, "/runners", e.tokenForm(glr.Token)); got.status != http.StatusForbidden {
		t.Errorf("signed out create: status = %d, want 403", got.status)
	}
	if got := anon.get("/runners"); got.status != http.StatusSeeOther || got.header.Get("Location") != "/" {
		t.Errorf("signed out list: status = %d to %q, want 303 to /", got.status, got.header.Get("Location"))
	}
}

func TestValidationKeepsInputButNotToken(t *testing.T) {
	e := newEnv(t, func(c *web.Config) { c.MaxConcurrency = 3 })
	ada := e.signIn("sub-ada", "ada", "")
	glr := e.gl.CreateRunner(gitlabtest.RunnerOptions{})
	e.secret(glr.Token)
	tests := []struct {
		field, value, want string
	}{
		{"mode", "", "Choose how to connect the runner."},
		{"token", "glpat-" + strings.Repeat("a", 20), "it starts with glrt-"},
		{"token", "glrt-short", "it starts with glrt-"},
		{"gitlab_url", "", "Enter the URL of your GitLab instance"},
		{"gitlab_url", "ftp://gitlab.example.com", "Use an https:// URL."},
		{"gitlab_url", "https://user:pw@127.0.0.1", "must not contain a user name"},
		{"gitlab_url", "https://169.254.169.254", "cloud metadata address"},
		{"gitlab_url", "https://[fe80::1]", "link-local"},
		{"description", strings.Repeat("d", 256), "Keep the description to 255 characters."},
		{"tags", "ok, bad tag!", "is not valid"},
		{"tags", "", "needs at least one tag"},
		{"maximum_timeout", "900", "from 600 to 840"},
		{"maximum_timeout", "599", "from 600 to 840"},
		{"maximum_timeout", "ten", "from 600 to 840"},
		{"runtime", "java8", "Choose one of the offered runtimes."},
		{"concurrency", "0", "from 1 to 3"},
		{"concurrency", "4", "from 1 to 3"},
		{"long_poll", "61", "from 0 to 60"},
	}
	for _, tt := range tests {
		t.Run(tt.field+"="+tt.value, func(t *testing.T) {
			f := e.tokenForm(glr.Token)
			f.Set("description", "typed description")
			f.Set(tt.field, tt.value)
			if tt.field == "tags" && tt.value == "" {
				f.Del("run_untagged")
			}
			got := ada.submit(http.MethodPost, "/runners", f)
			if got.status != http.StatusUnprocessableEntity {
				t.Errorf("status = %d, want 422", got.status)
			}
			if !strings.Contains(got.body, tt.want) {
				t.Errorf("body lacks %q", tt.want)
			}
			if tt.field != "description" && !strings.Contains(got.body, `value="typed description"`) {
				t.Errorf("the form lost the description typed")
			}
			if strings.Contains(got.body, glr.Token) {
				t.Errorf("the form shows the token again")
			}
		})
	}
	if n := len(e.storedRunners("sub-ada")); n != 0 {
		t.Errorf("stored runners = %d, want 0", n)
	}
}

func TestRunnerLimit(t *testing.T) {
	e := newEnv(t, func(c *web.Config) { c.MaxRunnersPerUser = 1 })
	ada := e.signIn("sub-ada", "ada", "")
	first := e.gl.CreateRunner(gitlabtest.RunnerOptions{})
	second := e.gl.CreateRunner(gitlabtest.RunnerOptions{})
	e.secret(first.Token)
	e.secret(second.Token)
	created(t, ada.submit(http.MethodPost, "/runners", e.tokenForm(first.Token)))

	got := ada.submit(http.MethodPost, "/runners", e.tokenForm(second.Token))
	if got.status != http.StatusConflict || !strings.Contains(got.body, "reached the limit of 1 runners") {
		t.Errorf("second create: status = %d, want 409 with the limit message", got.status)
	}
	if n := len(e.storedRunners("sub-ada")); n != 1 {
		t.Errorf("stored runners = %d, want 1", n)
	}
	if list := ada.get("/runners"); !strings.Contains(list.body, "reached the limit of 1 runners") || strings.Contains(list.body, `href="/runners/new"`) {
		t.Errorf("the list does not say the limit is reached")
	}
	if got := len(e.gl.RequestsTo(gitlabtest.EndpointVerifyRunner)); got != 1 {
		t.Errorf("verify requests = %d, want 1: GitLab is not asked at the limit", got)
	}
}

func TestEditRunner(t *testing.T) {
	e := newEnv(t, nil)
	ada := e.signIn("sub-ada", "ada", "")
	r := e.createDirect("sub-ada", "editable")

	page := ada.get("/runners/" + r.ID + "/edit")
	if page.status != http.StatusOK || !strings.Contains(page.body, "Change its description, tags") {
		t.Errorf("edit page: status = %d, want 200 saying where GitLab's settings live", page.status)
	}
	bad := ada.submit(http.MethodPut, "/runners/"+r.ID, url.Values{"runtime": {"python3.14"}, "concurrency": {"99"}, "version": {itoa(r.Version)}})
	if bad.status != http.StatusUnprocessableEntity || !strings.Contains(bad.body, "from 1 to 4") {
		t.Errorf("bad concurrency: status = %d, want 422 with the range", bad.status)
	}
	form := url.Values{"runtime": {"python3.14"}, "concurrency": {"3"}, "long_poll": {"20"}, "paused": {"1"}, "version": {itoa(r.Version)}}
	got := ada.submit(http.MethodPut, "/runners/"+r.ID, cloneForm(form))
	if got.status != http.StatusSeeOther {
		t.Fatalf("update: status = %d, want 303; body:\n%s", got.status, got.body)
	}
	stored, err := e.store.GetRunner(context.Background(), r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if stored.Runtime != "python3.14" || stored.Concurrency != 3 || stored.LongPollSeconds != 20 || !stored.Paused {
		t.Errorf("stored = %s × %d, long poll %d, paused %v; want python3.14 × 3, 20, true",
			stored.Runtime, stored.Concurrency, stored.LongPollSeconds, stored.Paused)
	}
	if stored.Description != "editable" {
		t.Errorf("description = %q, want it untouched", stored.Description)
	}
	stale := ada.submit(http.MethodPut, "/runners/"+r.ID, cloneForm(form))
	if stale.status != http.StatusConflict || !strings.Contains(stale.body, "changed by someone else") {
		t.Errorf("stale update: status = %d, want 409", stale.status)
	}
}

func TestDeleteUnregistersFromGitLab(t *testing.T) {
	e := newEnv(t, nil)
	ada := e.signIn("sub-ada", "ada", "")

	t.Run("registered runner", func(t *testing.T) {
		f := e.tokenForm(e.secret(e.gl.RegistrationToken()))
		f.Set("mode", "registration")
		id := created(t, ada.submit(http.MethodPost, "/runners", f))
		r, _ := e.store.GetRunner(context.Background(), id)
		snap, _ := e.gl.Runner(r.GitLabRunnerID)
		e.secret(snap.Token)
		got := ada.submit(http.MethodDelete, "/runners/"+id, nil)
		if got.status != http.StatusSeeOther || got.header.Get("Location") != "/runners" {
			t.Fatalf("delete: status = %d to %q, want 303 to /runners", got.status, got.header.Get("Location"))
		}
		if snap, _ := e.gl.Runner(r.GitLabRunnerID); !snap.Deleted {
			t.Errorf("GitLab still has the runner")
		}
		if _, err := e.store.GetRunner(context.Background(), id); runner.ErrorCode(err) != runner.ENOTFOUND {
			t.Errorf("store still has the runner: %v", err)
		}
		if list := ada.get("/runners"); !strings.Contains(list.body, "Runner deleted.") {
			t.Errorf("no flash message after delete")
		}
	})
	t.Run("token runner removes only its manager", func(t *testing.T) {
		glr := e.gl.CreateRunner(gitlabtest.RunnerOptions{})
		id := created(t, ada.submit(http.MethodPost, "/runners", e.tokenForm(e.secret(glr.Token))))
		if got := ada.submit(http.MethodDelete, "/runners/"+id, nil); got.status != http.StatusSeeOther {
			t.Fatalf("delete: status = %d, want 303", got.status)
		}
		snap, _ := e.gl.Runner(glr.ID)
		if snap.Deleted || len(snap.Managers) != 0 {
			t.Errorf("GitLab runner deleted=%v managers=%d, want kept with no manager", snap.Deleted, len(snap.Managers))
		}
	})
	t.Run("unreachable GitLab keeps the runner", func(t *testing.T) {
		r := e.createDirect("sub-ada", "far away")
		down := *r
		down.GitLabURL = closedURL(t)
		// Point the stored runner at a closed port.
		if err := e.store.DeleteRunner(context.Background(), r.Owner, r.ID); err != nil {
			t.Fatal(err)
		}
		down.ID = runner.NewID()
		down.SealedToken, _ = e.sealer.Seal(seal.RunnerToken(down.ID), "glrt-"+strings.Repeat("q", 20))
		if err := e.store.CreateRunner(context.Background(), &down); err != nil {
			t.Fatal(err)
		}
		got := ada.submit(http.MethodDelete, "/runners/"+down.ID, nil)
		if got.status != http.StatusBadGateway || !strings.Contains(got.body, "was not deleted") {
			t.Errorf("status = %d, want 502 saying nothing was deleted", got.status)
		}
		if _, err := e.store.GetRunner(context.Background(), down.ID); err != nil {
			t.Errorf("the runner was deleted: %v", err)
		}
	})
}

func TestRunnerPageShowsHealthAndJobs(t *testing.T) {
	e := newEnv(t, func(c *web.Config) { c.PricePerGBSecond = 0.00002 })
	ada := e.signIn("sub-ada", "ada", "")
	r := e.createDirect("sub-ada", "busy")
	ctx := context.Background()
	now := time.Now().UTC()
	if err := e.store.UpdateHealth(ctx, r.ID, runner.Health{LastContactAt: &now, LastError: "GitLab rejected the runner token (403): it expired", LastErrorAt: &now}); err != nil {
		t.Fatal(err)
	}
	jobs := []runner.Job{
		{RunnerID: r.ID, JobID: 11, ProjectPath: "ada/engine", Ref: "main", Name: "test", WebURL: e.gl.URL() + "/ada/engine/-/jobs/11", LeaseExpiresAt: now.Add(time.Hour)},
		{RunnerID: r.ID, JobID: 12, ProjectPath: "ada/engine", Ref: "feature/x", Name: "lint", WebURL: e.gl.URL() + "/ada/engine/-/jobs/12", LeaseExpiresAt: now.Add(time.Hour)},
	}
	for i := range jobs {
		if err := e.store.ClaimJob(ctx, &jobs[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.store.FinishJob(ctx, r.ID, 11, runner.JobOutcome{State: runner.JobSuccess, Duration: 100 * time.Second, MemoryMB: 2048, BilledDuration: 100 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if err := e.store.FinishJob(ctx, r.ID, 12, runner.JobOutcome{State: runner.JobFailed, FailureReason: "script_failure", Duration: 5 * time.Second, MemoryMB: 1024, BilledDuration: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}
	page := ada.get("/runners/" + r.ID)
	for _, want := range []string{
		"it expired", // last error
		"#11", "#12", "ada/engine", "feature/x", "script_failure",
		`href="` + e.gl.URL() + `/ada/engine/-/jobs/11"`,
		"$0.004000", // 100 s × 2 GB × 0.00002
		"$0.000100", // 5 s × 1 GB × 0.00002
		"1m40s",
	} {
		if !strings.Contains(page.body, want) {
			t.Errorf("runner page lacks %q", want)
		}
	}
	if strings.Index(page.body, "#12") > strings.Index(page.body, "#11") {
		t.Errorf("jobs are not newest first")
	}
}

func TestJobCost(t *testing.T) {
	prices := web.Prices{ARM64: 0.0000133334, X86: 0.0000166667, Storage: 0.0000000309}
	tests := []struct {
		name string
		job  runner.Job
		want float64
	}{
		{"arm64, 1 GB, 1 s", runner.Job{BilledDuration: time.Second, MemoryMB: 1024, Arch: "arm64"}, 0.0000133334},
		{"unrecorded arch is arm64", runner.Job{BilledDuration: 10 * time.Minute, MemoryMB: 512}, 600 * 0.5 * 0.0000133334},
		{"x86_64 costs more", runner.Job{BilledDuration: time.Second, MemoryMB: 1024, Arch: "x86_64"}, 0.0000166667},
		{"512 MB of /tmp is free", runner.Job{BilledDuration: time.Second, MemoryMB: 1024, Arch: "arm64", StorageMB: 512}, 0.0000133334},
		{"10 GB of /tmp", runner.Job{BilledDuration: 100 * time.Second, MemoryMB: 2048, Arch: "x86_64", StorageMB: 10240},
			100*2*0.0000166667 + 100*(10240-512)/1024.0*0.0000000309},
		{"nothing billed", runner.Job{MemoryMB: 1024, Arch: "x86_64", StorageMB: 10240}, 0},
	}
	for _, tt := range tests {
		if got := prices.JobCost(&tt.job); got < tt.want*0.999999 || got > tt.want*1.000001 {
			t.Errorf("%s: JobCost = %g, want %g", tt.name, got, tt.want)
		}
	}
}
