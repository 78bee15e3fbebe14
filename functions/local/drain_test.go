package main_test

import (
	"context"
	"html"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
)

// burstJobs is more jobs than registerRunner's concurrency of 2: three
// waves.
const burstJobs = 5

// TestFreedSlotTakesTheNextJob: a burst of jobs beyond the runner's
// concurrency drains with the scheduler's ticker an hour away. Each
// finished job's freed slot polls the runner again (the polls that found
// every slot held left the demand), so no job waits for a scheduled poll.
//
//   - webhook: every job announced by GitLab's job webhook; the polls of
//     the jobs beyond the concurrency find every slot held.
//   - schedule: no webhook; the jobs wait when the system starts, and its
//     one scheduled run (at start) is the only poll not started by a freed
//     slot.
func TestFreedSlotTakesTheNextJob(t *testing.T) {
	for _, mode := range []string{"webhook", "schedule"} {
		t.Run(mode, func(t *testing.T) {
			gl, proj, glRunner := newFakeGitLab(t)
			data := t.TempDir()
			first := startSystem(t, env{"LOCAL_DATA_DIR": data, "LOCAL_POLL_INTERVAL": "1h"})
			b := newBrowser(t, first.sys.URL())
			b.signIn()
			id := b.registerRunner(gl.URL(), glRunner.Token, "laptop")
			r := first
			if mode == "webhook" {
				addWebhook(t, b, gl, first.sys.URL(), id)
			} else {
				first.stop(t)
			}
			var jobs []gitlabtest.Job
			for range burstJobs {
				jobs = append(jobs, gl.EnqueueJob(proj, gitlabtest.JobSpec{Script: []string{"sleep 0.5"}}))
			}
			if mode == "schedule" {
				r = startSystem(t, env{"LOCAL_DATA_DIR": data, "LOCAL_POLL_INTERVAL": "1h"})
			}

			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			for _, j := range jobs {
				got, err := gl.WaitJob(ctx, j.ID)
				if err != nil {
					t.Fatalf("job %d never ended (state %s) with the ticker an hour away: %v", j.ID, gl.Job(j.ID).State, err)
				}
				if got.State != "success" {
					t.Errorf("job %d ended %s, want success; trace:\n%s", j.ID, got.State, got.Trace)
				}
			}
			if n := strings.Count(r.logs.String(), "reason=slot_freed"); n == 0 {
				t.Errorf("no poll was started by a freed slot; logs:\n%s", r.logs.String())
			}
			if mode == "schedule" && len(gl.HookDeliveries()) != 0 {
				t.Errorf("webhook deliveries = %d, want none", len(gl.HookDeliveries()))
			}
			gl.AssertNoViolations(t)
		})
	}
}

// addWebhook makes the runner's webhook secret on its page, as a person
// would, and configures GitLab's job webhook with it. It returns the page
// that showed the secret.
func addWebhook(t *testing.T, b *browser, gl *gitlabtest.Server, base, id string) string {
	t.Helper()
	page := b.get("/runners/" + id)
	m := csrfRE.FindStringSubmatch(page.body)
	if m == nil {
		t.Fatalf("runner page has no form with a CSRF token:\n%s", page.body)
	}
	page = b.do(http.MethodPost, "/runners/"+id+"/webhook-secret", url.Values{"csrf": {m[1]}})
	secret := webhookSecretRE.FindStringSubmatch(page.body)
	if page.status != http.StatusOK || secret == nil {
		t.Fatalf("POST webhook-secret: status %d, no secret shown:\n%s", page.status, page.body)
	}
	gl.AddJobHook(base+"/webhooks/gitlab/"+id, html.UnescapeString(secret[1]))
	return page.body
}
